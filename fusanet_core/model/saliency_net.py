"""Saliency-Net (paper section 3.2): salient points from the first Fusion-Net pass."""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn, Tensor
import torch.nn.functional as F

from .points import PointBatch

DILATIONS = (3, 5, 7, 9, 15, 16, 21)


class MultiScaleFeatures(nn.Module):
    """MFE: a 3x3 and a 5x5 conv plus seven 3x3 atrous convs (d = 3, 5, 7, 9, 15, 16, 21)."""

    def __init__(self, c_in: int, c_each: int):
        super().__init__()
        convs = [nn.Conv2d(c_in, c_each, 3, padding=1), nn.Conv2d(c_in, c_each, 5, padding=2)]
        convs += [nn.Conv2d(c_in, c_each, 3, padding=d, dilation=d) for d in DILATIONS]
        for conv in convs:  # inputs are small and non-negative: a positive bias keeps no ReLU dead at start
            nn.init.constant_(conv.bias, 0.1)
        self.convs = nn.ModuleList(convs)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([F.relu(conv(x)) for conv in self.convs], dim=1)


class SaliencyNet(nn.Module):
    """Saliency-Net: two score maps, from the fusion features and from the depth, multiplied.

    Confidence concatenated with the fusion features and, separately, with the depth map; an MFE
    on each; convs to one score map each; their element-wise product is the saliency map.

    `activation` is the head's hidden non-linearity. "relu" (the first version) let the trained
    map collapse to a constant: every hidden unit of both heads went negative, a dead state that
    passes no gradient back (docs/architecture.md, "Saliency-Net collapse"). "leaky_relu" keeps a
    gradient through every unit.
    """

    def __init__(self, feature_channels: int, c_each: int, max_depth: float, activation: str = "relu"):
        super().__init__()
        self.max_depth = max_depth
        self.mfe_features = MultiScaleFeatures(feature_channels + 1, c_each)
        self.mfe_depth = MultiScaleFeatures(2, c_each)
        self.head_features = self._head(9 * c_each, c_each, activation)
        self.head_depth = self._head(9 * c_each, c_each, activation)

    @staticmethod
    def _head(c_in: int, c_mid: int, activation: str) -> nn.Sequential:
        act = nn.LeakyReLU(0.1, inplace=True) if activation == "leaky_relu" else nn.ReLU(inplace=True)
        return nn.Sequential(nn.Conv2d(c_in, c_mid, 3, padding=1), act, nn.Conv2d(c_mid, 1, 1))

    def forward(self, features: Tensor, depth: Tensor, confidence: Tensor) -> Tensor:
        """-> saliency map (B, 1, H, W) in [0, 1]."""
        by_features = self.head_features(self.mfe_features(torch.cat([features, confidence], 1)))
        by_depth = self.head_depth(self.mfe_depth(torch.cat([depth / self.max_depth, confidence], 1)))
        return torch.sigmoid(by_features) * torch.sigmoid(by_depth)


def spatial_priority(h: int, w: int, device: torch.device | str = "cpu") -> Tensor:
    """Return the (h * w,) rank of every pixel (row-major) in a coarse-to-fine order.

    The order is the bit-reversed Morton (Z-order) code. The first 4^j pixels of that order form a
    roughly regular grid of 2^j x 2^j cells over the image, so taking pixels in this order spreads
    them over the whole image. Computed with numpy (a constant for ONNX tracing, which fixes the input size anyway).
    """
    return torch.from_numpy(_priority(int(h), int(w)).copy()).to(device)


