"""Fusion-Net (paper section 3.1): input stem and five Fusion-Blocks in a U shape.

Block k (k = 0..4) encodes at 1/2^(k+1) of the input resolution and, on the way back up, decodes
and refines to 1/2^k, emitting a depth and a confidence map there: five scales, finest first.
Layout, widths and every choice the paper leaves open: docs/architecture.md.
"""

from __future__ import annotations

from dataclasses import dataclass
import math

import torch
from torch import nn, Tensor
import torch.nn.functional as F

from .layers import (
    conv_bn_relu,
    FKAConv,
    make_nconv,
    NConv2d,
    nconv_downsample,
    nconv_upsample,
    Neighbourhood,
    sample_at_points,
    scatter_to_grid,
)
from .points import PointBatch
from ..config import ModelConfig

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
        self._hoods: dict[int, Neighbourhood] = {}

    def neighbourhood(self, neighbors: int, dtype: torch.dtype) -> Neighbourhood:
        """Return FKAConv's K-nearest-neighbour structure of this point set, computed once per pass."""
        if neighbors not in self._hoods:
            self._hoods[neighbors] = Neighbourhood(self.xyz, self.valid, neighbors, dtype)
        return self._hoods[neighbors]


class Stem(nn.Module):
    """Two nConv on (sparse depth, mask), two Conv2D on RGBD, concat, Conv2D.

    With `image_only` the two Conv2D see RGB alone (the sparse depth reaches the stem through the
    nConv branch anyway), so their output is point-free and pass 2 reuses pass 1's (`image()`).
    """

    def __init__(self, channels: int, use_confidence: bool, shared: bool = False, image_only: bool = False,
                 separable: bool = False, separable_nconv: bool = False, stride: int = 1):
        super().__init__()
        half = channels // 2
        self.image_only = image_only
        self.nconv1 = NConv2d(1, half, 5, groups=(1,) if shared else None)
        self.nconv2 = make_nconv(half, half, 3, (half,) if shared else None, separable_nconv)
        self.rgbd = nn.Sequential(
            conv_bn_relu(3 if image_only else 4, channels, stride=stride),
            conv_bn_relu(channels, channels, separable=separable),
        )
        self.fuse = conv_bn_relu(channels + half, channels, separable=separable)
        # The attention volume must also come from the image: with zero input points the nConv
        # confidence is 0 everywhere, yet the paper's confidence predictor works without points.
        c_conf = 1 if shared else half
        self.attention = nn.Conv2d(channels + half + c_conf, 1 if shared else channels, 1) if use_confidence else None

    def image(self, rgb: Tensor) -> Tensor:
        return self.rgbd(rgb)

    def forward(self, rgb: Tensor, sparse: Tensor, mask: Tensor, image: Tensor | None = None) -> Stream:
        scale = 1.0 / 10.0  # sparse depth in metres -> O(1) inputs
        f1, c1 = self.nconv1(sparse * scale, mask)
        f2, c2 = self.nconv2(f1, c1)
        if image is None:
            image = self.rgbd(rgb if self.image_only else torch.cat([rgb, sparse * scale], dim=1))
        feat = self.fuse(torch.cat([image, f2], dim=1))
        if self.attention is None:
            return Stream(feat, torch.ones_like(feat[:, :1] if self.nconv1.groups else feat), feat)
        att = torch.sigmoid(self.attention(torch.cat([image, f2, c2], dim=1)))
        return Stream(feat, att, feat)


class FeatureFusionEncoder(nn.Module):
    """Two 2D branches (two resolutions), an nConv branch and an FKAConv 3D branch, summed."""

    def __init__(self, c_in: int, c_out: int, cfg: ModelConfig, c_image: int = 0, stride: int = 2):
        super().__init__()
        sep = cfg.separable_convs
        self.stride = stride  # 1: block 0 after a stride-2 stem (model.stem_stride 2)
        self.entry = conv_bn_relu(c_in, c_out, stride=stride, separable=sep)
        self.branch_full = conv_bn_relu(c_out, c_out, separable=sep)
        self.branch_half = nn.Sequential(nn.AvgPool2d(2, ceil_mode=True), conv_bn_relu(c_out, c_out, separable=sep))
        self.nconv = make_nconv(c_in, c_out, 3, (c_in,) if cfg.shared_confidence else None, cfg.separable_nconv)
        self.point_conv = FKAConv(c_out, c_out, cfg.fkaconv_kernel, cfg.fkaconv_neighbors)
        self.fuse = conv_bn_relu(c_out, c_out, separable=sep)
        # Backbone features of this resolution (computed once per image), projected and added.
        self.image_proj = (
            nn.Sequential(nn.Conv2d(c_image, c_out, 1, bias=False), nn.BatchNorm2d(c_out)) if c_image else None
        )

    def forward(self, s: Stream, points: PointContext, scale: float, image: Tensor | None = None) -> Stream:
        x = self.entry(s.feat)
        if self.image_proj is not None:
            x = x + self.image_proj(image)
        size = x.shape[-2:]
        half = F.interpolate(self.branch_half(x), size=size, mode="bilinear", align_corners=False)
        data, conf = nconv_downsample(s.att_data, s.att) if self.stride == 2 else (s.att_data, s.att)
        n_feat, n_conf = self.nconv(data, conf)
        total = self.branch_full(x) + half + n_feat
        if not points.empty:
            at_points = sample_at_points(x, points.uv, scale)
            hood = points.neighbourhood(self.point_conv.neighbors, at_points.dtype)
            p_feat = self.point_conv(at_points, points.xyz, points.valid, hood)
            total = total + scatter_to_grid(p_feat, points.uv, points.weight, scale, size)
        return Stream(self.fuse(total) + x, n_conf, n_feat)


