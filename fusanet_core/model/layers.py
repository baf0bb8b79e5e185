"""Building blocks: normalized convolution and FKAConv point convolution."""

from __future__ import annotations

import torch
from torch import nn, Tensor
import torch.nn.functional as F


def conv_bn_relu(
    c_in: int, c_out: int, kernel: int = 3, stride: int = 1, dilation: int = 1, separable: bool = False
) -> nn.Sequential:
    """Conv-BN-ReLU, or with `separable` its depthwise-separable form.

    `separable`: depthwise kxk conv-BN-ReLU, then pointwise 1x1 conv-BN-ReLU (MobileNet-v1), about
    1/kernel^2 of the multiply-accumulates for wide layers.
    """
    pad = dilation * (kernel // 2)
    if separable and kernel > 1:
        return nn.Sequential(
            nn.Conv2d(c_in, c_in, kernel, stride, pad, dilation=dilation, groups=c_in, bias=False),
            nn.BatchNorm2d(c_in),
            nn.ReLU(inplace=True),
            *conv_bn_relu(c_in, c_out, 1),
        )
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride, pad, dilation=dilation, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


def _confidence_groups(groups: tuple[int, ...] | None, c_in: int) -> tuple[int, ...] | None:
    """Check the shared-confidence groups of an nConv: channel counts that sum to c_in (None = per channel)."""
    if groups is not None and sum(groups) != c_in:
        raise ValueError(f"confidence groups {groups} must sum to c_in = {c_in}")
    return None if groups is None else tuple(int(g) for g in groups)


class NConv2d(nn.Module):
    """Normalized convolution (Eldesokey et al.): confidence-weighted data, propagated confidence.

    out = conv(x * c, W) / (conv(c, W) + eps) + b and c_out = conv(c, W) / sum(W), per output
    channel. W = softplus(V, beta) stays non-negative while gradients reach V. Pixels with zero
    confidence contribute nothing to `out`, and a constant input with any confidence stays constant.

    With `groups` (a tuple of channel counts summing to c_in) the confidence is *shared*: one
    confidence channel per group of data channels instead of one per channel, and one output
    confidence channel (the mean over output channels). conv(c, W) then costs c_out x groups
    instead of c_out x c_in multiply-accumulates per pixel, about half of a full nConv.
    """

    def __init__(
        self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1, beta: float = 10.0, eps: float = 1e-8,
        bias: bool = True,
        groups: tuple[int, ...] | None = None,
    ):
        super().__init__()
        self.stride, self.padding, self.beta, self.eps = stride, kernel // 2, beta, eps
        self.groups = _confidence_groups(groups, c_in)
        # Raw values around 0.05 give positive weights of a similar spread to a plain conv's.
        self.raw_weight = nn.Parameter(torch.empty(c_out, c_in, kernel, kernel).uniform_(-0.1, 0.2))
        self.bias = nn.Parameter(torch.zeros(c_out)) if bias else None

    def positive_weight(self) -> Tensor:
        return F.softplus(self.raw_weight, beta=self.beta)

    def forward(self, x: Tensor, conf: Tensor) -> tuple[Tensor, Tensor]:
        w = self.positive_weight()
        if self.groups is not None:
            return self._forward_shared(x, conf, w)
        denom = F.conv2d(conf, w, None, self.stride, self.padding)
        num = F.conv2d(x * conf, w, None, self.stride, self.padding)
        out = num / (denom + self.eps)
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1, 1)
        conf_out = denom / w.sum(dim=(1, 2, 3)).view(1, -1, 1, 1)
        return out, conf_out

    def _forward_shared(self, x: Tensor, conf: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
        if conf.shape[1] != len(self.groups):
            raise ValueError(
                f"shared-confidence nConv expects {len(self.groups)} confidence channel(s), got {conf.shape[1]}"
            )
        w_groups = torch.stack([part.sum(dim=1) for part in torch.split(w, self.groups, dim=1)], dim=1)
        denom = F.conv2d(conf, w_groups, None, self.stride, self.padding)
        if len(self.groups) == 1:
            full = conf  # broadcasts over the data channels
        else:
            full = torch.cat([conf[:, i:i + 1].expand(-1, g, -1, -1) for i, g in enumerate(self.groups)], dim=1)
        num = F.conv2d(x * full, w, None, self.stride, self.padding)
        out = num / (denom + self.eps)
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1, 1)
        conf_out = (denom / w.sum(dim=(1, 2, 3)).view(1, -1, 1, 1)).mean(dim=1, keepdim=True)
        return out, conf_out


