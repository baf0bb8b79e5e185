"""Camera geometry shared by the core and the ROS layer (no torch, no ROS: cheap to import)."""

from __future__ import annotations

from typing import Any


def scale_pixel(coord: Any, scale: float) -> Any:
    """Return a pixel coordinate (float, numpy or torch) after resizing its image axis by `scale`.

    Pixel-centre convention: the centre of pixel 0 moves to 0.5 * scale - 0.5 (as cv2.resize).
    """
    return (coord + 0.5) * scale - 0.5


def scale_intrinsics(k: tuple[float, float, float, float], sx: float, sy: float) -> tuple[float, float, float, float]:
    """Return (fx, fy, cx, cy) after resizing an image by (sx, sy).

    Pixel-centre convention: the centre of pixel 0 sits at 0.5 * s - 0.5 in the new image (as
    cv2.resize and PointBatch.scaled).
    """
    fx, fy, cx, cy = (float(v) for v in k)
    return fx * sx, fy * sy, scale_pixel(cx, sx), scale_pixel(cy, sy)
