"""The bundled default checkpoint: the network issue 11 asks for, a working Saliency-Net, calibrated confidence.

These run the real bundled weights on the bundled TUM RGB-D sample (a scene and sensor the model
never saw in training) and fail if a retrained or re-bundled file loses what the docs promise.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fusanet_core.metrics import compute_metrics
from fusanet_core.model_health import point_coverage
from fusanet_core.predictor import DEFAULT_CHECKPOINT, Predictor

pytestmark = pytest.mark.skipif(not DEFAULT_CHECKPOINT.is_file(), reason="no bundled checkpoint")


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor.from_checkpoint(None, "cpu")


def test_it_is_the_small_camera_aware_backbone_model(predictor):
    model = predictor.cfg.model
    assert model.backbone == "efficientnet_lite0" and model.focal_aware and model.use_saliency
    assert DEFAULT_CHECKPOINT.stat().st_size <= 40e6
    assert predictor.input_size == (120, 160)
    assert all(torch.isfinite(p).all() for p in predictor.model.parameters())


def test_saliency_map_has_spread_and_points_cover_the_image(predictor, sample_frame):
    out = predictor.predict(sample_frame["rgb"], sample_frame["intrinsics"])
    h, w = sample_frame["rgb"].shape[:2]
    scores, uv = out["salient_scores"], out["salient_points"]
    assert scores.std() > 1e-3
    assert point_coverage(torch.from_numpy(uv[:, :2]), h, w, grid=4) >= 0.5
    assert uv[:, 1].max() - uv[:, 1].min() > h / 2 and uv[:, 0].max() - uv[:, 0].min() > w / 2


def test_structure_beats_a_constant_on_an_unseen_scene(predictor, sample_frame):
    """Median-scaled (structure alone): better than the frame's own median depth everywhere."""
    gt = sample_frame["depth"]
    depth = predictor.predict(sample_frame["rgb"], sample_frame["intrinsics"])["depth"]
    model = compute_metrics(depth, gt, median_scale=True)
    constant = compute_metrics(np.full_like(gt, np.median(gt[gt > 0])), gt, median_scale=True)
    assert model["abs_rel"] < constant["abs_rel"] and model["delta1"] > constant["delta1"]


def test_known_points_pull_the_depth_to_them(predictor, sample_frame):
    """200 ground-truth points (SLAM-like): the primed, scale_local-fitted depth is far closer than RGB only."""
    gt, rgb, k = sample_frame["depth"], sample_frame["rgb"], sample_frame["intrinsics"]
    rng = np.random.default_rng(0)
    rows, cols = np.nonzero(gt > 0)
    pick = rng.choice(len(rows), 200, replace=False)
    points = np.column_stack([cols[pick], rows[pick], gt[rows[pick], cols[pick]]]).astype(np.float32)
    alone = compute_metrics(predictor.predict(rgb, k)["depth"], gt)
    fitted = Predictor(predictor.model, predictor.cfg, "cpu", scale_from_points="scale_local")
    out = fitted.predict(rgb, k, points)
    primed = compute_metrics(out["depth"], gt)
    assert out["point_fit"]["applied"]
    assert primed["rmse"] < 0.6 * alone["rmse"] and primed["delta1"] > alone["delta1"]


def test_confidence_is_calibrated(predictor, sample_frame):
    out = predictor.predict(sample_frame["rgb"], sample_frame["intrinsics"])
    assert out["confidence_calibrated"]
    assert 0.0 <= out["confidence"].min() and out["confidence"].max() <= 1.0
    assert predictor.cfg.inference.confidence_bound > 0
