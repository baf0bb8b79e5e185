"""Training losses of FuSaNet (paper section 3.3, Eq. 1-5).

All functions take depth maps shaped (B, 1, H, W) and an optional validity ``mask`` of the same
shape (bool or float, True / non-zero = valid ground truth). They are pure: no state, no device
choice, differentiable with respect to ``pred`` (and ``confidence``).

Conventions shared by every function here:

* ``target`` values that are NaN or +-inf are treated as invalid, whatever ``mask`` says. With no
  ``mask``, valid means finite and > 0 (0 is the usual "no depth" code).
* A non-finite value anywhere in ``pred`` (or ``confidence``) gives a NaN loss, never a silently
  masked one: the trainer's NaN guard skips such steps. Masked-out pixels with finite values have
  no influence on the loss.
* When nothing is valid, a loss is 0 and still carries a graph (``pred.sum() * 0``), so that
  ``backward()`` works and gives zero gradients; no host-device synchronisation is needed.
* Inside every loss autocast is disabled: the terms are computed in float32 (float64 for the
  Hessian, whose scale invariance is only as exact as the arithmetic).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
import contextlib
import math

import torch
from torch import Tensor
import torch.nn.functional as F

from ..config import LossConfig

LOG_OFFSET = 0.5  # alpha of Hu et al.: ln(|e| + 0.5)
HESSIAN_EPS = 1e-20  # epsilon of Eq. 1
# Added under the square root of |grad^2 z| so that its gradient stays finite (~1e8, not NaN)
# at an exactly flat patch; sqrt(1e-16) = 1e-8 m/px^2 is below the curvature that float32
# rounding of metre-scale depths already produces (~1e-6), so it changes no real direction.
_NORM_EPS_SQ = 1e-16
_SQRT_FLOOR = 1e-24  # sqrt(x) is evaluated as sqrt(max(x, floor)): finite gradient at 0

PART_NAMES = ("l_log", "l_grad", "l_norm", "l_conf", "l_sparse", "l_hessian")


# --------------------------------------------------------------------------------------------
# input checks and small helpers


def _check_map(name: str, tensor: Tensor) -> None:
    if not isinstance(tensor, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.dim() != 4 or tensor.shape[1] != 1:
        raise ValueError(f"{name} must be shaped (B, 1, H, W), got {tuple(tensor.shape)}")


def _check_same(pred: Tensor, ref_name: str = "pred", **others: Tensor | None) -> None:
    """Raise ValueError naming both shapes when a map does not match ``pred``."""
    _check_map(ref_name, pred)
    for name, tensor in others.items():
        if tensor is None:
            continue
        if not isinstance(tensor, Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
        if tensor.shape != pred.shape:
            raise ValueError(
                f"{name} has shape {tuple(tensor.shape)} but {ref_name} has shape {tuple(pred.shape)}"
            )


def _clean_target(target: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """Return (target with invalid pixels set to 0, float validity mask).

    Invalid target pixels are zeroed because a NaN would leak through every convolution and
    ``0 * NaN`` products; their value never matters once the mask excludes them.
    """
    target = target.float() if target.dtype in (torch.float16, torch.bfloat16) else target
    finite = torch.isfinite(target)
    valid = finite & (target > 0) if mask is None else finite & (mask != 0)
    return torch.where(valid, target, torch.zeros_like(target)), valid.to(target.dtype)


def _as_float(tensor: Tensor) -> Tensor:
    """Half-precision network outputs are promoted: logs of small errors need float32."""
    return tensor.float() if tensor.dtype in (torch.float16, torch.bfloat16) else tensor


def _masked_mean(values: Tensor, weight: Tensor) -> Tensor:
    """Mean of ``values`` over pixels where ``weight`` is 1; 0 (with graph) when none is.

    Multiplication rather than indexing keeps NaN in ``values`` visible (NaN policy) and avoids
    a device sync; clamping the count at 1 turns the empty case into 0 / 1.
    """
    return (values * weight).sum() / weight.sum().clamp_min(1.0)


def _safe_sqrt(value: Tensor) -> Tensor:
    """Return sqrt(value) with a finite gradient at 0 (the clamp cuts the infinite slope there)."""
    return torch.sqrt(value.clamp_min(_SQRT_FLOOR))


def _erode(valid: Tensor, size: int) -> Tensor:
    """Pixels whose whole size x size window is valid, without padding (output shrinks by size-1).

    This is exactly the set of positions where a 'valid' (unpadded) convolution with a
    size x size kernel reads only valid ground truth and never the image border.
    """
    return 1.0 - F.max_pool2d(1.0 - valid, kernel_size=size, stride=1)


@contextlib.contextmanager
def _no_autocast(tensor: Tensor) -> Iterator[None]:
    """Disable autocast: conv2d under AMP would run in half precision."""
    with torch.autocast(device_type=tensor.device.type, enabled=False):
        yield


def _check_epoch(epoch: int) -> None:
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1:
        raise ValueError(f"epoch must be an int >= 1 (the first epoch is 1), got {epoch!r}")


# --------------------------------------------------------------------------------------------
# normalized Hessian loss (Eq. 1-2)


def hessian_kernels(
    sigma: float = 1.0, *, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
) -> Tensor:
    """Gaussian second-derivative filters (Kxx, Kxy, Kyy) for ``F.conv2d``, shape (3, 1, k, k).

    The filters are the separable Gaussian derivatives Kxx = (x^2 - s^2)/(2 pi s^6) G and
    Kxy = x y/(2 pi s^6) G (Kyy = Kxx transposed) on a (2r+1)^2 support, r = round(3 s). The
    truncated 1D factors are then corrected so that every filter is exact on all quadratics:
    the second-derivative factor is made zero-sum and the smoothing factor sums to 1, so that
    constants and linear ramps give exactly 0 (Kxx, Kxy odd/even symmetry kills first moments)
    and Kxx never responds to y^2; each factor is scaled so that the response to x^2/2 (xy for
    Kxy) is exactly 1. Consistent scales across the three components matter because the loss
    compares directions of the Hessian vector.

    Args:
        sigma: Gaussian standard deviation in pixels (> 0).
        dtype: kernel dtype.
        device: kernel device.

    Returns:
        Tensor (3, 1, 2r+1, 2r+1) in cross-correlation convention (what conv2d computes).
    """
    if not sigma > 0 or not math.isfinite(sigma):
        raise ValueError(f"hessian sigma must be a positive number, got {sigma!r}")
    radius = max(1, round(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    gauss = torch.exp(-(x**2) / (2 * sigma**2))
    smooth = gauss / gauss.sum()  # sums to 1: no response to constants along the other axis
    second = (x**2 - sigma**2) / sigma**4 * gauss
    second = second - second.mean()  # zero-sum: constants vanish, and y^2 under Kxx
    second = second * (2.0 / (second * x**2).sum())  # response to x^2/2 is 1
    first = x / sigma**2 * gauss  # odd: zero-sum and no response to x^2
    first = first / (first * x).sum()  # response to x is 1, so Kxy responds 1 to x*y
    kxx = smooth[:, None] * second[None, :]  # rows = y, columns = x
    kxy = first[:, None] * first[None, :]
    kyy = kxx.t()
    return torch.stack([kxx, kxy, kyy])[:, None].to(dtype=dtype, device=device)


def normalized_hessian(depth: Tensor, sigma: float = 1.0) -> Tensor:
    """H_z of Eq. 1: (z_xx, z_xy, z_yy) / (|.| + 1e-20), on the unpadded ('valid') grid.

    Computed in float64 so that the affine invariance holds to ~1e-12 rather than to the float32
    rounding of the input ramp. The norm is sqrt(|.|^2 + 1e-16) so that an exactly flat patch
    gives H = 0 with a finite (large, ~1e8) gradient instead of NaN: the direction of a vanishing
    Hessian is undefined, and the trainer's gradient clipping bounds such a step.

    Args:
        depth: (B, 1, H, W) with H, W >= 2 round(3 sigma) + 1.
        sigma: Gaussian scale of the derivative filters in pixels.

    Returns:
        (B, 3, H - 2r, W - 2r) float64 tensor.
    """
    kernels = hessian_kernels(sigma, dtype=torch.float64, device=depth.device)
    hess = F.conv2d(depth.to(torch.float64), kernels)
    norm = torch.sqrt((hess**2).sum(dim=1, keepdim=True) + _NORM_EPS_SQ)
    return hess / (norm + HESSIAN_EPS)


def normalized_hessian_loss(
    pred: Tensor, target: Tensor, mask: Tensor | None = None, sigma: float = 1.0
) -> Tensor:
    """L_H of Eq. 2: RMS chordal distance between normalized Hessians of pred and target.

    Only pixels whose whole filter support (half-width round(3 sigma)) lies inside the image and
    on valid ground truth count; N of Eq. 2 is their number over the whole batch. The loss is 0
    (up to float64 rounding) when pred = a * target + b x + c y + d with a > 0.

    Args:
        pred: predicted depth (B, 1, H, W).
        target: ground-truth depth (B, 1, H, W).
        mask: validity (B, 1, H, W); None = finite and > 0.
        sigma: scale of the Gaussian derivative filters in pixels.

    Returns:
        Scalar float32 tensor. 0 with a graph (``pred.sum() * 0``) when no pixel is valid,
        including images smaller than the filter support (coarse scales).
    """
    _check_same(pred, target=target, mask=mask)
    size = hessian_kernels(sigma).shape[-1]  # also validates sigma
    if pred.shape[-2] < size or pred.shape[-1] < size:
        return _as_float(pred).sum() * 0.0
    with _no_autocast(pred):
        target, valid = _clean_target(target, mask)
        inner = _erode(valid.to(torch.float64), size)
        diff = normalized_hessian(pred, sigma) - normalized_hessian(target, sigma)
        mean_sq = _masked_mean((diff**2).sum(dim=1, keepdim=True), inner)
        return _safe_sqrt(mean_sq).to(_as_float(pred).dtype)


# --------------------------------------------------------------------------------------------
# sparse loss (Eq. 3)


def sparse_loss(
    pred: Tensor, target: Tensor, sparse_mask: Tensor | None, mask: Tensor | None = None, eps: float = 1e-12
) -> Tensor:
    """L_S of Eq. 3: RMSE at the input points / RMSE over all valid pixels.

    Computed per image, then averaged over the images that have at least one valid input point
    (zero-point images carry no signal here). Both mean squared errors get ``eps`` under the
    square root, which guards the division and keeps gradients finite at a perfect prediction.
    The denominator is detached: it normalises the term (scale-free), it is not something to
    optimise. Left attached, the cheapest way to lower the ratio is to make every pixel *without*
    a point worse; with phi = 5 that pull beat L_log in a CPU training run here (training-frame
    RMSE stalled at 1.5 m while the loss kept falling). The paper does not say; see docs/training.md.

    Args:
        pred: predicted depth (B, 1, H, W).
        target: ground-truth depth (B, 1, H, W); the value at a point is the target there.
        sparse_mask: positions of the input 3D points (B, 1, H, W); points on invalid ground
            truth are ignored. None = no points.
        mask: validity (B, 1, H, W); None = finite and > 0.
        eps: added to both mean squared errors.

    Returns:
        Scalar tensor; 0 with a graph when no image has a point.
    """
    _check_same(pred, target=target, sparse_mask=sparse_mask, mask=mask)
    pred = _as_float(pred)
    if sparse_mask is None:
        return pred.sum() * 0.0
    with _no_autocast(pred):
        target, valid = _clean_target(target, mask)
        points = valid * (sparse_mask != 0).to(valid.dtype)
        err2 = (pred - target) ** 2
        n_points = points.sum(dim=(1, 2, 3))
        mse_points = (err2 * points).sum(dim=(1, 2, 3)) / n_points.clamp_min(1.0)
        mse_all = ((err2 * valid).sum(dim=(1, 2, 3)) / valid.sum(dim=(1, 2, 3)).clamp_min(1.0)).detach()
        ratio = torch.sqrt(mse_points + eps) / torch.sqrt(mse_all + eps)
        has_points = (n_points > 0).to(ratio.dtype)
        return _masked_mean(ratio, has_points)


# --------------------------------------------------------------------------------------------
# depth-confidence loss (Eq. 4; Hu et al. 2019, Eldesokey et al. 2020)


def sobel_gradients(depth: Tensor) -> tuple[Tensor, Tensor]:
    """Unnormalised Sobel x / y derivatives on the unpadded grid, (B, 1, H-2, W-2) each.

    Unnormalised (8 x the central difference) as in Hu et al.'s code: the scale matters for the
    normals n = (-dx, -dy, 1), and matching the reference keeps their loss balance.
    """
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=depth.dtype, device=depth.device)
    kernels = torch.stack([kx, kx.t()])[:, None]
    grads = F.conv2d(depth, kernels)
    return grads[:, :1], grads[:, 1:]


def log_error_map(pred: Tensor, target: Tensor) -> Tensor:
    """Per-pixel ln(|pred - target| + 0.5); can be negative (down to ln 0.5)."""
    return torch.log(torch.abs(pred - target) + LOG_OFFSET)


def log_loss(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """L_log = mean over valid pixels of ln(|d - g| + 0.5) (Hu et al. 2019).

    Args:
        pred: predicted depth (B, 1, H, W).
        target: ground-truth depth (B, 1, H, W).
        mask: validity; None = finite and > 0.

    Returns:
        Scalar tensor (0 with a graph when nothing is valid).
    """
    _check_same(pred, target=target, mask=mask)
    pred = _as_float(pred)
    with _no_autocast(pred):
        target, valid = _clean_target(target, mask)
        return _masked_mean(log_error_map(pred, target), valid)


def _sobel_pairs(pred: Tensor, target: Tensor, mask: Tensor | None) -> tuple[Tensor, ...] | None:
    """Sobel x/y of pred and target plus the pixels whose 3x3 support is valid.

    None when the map is smaller than the kernel. Shared by L_grad and L_norm.
    """
    _check_same(pred, target=target, mask=mask)
    if min(pred.shape[-2:]) < 3:
        return None
    with _no_autocast(pred):
        target, valid = _clean_target(target, mask)
        return (*sobel_gradients(pred), *sobel_gradients(target), _erode(valid, 3))


def gradient_loss(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """L_grad = mean ln(|dx_d - dx_g| + 0.5) + mean ln(|dy_d - dy_g| + 0.5) over Sobel gradients.

    A gradient pixel counts when its 3x3 support lies inside the image on valid ground truth.

    Args:
        pred: predicted depth (B, 1, H, W).
        target: ground-truth depth (B, 1, H, W).
        mask: validity; None = finite and > 0.

    Returns:
        Scalar tensor (0 with a graph when nothing is valid or H, W < 3).
    """
    pred = _as_float(pred)
    grads = _sobel_pairs(pred, target, mask)
    if grads is None:
        return pred.sum() * 0.0
    with _no_autocast(pred):
        pdx, pdy, tdx, tdy, inner = grads
        return _masked_mean(log_error_map(pdx, tdx), inner) + _masked_mean(log_error_map(pdy, tdy), inner)


def normal_loss(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """L_norm = mean |1 - cos(n_d, n_g)| with n = (-dx, -dy, 1) from Sobel gradients.

    Valid where the 3x3 support is valid, as for ``gradient_loss``. The normals have norm >= 1,
    so the cosine needs no epsilon.

    Args:
        pred: predicted depth (B, 1, H, W).
        target: ground-truth depth (B, 1, H, W).
        mask: validity; None = finite and > 0.

    Returns:
        Scalar tensor (0 with a graph when nothing is valid or H, W < 3).
    """
    pred = _as_float(pred)
    grads = _sobel_pairs(pred, target, mask)
    if grads is None:
        return pred.sum() * 0.0
    with _no_autocast(pred):
        pdx, pdy, tdx, tdy, inner = grads
        dot = pdx * tdx + pdy * tdy + 1.0
        norms = torch.sqrt(pdx**2 + pdy**2 + 1.0) * torch.sqrt(tdx**2 + tdy**2 + 1.0)
        return _masked_mean(torch.abs(1.0 - dot / norms), inner)


def confidence_term(
    confidence: Tensor, log_error: Tensor, epoch: int, mask: Tensor | None = None
) -> Tensor:
    """Decayed confidence term (1/p) L_C with L_C = mean(C - l * C) over valid pixels.

    ``l`` is the per-pixel log error ln(|d - g| + 0.5) (Eldesokey et al.'s ConfLossDecay uses
    the per-pixel error too): the reward for confidence is largest where the error is small,
    which is what makes C a confidence. A scalar ``log_error`` (the batch mean) is accepted and
    broadcast, but then C gets the same reward everywhere. The gradient flows into both C and
    the error, as in the reference. Note 1 - l > 0 only while |d - g| < e - 0.5 ~ 2.22 m.

    Args:
        confidence: predicted confidence C (B, 1, H, W), usually in [0, 1].
        log_error: per-pixel log error map (B, 1, H, W) or a scalar.
        epoch: training epoch p, starting at 1; the term decays as 1/p.
        mask: validity (B, 1, H, W); None = all pixels.

    Returns:
        Scalar tensor (1/p) L_C; it enters L_DC with a minus sign (weight psi).
    """
    _check_epoch(epoch)
    _check_same(confidence, "confidence", mask=mask)
    if log_error.dim() != 0 and log_error.shape != confidence.shape:
        raise ValueError(
            f"log_error has shape {tuple(log_error.shape)} but confidence has shape {tuple(confidence.shape)}"
        )
    confidence = _as_float(confidence)
    valid = torch.ones_like(confidence) if mask is None else (mask != 0).to(confidence.dtype)
    certainty = confidence - log_error * confidence
    return _masked_mean(certainty, valid) / float(epoch)


def depth_confidence_loss(
    pred: Tensor,
    target: Tensor,
    mask: Tensor | None,
    confidence: Tensor | None,
    epoch: int,
    mu: float = 1.0,
    theta: float = 1.0,
    psi: float = 1.0,
    log_only: bool = False,
) -> dict[str, Tensor]:
    """L_DC of Eq. 4: L_log + mu L_grad + theta L_norm - psi (1/p) L_C.

    Args:
        pred: predicted depth (B, 1, H, W).
        target: ground-truth depth (B, 1, H, W).
        mask: validity; None = finite and > 0.
        confidence: predicted confidence (B, 1, H, W), or None (no confidence predictor: the
            confidence term is 0).
        epoch: training epoch p >= 1.
        mu: weight of L_grad.
        theta: weight of L_norm.
        psi: weight of the confidence term.
        log_only: KITTI setting, L_DC reduced to L_log (the other parts are reported as 0).

    Returns:
        Dict with ``l_log``, ``l_grad``, ``l_norm``, ``l_conf`` (already divided by p) and
        ``loss`` = l_log + mu l_grad + theta l_norm - psi l_conf.
    """
    _check_epoch(epoch)
    _check_same(pred, target=target, mask=mask, confidence=confidence)
    pred = _as_float(pred)
    zero = pred.sum() * 0.0
    with _no_autocast(pred):
        clean, valid = _clean_target(target, mask)
        log_map = log_error_map(pred, clean)
        parts = {"l_log": _masked_mean(log_map, valid), "l_grad": zero, "l_norm": zero, "l_conf": zero}
        if not log_only:
            parts["l_grad"] = gradient_loss(pred, clean, valid)
            parts["l_norm"] = normal_loss(pred, clean, valid)
            if confidence is not None:
                parts["l_conf"] = confidence_term(confidence, log_map, epoch, valid)
    parts["loss"] = parts["l_log"] + mu * parts["l_grad"] + theta * parts["l_norm"] - psi * parts["l_conf"]
    return parts


# --------------------------------------------------------------------------------------------
# multi-scale total (Eq. 5)


def downsample_target(
    target: Tensor, mask: Tensor | None, sparse_mask: Tensor | None, size: tuple[int, int]
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Validity-aware downsampling of the ground truth to an output's exact (h, w).

    Each coarse pixel is the average of the *valid* fine pixels in its block (adaptive average
    pooling of depth*mask divided by that of the mask, so any size works, not only exact halves)
    and is valid when the block holds at least one valid pixel: a majority rule would erase
    sparse LiDAR ground truth (KITTI) at coarse scales. The point mask is max-pooled (a block
    with a point is a point) and restricted to valid coarse pixels.

    Args:
        target: (B, 1, H, W) ground truth.
        mask: validity (B, 1, H, W); None = finite and > 0.
        sparse_mask: input point positions (B, 1, H, W) or None.
        size: (h, w) with h <= H and w <= W.

    Returns:
        (target, mask, sparse_mask) at (h, w); masks are float 0/1, invalid target pixels are 0.
    """
    _check_same(target, "target", mask=mask, sparse_mask=sparse_mask)
    height, width = int(size[0]), int(size[1])
    if not (0 < height <= target.shape[-2] and 0 < width <= target.shape[-1]):
        raise ValueError(
            f"cannot downsample ground truth of size {tuple(target.shape[-2:])} to {(height, width)}"
        )
    clean, valid = _clean_target(target, mask)
    points = None if sparse_mask is None else (sparse_mask != 0).to(valid.dtype) * valid
    if (height, width) == tuple(target.shape[-2:]):
        return clean, valid, points
    share = F.adaptive_avg_pool2d(valid, (height, width))
    depth = F.adaptive_avg_pool2d(clean * valid, (height, width)) / share.clamp_min(1e-12)
    coarse_valid = (share > 0).to(valid.dtype)
    coarse_points = None
    if points is not None:
        coarse_points = F.adaptive_max_pool2d(points, (height, width)) * coarse_valid
    return depth * coarse_valid, coarse_valid, coarse_points


