"""Fusion-Net (paper section 3.1): input stem and five Fusion-Blocks in a U shape.

Block k (k = 0..4) encodes at 1/2^(k+1) of the input resolution and, on the way back up, decodes
and refines to 1/2^k, emitting a depth and a confidence map there: five scales, finest first.
Layout, widths and every choice the paper leaves open: docs/architecture.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ModelConfig
from ..points import PointBatch
from .layers import FKAConv, NConv2d, conv_bn_relu, nconv_downsample, nconv_upsample, sample_at_points, scatter_to_grid

LEVELS = 5
ALIGN = 2**LEVELS  # the input is padded to a multiple of this


@dataclass
class Stream:
    """What flows between stages: features plus the nConv branch's data and confidence."""

    feat: Tensor
    att: Tensor | None  # attention / confidence volume (None without the confidence predictor)
    att_data: Tensor | None  # the data that goes with it


class PointContext:
    """The point set of one forward pass, prepared once and shared by all blocks."""

    def __init__(self, points: PointBatch, intrinsics: Tensor, height: int, width: int):
        self.uv = points.uv
        self.weight = points.weight * points.inside(height, width)
        self.valid = self.weight > 0
        self.xyz = torch.nan_to_num(points.xyz(intrinsics)) * self.valid.unsqueeze(-1)
        self.empty = points.num_points == 0 or not bool(self.valid.any())


class Stem(nn.Module):
    """Two nConv on (sparse depth, mask), two Conv2D on RGBD, concat, Conv2D."""

    def __init__(self, channels: int, use_confidence: bool):
        super().__init__()
        half = channels // 2
        self.nconv1 = NConv2d(1, half, 5)
        self.nconv2 = NConv2d(half, half, 3)
        self.rgbd = nn.Sequential(conv_bn_relu(4, channels), conv_bn_relu(channels, channels))
        self.fuse = conv_bn_relu(channels + half, channels)
        # The attention volume must also come from the image: with zero input points the nConv
        # confidence is 0 everywhere, yet the paper's confidence predictor works without points.
        self.attention = nn.Conv2d(channels + 2 * half, channels, 1) if use_confidence else None

    def forward(self, rgb: Tensor, sparse: Tensor, mask: Tensor) -> Stream:
        scale = 1.0 / 10.0  # sparse depth in metres -> O(1) inputs
        f1, c1 = self.nconv1(sparse * scale, mask)
        f2, c2 = self.nconv2(f1, c1)
        image = self.rgbd(torch.cat([rgb, sparse * scale], dim=1))
        feat = self.fuse(torch.cat([image, f2], dim=1))
        if self.attention is None:
            return Stream(feat, torch.ones_like(feat), feat)
        att = torch.sigmoid(self.attention(torch.cat([image, f2, c2], dim=1)))
        return Stream(feat, att, feat)


class FeatureFusionEncoder(nn.Module):
    """Two 2D branches (two resolutions), an nConv branch and an FKAConv 3D branch, summed."""

    def __init__(self, c_in: int, c_out: int, cfg: ModelConfig):
        super().__init__()
        self.entry = conv_bn_relu(c_in, c_out, stride=2)
        self.branch_full = conv_bn_relu(c_out, c_out)
        self.branch_half = nn.Sequential(nn.AvgPool2d(2, ceil_mode=True), conv_bn_relu(c_out, c_out))
        self.nconv = NConv2d(c_in, c_out, 3)
        self.point_conv = FKAConv(c_out, c_out, cfg.fkaconv_kernel, cfg.fkaconv_neighbors)
        self.fuse = conv_bn_relu(c_out, c_out)

    def forward(self, s: Stream, points: PointContext, scale: float) -> Stream:
        x = self.entry(s.feat)
        size = x.shape[-2:]
        half = F.interpolate(self.branch_half(x), size=size, mode="bilinear", align_corners=False)
        data, conf = nconv_downsample(s.att_data, s.att)
        n_feat, n_conf = self.nconv(data, conf)
        total = self.branch_full(x) + half + n_feat
        if not points.empty:
            at_points = sample_at_points(x, points.uv, scale)
            p_feat = self.point_conv(at_points, points.xyz, points.valid)
            total = total + scatter_to_grid(p_feat, points.uv, points.weight, scale, size)
        return Stream(self.fuse(total) + x, n_conf, n_feat)