@functools.lru_cache(maxsize=16)
def _priority(h: int, w: int) -> np.ndarray:
    bits = max(1, (max(h, w) - 1).bit_length())
    rows = np.repeat(np.arange(h, dtype=np.int64), w) * (1 << bits) // h  # same 2^bits grid on both
    cols = np.tile(np.arange(w, dtype=np.int64), h) * (1 << bits) // w  # axes: fair for any aspect
    code = np.zeros(h * w, dtype=np.int64)
    for b in range(bits):  # interleave: (row bit, col bit) pairs
        code |= ((rows >> b) & 1) << (2 * b + 1)
        code |= ((cols >> b) & 1) << (2 * b)
    rev = np.zeros_like(code)
    for b in range(2 * bits):  # bit reversal: coarse cells vary fastest
        rev |= ((code >> b) & 1) << (2 * bits - 1 - b)
    order = np.argsort(rev, kind="stable")  # ties (h, w not powers of two): row-major
    rank = np.empty(h * w, dtype=np.int64)
    rank[order] = np.arange(h * w)
    return rank


@functools.lru_cache(maxsize=16)
def _priority_order(h: int, w: int) -> np.ndarray:
    """Return the argsort of `spatial_priority` (a permutation, so the order is unique), computed once per size."""
    return np.argsort(_priority(h, w), kind="stable")  # never written to: shared by every call


SCORE_STEP = 2.0**-16  # saliency scores closer than this count as ties when choosing points


def select_salient_points(saliency: Tensor, depth: Tensor, max_points: int, nms_radius: int = 2,
                          tie_break: str = "spatial") -> PointBatch:
    """Top-scoring local maxima of the saliency map become points.

    Each point's depth is the first pass's depth there and its weight the saliency score, both
    differentiable; only the choice of pixels is not. Local maxima within (2r+1)^2 windows keep
    the points spread out. Equal scores are ranked by `spatial_priority`, not by position in
    memory: on a flat (or partly flat) map every pixel of the plateau is a "local maximum", and
    plain top-k would take them all from the first image rows. `tie_break="memory"` is that plain
    row-major order, kept for v1 checkpoints, which were trained with it (`model.point_tie_break`).
    """
    b, _, h, w = saliency.shape
    with torch.no_grad():
        # Scores equal to SCORE_STEP are equal: a map upsampled from a coarser scale has exact ties
        # (the pixels around a coarse peak) that float rounding in another runtime (onnxruntime)
        # would break at random; rounded, they stay ties and the spatial rule decides alike.
        score = torch.round(saliency / SCORE_STEP) * SCORE_STEP if tie_break == "spatial" else saliency
        peaks = score == F.max_pool2d(score, 2 * nms_radius + 1, 1, nms_radius)
        ranked = torch.where(peaks, score, torch.full_like(score, -1.0)).flatten(1)
        k = min(max_points, h * w)
        if tie_break == "memory":  # equal scores lowest index first, in eager as in ONNX's TopK
            if torch.jit.is_tracing():
                return _gather_points(saliency, depth, ranked.topk(k, dim=1).indices, w)
            order = torch.sort(ranked, dim=1, descending=True, stable=True).indices[:, :k]
            return _gather_points(saliency, depth, order, w)
        # Lexicographic (score descending, spatial priority ascending): sort by priority, then a
        # stable sort by score keeps the priority order among equal scores. For distinct scores
        # the selected set is exactly plain top-k's.
        by_priority = torch.from_numpy(_priority_order(int(h), int(w))).to(saliency.device).expand(b, -1)
        if torch.jit.is_tracing():  # ONNX has no stable sort; its TopK puts equal values lowest index first
            order = ranked.gather(1, by_priority).topk(k, dim=1).indices
        else:
            order = torch.sort(ranked.gather(1, by_priority), dim=1, descending=True, stable=True).indices[:, :k]
        index = by_priority.gather(1, order)
    return _gather_points(saliency, depth, index, w)


def _gather_points(saliency: Tensor, depth: Tensor, index: Tensor, width: int) -> PointBatch:
    """Build the PointBatch of the flat pixel indices: (u, v), pass-1 depth and score as weight."""
    score = saliency.flatten(1).gather(1, index)
    z = depth.flatten(1).gather(1, index)
    uv = torch.stack([index % width, index // width], dim=-1).to(saliency.dtype)
    return PointBatch(uv=uv, depth=z, weight=score)
