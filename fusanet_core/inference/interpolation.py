"""Scattered-data interpolation of known points over a pixel grid: linear inside, nearest outside.

Linear interpolation on the points' Delaunay triangulation inside their convex hull, the nearest
point's value outside it. The no-network baseline of the evaluation (bench/point_baselines.py)
and one half of the `scale_local` fit (point_fit.py) use it. numpy and matplotlib.tri only (no
scipy); matplotlib is imported late so that importing fusanet_core stays light.
"""

from __future__ import annotations

import numpy as np

NEAREST_CHUNK = 1 << 22  # query x point distances per chunk of the nearest-point search (32 MB float64)


def unique_points(points: np.ndarray) -> np.ndarray:
    """Return (M, 3) float64 (u, v, value): finite rows, one per (u, v) (the mean value of duplicates)."""
    pts = np.asarray(points, np.float64).reshape(-1, 3)
    pts = pts[np.all(np.isfinite(pts), axis=1)]
    if len(pts) == 0:
        return pts
    uv, inverse = np.unique(pts[:, :2], axis=0, return_inverse=True)
    inverse = inverse.ravel()
    value = np.bincount(inverse, weights=pts[:, 2]) / np.bincount(inverse)
    return np.column_stack([uv, value])


def interpolate(points: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Values of `points` (u, v, value) at the queries (u, v): float64 of u's shape.

    Fewer than 3 distinct positions: their median everywhere; all on one line (no triangle):
    nearest everywhere; no finite point: NaN everywhere.
    """
    shape = np.shape(u)
    u, v = np.asarray(u, np.float64).ravel(), np.asarray(v, np.float64).ravel()
    pts = unique_points(points)
    if len(pts) == 0:
        return np.full(shape, np.nan)
    if len(pts) < 3:
        return np.full(shape, np.median(pts[:, 2]))
    out = _linear(pts, u, v)
    outside = ~np.isfinite(out)
    if outside.any():
        out[outside] = nearest(pts, u[outside], v[outside])
    return out.reshape(shape)


def _linear(pts: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Linear interpolation on the Delaunay triangulation; NaN outside the hull (or without triangles)."""
    import matplotlib.tri as mtri

    try:
        tri = mtri.Triangulation(pts[:, 0], pts[:, 1])
    except (RuntimeError, ValueError):  # collinear points: qhull finds no triangle
        return np.full(len(u), np.nan)
    values = mtri.LinearTriInterpolator(tri, pts[:, 2])(u, v)
    return np.ma.filled(values.astype(np.float64), np.nan)


def nearest(pts: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Value of the nearest point (Euclidean in pixels) for each (u, v), exact, in chunks.

    argmin |q - p|^2 = argmin (|p|^2 - 2 q.p): one matrix product per chunk instead of the
    differences of every pair.
    """
    out = np.empty(len(u))
    uv = pts[:, :2]
    norms = np.einsum("ij,ij->i", uv, uv)
    step = max(1, NEAREST_CHUNK // len(pts))
    for start in range(0, len(u), step):
        query = np.stack([u[start:start + step], v[start:start + step]], axis=1).astype(np.float64)
        out[start:start + step] = pts[np.argmin(norms[None, :] - 2.0 * query @ uv.T, axis=1), 2]
    return out