class SeparableNConv2d(nn.Module):
    """A depthwise kxk normalized convolution, then a pointwise 1x1 one.

    The nConv counterpart of a depthwise-separable conv: the same interface and confidence
    semantics as NConv2d, at about 2 c_in k^2 + c_in c_out instead of c_in c_out k^2
    multiply-accumulates per pixel.

    Depthwise step: channel i gives conv(x_i c_i, w_i) / conv(c_i, w_i), c_i its (group's)
    confidence, and confidence conv(c_i, w_i) / sum(w_i), averaged over each group (shared) or kept
    per channel. The pointwise NConv2d then mixes channels with those confidences.
    """

    def __init__(
        self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1, beta: float = 10.0, eps: float = 1e-8,
        bias: bool = True,
        groups: tuple[int, ...] | None = None,
    ):
        super().__init__()
        self.stride, self.padding, self.beta, self.eps = stride, kernel // 2, beta, eps
        self.groups = _confidence_groups(groups, c_in)
        self.raw_weight = nn.Parameter(torch.empty(c_in, 1, kernel, kernel).uniform_(-0.1, 0.2))
        self.pointwise = NConv2d(c_in, c_out, 1, beta=beta, eps=eps, bias=bias, groups=self.groups)

    def forward(self, x: Tensor, conf: Tensor) -> tuple[Tensor, Tensor]:
        w = F.softplus(self.raw_weight, beta=self.beta)
        c = x.shape[1]
        if self.groups is None:
            full = conf
        elif len(self.groups) == 1:
            full = conf.expand(-1, c, -1, -1)
        else:
            full = torch.cat([conf[:, i:i + 1].expand(-1, g, -1, -1) for i, g in enumerate(self.groups)], dim=1)
        denom = F.conv2d(full, w, None, self.stride, self.padding, groups=c)
        num = F.conv2d(x * full, w, None, self.stride, self.padding, groups=c)
        data = num / (denom + self.eps)
        conf_dw = denom / w.sum(dim=(1, 2, 3)).view(1, -1, 1, 1)
        if self.groups is not None:
            parts = torch.split(conf_dw, self.groups, dim=1)
            conf_dw = torch.cat([part.mean(dim=1, keepdim=True) for part in parts], 1)
        return self.pointwise(data, conf_dw)


def make_nconv(
    c_in: int, c_out: int, kernel: int = 3, groups: tuple[int, ...] | None = None, separable: bool = False,
    bias: bool = True,
) -> nn.Module:
    """NConv2d, or with `separable` (and kernel > 1) SeparableNConv2d."""
    if separable and kernel > 1:
        return SeparableNConv2d(c_in, c_out, kernel, groups=groups, bias=bias)
    return NConv2d(c_in, c_out, kernel, groups=groups, bias=bias)


def nconv_downsample(x: Tensor, conf: Tensor) -> tuple[Tensor, Tensor]:
    """Halve resolution: max-pooled confidence, data taken at the same argmax positions, conf / 4."""
    pooled, index = F.max_pool2d(conf, 2, 2, ceil_mode=True, return_indices=True)
    flat = index.flatten(2)
    if conf.shape[1] == 1 and x.shape[1] != 1:  # shared confidence: one argmax for all channels
        flat = flat.expand(-1, x.shape[1], -1)
    data = x.flatten(2).gather(2, flat).view(x.shape[0], x.shape[1], *pooled.shape[-2:])
    return data, pooled / 4.0


