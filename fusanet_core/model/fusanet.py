"""FuSaNet: Fusion-Net, Saliency-Net, Fusion-Net again with the same weights (paper Fig. 1)."""

from __future__ import annotations

import torch
from torch import nn, Tensor
import torch.nn.functional as F

from .backbone import EfficientNetLite0, FEATURE_CHANNELS
from .focal import focal_scale, output_to_metric, points_to_canonical
from .fusion_net import FusionNet, LEVELS
from .points import PointBatch
from .saliency_net import SaliencyNet, select_salient_points
from ..config import ModelConfig


def default_intrinsics(batch: int, height: int, width: int, device: torch.device) -> Tensor:
    """Return (batch, 4) intrinsics fx, fy, cx, cy to use when the camera is unknown.

    Principal point at the centre, fx = fy = width (about a 53 degree horizontal field of view).
    Only the point branch's geometry uses it.
    """
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
        self.backbone = EfficientNetLite0() if cfg.backbone == "efficientnet_lite0" else None
        if self.backbone is not None:
            # 1 once the ImageNet weights are in (or were never wanted); saved in checkpoints, so
            # a trained or resumed model never reloads them (see train()).
            self.register_buffer("backbone_ready", torch.tensor(not cfg.backbone_pretrained))
        self.fusion_net = FusionNet(cfg, FEATURE_CHANNELS if self.backbone is not None else (0,) * LEVELS)
        self.saliency_net = (
            SaliencyNet(self.fusion_net.feature_channels, cfg.saliency_channels, cfg.max_depth, cfg.saliency_activation)
            if cfg.use_saliency
            else None
        )

    def forward(self, rgb: Tensor, points: PointBatch | None = None, intrinsics: Tensor | None = None) -> dict:
        """Run pass 1, the Saliency-Net and pass 2 on a batch of images.

        Args:
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
        if not self.cfg.focal_aware:
            return self._passes(rgb, points, intrinsics)
        scale = focal_scale(intrinsics, w)
        return output_to_metric(self._passes(rgb, points_to_canonical(points, scale), intrinsics), scale)

    def _passes(self, rgb: Tensor, points: PointBatch, intrinsics: Tensor) -> dict:
        h, w = rgb.shape[-2:]
        image = self.image_features(rgb)  # point-free: computed once, used by both passes
        first = self.fusion_net(rgb, points, intrinsics, image)
        if self.saliency_net is None:
            return {"depth": first["depth"], "confidence": first["confidence"], "salient_points": None,
                    "saliency": None}

        confidence = first["confidence"][0]
        if confidence is None:
            confidence = torch.ones_like(first["depth"][0])
        saliency = self._saliency(first, confidence, (h, w))
        salient = select_salient_points(saliency, first["depth"][0], self.cfg.max_salient_points,
                                        tie_break=self.cfg.point_tie_break)
        second = self.fusion_net(rgb, _join(points, salient), intrinsics, image)
        return {
            "depth": second["depth"],
            "confidence": second["confidence"],
            "salient_points": salient,
            "saliency": saliency,
            "pass1": {"depth": first["depth"], "confidence": first["confidence"]},
        }

    def _saliency(self, first: dict, confidence: Tensor, size: tuple[int, int]) -> Tensor:
        """Run the Saliency-Net on pass 1's features, depth and confidence.

        It runs at 1/saliency_scale of the input (average-pooled there; the map is upsampled
        bilinearly to the input size).
        """
        feats, depth = first["features"], first["depth"][0]
        if "fine" in first:  # block 0 ran at 1/2: its maps at that resolution
            depth, confidence = first["fine"][0], first["fine"][1]
            if confidence is None:
                confidence = torch.ones_like(depth)
        factor = self.cfg.saliency_scale * int(feats.shape[-1]) // int(size[1])  # still to pool by
        if factor > 1:
            feats, depth, confidence = (F.avg_pool2d(t, factor, ceil_mode=True) for t in (feats, depth, confidence))
        saliency = self.saliency_net(feats, depth, confidence)
        if tuple(int(v) for v in saliency.shape[-2:]) != tuple(int(v) for v in size):
            saliency = F.interpolate(saliency, size=[int(v) for v in size], mode="bilinear", align_corners=False)
        return saliency

    def image_features(self, rgb: Tensor) -> dict[str, object]:
        x = self.fusion_net.prepare(rgb)
        out: dict[str, object] = {"x": x, "stem": self.fusion_net.image_features(x)}
        if self.backbone is not None:
            pad = (0, x.shape[-1] - rgb.shape[-1], 0, x.shape[-2] - rgb.shape[-2])
            raw = F.pad(rgb, pad, mode="replicate") if any(pad) else rgb
            out["backbone"] = self.backbone(raw)
        return out

    def load_pretrained(self) -> None:
        """Load the backbone's ImageNet weights now (needs the pip package, see backbone.py)."""
        if self.backbone is not None:
            self.backbone.load_reference()
            self.backbone_ready.fill_(True)

    def train(self, mode: bool = True) -> FuSaNet:
        """Set training mode; the first switch to it may load the ImageNet weights.

        The first switch to training mode of a model built with `backbone_pretrained` loads the
        ImageNet weights: building a model (e.g. to load a checkpoint into it) never needs the
        weights package, training from scratch always gets them, resuming keeps its own.
        """
        if mode and self.backbone is not None and not bool(self.backbone_ready):
            self.load_pretrained()
        return super().train(mode)


def _join(a: PointBatch, b: PointBatch) -> PointBatch:
    if a.num_points == 0:
        return b
    return PointBatch(torch.cat([a.uv, b.uv], 1), torch.cat([a.depth, b.depth], 1), torch.cat([a.weight, b.weight], 1))
