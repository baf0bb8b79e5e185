"""Camera geometry shared by the core and the ROS layer (no torch, no ROS: cheap to import)."""

from __future__ import annotations


def scale_intrinsics(k: tuple[float, float, float, float], sx: float, sy: float) -> tuple[float, float, float, float]:
    """(fx, fy, cx, cy) after resizing an image by (sx, sy), pixel-centre convention: the centre
    of pixel 0 sits at 0.5 / s - 0.5 in the new image (as cv2.resize and PointBatch.scaled)."""
    fx, fy, cx, cy = (float(v) for v in k)
    return fx * sx, fy * sy, (cx + 0.5) * sx - 0.5, (cy + 0.5) * sy - 0.5
