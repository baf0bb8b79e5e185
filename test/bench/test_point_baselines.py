"""bench/point_baselines.py: SLAM-like keypoint samples of ground truth and their interpolation."""

from __future__ import annotations

from pathlib import Path
import sys

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from point_baselines import interpolate_points, keypoint_points  # noqa: E402, I100 (needs the sys.path insert)


def test_keypoints_lie_on_valid_truth_with_the_requested_count(sample_frame: dict) -> None:
    rgb, depth = sample_frame["rgb"], sample_frame["depth"].copy()
    depth[:, :100] = np.nan  # invalid: no point may land there
    pts = keypoint_points(rgb, depth, 150, np.random.default_rng(0))
    assert pts.shape == (150, 3) and pts.dtype == np.float32
    cols, rows = pts[:, 0].astype(int), pts[:, 1].astype(int)
    assert (cols >= 100).all() and np.array_equal(pts[:, 2], depth[rows, cols])
    assert len({(r, c) for r, c in zip(rows, cols)}) == 150
    again = keypoint_points(rgb, depth, 150, np.random.default_rng(0))
    assert np.array_equal(pts, again)  # seeded: deterministic


def test_keypoints_fill_up_with_random_valid_pixels() -> None:
    rgb = np.full((40, 50, 3), 128, np.uint8)  # flat image: no SIFT keypoint
    depth = np.zeros((40, 50), np.float32)
    depth[10:20, 10:20] = 2.0  # 100 valid pixels
    pts = keypoint_points(rgb, depth, 30, np.random.default_rng(0))
    assert pts.shape == (30, 3) and (pts[:, 2] == 2.0).all()
    assert len(keypoint_points(rgb, depth, 500, np.random.default_rng(0))) == 100  # all there are


def test_noise_and_outliers_follow_the_model(sample_frame: dict) -> None:
    rgb, depth = sample_frame["rgb"], sample_frame["depth"]
    clean = keypoint_points(rgb, depth, 400, np.random.default_rng(5))
    noisy = keypoint_points(rgb, depth, 400, np.random.default_rng(5), noise=0.03)
    assert np.array_equal(clean[:, :2], noisy[:, :2])
    rel = noisy[:, 2] / clean[:, 2] - 1
    assert abs(rel.mean()) < 0.006 and 0.025 < rel.std() < 0.035
    mixed = keypoint_points(rgb, depth, 400, np.random.default_rng(5), outlier_share=0.25)
    factor = mixed[:, 2] / clean[:, 2]
    changed = ~np.isclose(factor, 1.0)
    assert changed.sum() == 100 and (factor >= 0.5 - 1e-6).all() and (factor <= 2.0 + 1e-6).all()
    with pytest.raises(ValueError, match="outlier_share"):
        keypoint_points(rgb, depth, 10, np.random.default_rng(0), outlier_share=1.5)


def test_interpolation_is_exact_for_a_plane_inside_the_hull_and_nearest_outside() -> None:
    h, w = 40, 60
    pts = np.array([[10, 10], [50, 10], [10, 30], [50, 30], [30, 20], [20, 25]], np.float64)
    z = 1.0 + 0.02 * pts[:, 0] + 0.05 * pts[:, 1]
    out = interpolate_points(np.column_stack([pts, z]), h, w)
    rows, cols = np.mgrid[0:h, 0:w]
    inside = (cols >= 10) & (cols <= 50) & (rows >= 10) & (rows <= 30)
    assert out.shape == (h, w) and out.dtype == np.float32
    assert np.allclose(out[inside], (1.0 + 0.02 * cols + 0.05 * rows)[inside], atol=1e-5)
    assert out[0, 0] == pytest.approx(z[0]) and out[39, 59] == pytest.approx(z[3])  # corners: nearest point
    assert out[20, 0] == pytest.approx(z[0]) or out[20, 0] == pytest.approx(z[2])  # on the bisector: either
    assert out[5, 30] == pytest.approx(z[4])  # above the hull: the interior point (30, 20) is nearest


def test_interpolation_of_few_collinear_or_duplicate_points() -> None:
    assert np.isnan(interpolate_points(np.zeros((0, 3)), 4, 5)).all()
    two = interpolate_points(np.array([[1, 1, 2.0], [3, 3, 4.0], [2, 2, np.nan]]), 4, 5)
    assert np.allclose(two, 3.0)  # < 3 points: the median
    line = interpolate_points(np.array([[0, 0, 1.0], [5, 0, 2.0], [9, 0, 3.0]]), 6, 10)
    assert np.isfinite(line).all() and line[5, 1] == 1.0 and line[3, 6] == 2.0 and line[0, 9] == 3.0
    dup = interpolate_points(np.array([[0, 0, 1.0], [0, 0, 3.0], [9, 0, 2.0], [0, 9, 2.0]]), 10, 10)
    assert dup[0, 0] == pytest.approx(2.0)  # duplicates averaged
