"""Metric scale from the floor: the known floor plane under a ground robot against the predicted depth.

A ground robot knows where the floor is in its camera (URDF: camera height and tilt). Each pixel
whose ray goes down meets the floor at the depth z_floor = h / (-n . ray), ray = ((u - cx) / fx,
(v - cy) / fy, 1). A floor pixel's true depth is z_floor; the network's depth d there differs by
the network's scale, so q = z_floor / d is that scale at every floor pixel. Anything standing on
the floor (furniture, a table top, a wall below the horizon) hides the floor behind it: its q is
larger. So the scale is the lowest well-supported mode of q:

1. On a grid of GRID_ROWS cells along the short side, the cells whose ray meets the floor within
   MAX_FLOOR_DEPTH ("below the horizon").
2. Candidates: those whose surface in the network's depth faces up, the normal of the
   back-projected depth within MAX_NORMAL_ANGLE of the plane's normal. The normal of a
   back-projected depth map does not depend on its scale, so the network's floor is found before
   its scale is known; this removes most walls and object sides.
3. The scale: of the log scales tried BIN apart, the one with the most candidates within
   TOLERANCE of it (on the floor at that scale) minus UNDER_WEIGHT x the cells below the horizon
   it would put further than the floor (seen through it, which nothing is); then the median q of
   the candidates within TOLERANCE. A table top is parallel to the floor and facing up too, but
   higher: its q is larger, and at its scale the floor around it would lie under the floor.
4. The floor found: candidate cells within TOLERANCE of that scale. Fewer than MIN_FLOOR_SHARE of
   the cells: not applied (too little floor seen), the network's scale is kept.

No torch, no ROS: numpy and OpenCV only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
import math
from typing import Any

import cv2
import numpy as np

from ..geometry import check_ground_plane, Intrinsics

GRID_ROWS = 60  # cells along the short side of the map (8 px at 480 rows): the floor's scale needs no more
MAX_FLOOR_DEPTH = 20.0  # m: farther, the floor is seen too grazingly for its depth to mean anything
MAX_NORMAL_ANGLE = math.radians(30.0)  # a network surface within this of the floor normal may be floor
BIN = 0.01  # log scales tried, 1 % apart
UNDER_WEIGHT = 1.0  # a pixel the scale would put below the floor costs as much as one on it gains
TOLERANCE = math.log(1.1)  # a cell within 10 % of the floor's scale is on the floor
MIN_FLOOR_SHARE = 0.03  # floor cells / all cells needed to apply the fit


@dataclass(frozen=True)
class GroundFit:
    """The floor's scale for the prediction, and whether it was applied.

    Attributes:
        applied: the floor's scale was applied; False = not (see `reason`): the floor was not seen
            well enough (`found` False, the network's scale is kept) or known points were fitted.
        found: the floor was seen well enough to give a scale.
        scale: depth factor the floor gives (z = scale * d).
        floor_pixels: output pixels on the floor found (cells x cell area).
        floor_share: share of the image on the floor found.
        reason: "ok", or why the floor was not used.
    """

    applied: bool = False
    found: bool = False
    scale: float = 1.0
    floor_pixels: int = 0
    floor_share: float = 0.0
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        """Plain dict of the fields (for results, logs and diagnostics)."""
        return asdict(self)


def fit_ground(depth: np.ndarray, intrinsics: Intrinsics | None, plane: Any) -> GroundFit:
    """Fit the scale of `depth` (HxW metres, in the pixels of `intrinsics`) to the floor `plane`.

    Args:
        depth: HxW predicted depth (non-finite or <= 0 = invalid).
        intrinsics: (fx, fy, cx, cy) of `depth`'s pixels; None = the floor cannot be projected.
        plane: (nx, ny, nz, h) in the camera optical frame (`geometry.check_ground_plane`).

    Returns:
        The GroundFit (see the module docstring); not applied, with the reason, when the floor is
        not seen well enough.
    """
    checked = check_ground_plane(plane)
    normal, height = checked[:3], float(checked[3])
    if intrinsics is None:
        return GroundFit(reason="no camera intrinsics: the floor plane cannot be projected")
    depth = np.asarray(depth, np.float32)
    h, w = depth.shape
    cell = max(1, min(h, w) // GRID_ROWS)
    gh, gw = max(1, h // cell), max(1, w // cell)
    small = cv2.resize(np.where(np.isfinite(depth) & (depth > 0), depth, np.nan), (gw, gh),
                       interpolation=cv2.INTER_NEAREST)
    u = (np.arange(gw) + 0.5) * (w / gw) - 0.5
    v = (np.arange(gh) + 0.5) * (h / gh) - 0.5
    fx, fy, cx, cy = (float(x) for x in intrinsics)
    rays = np.stack(np.broadcast_arrays((u[None, :] - cx) / fx, (v[:, None] - cy) / fy, np.ones((gh, gw))), -1)
    down = -(rays @ normal)  # > 0: the ray goes down to the floor
    with np.errstate(divide="ignore", invalid="ignore"):
        floor_depth = np.where(down > 0, height / down, np.inf)
    below = floor_depth <= MAX_FLOOR_DEPTH
    if not below.any():
        return GroundFit(reason="the floor plane's horizon is below the image: no pixel sees the floor")
    seen = below & np.isfinite(small)
    candidates = seen & _faces(small, rays, normal)
    ratio = np.log(floor_depth[candidates] / small[candidates])
    if len(ratio) < MIN_FLOOR_SHARE * gh * gw:
        return GroundFit(reason=f"too little floor seen ({len(ratio) / (gh * gw):.1%} of the image faces up "
                                f"below the horizon, {MIN_FLOOR_SHARE:.0%} needed)")
    log_scale = _floor_scale(ratio, np.log(floor_depth[seen] / small[seen]))
    on_floor = np.abs(ratio - log_scale) <= TOLERANCE
    share = on_floor.sum() / (gh * gw)
    fit = {"scale": math.exp(log_scale), "floor_pixels": int(on_floor.sum() * cell * cell),
           "floor_share": float(share)}
    if share < MIN_FLOOR_SHARE:
        return GroundFit(**fit, reason=f"too little floor seen ({share:.1%} of the image, "
                                       f"{MIN_FLOOR_SHARE:.0%} needed)")
    return GroundFit(True, True, **fit, reason="ok")


def _faces(depth: np.ndarray, rays: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """Cells whose back-projected surface normal is within MAX_NORMAL_ANGLE of `normal` (scale-free)."""
    points = rays * depth[..., None]
    du = np.zeros_like(points)
    dv = np.zeros_like(points)
    du[:, 1:-1] = points[:, 2:] - points[:, :-2]
    dv[1:-1] = points[2:] - points[:-2]
    normals = np.cross(du, dv)  # u right x v down: away from the camera; the facing normal is its negative
    length = np.linalg.norm(normals, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        cosine = -(normals @ normal) / length
    return np.nan_to_num(cosine, nan=-1.0) >= math.cos(MAX_NORMAL_ANGLE)


def _floor_scale(candidate: np.ndarray, seen: np.ndarray) -> float:
    """Log scale of the floor: most candidates on it, fewest pixels below it (module docstring, step 3).

    `candidate`: log q of the up-facing cells, `seen`: of every cell below the horizon.
    """
    trial = np.arange(candidate.min(), candidate.max() + BIN, BIN)
    candidate, seen = np.sort(candidate), np.sort(seen)
    support = np.searchsorted(candidate, trial + TOLERANCE) - np.searchsorted(candidate, trial - TOLERANCE)
    under = np.searchsorted(seen, trial - TOLERANCE)  # q below the floor: seen through it at this scale
    best = trial[int(np.argmax(support - UNDER_WEIGHT * under))]
    return float(np.median(candidate[np.abs(candidate - best) <= TOLERANCE]))
