"""Saliency-Net (paper section 3.2): salient points from the first Fusion-Net pass."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..points import PointBatch

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
    """Confidence concatenated with the fusion features and, separately, with the depth map; an MFE
    on each; convs to one score map each; their element-wise product is the saliency map."""

    def __init__(self, feature_channels: int, c_each: int, max_depth: float):
        super().__init__()
        self.max_depth = max_depth
        self.mfe_features = MultiScaleFeatures(feature_channels + 1, c_each)
        self.mfe_depth = MultiScaleFeatures(2, c_each)
        self.head_features = self._head(9 * c_each, c_each)
        self.head_depth = self._head(9 * c_each, c_each)

    @staticmethod
    def _head(c_in: int, c_mid: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(c_in, c_mid, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(c_mid, 1, 1))

    def forward(self, features: Tensor, depth: Tensor, confidence: Tensor) -> Tensor:
        """-> saliency map (B, 1, H, W) in [0, 1]."""
        by_features = self.head_features(self.mfe_features(torch.cat([features, confidence], 1)))
        by_depth = self.head_depth(self.mfe_depth(torch.cat([depth / self.max_depth, confidence], 1)))
        return torch.sigmoid(by_features) * torch.sigmoid(by_depth)


def select_salient_points(saliency: Tensor, depth: Tensor, max_points: int, nms_radius: int = 2) -> PointBatch:
    """Top-scoring local maxima of the saliency map become points.

    Each point's depth is the first pass's depth there and its weight the saliency score, both
    differentiable; only the choice of pixels is not. Local maxima within (2r+1)^2 windows keep
    the points spread out.
    """
    b, _, h, w = saliency.shape
    with torch.no_grad():
        peaks = saliency == F.max_pool2d(saliency, 2 * nms_radius + 1, 1, nms_radius)
        ranked = torch.where(peaks, saliency, torch.full_like(saliency, -1.0)).flatten(1)
        k = min(max_points, h * w)
        _, index = ranked.topk(k, dim=1)
    score = saliency.flatten(1).gather(1, index)
    z = depth.flatten(1).gather(1, index)
    uv = torch.stack([index % w, index // w], dim=-1).to(saliency.dtype)
    return PointBatch(uv=uv, depth=z, weight=score)
