"""ONNX export (`fusanet_core.inference.export`): a failed check leaves no file, the defaults and size rule."""

import pytest
import torch

from fusanet_core import build_model, preset_config
from fusanet_core.checkpoint import save_checkpoint


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = build_model("tiny").eval()
    return model, save_checkpoint(tmp_path / "ckpt.pt", model, preset_config("tiny"), epoch=3)


def test_export_check_is_nan_proof_and_leaves_no_file(saved, tmp_path, monkeypatch):
    """max(0.0, nan) is 0.0: NaN outputs once passed the check as "max |depth diff| 0.00e+00"."""
    pytest.importorskip("onnxruntime")
    import numpy as np
    import onnx
    import onnxruntime

    from fusanet_core.inference import export

    _, path = saved

    class NaNSession:  # onnxruntime answering NaN where PyTorch gives numbers
        def __init__(self, *args, **kwargs):
            pass

        def run(self, _outputs, feeds):
            shape = feeds["rgb"].shape
            return [np.full((1, 1, *shape[2:]), np.nan, np.float32), np.ones((1, 1, *shape[2:]), np.float32)]

    monkeypatch.setattr(torch.onnx, "export", lambda *args, **kwargs: open(args[2], "wb").write(b"graph"))
    monkeypatch.setattr(onnx.checker, "check_model", lambda *args, **kwargs: None)
    monkeypatch.setattr(onnxruntime, "InferenceSession", NaNSession)
    out = tmp_path / "out" / "model.onnx"
    with pytest.raises(ValueError, match=r"non-finite depth \(NaN/inf\) on the check input \(onnxruntime\)"):
        export.export_onnx(path, out, (48, 64))
    assert not any((tmp_path / "out").iterdir())  # neither model.onnx nor its temporary file
    assert export._worst(0.0, float("nan")) != export._worst(0.0, float("nan"))  # NaN stays NaN
    assert export._worst(0.5, 0.25) == 0.5


def test_export_defaults_to_the_bundled_checkpoint_and_applies_the_size_rule(monkeypatch, tmp_path):
    from fusanet_core.checkpoint import DEFAULT_CHECKPOINT
    from fusanet_core.cli import main
    from fusanet_core.inference import export

    seen = {}

    def fake(wrapper, rgb, out, final, checkpoint, *args):
        seen.update(checkpoint=checkpoint, shape=tuple(rgb.shape))
        out.write_bytes(b"graph")
        return {"path": str(final), "height": rgb.shape[2], "width": rgb.shape[3], "max_abs_diff": 0.0,
                "max_rel_diff": 0.0}

    monkeypatch.setattr(export, "_export_and_check", fake)
    assert main(["export", "--out", str(tmp_path / "m.onnx"), "--input-size", "64", "96"]) == 0
    assert seen == {"checkpoint": DEFAULT_CHECKPOINT, "shape": (1, 3, 64, 96)}
    assert (tmp_path / "m.onnx").read_bytes() == b"graph"
    with pytest.raises(ValueError, match=r"input_size must be \[height, width\] >= 32, got \(8, 8\)"):
        export.export_onnx(None, tmp_path / "small.onnx", (8, 8))
    assert not (tmp_path / "small.onnx").exists()
