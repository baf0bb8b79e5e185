"""The output fit to known points (fusanet_core/point_fit.py): known values, outliers, the fallbacks."""

from __future__ import annotations

import numpy as np
import pytest

from fusanet_core.inference.point_fit import fit_to_points, PointFit, sample_depth

H, W = 60, 80


def _scene(seed: int = 0) -> np.ndarray:
    """Make a truth with depth spread: a tilted plane 1-5 m plus texture."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:H, 0:W]
    return (1.0 + 4.0 * cols / W + 0.2 * rng.random((H, W))).astype(np.float32)


def _points(truth: np.ndarray, n: int, seed: int = 1) -> np.ndarray:
    """N points (u, v, z) at random pixel centres, the depth of `truth` there."""
    rng = np.random.default_rng(seed)
    cols, rows = rng.integers(0, W, n), rng.integers(0, H, n)
    return np.stack([cols, rows, truth[rows, cols]], axis=1).astype(np.float64)


def test_scale_recovers_a_global_factor_and_the_truth() -> None:
    truth = _scene()
    fit = fit_to_points(truth * 0.5, _points(truth, 50), "scale")
    assert fit.applied and fit.reason == "ok" and fit.mode == "scale"
    assert fit.scale == pytest.approx(2.0, abs=1e-3) and fit.shift == 0.0
    assert fit.points == fit.inliers == 50
    out = fit.apply(truth * 0.5)
    assert out.dtype == np.float32 and np.allclose(out, truth, rtol=1e-5)


def test_scale_with_noise_and_20_percent_outliers_stays_within_2_percent() -> None:
    truth = _scene()
    rng = np.random.default_rng(2)
    pts = _points(truth, 100)
    pts[:, 2] *= 1 + 0.03 * rng.standard_normal(100)  # SLAM-like 3 % noise
    bad = rng.choice(100, 20, replace=False)
    pts[bad, 2] *= rng.choice([0.3, 3.0], 20)  # gross outliers
    fit = fit_to_points(truth * 0.5, pts, "scale")
    assert fit.applied and abs(fit.scale / 2.0 - 1) < 0.02
    assert 70 <= fit.inliers <= 85  # the outliers are rejected, the noisy core kept


def test_scale_shift_recovers_an_affine_inverse_depth_distortion() -> None:
    truth = _scene()
    pred = 1.0 / (0.8 / truth + 0.1)  # 1/d = 0.8/z + 0.1: a scale and a shift in inverse depth
    pts = _points(truth, 60)
    fit = fit_to_points(pred, pts, "scale_shift")
    # 1/z = 1.25/d - 0.125 = 1/(scale d) + shift
    assert fit.applied and fit.scale == pytest.approx(0.8, rel=1e-4) and fit.shift == pytest.approx(-0.125, abs=1e-4)
    assert np.allclose(fit.apply(pred), truth, rtol=1e-4)


def test_scale_shift_with_outliers() -> None:
    truth = _scene()
    pred = 1.0 / (0.8 / truth + 0.1)
    rng = np.random.default_rng(3)
    pts = _points(truth, 100)
    bad = rng.choice(100, 25, replace=False)
    pts[bad, 2] *= rng.uniform(0.3, 3.0, 25)
    fit = fit_to_points(pred, pts, "scale_shift")
    assert fit.applied
    assert np.median(np.abs(fit.apply(pred) / truth - 1)) < 0.01


def test_too_few_points_leave_the_depth_unchanged() -> None:
    truth = _scene()
    pred = truth * 0.5
    fit = fit_to_points(pred, _points(truth, 2), "scale")
    assert not fit.applied and fit.reason == "too few points (2 < 3)" and fit.points == 2
    assert fit.apply(pred) is pred
    # invalid points and points on invalid prediction do not count
    pts = np.array([[1, 1, np.nan], [2, 2, -1.0], [500, 2, 1.0], [3, 3, 1.0]])
    pred_nan = pred.copy()
    pred_nan[3, 3] = np.nan
    fit = fit_to_points(pred_nan, pts, "scale", min_points=1)
    assert not fit.applied and fit.reason == "too few points (0 < 1)" and fit.points == 4
    assert fit_to_points(pred, _points(truth, 2), "scale_shift", min_points=1).reason == "too few points (2 < 3)"
    assert not fit_to_points(pred, None, "scale").applied


@pytest.mark.parametrize("mode", ["scale", "scale_shift"])
def test_inconsistent_points_are_not_applied(mode: str) -> None:
    truth = _scene()
    pts = _points(truth, 100)
    pts[:, 2] *= np.exp(np.random.default_rng(4).uniform(-3, 3, 100))  # anything from 0.05x to 20x
    fit = fit_to_points(truth, pts, mode)
    assert not fit.applied and fit.reason.startswith(("inconsistent points", "fit out of range")), fit.reason
    assert fit.apply(truth) is truth


def test_out_of_range_and_degenerate_fits_fall_back() -> None:
    truth = _scene()
    fit = fit_to_points(truth * 0.02, _points(truth, 20), "scale")  # 50x: not a plausible correction
    assert not fit.applied and fit.reason == "fit out of range (scale 50 outside 0.1..10)"
    flat = np.full((H, W), 2.0, np.float32)  # one predicted depth: no inverse-depth slope
    fit = fit_to_points(flat, _points(truth, 20), "scale_shift")
    assert not fit.applied and "too little depth" in fit.reason
    reversed_ = 6.0 - truth  # depth order reversed: a negative slope
    fit = fit_to_points(reversed_, _points(truth, 40), "scale_shift")
    assert not fit.applied and fit.reason.startswith(("fit out of range", "inconsistent")), fit.reason


def test_none_mode_invalid_pixels_and_as_dict() -> None:
    truth = _scene()
    fit = fit_to_points(truth, _points(truth, 20), "none")
    assert fit == PointFit("none", points=20, reason="scale_from_points is none")
    assert fit.as_dict() == {"mode": "none", "scale": 1.0, "shift": 0.0, "points": 20, "inliers": 0,
                             "applied": False, "reason": "scale_from_points is none"}
    with pytest.raises(ValueError, match="must be one of none, scale, scale_local, scale_shift, got 'affine'"):
        fit_to_points(truth, None, "affine")
    # invalid pixels stay as they were
    fit = PointFit("scale_shift", 0.8, -0.125, 10, 10, True, "ok")
    depth = np.array([[1.0, np.nan], [0.0, np.inf]], np.float32)
    out = fit.apply(depth)
    assert out[0, 0] == pytest.approx(1 / (1.25 - 0.125)) and np.isnan(out[0, 1]) and out[1, 0] == 0
    assert out[1, 1] == np.inf


def test_sampling_is_nearest_pixel() -> None:
    depth = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    z, d = sample_depth(depth, np.array([[0.4, 0.6, 9.0], [1.2, -0.2, 8.0], [1.6, 0.0, 7.0]]))
    assert list(z) == [9.0, 8.0] and list(d) == [3.0, 2.0]  # (1.6, 0) is out of the frame (u >= W - 0.5)


def test_scale_local_fixes_a_region_the_global_scale_cannot():
    """Left half predicted 0.8x, right half 1.25x: one scale fixes one half, scale_local both; gross outliers out."""
    h, w = 120, 160
    xx = np.mgrid[0:h, 0:w][1]
    truth = 1.0 + 2.0 * xx / w
    pred = truth * np.where(xx < w / 2, 0.8, 1.25)
    rng = np.random.default_rng(0)
    u, v = rng.uniform(0, w - 1, 200), rng.uniform(0, h - 1, 200)
    z = truth[np.rint(v).astype(int), np.rint(u).astype(int)]
    z[:10] *= 1.8  # wrong landmarks: kept (locally wrong is what the correction is for), they stay local
    z[10:13] *= 30.0  # gross outliers (> 10x off the global fit): never anchors
    pts = np.column_stack([u, v, z])
    errors = {}
    for mode in ("scale", "scale_local"):
        fit = fit_to_points(pred, pts, mode)
        assert fit.applied, fit.reason
        errors[mode] = float(np.median(np.abs(fit.apply(pred) / truth - 1)))
    assert errors["scale"] > 0.15 and errors["scale_local"] < 0.03
    local = fit_to_points(pred, pts, "scale_local")
    assert len(local.anchors) == 197
    assert "anchors" not in local.as_dict()
    assert np.allclose(local.apply(np.array([1.0, 2.0])), np.array([1.0, 2.0]) * local.scale)  # not a map: global


def test_scale_local_without_points_nearby_keeps_the_global_scale():
    h, w = 60, 80
    pred = np.full((h, w), 2.0)
    pts = np.array([[5.0 + i, 5.0 + j, 1.0] for i in range(3) for j in range(3)])  # one corner, truth 1 m
    fit = fit_to_points(pred, pts, "scale_local")
    out = fit.apply(pred)
    assert fit.applied and fit.scale == pytest.approx(0.5)
    assert out[6, 6] == pytest.approx(1.0, rel=1e-3) and out[-1, -1] == pytest.approx(1.0, rel=1e-3)


def test_scale_local_follows_the_points_and_not_across_a_predicted_depth_edge():
    """A smooth error field is taken out; a correction does not leak across the prediction's depth edge."""
    h, w = 120, 160
    yy, xx = np.mgrid[0:h, 0:w]
    truth = np.where(xx < w / 2, 1.0, 3.0)
    pred = truth * np.exp(0.3 * np.sin(yy / 20.0)) * np.where(xx < w / 2, 0.5, 1.0)  # left also 2x too near
    rng = np.random.default_rng(1)
    u, v = rng.uniform(0, w - 1, 150), rng.uniform(0, h - 1, 150)
    pts = np.column_stack([u, v, truth[np.rint(v).astype(int), np.rint(u).astype(int)]])
    fit = fit_to_points(pred, pts, "scale_local")
    out = fit.apply(pred)
    rel = np.abs(out / truth - 1)
    assert fit.applied and np.median(rel) < 0.03
    near_edge = (np.abs(xx - w / 2 + 0.5) < 6) & (xx >= w / 2)  # right of the edge: 3 m, no left correction
    # the left's 2x correction leaking fully would be 100 % here; the smoothing spline (a third of
    # the field, not edge-aware) leaks ~26 % alone, the field 11 %, and 21 % without the bilateral
    # weighting's depth term
    assert np.median(rel[near_edge]) < 0.15
    scale_only = fit_to_points(pred, pts, "scale").apply(pred)
    assert np.median(np.abs(scale_only / truth - 1)) > 0.2


