"""3D points that prime the network: the padded `PointBatch` and SIFT guiding points.

Points live as pixel positions (u = column, v = row, at the resolution of the image they belong
to), a metric depth each and a weight in [0, 1]. Weight 0 marks padding; salient points carry their
saliency score as weight, which keeps the point selection differentiable (docs/architecture.md).
3D coordinates follow from the intrinsics: X = (u - cx) Z / fx, Y = (v - cy) Z / fy.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import Tensor

from ..geometry import scale_pixel


@dataclass
class PointBatch:
    """A batch of point sets padded to a common length N (N may be 0)."""

    uv: Tensor  # (B, N, 2) pixel coordinates (u, v)
    depth: Tensor  # (B, N) metres
    weight: Tensor  # (B, N) in [0, 1]; 0 = padding

    @property
    def batch_size(self) -> int:
        return self.uv.shape[0]

    @property
    def num_points(self) -> int:
        return self.uv.shape[1]

    @staticmethod
    def empty(batch_size: int, device: torch.device | str = "cpu") -> PointBatch:
        return PointBatch(
            uv=torch.zeros(batch_size, 0, 2, device=device),
            depth=torch.zeros(batch_size, 0, device=device),
            weight=torch.zeros(batch_size, 0, device=device),
        )

    @staticmethod
    def from_arrays(points: list[np.ndarray | None], device: torch.device | str = "cpu") -> PointBatch:
        """Pad per-image (N_i, 3) arrays of (u, v, depth) into one batch; None means no points."""
        arrays = [np.zeros((0, 3), np.float32) if p is None else np.asarray(p, np.float32) for p in points]
        for i, arr in enumerate(arrays):
            if arr.ndim != 2 or arr.shape[1] != 3:
                raise ValueError(f"points[{i}] must have shape (N, 3) = (u, v, depth), got {arr.shape}")
        n = max((len(a) for a in arrays), default=0)
        data = np.zeros((len(arrays), n, 3), np.float32)
        weight = np.zeros((len(arrays), n), np.float32)
        for i, arr in enumerate(arrays):
            data[i, : len(arr)] = arr
            weight[i, : len(arr)] = 1.0
        t = torch.from_numpy(data).to(device)
        return PointBatch(uv=t[..., :2], depth=t[..., 2], weight=torch.from_numpy(weight).to(device))

    def to(self, device: torch.device | str) -> PointBatch:
        return PointBatch(self.uv.to(device), self.depth.to(device), self.weight.to(device))

    def xyz(self, intrinsics: Tensor) -> Tensor:
        """Back-project to camera coordinates (B, N, 3); intrinsics (B, 4) = fx, fy, cx, cy."""
        fx, fy, cx, cy = (intrinsics[:, i:i + 1] for i in range(4))
        x = (self.uv[..., 0] - cx) * self.depth / fx
        y = (self.uv[..., 1] - cy) * self.depth / fy
        return torch.stack([x, y, self.depth], dim=-1)

    def scaled(self, sx: float, sy: float) -> PointBatch:
        """Return the same points after resizing the image by (sx, sy) (pixel-centre convention)."""
        uv = torch.stack([scale_pixel(self.uv[..., 0], sx), scale_pixel(self.uv[..., 1], sy)], -1)
        return PointBatch(uv, self.depth, self.weight)

    def rasterize(self, height: int, width: int) -> tuple[Tensor, Tensor]:
        """Sparse depth map and confidence map (B, 1, H, W); the last point wins on collisions."""
        b, n = self.depth.shape
        depth_map = self.depth.new_zeros(b, height * width)
        conf_map = self.depth.new_zeros(b, height * width)
        if n:
            col = self.uv[..., 0].round().long().clamp(0, width - 1)
            row = self.uv[..., 1].round().long().clamp(0, height - 1)
            index = row * width + col
            inside = self.inside(height, width)
            w = self.weight * inside
            depth_map = depth_map.scatter(1, index, self.depth * (w > 0))
            conf_map = conf_map.scatter(1, index, w)
        return depth_map.view(b, 1, height, width), conf_map.view(b, 1, height, width)

    def inside(self, height: int, width: int) -> Tensor:
        """(B, N) float: 1 where a real point lies inside the image and has positive depth."""
        u, v = self.uv[..., 0], self.uv[..., 1]
        ok = (u > -0.5) & (u < width - 0.5) & (v > -0.5) & (v < height - 0.5)
        ok &= (self.depth > 0) & torch.isfinite(self.depth) & (self.weight > 0)
        return ok.to(self.depth.dtype)


def sift_guiding_points(
    rgb: np.ndarray,
    depth: np.ndarray,
    valid: np.ndarray | None = None,
    max_points: int = 200,
    contrast_threshold: float = 0.02,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """SIFT keypoints of the image sampled on valid ground-truth depth (paper section 3.1).

    Args:
        rgb: HxWx3 uint8 image.
        depth: HxW metres, aligned with `rgb`.
        valid: HxW bool validity mask; default: finite depth > 0.
        max_points: cap; when more keypoints land on valid depth, the strongest are kept (a random
            subset of them when `rng` is given, for training variety).
        contrast_threshold: OpenCV SIFT contrast threshold (lower finds more points).
        rng: optional random generator.

    Returns:
        (N, 3) float32 array of (u, v, depth) with N <= max_points (N may be 0).
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[:2] != depth.shape:
        raise ValueError(f"rgb {rgb.shape} and depth {depth.shape} must be HxWx3 and HxW of one size")
    if max_points <= 0:
        return np.zeros((0, 3), np.float32)
    if valid is None:
        valid = np.isfinite(depth) & (depth > 0)
    gray = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    sift = cv2.SIFT_create(contrastThreshold=contrast_threshold)
    keypoints = sorted(sift.detect(gray, None), key=lambda k: -k.response)
    h, w = depth.shape
    chosen, seen = [], set()
    for kp in keypoints:
        col, row = min(int(round(kp.pt[0])), w - 1), min(int(round(kp.pt[1])), h - 1)
        if (row, col) in seen or not valid[row, col]:
            continue
        seen.add((row, col))
        chosen.append((col, row, depth[row, col]))
    points = np.asarray(chosen, np.float32).reshape(-1, 3)
    if len(points) > max_points:
        if rng is None:
            points = points[:max_points]
        else:  # random subset of the strongest 2x cap: variety without the weakest keypoints
            pool = points[: 2 * max_points]
            points = pool[np.sort(rng.choice(len(pool), max_points, replace=False))]
    return points
