"""Plain U-Net baseline: EfficientNet-Lite0 encoder (3.0 M), light decoder (0.5 M), log-depth head.

No points, no confidence, no Saliency-Net: the yardstick every "FuSaNet helps" claim is measured
against at equal steps, with the same trainer and data (task.py trains it with SILog + multi-scale
gradient loss, losses.unet_loss). Presets `unet` (random init) and `unet_pretrained` (ImageNet).
"""

from __future__ import annotations

import math

import torch
from torch import nn, Tensor
import torch.nn.functional as F

from .backbone import EfficientNetLite0, FEATURE_CHANNELS
from .focal import focal_scale, output_to_metric
from .fusanet import default_intrinsics
from .layers import conv_bn_relu
from .points import PointBatch
from ..config import ModelConfig

DECODER = (96, 64, 48, 32, 16)  # at strides 16, 8, 4, 2, 1


class UNet(nn.Module):
    """U-Net with the FuSaNet interface: forward(rgb, points=None, intrinsics=None) -> its output dict.

    "depth" (five maps, finest first, at 1/1 .. 1/16), "confidence" [None] * 5, no salient points.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.backbone = EfficientNetLite0()
        self.register_buffer("backbone_ready", torch.tensor(not cfg.backbone_pretrained))
        skips = (*FEATURE_CHANNELS[-2::-1], 0)  # 112, 40, 24, 16, then none at full resolution
        c_in, ups = FEATURE_CHANNELS[-1], []
        for c_skip, c_out in zip(skips, DECODER):
            ups.append(conv_bn_relu(c_in + c_skip, c_out))
            c_in = c_out
        self.ups = nn.ModuleList(ups)
        self.heads = nn.ModuleList(nn.Conv2d(c, 1, 3, padding=1) for c in DECODER[::-1])  # finest first
        self.log_min, self.log_max = math.log(cfg.min_depth), math.log(cfg.max_depth)
        for head in self.heads:  # start at the geometric mean of the range
            nn.init.zeros_(head.bias)

    def forward(self, rgb: Tensor, points: PointBatch | None = None, intrinsics: Tensor | None = None) -> dict:
        h, w = rgb.shape[-2:]
        feats = self.backbone(rgb)
        x, skips, outs = feats[-1], feats[-2::-1], []
        for k, up in enumerate(self.ups):
            size = skips[k].shape[-2:] if k < len(skips) else (h, w)
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            x = up(torch.cat([x, skips[k]], 1) if k < len(skips) else x)
            outs.append(x)
        depths = []
        for head, feat in zip(self.heads, outs[::-1]):  # full resolution first
            depths.append(torch.exp(self.log_min + (self.log_max - self.log_min) * torch.sigmoid(head(feat))))
        out = {"depth": depths, "confidence": [None] * len(depths), "salient_points": None, "saliency": None}
        if self.cfg.focal_aware:
            k = intrinsics if intrinsics is not None else default_intrinsics(rgb.shape[0], h, w, rgb.device)
            out = output_to_metric(out, focal_scale(k, w))
        return out

    def load_pretrained(self) -> None:
        self.backbone.load_reference()
        self.backbone_ready.fill_(True)

    def train(self, mode: bool = True) -> UNet:
        """Set training mode; the first switch to it may load the ImageNet weights.

        The first switch to training mode loads the ImageNet weights when the config asks for them
        (as FuSaNet.train).
        """
        if mode and not bool(self.backbone_ready):
            self.load_pretrained()
        return super().train(mode)