def scale_loss(
    pred: Tensor,
    confidence: Tensor | None,
    target: Tensor,
    mask: Tensor | None,
    sparse_mask: Tensor | None,
    epoch: int,
    cfg: LossConfig,
) -> dict[str, Tensor]:
    """One scale of Eq. 5: beta L_DC + phi L_S + lambda L_H (all maps at pred's resolution).

    With ``cfg.log_and_sparse_only`` (KITTI) it is beta L_log + phi L_S.

    Returns:
        Dict with the raw parts (``PART_NAMES``; ``l_conf`` already divided by p) and ``loss``.
    """
    dc = depth_confidence_loss(
        pred, target, mask, confidence, epoch, cfg.mu, cfg.theta, cfg.psi, log_only=cfg.log_and_sparse_only
    )
    parts = {name: dc[name] for name in ("l_log", "l_grad", "l_norm", "l_conf")}
    parts["l_sparse"] = sparse_loss(pred, target, sparse_mask, mask)
    if cfg.log_and_sparse_only:
        parts["l_hessian"] = dc["l_grad"]  # the zero with a graph
    else:
        parts["l_hessian"] = normalized_hessian_loss(pred, target, mask, cfg.hessian_sigma)
    depth_term = dc["loss"]
    if cfg.depth_term == "silog":  # the U-Net's objective in place of L_DC's log and normal parts
        depth_term = silog_loss(pred, target, mask, cfg.silog_lambda) + cfg.unet_grad_weight * parts["l_grad"]
        depth_term = depth_term - cfg.psi * parts["l_conf"]
    parts["loss"] = cfg.beta * depth_term + cfg.phi * parts["l_sparse"] + cfg.lam * parts["l_hessian"]
    return parts


