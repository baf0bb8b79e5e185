"""The training mix: random zoom with consistent intrinsics, camera-aware depth, point sets like use, repeats."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from fusanet_core.config import config_from_dict, preset_config
from fusanet_core.datasets import build_dataset, split_repeat
from fusanet_core.datasets import transforms as T
from fusanet_core.datasets.base import random_valid_points
from fusanet_core.io.images import read_depth
from fusanet_core.model import build_model
from fusanet_core.model.points import PointBatch
from fusanet_core.training.trainer import param_groups

ROOT = Path(__file__).resolve().parents[3]
SAMPLE = ROOT / "sample" / "tum_rgbd"
K = np.array([80.0, 80.0, 39.5, 29.5])


def _marker_frame(uv: tuple[int, int], size: tuple[int, int] = (60, 80)) -> T.Frame:
    rgb = np.zeros((*size, 3), np.uint8)
    rgb[uv[1] - 1:uv[1] + 2, uv[0] - 1:uv[0] + 2] = 255
    depth = np.full(size, 2.0, np.float32)
    return T.Frame(rgb, depth, K.copy())


def test_random_zoom_keeps_the_projection_and_scales_the_focal_length():
    uv, xyz = (50, 20), None
    frame = _marker_frame(uv)
    xyz = np.array([(uv[0] - K[2]) * 2.0 / K[0], (uv[1] - K[3]) * 2.0 / K[1], 2.0])
    for seed in range(5):
        zoomed = T.random_zoom(frame, np.random.default_rng(seed), 0.7)
        fx, fy, cx, cy = zoomed.intrinsics
        assert zoomed.size == frame.size
        assert 80.0 / 1.0 <= fx <= 80.0 / 0.7 + 1e-6 and fx == pytest.approx(fy, rel=0.02)
        assert np.all(zoomed.depth[zoomed.depth > 0] == 2.0)  # a longer lens, not a move
        u, v = fx * xyz[0] / xyz[2] + cx, fy * xyz[1] / xyz[2] + cy
        if 1 <= u < 79 and 1 <= v < 59:  # the marker is still in view: it is where K says
            rows, cols = np.nonzero(zoomed.rgb[..., 0] > 100)
            assert abs(cols.mean() - u) < 0.75 and abs(rows.mean() - v) < 0.75


def test_zoom_off_by_default_and_validated():
    assert T.AugmentParams().zoom_min == 1.0
    with pytest.raises(ValueError, match="data.zoom_min"):
        config_from_dict({"data": {"zoom_min": 0.1}})


@pytest.mark.parametrize("preset", ["tiny", "unet"])
def test_focal_aware_depth_scales_with_fx_over_width(preset):
    """Canonical camera fx = width: the same output there; elsewhere depth x fx / width, points / it."""
    cfg = preset_config(preset)
    cfg.model.backbone_pretrained = False
    torch.manual_seed(0)
    plain = build_model(cfg, "cpu").eval()
    cfg = copy.deepcopy(cfg)  # the model keeps its config object
    cfg.model.focal_aware = True
    aware = build_model(cfg, "cpu").eval()
    aware.load_state_dict(plain.state_dict())
    rgb = torch.rand(2, 3, 48, 64)
    k = torch.tensor([[64.0, 64, 31.5, 23.5], [32.0, 32, 31.5, 23.5]])  # fx / width = 1 and 0.5
    points = PointBatch.from_arrays([np.array([[10, 10, 2.0]]), np.array([[20, 30, 1.0]])])
    canonical = PointBatch(points.uv, points.depth / torch.tensor([[1.0], [0.5]]), points.weight)
    with torch.no_grad():
        got = aware(rgb, points, k)["depth"][0]
        want = plain(rgb, canonical, k)["depth"][0]
    assert torch.allclose(got[0], want[0], atol=1e-6)
    assert torch.allclose(got[1], 0.5 * want[1], atol=1e-6)


def test_training_point_sets_vary_in_count_kind_and_noise():
    cfg = config_from_dict({"preset": "tiny", "data": {"image_size": [96, 128]},
                            "points": {"max_points": 60, "min_points": 5, "random_share": 0.5, "depth_noise": 0.05,
                                       "zero_points_prob": 0.0, "sift_contrast_threshold": 0.005}})
    dataset = build_dataset(str(SAMPLE), cfg, train=True)
    counts, off = [], []
    for seed in range(24):
        sample = dataset[(seed % 3, seed)]
        pts = sample["points"].numpy()
        depth = sample["depth"][0].numpy()
        counts.append(len(pts))
        if len(pts):
            at = depth[pts[:, 1].astype(int), pts[:, 0].astype(int)]
            assert np.all(at > 0)  # on valid ground truth
            off.append(np.abs(pts[:, 2] / at - 1.0).mean())
    assert min(counts) >= 1 and max(counts) <= 60 and len(set(counts)) > 5
    assert 0.01 < float(np.mean(off)) < 0.1  # ~5 % noise: mean |N(0, 0.05)| = 0.04


def test_random_valid_points_stay_on_valid_pixels():
    depth = np.random.default_rng(0).random((10, 12)).astype(np.float32)
    valid = depth > 0.5
    pts = random_valid_points(depth, valid, 7, np.random.default_rng(1))
    assert len(pts) == 7 and len({(u, v) for u, v, _ in pts}) == 7
    assert np.all(valid[pts[:, 1].astype(int), pts[:, 0].astype(int)])
    assert np.allclose(depth[pts[:, 1].astype(int), pts[:, 0].astype(int)], pts[:, 2])
    assert len(random_valid_points(depth, np.zeros_like(valid), 7, np.random.default_rng(1))) == 0


def test_split_repeat():
    assert split_repeat("a/manifest.csv[0:9]*3") == ("a/manifest.csv[0:9]", 3)
    assert split_repeat("a/manifest.csv") == ("a/manifest.csv", 1)
    assert split_repeat(" b * 2 ") == ("b", 2)
    with pytest.raises(ValueError, match="repeat"):
        split_repeat("a*0")


def test_backbone_gets_its_own_learning_rate():
    cfg = preset_config("lite")
    cfg.model.backbone_pretrained = False
    model = build_model(cfg, "cpu")
    groups = param_groups(model, 0.2)
    backbone = {id(p) for p in model.backbone.parameters()}
    assert [g["lr_scale"] for g in groups] == [1.0, 0.2]
    assert {id(p) for p in groups[1]["params"]} == backbone
    assert not backbone & {id(p) for p in groups[0]["params"]}
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    assert len(param_groups(build_model(preset_config("tiny"), "cpu"), 0.2)) == 1


def test_16_bit_pgm_depth_reads_as_uint16(tmp_path):
    raw = np.array([[0, 1000], [65535, 42]], np.uint16)
    path = tmp_path / "d.pgm"
    path.write_bytes(b"P5\n2 2\n65535\n" + raw.astype(">u2").tobytes())
    assert np.allclose(read_depth(path, 0.001), [[0.0, 1.0], [0.0, 0.042]])


def test_repeats_and_unseen_sets_in_a_real_run(tmp_path):
    """A "*2" entry counts twice per epoch; data.unseen is scored and pooled apart from data.val."""
    from fusanet_core.training.trainer import Trainer

    cfg = config_from_dict({
        "preset": "tiny", "inference": {"input_size": [48, 64]},
        "data": {"train": [f"{SAMPLE}/manifest.csv[0:1]*2", f"{SAMPLE}/manifest.csv[1:3]"],
                 "val": [f"{SAMPLE}/manifest.csv[0:1]"], "unseen": [f"{SAMPLE}/manifest.csv[2:3]"],
                 "image_size": [48, 64]},
        "train": {"epochs": 1, "batch_size": 2, "out_dir": str(tmp_path), "threads": 1}})
    trainer = Trainer(cfg)
    assert len(trainer.train_set) == 4
    results = trainer.validate()
    assert len(results) == 4 and {"all", "unseen"} <= set(results)  # one val set, one unseen set, two pools
    assert results["unseen"]["n_images"] == 1 and results["all"]["n_images"] == 1
    assert results["unseen"]["rmse"] != results["all"]["rmse"]
