"""Metric scale from the floor: the known floor plane under a ground robot against the predicted depth.

Placeholder of the interface; the estimator follows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..geometry import check_ground_plane, Intrinsics


@dataclass(frozen=True)
class GroundFit:
    """The floor's scale for the prediction, and whether it was applied.

    Attributes:
        applied: False = the network's scale is kept, see `reason`.
        scale: depth factor the floor gives (z = scale * d).
        floor_pixels: pixels whose scaled depth lies on the plane (the floor found).
        floor_share: floor_pixels / pixels whose ray meets the floor (below the horizon).
        reason: "ok", or why the floor was not used.
    """

    applied: bool = False
    scale: float = 1.0
    floor_pixels: int = 0
    floor_share: float = 0.0
    reason: str = ""
    # (N, 3) virtual points (u, v, z) on the floor found, in the map's pixels (not in as_dict).
    anchors: tuple[tuple[float, float, float], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """Plain dict of the fields (for results, logs and diagnostics), without the anchors."""
        fields = asdict(self)
        del fields["anchors"]
        return fields


def fit_ground(depth: np.ndarray, intrinsics: Intrinsics | None, plane: Any) -> GroundFit:
    """Fit the scale of `depth` (HxW metres, pixels of `intrinsics`) to the floor `plane` (nx, ny, nz, h)."""
    check_ground_plane(plane)
    if intrinsics is None:
        return GroundFit(reason="no intrinsics: the floor plane cannot be projected")
    return GroundFit(reason="not implemented")
