"""FuSaNet end to end: shapes at awkward sizes, finiteness, gradients, ablation switches, size."""

import pytest
import torch

from fusanet_core import build_model, preset_config
from fusanet_core.config import ModelConfig, PRESETS
from fusanet_core.model import FuSaNet
from fusanet_core.points import PointBatch


def _points(batch: int, h: int, w: int, n: int, seed: int = 0) -> PointBatch:
    g = torch.Generator().manual_seed(seed)
    uv = torch.rand(batch, n, 2, generator=g) * torch.tensor([w - 1.0, h - 1.0])
    depth = 0.5 + 4 * torch.rand(batch, n, generator=g)
    return PointBatch(uv, depth, torch.ones(batch, n))


@pytest.mark.parametrize("size", [(480, 640), (375, 1242), tuple(preset_config("tiny").inference.input_size)])
def test_output_shapes_at_any_size(size):
    h, w = size
    model = build_model("tiny").eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, h, w), _points(1, h, w, 20))
    for k, (depth, conf) in enumerate(zip(out["depth"], out["confidence"])):
        expected = (1, 1, -(-h // 2**k), -(-w // 2**k))
        assert depth.shape == expected and conf.shape == expected
        assert torch.isfinite(depth).all() and torch.isfinite(conf).all()
        assert (conf >= 0).all() and (conf <= 1).all()
    cfg = model.cfg
    assert (out["depth"][0] >= cfg.min_depth).all() and (out["depth"][0] <= cfg.max_depth).all()
    salient = out["salient_points"]
    assert salient.uv.shape == (1, cfg.max_salient_points, 2)
    assert (salient.uv[..., 0] < w).all() and (salient.uv[..., 1] < h).all()


def test_paper_preset_at_default_inference_size():
    cfg = preset_config("paper")
    h, w = cfg.inference.input_size
    model = build_model(cfg).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, h, w))
    assert out["depth"][0].shape == (1, 1, h, w)
    assert torch.isfinite(out["depth"][0]).all()


def test_paper_parameter_count_in_range():
    n = sum(p.numel() for p in build_model("paper").parameters())
    assert 7.7e6 <= n <= 8.5e6, n
    assert sum(p.numel() for p in build_model("small").parameters()) < n / 3


@pytest.mark.parametrize("with_points", [True, False])
def test_one_training_step_reaches_every_parameter(with_points):
    torch.manual_seed(0)
    model = build_model("tiny").train()
    points = _points(2, 48, 64, 12) if with_points else None
    out = model(torch.rand(2, 3, 48, 64), points)
    loss = sum(d.mean() for d in out["depth"] + out["pass1"]["depth"])
    loss = loss + sum(c.mean() for c in out["confidence"] + out["pass1"]["confidence"])
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0]
    assert not missing, missing


def test_points_change_the_prediction_and_padding_does_not():
    torch.manual_seed(0)
    model = build_model("tiny").eval()
    rgb = torch.rand(1, 3, 48, 64)
    pts = _points(1, 48, 64, 10)
    with torch.no_grad():
        none = model(rgb)["depth"][0]
        some = model(rgb, pts)["depth"][0]
        padded = PointBatch(
            torch.cat([pts.uv, torch.zeros(1, 5, 2)], 1), torch.cat([pts.depth, torch.zeros(1, 5)], 1), torch.cat([pts.weight, torch.zeros(1, 5)], 1)
        )
        same = model(rgb, padded)["depth"][0]
    assert not torch.allclose(none, some)
    assert torch.allclose(some, same, atol=1e-5)


def test_batch_elements_are_independent():
    torch.manual_seed(0)
    model = build_model("tiny").eval()
    rgb = torch.rand(2, 3, 48, 64)
    pts = _points(2, 48, 64, 8)
    with torch.no_grad():
        both = model(rgb, pts)["depth"][0]
        first = model(rgb[:1], PointBatch(pts.uv[:1], pts.depth[:1], pts.weight[:1]))["depth"][0]
    assert torch.allclose(both[:1], first, atol=1e-5)


def test_ablation_switches():
    base = dict(PRESETS["tiny"])
    full = FuSaNet(ModelConfig(**base))
    no_sal = FuSaNet(ModelConfig(**base, use_saliency=False))
    no_cp = FuSaNet(ModelConfig(**base, use_confidence=False))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert no_sal.saliency_net is None and count(no_sal) < count(full)
    assert count(no_cp) < count(full)
    with torch.no_grad():
        out = no_sal.eval()(torch.rand(1, 3, 40, 56))
        assert out["salient_points"] is None and out["depth"][0].shape == (1, 1, 40, 56)
        out = no_cp.eval()(torch.rand(1, 3, 40, 56))
        assert all(c is None for c in out["confidence"]) and out["salient_points"] is not None


def test_build_model_rejects_unknown_preset():
    with pytest.raises(ValueError, match="unknown preset"):
        build_model("huge")


def test_untrained_depth_starts_at_the_geometric_mean_of_the_range():
    cfg = ModelConfig(**PRESETS["tiny"], min_depth=0.1, max_depth=10.0)
    model = FuSaNet(cfg).eval()
    for block in model.fusion_net.blocks:  # isolate the head's bias: zero the features' influence
        torch.nn.init.zeros_(block.depth_head.weight)
    with torch.no_grad():
        depth = model(torch.rand(1, 3, 32, 48))["depth"]
    for d in depth:
        assert torch.allclose(d, torch.full_like(d, 1.0), atol=1e-4)
