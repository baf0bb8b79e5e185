"""The floor plane of a frame from its ground-truth depth: what a ground robot's URDF would give.

Evaluation only (bench/eval_sets.py): a ground robot knows the floor under it from its URDF
(camera height and tilt); the recorded sets have no such robot, so each frame's floor is fitted to
its ground truth instead. RANSAC of planes through three back-projected ground-truth pixels, with
the normal within MAX_TILT of the image's up axis (-y of the optical frame). The best-supported
such plane sets the floor's orientation; of the planes parallel to it (within PARALLEL) with
enough support, the lowest (largest camera height) is the floor, so a table top is not taken for
it. A refit by least squares on the inliers gives the plane. A pixel is on a plane within
INLIER_DISTANCE or INLIER_RELATIVE of its depth (depth sensors' noise grows with the depth).
Frames whose floor is not seen (too few inliers) have none. Checked against the HoloLens walk's
gravity-aligned poses (bench/eval_sets.py reports the agreement).
"""

from __future__ import annotations

import math

import numpy as np

from fusanet_core.geometry import back_project

MAX_TILT = math.radians(45.0)  # the floor normal within this angle of the image's up axis
INLIER_DISTANCE = 0.03  # m: a pixel within 3 cm of the plane is on it ...
INLIER_RELATIVE = 0.015  # ... or within 1.5 % of its depth
PARALLEL = math.radians(10.0)  # a table top and the floor are parallel within this
MIN_SUPPORT = 0.05  # share of the valid pixels on the floor for it to count as seen
MIN_HEIGHT = 0.1  # m: a plane closer to the camera is not the floor under it
HYPOTHESES = 400
SAMPLE = 20000  # valid pixels the hypotheses are scored on


def floor_plane(depth: np.ndarray, intrinsics: np.ndarray, valid: np.ndarray,
                rng: np.random.Generator) -> tuple[np.ndarray | None, float]:
    """Return ((nx, ny, nz, h) with n up and h > 0, or None when no floor is seen; inlier share)."""
    rows, cols = np.nonzero(valid)
    if len(rows) < 100:
        return None, 0.0
    pick = rng.choice(len(rows), min(SAMPLE, len(rows)), replace=False)
    z = depth[rows[pick], cols[pick]].astype(np.float64)
    x, y = back_project(cols[pick].astype(np.float64), rows[pick].astype(np.float64), z, intrinsics)
    pts = np.stack([x, y, z], axis=1)
    tolerance = np.maximum(INLIER_DISTANCE, INLIER_RELATIVE * z)
    found = []  # (support, plane) of every well-supported hypothesis, refitted
    for _ in range(HYPOTHESES):
        plane = _plane_through(pts[rng.choice(len(pts), 3, replace=False)])
        if plane is None or np.mean(np.abs(pts @ plane[:3] + plane[3]) < tolerance) < MIN_SUPPORT:
            continue
        plane = _refit(pts[np.abs(pts @ plane[:3] + plane[3]) < tolerance], plane)
        if plane is not None:
            found.append((float(np.mean(np.abs(pts @ plane[:3] + plane[3]) < tolerance)), plane))
    if not found:
        return None, 0.0
    up = max(found, key=lambda f: f[0])[1][:3]
    parallel = [f for f in found if f[0] >= MIN_SUPPORT and f[1][:3] @ up >= math.cos(PARALLEL)]
    share, plane = max(parallel, key=lambda f: f[1][3])
    return plane, share


def _plane_through(three: np.ndarray) -> np.ndarray | None:
    """Plane (n, h) with n up (-y side) through three points, or None (degenerate or too tilted / high)."""
    normal = np.cross(three[1] - three[0], three[2] - three[0])
    length = np.linalg.norm(normal)
    if length < 1e-9:
        return None
    return _oriented(normal / length, three[0])


def _refit(pts: np.ndarray, plane: np.ndarray) -> np.ndarray | None:
    """Least-squares plane through the inliers (smallest singular vector), oriented like `plane`."""
    centre = pts.mean(axis=0)
    normal = np.linalg.svd(pts - centre, full_matrices=False)[2][2]
    return _oriented(normal if normal @ plane[:3] > 0 else -normal, centre)


def _oriented(normal: np.ndarray, on_plane: np.ndarray) -> np.ndarray | None:
    """(n, h) with n pointing to the camera's side (h > 0); None when too tilted or too close."""
    h = -float(normal @ on_plane)
    if h < 0:
        normal, h = -normal, -h
    if h < MIN_HEIGHT or math.acos(min(1.0, max(-1.0, -normal[1]))) > MAX_TILT:
        return None
    return np.array([*normal, h])
