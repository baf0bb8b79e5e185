"""Saliency-Net health tests.

A trained map has real spread, salient points cover the image, point selection never collapses
onto one border, and the trainer's flat-map check fires.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from fusanet_core.checkpoint import FIRST_CHECKPOINT, load_model
from fusanet_core.inference.predictor import Predictor
from fusanet_core.model.saliency_net import select_salient_points, spatial_priority
from fusanet_core.training.model_health import FlatSaliencyMonitor, point_coverage

ASSET = Path(__file__).resolve().parents[2] / "assets" / "tiny_saliency_300.pt"


def _image(rgb: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    import cv2

    small = cv2.resize(rgb, (size[1], size[0]), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(small).permute(2, 0, 1).unsqueeze(0).float() / 255.0


def test_trained_saliency_map_has_spread_and_points_cover_the_image(sample_frame):
    # tiny preset, v2 Saliency-Net (leaky head + auxiliary loss), 300 steps on real RGB-D data
    # (test/assets/make_saliency_checkpoint.py). The v1 network's map was a constant.
    model, cfg = load_model(ASSET)
    h, w = cfg.inference.input_size
    with torch.no_grad():
        out = model(_image(sample_frame["rgb"], (h, w)))
    sal = out["saliency"][0, 0]
    assert sal.std() > 1e-2 * sal.mean(), (sal.mean(), sal.std())
    assert sal.std() > 1e-3
    uv = out["salient_points"].uv[0]
    assert point_coverage(uv, h, w, grid=4) >= 0.5
    assert uv[:, 1].max() - uv[:, 1].min() > h / 2  # not one border row


def test_flat_map_points_spread_over_the_whole_image():
    h, w = 120, 160
    flat = torch.full((2, 1, h, w), 0.251020)
    pts = select_salient_points(flat, torch.ones_like(flat), 200)
    for uv in pts.uv:
        assert point_coverage(uv, h, w, grid=4) == 1.0
        assert uv[:, 1].max() > 0.75 * h and uv[:, 0].max() > 0.75 * w
        assert len({(int(u), int(v)) for u, v in uv.tolist()}) == 200  # distinct pixels


def test_distinct_scores_select_exactly_plain_topk_peaks():
    torch.manual_seed(0)
    s = torch.rand(2, 1, 40, 56)
    peaks = s == torch.nn.functional.max_pool2d(s, 5, 1, 2)
    _, index = torch.where(peaks, s, torch.full_like(s, -1.0)).flatten(1).topk(30, dim=1)
    uv = select_salient_points(s, s, 30).uv
    got = (uv[..., 1] * 56 + uv[..., 0]).long()
    for a, b in zip(index, got):
        assert set(a.tolist()) == set(b.tolist())


def test_spatial_priority_is_a_permutation():
    p = spatial_priority(37, 53)
    assert torch.equal(torch.sort(p).values, torch.arange(37 * 53))


def test_v1_checkpoint_keeps_the_point_selection_it_was_trained_with(sample_frame):
    # The first bundled checkpoint (v1) has the dead Saliency-Net: documented, kept loadable and
    # unchanged. Its pass 2 was trained with all 200 points on rows 0-1 (the memory-order
    # tie-break of a flat map); spread points there give blob artefacts in its depth
    # (docs/architecture.md), so v1 configs keep `point_tie_break: memory`.
    pred = Predictor.from_checkpoint(FIRST_CHECKPOINT, device="cpu")
    assert pred.cfg.model.saliency_activation == "relu" and pred.cfg.model.point_tie_break == "memory"
    out = pred.predict(sample_frame["rgb"])
    scores, uv = out["salient_scores"], out["salient_points"]
    assert scores.std() < 1e-4
    h, w = sample_frame["rgb"].shape[:2]
    assert uv[:, 1].max() < h / 10  # all on the top rows, as in training
    assert point_coverage(torch.from_numpy(uv[:, :2]), h, w, grid=4) < 0.5


def test_flat_monitor_warns_once(caplog):
    monitor = FlatSaliencyMonitor()
    with caplog.at_level(logging.WARNING, logger="fusanet_core.training.trainer"):
        assert monitor.check({"step": 10, "saliency_std": 3e-8, "saliency_mean": 0.251})
        assert monitor.check({"step": 20, "saliency_std": 3e-8, "saliency_mean": 0.251})
        assert not monitor.check({"step": 30, "saliency_std": 0.05})
        assert not monitor.check({"step": 40})  # no Saliency-Net: ignored
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "flat" in warnings[0].getMessage()


def test_task_reports_saliency_spread_and_trains_the_saliency_loss():
    from fusanet_core.config import preset_config
    from fusanet_core.model import build_model
    from fusanet_core.model.points import PointBatch
    from fusanet_core.training.task import DepthTask

    torch.manual_seed(0)
    cfg = preset_config("tiny")
    model = build_model(cfg).train()
    batch = {"rgb": torch.rand(2, 3, 32, 48), "depth": 1 + torch.rand(2, 1, 32, 48),
             "mask": torch.ones(2, 1, 32, 48, dtype=torch.bool), "points": PointBatch.empty(2),
             "intrinsics": torch.tensor([[48.0, 48.0, 24.0, 16.0]] * 2)}
    result = DepthTask(cfg)(model, batch, 1)
    assert {"saliency_std", "saliency_mean", "l_saliency"} <= set(result)
    result["loss"].backward()
    head = model.saliency_net.head_features[0].weight.grad
    assert head is not None and head.abs().sum() > 0


def test_scores_within_the_score_step_are_ties_decided_alike():
    """Another runtime's float rounding (1e-7) must not change which of two tied peaks is chosen."""
    chosen = []
    for nudge in ((1e-7, 0.0), (0.0, 1e-7)):
        sal = torch.zeros(1, 1, 32, 32)
        sal[0, 0, 5, 5], sal[0, 0, 25, 20] = 0.5 + nudge[0], 0.5 + nudge[1]
        points = select_salient_points(sal, torch.ones_like(sal), 1, tie_break="spatial")
        chosen.append(points.uv[0, 0].tolist())
    assert chosen[0] == chosen[1]
    sal[0, 0, 5, 5] = 0.6  # a real difference still wins
    assert select_salient_points(sal, torch.ones_like(sal), 1, tie_break="spatial").uv[0, 0].tolist() == [5.0, 5.0]