def multiscale_loss(
    outputs_depth: Sequence[Tensor],
    outputs_conf: Sequence[Tensor] | None,
    target: Tensor,
    mask: Tensor | None,
    sparse_mask: Tensor | None,
    epoch: int,
    cfg: LossConfig,
) -> dict[str, Tensor]:
    """Eq. 5: sum over scales of gamma_i (beta L_DC + phi L_S + lambda L_H).

    The ground truth reaches each coarser output through ``downsample_target`` at that output's
    exact size (the network may round odd sizes either way).

    Args:
        outputs_depth: depth maps fine -> coarse; [0] has the target's shape (B, 1, H, W).
        outputs_conf: confidence maps of the same shapes, or None (no confidence predictor).
        target: ground-truth depth (B, 1, H, W); NaN / inf are invalid.
        mask: validity (B, 1, H, W); None = finite and > 0.
        sparse_mask: input point positions (B, 1, H, W), or None (no points).
        epoch: training epoch p >= 1 (confidence-term decay 1/p).
        cfg: loss weights; ``len(cfg.scale_weights)`` must equal the number of outputs.

    Returns:
        Dict with ``loss`` (differentiable) and detached parts ``l_log``, ``l_grad``, ``l_norm``,
        ``l_conf``, ``l_sparse``, ``l_hessian``: each the gamma-weighted sum over scales of the
        raw term, so that loss = beta (l_log + mu l_grad + theta l_norm - psi l_conf)
        + phi l_sparse + lam l_hessian.
    """
    _check_epoch(epoch)
    if len(outputs_depth) == 0:
        raise ValueError("outputs_depth is empty")
    if len(outputs_depth) != len(cfg.scale_weights):
        raise ValueError(
            f"got {len(outputs_depth)} depth outputs but {len(cfg.scale_weights)} scale weights {cfg.scale_weights}"
        )
    if outputs_conf is not None and len(outputs_conf) != len(outputs_depth):
        raise ValueError(f"got {len(outputs_conf)} confidence outputs for {len(outputs_depth)} depth outputs")
    _check_same(outputs_depth[0], "outputs_depth[0]", target=target)
    total = _as_float(outputs_depth[0]).sum() * 0.0
    sums = {name: total.detach() for name in PART_NAMES}
    for index, (pred, gamma) in enumerate(zip(outputs_depth, cfg.scale_weights)):
        _check_map(f"outputs_depth[{index}]", pred)
        if pred.shape[0] != target.shape[0]:
            raise ValueError(
                f"outputs_depth[{index}] has shape {tuple(pred.shape)} but target has shape {tuple(target.shape)}"
            )
        conf = None if outputs_conf is None else outputs_conf[index]
        if gamma == 0:
            continue  # saves the work; a zero weight contributes nothing
        coarse = downsample_target(target, mask, sparse_mask, tuple(pred.shape[-2:]))
        parts = scale_loss(pred, conf, *coarse, epoch, cfg)
        total = total + gamma * parts["loss"]
        for name in PART_NAMES:
            sums[name] = sums[name] + gamma * parts[name].detach()
    return {"loss": total, **sums}