class FusionBlock(nn.Module):
    """Encoder [E], confidence predictor (chain of nConv), decoder [D] and refinement [R]."""

    def __init__(self, c_in: int, c_out: int, d_out: int, d_below: int, c_skip: int, cfg: ModelConfig):
        super().__init__()
        self.use_confidence = cfg.use_confidence
        self.encoder = FeatureFusionEncoder(c_in, c_out, cfg)
        # Decoder input from the coarser block: its refined depth features (and its nConv stream).
        self.dec_lower = conv_bn_relu(c_out + d_below + (d_out if cfg.use_confidence else 0), d_out)
        self.ref_lower = nn.Sequential(
            conv_bn_relu(d_out + c_skip + (d_out if cfg.use_confidence else 0), d_out),
            conv_bn_relu(d_out, d_out),
        )
        self.depth_head = nn.Conv2d(d_out, 1, 3, padding=1)
        # Start at the geometric mean of the depth range (1 m for 0.1-10 m), not at its middle
        # (5 m): with Adam the head's bias walks ~lr per step, so a far start costs hundreds of steps.
        start = (math.sqrt(cfg.min_depth * cfg.max_depth) - cfg.min_depth) / (cfg.max_depth - cfg.min_depth)
        nn.init.constant_(self.depth_head.bias, math.log(start / (1 - start)))
        if cfg.use_confidence:
            self.cp_encoder = NConv2d(c_out, c_out, 3)
            self.dec_upper = NConv2d(c_out + d_below, d_out, 3)
            self.ref_upper = NConv2d(d_out, d_out, 3)
            self.conf_head = NConv2d(d_out, 1, 1, bias=False)  # only its confidence is used

    def encode(self, s: Stream, points: PointContext, scale: float) -> Stream:
        return self.encoder(s, points, scale)

    def decode(self, enc: Stream, below: Stream | None, skip: Tensor) -> tuple[Stream, Tensor, Tensor | None]:
        """Decode at the encoder's resolution, refine at twice it. Returns (stream for the finer
        block, depth logits, confidence or None)."""
        size = enc.feat.shape[-2:]
        lower_in = [enc.feat] + ([] if below is None else [below.feat])
        upper, upper_conf = None, None
        if self.use_confidence:
            cp_feat, cp_conf = self.cp_encoder(enc.feat, enc.att)
            data, conf = [cp_feat], [cp_conf]
            if below is not None:
                below_data, below_conf = nconv_upsample(below.att_data, below.att, size)
                data.append(below_data)
                conf.append(below_conf)
            upper, upper_conf = self.dec_upper(torch.cat(data, 1), torch.cat(conf, 1))
            lower_in.append(upper)
        lower = self.dec_lower(torch.cat(lower_in, 1))

        out_size = skip.shape[-2:]
        lower = F.interpolate(lower, size=out_size, mode="bilinear", align_corners=False)
        ref_in = [lower, skip]
        confidence = None
        if self.use_confidence:
            upper, upper_conf = nconv_upsample(upper, upper_conf, out_size)
            upper, upper_conf = self.ref_upper(upper, upper_conf)
            _, confidence = self.conf_head(upper, upper_conf)
            ref_in.append(upper)
        refined = self.ref_lower(torch.cat(ref_in, 1))
        return Stream(refined, upper_conf, upper), self.depth_head(refined), confidence


class FusionNet(nn.Module):
    """Stem + five Fusion-Blocks. forward() returns depth/confidence at five scales (finest first)
    and the full-resolution fusion features that feed the Saliency-Net."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        enc = (cfg.stem_channels, *cfg.block_channels)
        dec = (*cfg.decoder_channels, 0)
        self.stem = Stem(cfg.stem_channels, cfg.use_confidence)
        self.blocks = nn.ModuleList(
            FusionBlock(enc[k], enc[k + 1], dec[k], dec[k + 1], enc[k], cfg) for k in range(LEVELS)
        )
        self.register_buffer("rgb_mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("rgb_std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    @property
    def feature_channels(self) -> int:
        return self.cfg.decoder_channels[0]

    def forward(self, rgb: Tensor, points: PointBatch, intrinsics: Tensor) -> dict[str, object]:
        """rgb (B, 3, H, W) in [0, 1]; any H, W (padded internally to a multiple of 32)."""
        h, w = rgb.shape[-2:]
        ph, pw = -h % ALIGN, -w % ALIGN
        x = (rgb - self.rgb_mean) / self.rgb_std
        x = F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x
        context = PointContext(points, intrinsics.float(), h, w)
        sparse, mask = PointBatch(points.uv, points.depth, context.weight).rasterize(h + ph, w + pw)

        streams = [self.stem(x, sparse, mask)]
        for k, block in enumerate(self.blocks):
            streams.append(block.encode(streams[-1], context, 0.5 ** (k + 1)))

        cfg, below = self.cfg, None
        depths, confs = [None] * LEVELS, [None] * LEVELS
        for k in reversed(range(LEVELS)):
            below, logits, conf = self.blocks[k].decode(streams[k + 1], below, streams[k].feat)
            oh, ow = -(-h // 2**k), -(-w // 2**k)  # ceil: crop the padding away
            depths[k] = (cfg.min_depth + (cfg.max_depth - cfg.min_depth) * torch.sigmoid(logits))[..., :oh, :ow]
            confs[k] = None if conf is None else conf[..., :oh, :ow]
        return {"depth": depths, "confidence": confs, "features": below.feat[..., :h, :w]}
