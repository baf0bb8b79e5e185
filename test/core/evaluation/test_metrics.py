"""Tests of fusanet_core.evaluation.metrics against hand-computed values and a loop reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fusanet_core.evaluation.metrics import (
    compute_metrics,
    crop_box,
    crop_mask,
    format_table,
    METRIC_NAMES,
    MetricAccumulator,
    NoValidPixelsError,
    timing_summary,
)


def test_metrics_by_hand():
    gt = np.array([[1.0, 2.0], [4.0, 0.0]])  # 0 = invalid
    pred = np.array([[2.0, 2.0], [2.5, 7.0]])  # scored pairs (2,1) (2,2) (2.5,4)
    m = compute_metrics(pred, gt)
    e = [math.log(2), 0.0, math.log(2.5 / 4)]
    si = sum(v * v for v in e) / 3 - (sum(e) / 3) ** 2
    expected = {
        "abs_rel": (1.0 + 0.0 + 1.5 / 4) / 3,
        "sq_rel": (1.0 + 0.0 + 2.25 / 4) / 3,
        "rmse": math.sqrt((1.0 + 0.0 + 2.25) / 3),
        "rmse_log": math.sqrt(sum(v * v for v in e) / 3),
        "log10": (math.log10(2) + 0 + abs(math.log10(2.5 / 4))) / 3,
        "mae": (1.0 + 0.0 + 1.5) / 3,
        "delta1": 1 / 3,  # ratios 2, 1, 1.6
        "delta2": 1 / 3,  # 1.25^2 = 1.5625
        "delta3": 2 / 3,  # 1.25^3 = 1.953
        "si": si,
        "silog": 100 * math.sqrt(si),
        "imae": 1000 * (0.5 + 0.0 + 0.15) / 3,
        "irmse": 1000 * math.sqrt((0.25 + 0.0 + 0.0225) / 3),
    }
    for name, value in expected.items():
        assert m[name] == pytest.approx(value, rel=1e-12), name
    assert m["n_valid"] == 3


def test_perfect_prediction():
    gt = np.linspace(0.5, 9.5, 30).reshape(5, 6)
    m = compute_metrics(gt.copy(), gt)
    for name in ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "mae", "si", "silog", "imae", "irmse"):
        assert m[name] == pytest.approx(0.0, abs=1e-12), name
    assert m["delta1"] == m["delta2"] == m["delta3"] == 1.0


def _reference(pred, gt, lo, hi):
    """Plain loop implementation of every metric, independent of the module."""
    pairs = [(min(max(p, lo), hi), g) for p, g in zip(pred.ravel(), gt.ravel()) if np.isfinite(g) and lo <= g <= hi]
    n = len(pairs)
    acc = dict.fromkeys(["abs", "sq", "se", "sle", "l10", "ae", "d1", "d2", "d3", "e", "ie", "ise"], 0.0)
    for p, g in pairs:
        acc["abs"] += abs(p - g) / g
        acc["sq"] += (p - g) ** 2 / g
        acc["se"] += (p - g) ** 2
        acc["sle"] += (math.log(p) - math.log(g)) ** 2
        acc["l10"] += abs(math.log10(p) - math.log10(g))
        acc["ae"] += abs(p - g)
        ratio = max(p / g, g / p)
        acc["d1"] += ratio < 1.25
        acc["d2"] += ratio < 1.5625
        acc["d3"] += ratio < 1.953125
        acc["e"] += math.log(p) - math.log(g)
        acc["ie"] += abs(1000 / p - 1000 / g)
        acc["ise"] += (1000 / p - 1000 / g) ** 2
    si = acc["sle"] / n - (acc["e"] / n) ** 2
    return {
        "abs_rel": acc["abs"] / n, "sq_rel": acc["sq"] / n, "rmse": math.sqrt(acc["se"] / n),
        "rmse_log": math.sqrt(acc["sle"] / n), "log10": acc["l10"] / n, "mae": acc["ae"] / n,
        "delta1": acc["d1"] / n, "delta2": acc["d2"] / n, "delta3": acc["d3"] / n, "si": si,
        "silog": 100 * math.sqrt(max(si, 0.0)), "imae": acc["ie"] / n, "irmse": math.sqrt(acc["ise"] / n),
        "n_valid": n,
    }  # fmt: skip


@pytest.mark.parametrize("seed", range(3))
def test_metrics_match_loop_reference(seed):
    rng = np.random.default_rng(seed)
    gt = rng.uniform(0.2, 12.0, (20, 30))
    gt[rng.random(gt.shape) < 0.1] = 0.0
    pred = gt * rng.uniform(0.6, 1.6, gt.shape)
    pred[0, :5] = 15.0  # above the cap: clipped
    pred[1, :5] = 1e-5  # below the cap: clipped
    m = compute_metrics(pred, gt, min_depth=0.5, max_depth=10.0)
    ref = _reference(pred, gt, 0.5, 10.0)
    assert set(m) == set(METRIC_NAMES) | {"n_valid"}
    for name, value in ref.items():
        assert m[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name


def test_invalid_gt_excluded():
    rng = np.random.default_rng(5)
    gt = rng.uniform(1, 5, (6, 6))
    pred = gt * rng.uniform(0.8, 1.2, gt.shape)
    dirty = gt.copy()
    dirty[0, 0], dirty[1, 1], dirty[2, 2], dirty[3, 3], dirty[4, 4] = 0.0, np.nan, np.inf, 65.535, -1.0
    keep = np.ones_like(gt, bool)
    keep[[0, 1, 2, 3, 4], [0, 1, 2, 3, 4]] = False
    pred_dirty = pred.copy()
    pred_dirty[1, 1] = np.nan  # a NaN prediction where gt is invalid is fine
    m = compute_metrics(pred_dirty, dirty, max_depth=10.0)
    clean = compute_metrics(pred[keep][None], gt[keep][None])
    assert m == clean and m["n_valid"] == 31
    masked = compute_metrics(pred, gt, mask=keep)
    assert masked == clean


def test_crop_indices_exact():
    assert crop_box((480, 640), "eigen_nyu") == (45, 471, 41, 601)
    assert crop_box((240, 320), "eigen_nyu") == (22, 235, 20, 300)
    assert crop_box((375, 1242), "garg") == (153, 371, 44, 1197)
    assert crop_box((375, 1242), "eigen_kitti") == (124, 342, 44, 1197)
    for shape, crop in [((480, 640), "eigen_nyu"), ((375, 1242), "garg"), ((375, 1242), "eigen_kitti")]:
        mask = crop_mask(shape, crop)
        top, bottom, left, right = crop_box(shape, crop)
        rows, cols = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
        assert (rows[0], rows[-1] + 1, cols[0], cols[-1] + 1) == (top, bottom, left, right)
        assert mask.sum() == (bottom - top) * (right - left) and mask.dtype == bool
    assert crop_mask((4, 5), None).all()
    with pytest.raises(ValueError, match="unknown crop 'nyu'"):
        crop_mask((480, 640), "nyu")


def test_crop_applied():
    gt = np.full((480, 640), 2.0)
    pred = np.full((480, 640), 2.0)
    pred[:45] = 9.0  # outside the Eigen crop only
    m = compute_metrics(pred, gt, crop="eigen_nyu")
    assert m["n_valid"] == 426 * 560 and m["abs_rel"] == 0.0


def test_bad_inputs():
    gt = np.ones((4, 5))
    with pytest.raises(ValueError, match=r"\(4, 6\).*\(4, 5\)"):
        compute_metrics(np.ones((4, 6)), gt)
    with pytest.raises(NoValidPixelsError, match="no valid"):
        compute_metrics(np.ones((4, 5)), np.zeros((4, 5)))
    assert issubclass(NoValidPixelsError, ValueError)
    pred = np.ones((4, 5))
    pred[1, 1], pred[2, 2] = np.nan, np.inf
    with pytest.raises(ValueError, match="prediction has 2 non-finite values at valid pixels"):
        compute_metrics(pred, gt)
    with pytest.raises(ValueError, match="min_depth"):
        compute_metrics(gt, gt, min_depth=5.0, max_depth=1.0)


def test_torch_input_and_median_scale():
    rng = np.random.default_rng(1)
    gt = rng.uniform(1, 5, (8, 8))
    pred = gt * rng.uniform(0.9, 1.1, gt.shape)
    as_torch = compute_metrics(torch.tensor(pred)[None, None], torch.tensor(gt)[None])
    assert as_torch == compute_metrics(pred, gt)
    scaled = compute_metrics(3 * gt, gt, median_scale=True)
    assert scaled["abs_rel"] == pytest.approx(0.0, abs=1e-12)


def test_accumulator_skips_and_averages():
    acc = MetricAccumulator(max_depth=10.0)
    gt = np.array([[1.0, 2.0], [4.0, 8.0]])
    first = acc.add(gt * 1.1, gt)
    second = acc.add(gt * 0.5, gt)
    assert acc.add(gt, np.zeros((2, 2))) is None  # skipped, counted
    with pytest.raises(ValueError, match="non-finite"):
        acc.add(np.full((2, 2), np.nan), gt)  # not skipped: a real error
    summary = acc.summary()
    assert summary["n_images"] == 2 and summary["n_skipped"] == 1 and summary["n_valid"] == 8
    assert summary["abs_rel"] == pytest.approx((first["abs_rel"] + second["abs_rel"]) / 2)
    assert summary["abs_rel"] == pytest.approx((0.1 + 0.5) / 2)
    assert len(acc.per_image) == 2
    table = format_table(summary)
    header, values = table.splitlines()
    assert header.split()[:3] == ["abs_rel", "sq_rel", "rmse"] and "n_images" in header
    assert values.split()[0] == f"{summary['abs_rel']:.4f}" and values.split()[-3:] == ["2", "1", "8"]
    with pytest.raises(ValueError, match="1 skipped"):
        empty = MetricAccumulator()
        empty.add(gt, np.zeros((2, 2)))
        empty.summary()


def test_timing_summary():
    stats = timing_summary([4.0, 1.0, 3.0, 2.0])
    assert stats == {"n": 4, "p50": 2.5, "p95": pytest.approx(3.85), "mean": 2.5, "max": 4.0}
    empty = timing_summary([])
    assert empty["n"] == 0 and all(math.isnan(empty[k]) for k in ("p50", "p95", "mean", "max"))