# --------------------------------------------------------------------------------------------
# auxiliary Saliency-Net target and the plain U-Net baseline's loss


def saliency_target(depth1: Tensor, target: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Where the first pass's depth is accurate: exp(-e / median(e)) with e = |log d1 - log gt|.

    The scale is each image's median error over its valid pixels, so the target keeps its spread
    as the network improves (the median pixel always gets exp(-1)). Returns (target in (0, 1],
    float validity mask); no gradient flows through either.
    """
    _check_same(depth1, "depth1", target=target, mask=mask)
    with torch.no_grad(), _no_autocast(depth1):
        gt, valid = _clean_target(target, mask)
        err = (torch.log(_as_float(depth1).clamp_min(1e-6)) - torch.log(gt.clamp_min(1e-6))).abs() * valid
        flat = torch.where(valid.flatten(1) > 0, err.flatten(1), torch.full_like(err.flatten(1), float("nan")))
        scale = torch.nanmedian(flat, dim=1).values.nan_to_num(1.0).clamp_min(1e-3).view(-1, 1, 1, 1)
        return torch.exp(-err / scale) * valid, valid


def saliency_loss(saliency: Tensor, depth1: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Binary cross-entropy of the saliency map (B, 1, H, W) in [0, 1] against `saliency_target`.

    Averaged over valid ground-truth pixels. Gives the Saliency-Net a dense, per-pixel signal that
    a constant map cannot satisfy (the end-to-end path alone let it collapse).
    """
    goal, valid = saliency_target(depth1, target, mask)
    with _no_autocast(saliency):
        s = _as_float(saliency).clamp(1e-6, 1 - 1e-6)
        bce = -(goal * torch.log(s) + (1 - goal) * torch.log1p(-s))
        return _masked_mean(bce, valid)


def silog_loss(pred: Tensor, target: Tensor, mask: Tensor | None = None, lam: float = 0.85) -> Tensor:
    """Scale-invariant log loss (Eigen et al.): sqrt(mean(g^2) - lam mean(g)^2), g = log pred - log gt.

    Per image, averaged over the batch (images without valid pixels count 0).
    """
    _check_same(pred, target=target, mask=mask)
    with _no_autocast(pred):
        gt, valid = _clean_target(target, mask)
        g = (torch.log(_as_float(pred).clamp_min(1e-6)) - torch.log(gt.clamp_min(1e-6))) * valid
        n = valid.sum(dim=(1, 2, 3)).clamp_min(1.0)
        mean_sq = (g**2).sum(dim=(1, 2, 3)) / n
        mean = g.sum(dim=(1, 2, 3)) / n
        return _safe_sqrt(mean_sq - lam * mean**2).mean() * (valid.sum() > 0)


def unet_loss(
    outputs_depth: Sequence[Tensor], target: Tensor, mask: Tensor | None, cfg: LossConfig
) -> dict[str, Tensor]:
    """Compute the U-Net baseline's objective.

    SILog at full resolution plus `cfg.unet_grad_weight` times the gamma-weighted multi-scale Sobel
    gradient loss (`gradient_loss`) on every output.
    """
    if len(outputs_depth) != len(cfg.scale_weights):
        raise ValueError(f"got {len(outputs_depth)} depth outputs but {len(cfg.scale_weights)} scale weights")
    silog = silog_loss(outputs_depth[0], target, mask, cfg.silog_lambda)
    grad = silog * 0.0
    for pred, gamma in zip(outputs_depth, cfg.scale_weights):
        if gamma == 0:
            continue
        gt, valid, _ = downsample_target(target, mask, None, tuple(pred.shape[-2:]))
        grad = grad + gamma * gradient_loss(pred, gt, valid)
    return {"loss": silog + cfg.unet_grad_weight * grad, "l_silog": silog.detach(), "l_grad": grad.detach()}