def test_a_handful_of_points_corrects_the_scale_alone_and_the_spline_stays_in_their_range():
    """3-7 points: scale_local falls back to the global scale (a handful gives no surface); no blow-up."""
    truth = _scene()
    pred = truth * 0.5
    pts = _points(truth, 5)
    fit = fit_to_points(pred, pts, "scale_local")
    assert fit.applied and fit.anchors == () and fit.scale == pytest.approx(2.0, rel=1e-6)
    assert np.allclose(fit.apply(pred), fit_to_points(pred, pts, "scale").apply(pred))
    on_a_line = np.column_stack([np.linspace(10, 60, 9), np.linspace(10, 12, 9), np.linspace(1.0, 3.0, 9)])
    out = fit_to_points(np.full((120, 160), 2.0), on_a_line, "scale_local").apply(np.full((120, 160), 2.0))
    assert np.all(np.isfinite(out)) and out.min() >= 0.99 and out.max() <= 3.01  # the points' own depth range


def test_scale_local_thins_a_dense_cloud_to_a_bounded_anchor_count():
    """A dense LiDAR-like cloud: at most LOCAL_MAX_ANCHORS anchors (bounded time per frame), still spread out."""
    from fusanet_core.inference.point_fit import LOCAL_MAX_ANCHORS

    h, w = 120, 160
    yy, xx = np.mgrid[0:h, 0:w]
    pred = np.full((h, w), 2.0)
    pts = np.column_stack([xx.ravel(), yy.ravel(), np.full(h * w, 1.0)])  # every pixel, truth 1 m
    fit = fit_to_points(pred, pts, "scale_local")
    assert fit.applied and len(fit.anchors) == LOCAL_MAX_ANCHORS < len(pts)
    uv = fit.anchor_pixels()
    assert uv.shape == (LOCAL_MAX_ANCHORS, 2) and np.ptp(uv[:, 1]) > 0.9 * h
    assert np.allclose(fit.apply(pred), 1.0, rtol=1e-3)
    assert fit_to_points(pred, pts[:5], "scale_local").anchor_pixels() is None  # too few points: not applied


def test_clustering_tells_slam_like_clusters_from_evenly_spread_points():
    """Clark-Evans: random and grid points count as even (0), a few tight clusters as clustered (1)."""
    from fusanet_core.inference.point_fit import clustering

    rng = np.random.default_rng(0)
    uniform = rng.uniform([0, 0], [640, 480], (200, 2))
    grid = np.stack(np.meshgrid(np.linspace(20, 620, 20), np.linspace(20, 460, 10)), -1).reshape(-1, 2)
    centres = rng.uniform([50, 50], [590, 430], (8, 2))
    clusters = (centres[:, None, :] + rng.normal(0, 12, (8, 25, 2))).reshape(-1, 2)
    assert clustering(uniform, 480, 640) < 0.3 and clustering(grid, 480, 640) == 0.0
    assert clustering(clusters, 480, 640) == 1.0
    assert clustering(uniform[:2], 480, 640) == 0.0  # too few to say