class FusionBlock(nn.Module):
    """Encoder [E], confidence predictor (chain of nConv), decoder [D] and refinement [R]."""

    def __init__(self, c_in: int, c_out: int, d_out: int, d_below: int, c_skip: int, cfg: ModelConfig, c_image: int = 0,
                 stride: int = 2):
        super().__init__()
        self.use_confidence = cfg.use_confidence
        self.encoder = FeatureFusionEncoder(c_in, c_out, cfg, c_image, stride)
        # Decoder input from the coarser block: its refined depth features (and its nConv stream).
        sep = cfg.separable_convs
        self.dec_lower = conv_bn_relu(c_out + d_below + (d_out if cfg.use_confidence else 0), d_out, separable=sep)
        self.ref_lower = nn.Sequential(
            conv_bn_relu(d_out + c_skip + (d_out if cfg.use_confidence else 0), d_out, separable=sep),
            conv_bn_relu(d_out, d_out, separable=sep),
        )
        self.depth_head = nn.Conv2d(d_out, 1, 3, padding=1)
        # Start at the geometric mean of the depth range (1 m for 0.1-10 m), not at its middle
        # (5 m): with Adam the head's bias walks ~lr per step, so a far start costs hundreds of steps.
        # The log head (depth_to_metres) is there at logit 0.
        if cfg.depth_head == "sigmoid":
            start = (math.sqrt(cfg.min_depth * cfg.max_depth) - cfg.min_depth) / (cfg.max_depth - cfg.min_depth)
            nn.init.constant_(self.depth_head.bias, math.log(start / (1 - start)))
        if cfg.use_confidence:
            shared = cfg.shared_confidence
            sep_n = cfg.separable_nconv
            self.cp_encoder = make_nconv(c_out, c_out, 3, (c_out,) if shared else None, sep_n)
            dec_groups = ((c_out, d_below) if d_below else (c_out,)) if shared else None
            self.dec_upper = make_nconv(c_out + d_below, d_out, 3, dec_groups, sep_n)
            self.ref_upper = make_nconv(d_out, d_out, 3, (d_out,) if shared else None, sep_n)
            # Only its confidence is used. With a shared confidence channel a 1x1 nConv would pass
            # its input confidence through unchanged (and learn nothing): the stream's is used.
            self.conf_head = None if shared else NConv2d(d_out, 1, 1, bias=False)

    def encode(self, s: Stream, points: PointContext, scale: float, image: Tensor | None = None) -> Stream:
        return self.encoder(s, points, scale, image)

    def decode(self, enc: Stream, below: Stream | None, skip: Tensor) -> tuple[Stream, Tensor, Tensor | None]:
        """Decode at the encoder's resolution, refine at twice it.

        Returns (stream for the finer block, depth logits, confidence or None).
        """
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
        same = tuple(int(v) for v in out_size) == tuple(int(v) for v in size)  # block 0 after a stride-2 stem
        if not same:
            lower = F.interpolate(lower, size=out_size, mode="bilinear", align_corners=False)
        ref_in = [lower, skip]
        confidence = None
        if self.use_confidence:
            if not same:
                upper, upper_conf = nconv_upsample(upper, upper_conf, out_size)
            upper, upper_conf = self.ref_upper(upper, upper_conf)
            confidence = upper_conf if self.conf_head is None else self.conf_head(upper, upper_conf)[1]
            ref_in.append(upper)
        refined = self.ref_lower(torch.cat(ref_in, 1))
        return Stream(refined, upper_conf, upper), self.depth_head(refined), confidence