def nconv_upsample(x: Tensor, conf: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Nearest-neighbour upsampling of data and confidence alike."""
    return F.interpolate(x, size=size, mode="nearest"), F.interpolate(conf, size=size, mode="nearest")


def _masked_instance_norm(x: Tensor, mask: Tensor, norm: nn.InstanceNorm2d, count: Tensor | None = None) -> Tensor:
    """Instance norm over valid (point, neighbour) entries only.

    Padding thus never shifts the statistics: a point set's output must not depend on how much
    padding its batch needed.
    """
    if count is None:
        count = mask.sum(dim=(2, 3), keepdim=True).clamp_min(1.0)
    mean = (x * mask).sum(dim=(2, 3), keepdim=True) / count
    var = (((x - mean) * mask) ** 2).sum(dim=(2, 3), keepdim=True) / count
    y = (x - mean) / torch.sqrt(var + norm.eps)
    return y * norm.weight.view(1, -1, 1, 1) + norm.bias.view(1, -1, 1, 1)


def _masked_max(x: Tensor, mask: Tensor, hood: Neighbourhood | None = None) -> Tensor:
    """Max over neighbours (last dim) of valid entries, broadcast back; 0 where none is valid."""
    invalid, has = (mask == 0, mask.amax(dim=3, keepdim=True) > 0) if hood is None else (hood.invalid, hood.has)
    filled = x.masked_fill(invalid, -1e4)
    pooled = filled.amax(dim=3, keepdim=True)
    pooled = torch.where(has, pooled, torch.zeros_like(pooled))
    return pooled.expand_as(x)


class Neighbourhood:
    """What FKAConv derives from the point set alone.

    K nearest neighbours, relative coordinates, distances, masks: the same for every Fusion-Block
    of a pass, so computed once per pass (`PointContext.neighbourhood`) instead of once per block.
    """

    def __init__(self, xyz: Tensor, valid: Tensor, neighbors: int, dtype: torch.dtype):
        self.index, nb_mask = _knn(xyz, valid, neighbors)  # (B, N, K) each
        self.local = _gather_points(xyz.transpose(1, 2), self.index) - xyz.transpose(1, 2).unsqueeze(-1)  # (B,3,N,K)
        self.dist = self.local.norm(dim=1, keepdim=True)  # (B, 1, N, K)
        self.mask = nb_mask.unsqueeze(1).to(dtype)
        self.count = self.mask.sum(dim=(2, 3), keepdim=True).clamp_min(1.0)
        self.invalid = self.mask == 0
        self.has = self.mask.amax(dim=3, keepdim=True) > 0


def _knn(xyz: Tensor, valid: Tensor, neighbors: int) -> tuple[Tensor, Tensor]:
    n = xyz.shape[1]
    dist = torch.cdist(xyz.float(), xyz.float())
    dist = dist.masked_fill(~valid.unsqueeze(1), float("inf"))
    k = min(neighbors, n)
    d_k, index = dist.topk(k, dim=2, largest=False)
    nb_mask = torch.isfinite(d_k) & valid.unsqueeze(2)
    if k < neighbors:  # pad with copies of the nearest neighbour, masked out
        pad = neighbors - k
        index = torch.cat([index, index[..., :1].expand(-1, -1, pad)], dim=2)
        nb_mask = torch.cat([nb_mask, nb_mask.new_zeros(*nb_mask.shape[:2], pad)], dim=2)
    return index, nb_mask


class FKAConv(nn.Module):
    """Feature-Kernel Alignment point convolution (Boulch et al. 2020) in pure PyTorch.

    Each point gathers its K nearest neighbours (torch.cdist + topk), normalises their relative
    coordinates by a running radius, and a small shared MLP (instance norm, max-pooled context) maps
    them to a K x kernel alignment matrix, scaled by a learnable distance weight
    sigmoid(-a d + b) normalised over the neighbours. Neighbour features times that matrix, then a
    (1, kernel) convolution, give the output features. Point sets with fewer than K points are
    padded; padding and invalid points contribute nothing.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int = 16, neighbors: int = 16, momentum: float = 0.1):
        super().__init__()
        self.neighbors, self.momentum = neighbors, momentum
        self.fc1 = nn.Conv2d(3, kernel, 1, bias=False)
        self.fc2 = nn.Conv2d(2 * kernel, kernel, 1, bias=False)
        self.fc3 = nn.Conv2d(2 * kernel, kernel, 1, bias=False)
        self.norm1, self.norm2 = nn.InstanceNorm2d(kernel, affine=True), nn.InstanceNorm2d(kernel, affine=True)
        self.dist_alpha = nn.Parameter(torch.tensor(1.0))
        self.dist_beta = nn.Parameter(torch.tensor(1.0))
        self.conv = nn.Conv2d(c_in, c_out, (1, kernel))
        self.register_buffer("radius", torch.tensor(1.0))

    def forward(self, feats: Tensor, xyz: Tensor, valid: Tensor, hood: Neighbourhood | None = None) -> Tensor:
        """Convolve feats (B, C, N) at xyz (B, N, 3) metres, valid (B, N) bool -> (B, C_out, N).

        `hood`: the point set's Neighbourhood when already computed (it depends on xyz and valid
        only).
        """
        b, _, n = feats.shape
        if n == 0:
            return feats.new_zeros(b, self.conv.out_channels, 0)
        if hood is None:
            hood = Neighbourhood(xyz, valid, self.neighbors, feats.dtype)
        mask = hood.mask
        self._update_radius(hood.dist, mask)
        local = hood.local / self.radius
        dist = hood.dist / self.radius

        mat = F.relu(_masked_instance_norm(self.fc1(local), mask, self.norm1, hood.count))
        mat = torch.cat([mat, _masked_max(mat, mask, hood)], dim=1)
        mat = F.relu(_masked_instance_norm(self.fc2(mat), mask, self.norm2, hood.count))
        mat = self.fc3(torch.cat([mat, _masked_max(mat, mask, hood)], dim=1))  # (B, kernel, N, K)

        weight = torch.sigmoid(-self.dist_alpha * dist + self.dist_beta) * mask
        weight = weight / (weight.sum(dim=3, keepdim=True) + 1e-6)
        mat = (mat * weight).permute(0, 2, 3, 1)  # (B, N, K, kernel)
        nb_feats = _gather_points(feats, hood.index).permute(0, 2, 1, 3)  # (B, N, C, K)
        aligned = torch.matmul(nb_feats, mat)  # (B, N, C, kernel)
        # The (1, kernel) convolution over (C, kernel) as one matrix product (the same sums).
        out = F.linear(aligned.flatten(2), self.conv.weight.flatten(1), self.conv.bias).transpose(1, 2)
        return out * valid.unsqueeze(1).to(out.dtype)

    @torch.no_grad()
    def _update_radius(self, dist: Tensor, mask: Tensor) -> None:
        if not self.training or mask.sum() == 0:
            return
        far = (dist * mask).amax(dim=3)  # farthest valid neighbour per point
        has = mask.amax(dim=3) > 0
        batch_radius = far[has].mean().clamp_min(1e-3)
        self.radius.mul_(1 - self.momentum).add_(self.momentum * batch_radius)


