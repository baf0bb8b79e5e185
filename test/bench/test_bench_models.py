"""bench/fastdepth.py: the FastDepth peer of bench/bench_model.py has the published size."""

from pathlib import Path
import sys

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from fastdepth import conv_weights, FastDepth  # noqa: E402, I100 (needs the sys.path insert above)


def test_fastdepth_has_the_papers_parameter_count():
    model = FastDepth()
    # Wofk et al. 2019: 1.34 M parameters (convolution weights; + 17 k BatchNorm affines).
    assert conv_weights(model) == 1_343_664
    assert sum(p.numel() for p in model.parameters()) == 1_360_786


def test_fastdepth_output_at_any_size_and_its_macs():
    from torch.utils.flop_counter import FlopCounterMode

    model = FastDepth().eval()
    for h, w in [(224, 224), (240, 320), (228, 304)]:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            out = model(torch.rand(1, 3, h, w))
        assert out.shape == (1, 1, h, w) and torch.isfinite(out).all()
        if (h, w) == (224, 224):  # the paper: 0.37 GMAC
            assert abs(counter.get_total_flops() / 2 / 1e9 - 0.37) < 0.01