def depth_to_metres(logits: Tensor, cfg: ModelConfig) -> Tensor:
    """Convert depth logits to metres with the depth head: sigmoid or log.

    sigmoid (the first version): linear in metres between min and max depth; log: log-uniform
    between them, so a logit step is the same relative change near and far.
    """
    if cfg.depth_head == "log":
        lo, hi = math.log(cfg.min_depth), math.log(cfg.max_depth)
        return torch.exp(lo + (hi - lo) * torch.sigmoid(logits))
    return cfg.min_depth + (cfg.max_depth - cfg.min_depth) * torch.sigmoid(logits)


class FusionNet(nn.Module):
    """Stem + five Fusion-Blocks.

    forward() returns depth/confidence at five scales (finest first) and the full-resolution
    fusion features that feed the Saliency-Net.
    """

    def __init__(self, cfg: ModelConfig, image_channels: tuple[int, ...] = (0,) * LEVELS):
        super().__init__()
        self.cfg = cfg
        enc = (cfg.stem_channels, *cfg.block_channels)
        dec = (*cfg.decoder_channels, 0)
        self.stem = Stem(cfg.stem_channels, cfg.use_confidence, cfg.shared_confidence, cfg.reuse_image_features,
                         cfg.separable_convs, cfg.separable_nconv, cfg.stem_stride)
        self.blocks = nn.ModuleList(
            FusionBlock(enc[k], enc[k + 1], dec[k], dec[k + 1], enc[k], cfg, image_channels[k],
                        1 if k == 0 and cfg.stem_stride == 2 else 2)
            for k in range(LEVELS)
        )
        self.register_buffer("rgb_mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("rgb_std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    @property
    def feature_channels(self) -> int:
        return self.cfg.decoder_channels[0]

    def prepare(self, rgb: Tensor) -> Tensor:
        """Normalised (and, without ceil-mode strides, replicate-padded to a multiple of 32) image."""
        h, w = rgb.shape[-2:]
        ph, pw = (0, 0) if self.cfg.ceil_strides else (-h % ALIGN, -w % ALIGN)
        x = (rgb - self.rgb_mean) / self.rgb_std
        return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x

    def image_features(self, x: Tensor) -> Tensor | None:
        """Return the point-free stem features of a prepared image (None unless reuse_image_features)."""
        return self.stem.image(x) if self.cfg.reuse_image_features else None

    def forward(
        self, rgb: Tensor, points: PointBatch, intrinsics: Tensor, image: dict[str, object] | None = None
    ) -> dict[str, object]:
        """Run on rgb (B, 3, H, W) in [0, 1] of any H, W.

        Any H, W: padded internally to a multiple of 32, or run with ceil-mode strides. `image`:
        what depends on the image only, computed once per image and shared by both passes: "x"
        (prepared image), "stem" (image_features) and "backbone" (five feature maps, or None).
        """
        h, w = rgb.shape[-2:]
        image = image or {}
        x = image["x"] if "x" in image else self.prepare(rgb)
        backbone = image.get("backbone") or [None] * LEVELS
        context = PointContext(points, intrinsics.float(), h, w)
        given = PointBatch(points.uv, points.depth, context.weight)
        if self.cfg.stem_stride == 2:  # the stem's nConv works at 1/2: rasterise the points there
            sparse, mask = given.scaled(0.5, 0.5).rasterize(-(-x.shape[-2] // 2), -(-x.shape[-1] // 2))
        else:
            sparse, mask = given.rasterize(*x.shape[-2:])

        streams = [self.stem(x, sparse, mask, image.get("stem"))]
        for k, block in enumerate(self.blocks):
            streams.append(block.encode(streams[-1], context, 0.5 ** (k + 1), backbone[k]))

        cfg, below = self.cfg, None
        depths, confs = [None] * LEVELS, [None] * LEVELS
        for k in reversed(range(LEVELS)):
            below, logits, conf = self.blocks[k].decode(streams[k + 1], below, streams[k].feat)
            div = 2 ** max(k, cfg.stem_stride - 1)  # stem_stride 2: block 0 at 1/2 too
            oh, ow = -(-h // div), -(-w // div)  # ceil: crop the padding away
            depths[k] = depth_to_metres(logits, cfg)[..., :oh, :ow]
            confs[k] = None if conf is None else conf[..., :oh, :ow]
        out = {"depth": depths, "confidence": confs, "features": below.feat[..., :h, :w]}
        if cfg.stem_stride == 2:
            # The Saliency-Net gets block 0's maps at their own (half) resolution; the finest
            # output scale is their bilinear upsampling to the input size.
            out["features"] = below.feat[..., : -(-h // 2), : -(-w // 2)]
            out["fine"] = (depths[0], confs[0])
            depths[0] = F.interpolate(depths[0], size=(h, w), mode="bilinear", align_corners=False)
            if confs[0] is not None:
                confs[0] = F.interpolate(confs[0], size=(h, w), mode="bilinear", align_corners=False)
        return out