def _gather_points(values: Tensor, index: Tensor) -> Tensor:
    """Gather the values of each point's neighbours: values (B, C, N), index (B, N, K) -> (B, C, N, K)."""
    b, c, n = values.shape
    k = index.shape[2]
    flat = index.reshape(b, 1, n * k).expand(b, c, n * k)
    return values.gather(2, flat).view(b, c, n, k)


def sample_at_points(grid: Tensor, uv: Tensor, scale: float) -> Tensor:
    """Bilinear features of grid (B, C, h, w) at full-resolution pixels uv (B, N, 2) -> (B, C, N)."""
    h, w = grid.shape[-2:]
    u = (uv[..., 0] + 0.5) * scale / w * 2 - 1  # pixel centres -> [-1, 1], align_corners=False
    v = (uv[..., 1] + 0.5) * scale / h * 2 - 1
    coords = torch.stack([u, v], dim=-1).unsqueeze(1).to(grid.dtype)  # (B, 1, N, 2)
    return F.grid_sample(grid, coords, mode="bilinear", align_corners=False).squeeze(2)


def scatter_to_grid(values: Tensor, uv: Tensor, weight: Tensor, scale: float, size: tuple[int, int]) -> Tensor:
    """Point features (B, C, N) times their weight, averaged over the points in each pixel.

    The weight is not normalised away, so a salient point's score scales its features and receives
    a gradient.
    """
    b, c, n = values.shape
    h, w = size
    col = ((uv[..., 0] + 0.5) * scale - 0.5).round().long().clamp(0, w - 1)
    row = ((uv[..., 1] + 0.5) * scale - 0.5).round().long().clamp(0, h - 1)
    index = (row * w + col).unsqueeze(1)  # (B, 1, N)
    weight = weight.unsqueeze(1).to(values.dtype)
    total = values.new_zeros(b, c, h * w).scatter_add(2, index.expand(b, c, n), values * weight)
    norm = values.new_zeros(b, 1, h * w).scatter_add(2, index, (weight > 0).to(values.dtype))
    return (total / norm.clamp_min(1.0)).view(b, c, h, w)
