"""Building blocks: normalized convolution and FKAConv point convolution."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def conv_bn_relu(c_in: int, c_out: int, kernel: int = 3, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    pad = dilation * (kernel // 2)
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride, pad, dilation=dilation, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class NConv2d(nn.Module):
    """Normalized convolution (Eldesokey et al.): confidence-weighted data, propagated confidence.

    out = conv(x * c, W) / (conv(c, W) + eps) + b and c_out = conv(c, W) / sum(W), per output
    channel. W = softplus(V, beta) stays non-negative while gradients reach V. Pixels with zero
    confidence contribute nothing to `out`, and a constant input with any confidence stays constant.
    """

    def __init__(
        self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1, beta: float = 10.0, eps: float = 1e-8, bias: bool = True
    ):
        super().__init__()
        self.stride, self.padding, self.beta, self.eps = stride, kernel // 2, beta, eps
        # Raw values around 0.05 give positive weights of a similar spread to a plain conv's.
        self.raw_weight = nn.Parameter(torch.empty(c_out, c_in, kernel, kernel).uniform_(-0.1, 0.2))
        self.bias = nn.Parameter(torch.zeros(c_out)) if bias else None

    def positive_weight(self) -> Tensor:
        return F.softplus(self.raw_weight, beta=self.beta)

    def forward(self, x: Tensor, conf: Tensor) -> tuple[Tensor, Tensor]:
        w = self.positive_weight()
        denom = F.conv2d(conf, w, None, self.stride, self.padding)
        num = F.conv2d(x * conf, w, None, self.stride, self.padding)
        out = num / (denom + self.eps)
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1, 1)
        conf_out = denom / w.sum(dim=(1, 2, 3)).view(1, -1, 1, 1)
        return out, conf_out


def nconv_downsample(x: Tensor, conf: Tensor) -> tuple[Tensor, Tensor]:
    """Halve resolution: max-pooled confidence, data taken at the same argmax positions, conf / 4."""
    pooled, index = F.max_pool2d(conf, 2, 2, return_indices=True)
    data = x.flatten(2).gather(2, index.flatten(2)).view_as(pooled)
    return data, pooled / 4.0


def nconv_upsample(x: Tensor, conf: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Nearest-neighbour upsampling of data and confidence alike."""
    return F.interpolate(x, size=size, mode="nearest"), F.interpolate(conf, size=size, mode="nearest")


def _masked_instance_norm(x: Tensor, mask: Tensor, norm: nn.InstanceNorm2d) -> Tensor:
    """Instance norm over valid (point, neighbour) entries only, so padding never shifts the
    statistics: a point set's output must not depend on how much padding its batch needed."""
    count = mask.sum(dim=(2, 3), keepdim=True).clamp_min(1.0)
    mean = (x * mask).sum(dim=(2, 3), keepdim=True) / count
    var = (((x - mean) * mask) ** 2).sum(dim=(2, 3), keepdim=True) / count
    y = (x - mean) / torch.sqrt(var + norm.eps)
    return y * norm.weight.view(1, -1, 1, 1) + norm.bias.view(1, -1, 1, 1)


def _masked_max(x: Tensor, mask: Tensor) -> Tensor:
    """Max over neighbours (last dim) of valid entries, broadcast back; 0 where none is valid."""
    filled = x.masked_fill(mask == 0, -1e4)
    pooled = filled.amax(dim=3, keepdim=True)
    pooled = torch.where(mask.amax(dim=3, keepdim=True) > 0, pooled, torch.zeros_like(pooled))
    return pooled.expand_as(x)


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

    def forward(self, feats: Tensor, xyz: Tensor, valid: Tensor) -> Tensor:
        """feats (B, C, N), xyz (B, N, 3) metres, valid (B, N) bool -> (B, C_out, N)."""
        b, _, n = feats.shape
        if n == 0:
            return feats.new_zeros(b, self.conv.out_channels, 0)
        index, nb_mask = self._knn(xyz, valid)  # (B, N, K) each
        local = _gather_points(xyz.transpose(1, 2), index) - xyz.transpose(1, 2).unsqueeze(-1)  # (B,3,N,K)
        dist = local.norm(dim=1, keepdim=True)  # (B, 1, N, K)
        mask = nb_mask.unsqueeze(1).to(feats.dtype)
        self._update_radius(dist, mask)
        local = local / self.radius
        dist = dist / self.radius

        mat = F.relu(_masked_instance_norm(self.fc1(local), mask, self.norm1))
        mat = torch.cat([mat, _masked_max(mat, mask)], dim=1)
        mat = F.relu(_masked_instance_norm(self.fc2(mat), mask, self.norm2))
        mat = self.fc3(torch.cat([mat, _masked_max(mat, mask)], dim=1))  # (B, kernel, N, K)

        weight = torch.sigmoid(-self.dist_alpha * dist + self.dist_beta) * mask
        weight = weight / (weight.sum(dim=3, keepdim=True) + 1e-6)
        mat = (mat * weight).permute(0, 2, 3, 1)  # (B, N, K, kernel)
        nb_feats = _gather_points(feats, index).permute(0, 2, 1, 3)  # (B, N, C, K)
        aligned = torch.matmul(nb_feats, mat).permute(0, 2, 1, 3)  # (B, C, N, kernel)
        out = self.conv(aligned).squeeze(-1)
        return out * valid.unsqueeze(1).to(out.dtype)

    def _knn(self, xyz: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
        n = xyz.shape[1]
        dist = torch.cdist(xyz.float(), xyz.float())
        dist = dist.masked_fill(~valid.unsqueeze(1), float("inf"))
        k = min(self.neighbors, n)
        d_k, index = dist.topk(k, dim=2, largest=False)
        nb_mask = torch.isfinite(d_k) & valid.unsqueeze(2)
        if k < self.neighbors:  # pad with copies of the nearest neighbour, masked out
            pad = self.neighbors - k
            index = torch.cat([index, index[..., :1].expand(-1, -1, pad)], dim=2)
            nb_mask = torch.cat([nb_mask, nb_mask.new_zeros(*nb_mask.shape[:2], pad)], dim=2)
        return index, nb_mask

    @torch.no_grad()
    def _update_radius(self, dist: Tensor, mask: Tensor) -> None:
        if not self.training or mask.sum() == 0:
            return
        far = (dist * mask).amax(dim=3)  # farthest valid neighbour per point
        has = mask.amax(dim=3) > 0
        batch_radius = far[has].mean().clamp_min(1e-3)
        self.radius.mul_(1 - self.momentum).add_(self.momentum * batch_radius)


def _gather_points(values: Tensor, index: Tensor) -> Tensor:
    """values (B, C, N), index (B, N, K) -> (B, C, N, K)."""
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
    a gradient."""
    b, c, n = values.shape
    h, w = size
    col = ((uv[..., 0] + 0.5) * scale - 0.5).round().long().clamp(0, w - 1)
    row = ((uv[..., 1] + 0.5) * scale - 0.5).round().long().clamp(0, h - 1)
    index = (row * w + col).unsqueeze(1)  # (B, 1, N)
    weight = weight.unsqueeze(1).to(values.dtype)
    total = values.new_zeros(b, c, h * w).scatter_add(2, index.expand(b, c, n), values * weight)
    norm = values.new_zeros(b, 1, h * w).scatter_add(2, index, (weight > 0).to(values.dtype))
    return (total / norm.clamp_min(1.0)).view(b, c, h, w)
