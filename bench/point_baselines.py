"""Known-point baselines for the evaluation: SLAM-like points from ground truth, and their interpolation.

`keypoint_points` samples points the way a feature-based SLAM map gives them: at SIFT keypoints
of the image (textured places, not a uniform grid), with the ground-truth depth there, optionally
with relative depth noise and outliers. `interpolate_points` is the no-network baseline: plain
linear interpolation of the points (Delaunay, inside their convex hull), the nearest point's
depth outside it. The interpolation itself is `fusanet_core.inference.interpolation` (also half of
the `scale_local` fit).

Used by bench/eval_sets.py together with fusanet_core/inference/point_fit.py.
"""

from __future__ import annotations

import numpy as np

from fusanet_core.inference import interpolation
from fusanet_core.model.points import sift_guiding_points


def keypoint_points(rgb: np.ndarray, depth: np.ndarray, n: int, rng: np.random.Generator, noise: float = 0.0,
                    outlier_share: float = 0.0) -> np.ndarray:
    """Up to `n` points (u, v, z) at SIFT keypoints on valid ground truth, as a SLAM map gives them.

    The strongest keypoints (a random `n` of the strongest 2n, fusanet_core.model.points.sift_guiding_points)
    at valid ground-truth pixels (finite, > 0); when the image has fewer, random valid pixels fill
    up to `n` (fewer only when the image has fewer valid pixels). Depths then get the noise model:

    - noise: relative Gaussian noise, z * (1 + noise * N(0, 1)) (0.03 = 3 %), kept >= 1 % of z.
    - outlier_share: that share of the points (rounded, chosen at random) gets z * U(0.5, 2), a
      factor drawn uniformly in [0.5, 2] (a wrong match or a landmark on another surface; some
      of them land close to the truth, as real outliers do).

    Args:
        rgb: HxWx3 uint8 image.
        depth: HxW ground-truth metres; 0 or NaN = invalid.
        n: points wanted.
        rng: random generator (the only source of randomness: same seed, same points).
        noise: relative depth noise (standard deviation).
        outlier_share: share of outliers in [0, 1].

    Returns:
        (N, 3) float32 (u, v, z) at pixel centres, N = min(n, valid pixels).
    """
    if not 0.0 <= outlier_share <= 1.0 or noise < 0:
        raise ValueError(f"noise must be >= 0 and outlier_share in [0, 1], got {noise}, {outlier_share}")
    depth = np.asarray(depth, np.float32)
    valid = np.isfinite(depth) & (depth > 0)
    points = sift_guiding_points(rgb, depth, valid, max_points=max(int(n), 0), rng=rng)
    points = np.concatenate([points, _random_valid(valid, depth, points, int(n) - len(points), rng)])
    return _corrupt(points, noise, outlier_share, rng)


def _random_valid(valid: np.ndarray, depth: np.ndarray, taken: np.ndarray, count: int,
                  rng: np.random.Generator) -> np.ndarray:
    """`count` random valid pixels not in `taken` (fewer when there are not enough)."""
    if count <= 0:
        return np.zeros((0, 3), np.float32)
    free = valid.copy()
    free[taken[:, 1].astype(np.int64), taken[:, 0].astype(np.int64)] = False
    rows, cols = np.nonzero(free)
    pick = np.sort(rng.choice(len(rows), min(count, len(rows)), replace=False))
    rows, cols = rows[pick], cols[pick]
    return np.stack([cols, rows, depth[rows, cols]], axis=1).astype(np.float32)


def _corrupt(points: np.ndarray, noise: float, outlier_share: float, rng: np.random.Generator) -> np.ndarray:
    """Apply the noise model of `keypoint_points` to the depths (a copy)."""
    points = points.astype(np.float32, copy=True)
    z = points[:, 2].astype(np.float64)
    if noise > 0:
        z = np.maximum(z * (1.0 + noise * rng.standard_normal(len(z))), 0.01 * z)
    outliers = rng.choice(len(z), int(round(outlier_share * len(z))), replace=False)
    z[outliers] *= rng.uniform(0.5, 2.0, len(outliers))
    points[:, 2] = z
    return points


def interpolate_points(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """Interpolate points (u, v, z) to HxW float32 depth: linear inside their convex hull, nearest outside.

    Pixel (row, col) is the point (u, v) = (col, row). Points at one position are averaged. Fewer
    than 3 distinct positions: the median depth everywhere; all on one line (no triangle):
    nearest everywhere; no valid point: NaN everywhere. Non-finite or non-positive points are
    dropped.
    """
    pts = np.asarray(points, np.float64).reshape(-1, 3)
    pts = pts[np.all(np.isfinite(pts), axis=1) & (pts[:, 2] > 0)]
    rows, cols = np.mgrid[0:height, 0:width]
    return interpolation.interpolate(pts, cols, rows).astype(np.float32)
