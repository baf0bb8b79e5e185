"""FuSaNet: Fusion-Net, Saliency-Net, Fusion-Net again with the same weights (paper Fig. 1)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..config import ModelConfig
from ..points import PointBatch
from .fusion_net import FusionNet
from .saliency_net import SaliencyNet, select_salient_points


def default_intrinsics(batch: int, height: int, width: int, device: torch.device) -> Tensor:
    """Used when the camera is unknown: principal point at the centre, fx = fy = width
    (about a 53 degree horizontal field of view). Only the point branch's geometry uses it."""
    k = torch.tensor([width, width, (width - 1) / 2, (height - 1) / 2], dtype=torch.float32, device=device)
    return k.expand(batch, 4)


class FuSaNet(nn.Module):
    """Pass 1 with the given points (or none) -> Saliency-Net -> pass 2 with the salient points.

    In pass 2 the input points, when any, join the salient points: a known depth is never worse
    than a predicted one (docs/architecture.md). With `use_saliency=False` only pass 1 runs.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.fusion_net = FusionNet(cfg)
        self.saliency_net = (
            SaliencyNet(self.fusion_net.feature_channels, cfg.saliency_channels, cfg.max_depth) if cfg.use_saliency else None
        )

    def forward(self, rgb: Tensor, points: PointBatch | None = None, intrinsics: Tensor | None = None) -> dict:
        """Args:
            rgb: (B, 3, H, W) float in [0, 1].
            points: input points in pixels of `rgb` (None = no points).
            intrinsics: (B, 4) fx, fy, cx, cy in pixels of `rgb` (None = default_intrinsics).

        Returns:
            dict with "depth" and "confidence" (lists of five (B, 1, h_k, w_k) maps, finest first,
            metres and [0, 1]; confidence entries are None without the confidence predictor),
            "salient_points" (PointBatch or None), "saliency" (B, 1, H, W) or None, and "pass1"
            (the first pass's depth/confidence lists when the Saliency-Net is used).
        """
        b, _, h, w = rgb.shape
        if points is None:
            points = PointBatch.empty(b, rgb.device)
        if intrinsics is None:
            intrinsics = default_intrinsics(b, h, w, rgb.device)
        first = self.fusion_net(rgb, points, intrinsics)
        if self.saliency_net is None:
            return {"depth": first["depth"], "confidence": first["confidence"], "salient_points": None, "saliency": None}

        confidence = first["confidence"][0]
        if confidence is None:
            confidence = torch.ones_like(first["depth"][0])
        saliency = self.saliency_net(first["features"], first["depth"][0], confidence)
        salient = select_salient_points(saliency, first["depth"][0], self.cfg.max_salient_points)
        second = self.fusion_net(rgb, _join(points, salient), intrinsics)
        return {
            "depth": second["depth"],
            "confidence": second["confidence"],
            "salient_points": salient,
            "saliency": saliency,
            "pass1": {"depth": first["depth"], "confidence": first["confidence"]},
        }


def _join(a: PointBatch, b: PointBatch) -> PointBatch:
    if a.num_points == 0:
        return b
    return PointBatch(torch.cat([a.uv, b.uv], 1), torch.cat([a.depth, b.depth], 1), torch.cat([a.weight, b.weight], 1))
