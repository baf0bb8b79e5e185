"""Tests of fusanet_core.training.losses: exact values on tiny maps, invariances, masks, gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fusanet_core.config import LossConfig
from fusanet_core.training.losses import (
    confidence_term,
    depth_confidence_loss,
    downsample_target,
    gradient_loss,
    hessian_kernels,
    log_loss,
    multiscale_loss,
    normal_loss,
    normalized_hessian,
    normalized_hessian_loss,
    PART_NAMES,
    scale_loss,
    sparse_loss,
)

LN = math.log
# float(loss) on a tensor that carries a graph is intended here: the values are only compared.
pytestmark = pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")


def _grid(height: int, width: int, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    y, x = torch.meshgrid(torch.arange(height, dtype=dtype), torch.arange(width, dtype=dtype), indexing="ij")
    return x[None, None], y[None, None]


def _curved(seed: int, height: int = 40, width: int = 48) -> torch.Tensor:
    """Smooth curved depth: random sinusoids plus random Gaussian bumps and dents, ~2..4 m."""
    gen = torch.Generator().manual_seed(seed)
    x, y = _grid(height, width)
    depth = torch.full_like(x, 3.0)
    for _ in range(4):
        freq, angle, phase = torch.rand(3, generator=gen, dtype=torch.float64).tolist()
        direction = math.cos(2 * math.pi * angle) * x + math.sin(2 * math.pi * angle) * y
        depth = depth + 0.3 * torch.sin((0.05 + 0.25 * freq) * direction + 6 * phase)
    for _ in range(3):
        cx, cy, width_k, amp = torch.rand(4, generator=gen, dtype=torch.float64).tolist()
        radius2 = (x - cx * width) ** 2 + (y - cy * height) ** 2
        depth = depth + (2 * amp - 1) * torch.exp(-radius2 / (2 * (3 + 6 * width_k) ** 2))
    return depth


# ------------------------------------------------------------------------------------------
# normalized Hessian


def test_hessian_kernels_exact_on_quadratics():
    kernels = hessian_kernels(1.0)[:, 0]
    assert kernels.shape == (3, 7, 7)
    x, y = _grid(7, 7)
    x, y = x[0, 0] - 3, y[0, 0] - 3
    # Responses (cross-correlation at the centre) to 1, x, y, x^2/2, xy, y^2/2.
    monomials = [torch.ones_like(x), x, y, x**2 / 2, x * y, y**2 / 2]
    expected = [[0, 0, 0, 1, 0, 0], [0, 0, 0, 0, 1, 0], [0, 0, 0, 0, 0, 1]]
    for kernel, row in zip(kernels, expected):
        got = [float((kernel * m).sum()) for m in monomials]
        assert got == pytest.approx(row, abs=1e-12)
    # Still a Gaussian second derivative in shape: negative centre of Kxx, odd Kxy.
    assert kernels[0, 3, 3] < 0 and torch.allclose(kernels[1], -kernels[1].flip(1))


@pytest.mark.parametrize("seed", range(4))
def test_hessian_zero_for_affine_depth_change(seed):
    gen = torch.Generator().manual_seed(100 + seed)
    target = _curved(seed)
    x, y = _grid(*target.shape[-2:])
    a = 0.2 + 3 * torch.rand(1, generator=gen, dtype=torch.float64)
    b, c = (torch.rand(2, generator=gen, dtype=torch.float64) - 0.5) * 0.2
    d = (torch.rand(1, generator=gen, dtype=torch.float64) - 0.5) * 4
    pred = a * target + b * x + c * y + d
    assert float(normalized_hessian_loss(pred, target)) <= 1e-5
    # float32 inputs: rounding of the ramp limits the invariance, still tiny.
    assert float(normalized_hessian_loss(pred.float(), target.float())) <= 1e-4


@pytest.mark.parametrize("seed", range(3))
def test_hessian_detects_non_affine_distortion(seed):
    target = _curved(seed)
    x, y = _grid(*target.shape[-2:])
    bump = 0.5 * torch.exp(-((x - 20) ** 2 + (y - 20) ** 2) / 50.0)
    assert float(normalized_hessian_loss(target**2, target)) > 0.05
    assert float(normalized_hessian_loss(target + bump, target)) > 0.05
    # Flipping the relief (a < 0) is not in the equivalence class: distance 2 everywhere.
    assert float(normalized_hessian_loss(-target, target)) == pytest.approx(2.0, abs=1e-6)


def test_hessian_identical_inputs_zero_with_finite_gradient():
    target = _curved(0).float()
    pred = target.clone().requires_grad_(True)
    loss = normalized_hessian_loss(pred, target)
    loss.backward()
    assert float(loss.detach()) <= 1e-6
    assert torch.isfinite(pred.grad).all()


def test_hessian_flat_regions_and_holes_finite_gradients():
    flat = torch.full((2, 1, 24, 24), 2.0, requires_grad=True)
    target = _curved(1, 24, 24).float().expand(2, 1, 24, 24).clone()
    target[0] = 5.0  # flat target too
    mask = torch.ones_like(target, dtype=torch.bool)
    mask[:, :, 5:9, 10:14] = False
    mask[1, :, 15:, :3] = False
    loss = normalized_hessian_loss(flat, target, mask)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(flat.grad).all()


def test_hessian_ignores_pred_inside_and_near_holes():
    target = _curved(2).float()
    pred = (1.3 * target + 0.2 * torch.sin(_grid(40, 48, torch.float32)[0] / 3)).clone()
    mask = torch.ones_like(target, dtype=torch.bool)
    mask[:, :, 15:20, 20:26] = False
    base = normalized_hessian_loss(pred, target, mask)
    # Every output whose 7x7 support touches the hole (its rim of half-width 3) is excluded, so
    # anything inside the hole is invisible: pred values there, or NaN in the target.
    changed = pred.clone()
    changed[:, :, 15:20, 20:26] = 7.0
    bad_target = target.clone()
    bad_target[:, :, 15:20, 20:26] = float("nan")
    assert float(normalized_hessian_loss(changed, target, mask)) == pytest.approx(float(base), abs=1e-7)
    assert float(normalized_hessian_loss(pred, bad_target, mask)) == pytest.approx(float(base), abs=1e-7)
    # A rim pixel is seen by valid outputs one half-width further out: the loss must change.
    changed[:, :, 14, 22] = 7.0
    assert abs(float(normalized_hessian_loss(changed, target, mask)) - float(base)) > 1e-5
    # Reference: mean over exactly the output pixels whose 7x7 window avoids the hole.
    diff = (normalized_hessian(pred, 1.0) - normalized_hessian(target, 1.0)).pow(2).sum(1)[0]
    keep = np.array([[mask[0, 0, i:i + 7, j:j + 7].all().item() for j in range(42)] for i in range(34)])
    assert keep.sum() == 34 * 42 - 11 * 12
    assert float(base) == pytest.approx(math.sqrt(float(diff[torch.from_numpy(keep)].mean())), rel=1e-6)


def test_hessian_nothing_valid_is_zero_with_graph():
    pred = torch.rand(1, 1, 20, 20, requires_grad=True)
    loss = normalized_hessian_loss(pred, torch.rand(1, 1, 20, 20), torch.zeros(1, 1, 20, 20))
    small = torch.rand(1, 1, 6, 8, requires_grad=True)  # smaller than the 7x7 support
    small_loss = normalized_hessian_loss(small, torch.rand(1, 1, 6, 8) + 1)
    (loss + small_loss).backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-6) and small_loss.item() == 0.0
    assert torch.isfinite(pred.grad).all() and torch.isfinite(small.grad).all()


# ------------------------------------------------------------------------------------------
# sparse loss


def test_sparse_loss_by_hand():
    target = torch.ones(3, 1, 4, 4)
    pred = target.clone()
    points = torch.zeros_like(target)
    pred[0, 0, 0, 0], pred[0, 0, 2, 3] = 2.0, 4.0  # point errors 1 and 3, nothing else wrong
    points[0, 0, 0, 0] = points[0, 0, 2, 3] = 1
    pred[1, 0, 1, 1] = 3.0  # image 1 has no points: ignored
    pred[2, 0, 0, 0], pred[2, 0, 3, 3] = 3.0, 5.0  # point error 2, non-point error 4
    points[2, 0, 0, 0] = 1
    ratio0 = math.sqrt((1 + 9) / 2) / math.sqrt(10 / 16)
    ratio2 = math.sqrt(4 / 1) / math.sqrt(20 / 16)
    got = sparse_loss(pred, target, points, torch.ones_like(target, dtype=torch.bool))
    assert float(got) == pytest.approx((ratio0 + ratio2) / 2, rel=1e-6)


def test_sparse_loss_no_points_and_points_on_invalid():
    pred = torch.rand(2, 1, 4, 4, requires_grad=True)
    target = torch.rand(2, 1, 4, 4) + 1
    zero = sparse_loss(pred, target, torch.zeros_like(target), None)
    none = sparse_loss(pred, target, None, None)
    points = torch.zeros_like(target)
    points[:, :, 1, 1] = 1
    mask = torch.ones_like(target)
    mask[:, :, 1, 1] = 0  # the only point is on invalid gt: ignored
    off = sparse_loss(pred, target, points, mask)
    (zero + none + off).backward()
    assert float(zero) == float(none) == float(off) == 0.0
    assert torch.isfinite(pred.grad).all()


# ------------------------------------------------------------------------------------------
# depth-confidence loss pieces


def test_log_loss_by_hand_and_mask():
    target = torch.tensor([[[[2.0, 2.0], [2.0, float("nan")]]]])
    pred = torch.tensor([[[[2.0, 2.5], [4.5, 9.0]]]])  # errors 0, 0.5, 2.5, (invalid)
    expected = (LN(0.5) + LN(1.0) + LN(3.0)) / 3
    assert float(log_loss(pred, target)) == pytest.approx(expected, rel=1e-6)
    mask = torch.tensor([[[[True, False], [True, True]]]])
    assert float(log_loss(pred, target, mask)) == pytest.approx((LN(0.5) + LN(3.0)) / 2, rel=1e-6)


def test_gradient_and_normal_loss_by_hand_3x3():
    x, y = _grid(3, 3, torch.float32)
    pred, target = x.clone(), 2 * y + 1  # Sobel: pred dx = 8, dy = 0; target dx = 0, dy = 16
    assert float(gradient_loss(pred + 1, target)) == pytest.approx(LN(8.5) + LN(16.5), rel=1e-6)
    cos = 1.0 / (math.sqrt(65.0) * math.sqrt(257.0))  # n_d = (-8, 0, 1), n_g = (0, -16, 1)
    assert float(normal_loss(pred + 1, target)) == pytest.approx(1.0 - cos, rel=1e-6)


def _sobel_reference(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    kx = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64)
    h, w = img.shape
    dx, dy = np.zeros((h - 2, w - 2)), np.zeros((h - 2, w - 2))
    for i in range(h - 2):
        for j in range(w - 2):
            dx[i, j] = (img[i:i + 3, j:j + 3] * kx).sum()
            dy[i, j] = (img[i:i + 3, j:j + 3] * kx.T).sum()
    return dx, dy


def test_gradient_and_normal_loss_against_loop_reference_with_hole():
    rng = np.random.default_rng(3)
    pred, target = rng.uniform(1, 3, (5, 6)), rng.uniform(1, 3, (5, 6))
    valid = np.ones((5, 6), bool)
    valid[0, 0] = valid[3, 4] = False
    pdx, pdy = _sobel_reference(pred)
    tdx, tdy = _sobel_reference(target)
    inner = np.array([[valid[i:i + 3, j:j + 3].all() for j in range(4)] for i in range(3)])
    l_grad = np.log(abs(pdx - tdx) + 0.5)[inner].mean() + np.log(abs(pdy - tdy) + 0.5)[inner].mean()
    nd = np.stack([-pdx, -pdy, np.ones_like(pdx)])
    ng = np.stack([-tdx, -tdy, np.ones_like(tdx)])
    cos = (nd * ng).sum(0) / np.linalg.norm(nd, axis=0) / np.linalg.norm(ng, axis=0)
    l_norm = np.abs(1 - cos)[inner].mean()
    args = (torch.tensor(pred)[None, None], torch.tensor(target)[None, None], torch.tensor(valid)[None, None])
    assert float(gradient_loss(*args)) == pytest.approx(l_grad, rel=1e-9)
    assert float(normal_loss(*args)) == pytest.approx(l_norm, rel=1e-9)


def test_confidence_term_by_hand_sign_and_decay():
    conf = torch.tensor([[[[1.0, 0.0], [0.5, 1.0]]]])
    log_map = torch.tensor([[[[LN(0.5), LN(1.5)], [0.0, LN(2.0)]]]])
    expected = ((1 - LN(0.5)) * 1.0 + 0.0 + 0.5 + (1 - LN(2.0)) * 1.0) / 4
    assert float(confidence_term(conf, log_map, 1)) == pytest.approx(expected, rel=1e-6)
    assert float(confidence_term(conf, log_map, 2)) == pytest.approx(expected / 2, rel=1e-6)
    with pytest.raises(ValueError, match="epoch"):
        confidence_term(conf, log_map, 0)


def test_depth_confidence_loss_parts_total_sign_and_decay():
    gen = torch.Generator().manual_seed(0)
    target = torch.rand(1, 1, 8, 8, generator=gen) + 1
    pred = target.clone()
    pred[:, :, :4] += 1.5  # large error in the top half, none in the bottom half
    good = torch.zeros_like(target)
    good[:, :, 4:] = 1.0  # confident where the error is small
    bad = 1.0 - good
    kw = {"mu": 0.7, "theta": 1.3, "psi": 0.9}
    out = depth_confidence_loss(pred, target, None, good, 1, **kw)
    assert float(out["l_log"]) == pytest.approx(float(log_loss(pred, target)))
    assert float(out["l_grad"]) == pytest.approx(float(gradient_loss(pred, target)))
    assert float(out["l_norm"]) == pytest.approx(float(normal_loss(pred, target)))
    assert float(out["l_conf"]) == pytest.approx((1 - LN(0.5)) / 2, rel=1e-6)  # half the pixels, l = ln 0.5
    total = out["l_log"] + 0.7 * out["l_grad"] + 1.3 * out["l_norm"] - 0.9 * out["l_conf"]
    assert float(out["loss"]) == pytest.approx(float(total))
    assert float(out["loss"]) < float(depth_confidence_loss(pred, target, None, bad, 1, **kw)["loss"])
    epoch2 = depth_confidence_loss(pred, target, None, good, 2, **kw)
    assert float(epoch2["l_conf"]) == pytest.approx(float(out["l_conf"]) / 2, rel=1e-7)
    no_conf = depth_confidence_loss(pred, target, None, None, 1, **kw)
    assert float(no_conf["l_conf"]) == 0.0
    assert float(out["loss"]) == pytest.approx(float(no_conf["loss"]) - 0.9 * float(out["l_conf"]))
    log_only = depth_confidence_loss(pred, target, None, good, 1, **kw, log_only=True)
    assert float(log_only["loss"]) == pytest.approx(float(out["l_log"]))


def test_bad_inputs_and_nan_policy():
    pred = torch.rand(1, 1, 8, 8) + 1
    with pytest.raises(ValueError, match=r"\(1, 1, 8, 9\).*\(1, 1, 8, 8\)"):
        log_loss(pred, torch.rand(1, 1, 8, 9))
    with pytest.raises(ValueError, match="mask"):
        normalized_hessian_loss(pred, pred, torch.ones(1, 1, 4, 4))
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        sparse_loss(pred[0], pred[0], None)
    # NaN / inf in the target are invalid: same as masking them out.
    target = torch.rand(1, 1, 8, 8) + 1
    holed = target.clone()
    holed[0, 0, 2, 3], holed[0, 0, 5, 5] = float("nan"), float("inf")
    mask = torch.isfinite(holed)
    for fn in (log_loss, gradient_loss, normal_loss):
        assert float(fn(pred, holed)) == pytest.approx(float(fn(pred, target, mask)))
    # Any non-finite prediction gives a NaN loss (the trainer's NaN guard skips the step).
    bad = pred.clone()
    bad[0, 0, 0, 0] = float("nan")
    for fn in (log_loss, gradient_loss, normal_loss, normalized_hessian_loss):
        assert math.isnan(float(fn(bad, target)))


# ------------------------------------------------------------------------------------------
# multi-scale total


def test_downsample_target_by_hand():
    target = torch.tensor([[[[1.0, 3.0, 5.0, 0.0], [2.0, 0.0, 0.0, 0.0], [4.0, 4.0, 6.0, 8.0], [4.0, 4.0, 7.0, 9.0]]]])
    points = torch.zeros_like(target)
    points[0, 0, 2, 3] = 1
    depth, valid, coarse_points = downsample_target(target, None, points, (2, 2))
    assert depth.tolist() == [[[[2.0, 5.0], [4.0, 7.5]]]]
    assert valid.tolist() == [[[[1.0, 1.0], [1.0, 1.0]]]]
    assert coarse_points.tolist() == [[[[0.0, 0.0], [0.0, 1.0]]]]
    target[0, 0, 0, 2] = float("nan")  # the top-right block has no valid pixel left
    depth, valid, _ = downsample_target(target, None, None, (2, 2))
    assert valid.tolist() == [[[[1.0, 0.0], [1.0, 1.0]]]] and depth[0, 0, 0, 1] == 0
    odd, odd_valid, _ = downsample_target(torch.rand(1, 1, 45, 61) + 1, None, None, (23, 31))
    assert odd.shape == (1, 1, 23, 31) and bool(odd_valid.all())
    with pytest.raises(ValueError, match="downsample"):
        downsample_target(target, None, None, (5, 2))


def _outputs(sizes, seed=0, with_conf=True):
    gen = torch.Generator().manual_seed(seed)
    depth = [(torch.rand(2, 1, h, w, generator=gen) * 3 + 1).requires_grad_(True) for h, w in sizes]
    conf = [torch.rand(2, 1, h, w, generator=gen).requires_grad_(True) for h, w in sizes] if with_conf else None
    height, width = sizes[0]
    target = torch.rand(2, 1, height, width, generator=gen) * 3 + 1
    mask = torch.rand(2, 1, height, width, generator=gen) > 0.1
    points = torch.rand(2, 1, height, width, generator=gen) > 0.97
    return depth, conf, target, mask, points


EVEN = [(48, 64), (24, 32), (12, 16), (6, 8), (3, 4)]
ODD = [(45, 61), (23, 31), (12, 16), (6, 8), (3, 4)]


@pytest.mark.parametrize("sizes", [EVEN, ODD])
def test_multiscale_finite_backward_and_parts(sizes):
    depth, conf, target, mask, points = _outputs(sizes)
    cfg = LossConfig(beta=1.1, phi=5.0, lam=0.5, mu=0.8, theta=1.2, psi=0.7)
    out = multiscale_loss(depth, conf, target, mask, points, 3, cfg)
    assert set(out) == {"loss", *PART_NAMES}
    assert all(torch.isfinite(v) for v in out.values())
    out["loss"].backward()
    for tensor in depth + conf:
        assert tensor.grad is not None and torch.isfinite(tensor.grad).all() and tensor.grad.abs().sum() > 0
    l_dc = out["l_log"] + cfg.mu * out["l_grad"] + cfg.theta * out["l_norm"] - cfg.psi * out["l_conf"]
    recombined = cfg.beta * l_dc
    recombined = recombined + cfg.phi * out["l_sparse"] + cfg.lam * out["l_hessian"]
    assert float(out["loss"]) == pytest.approx(float(recombined), rel=1e-5)
    assert float(out["l_hessian"]) > 0 and float(out["l_sparse"]) > 0


@pytest.mark.parametrize("sizes", [EVEN, ODD])
def test_multiscale_scale_weights_respected(sizes):
    depth, conf, target, mask, points = _outputs(sizes, seed=1)
    weights = (1.0, 0.75, 0.5, 0.25, 0.125)
    total = multiscale_loss(depth, conf, target, mask, points, 2, LossConfig(scale_weights=weights))
    singles = []
    for index in range(5):
        onehot = tuple(1.0 if i == index else 0.0 for i in range(5))
        got = multiscale_loss(depth, conf, target, mask, points, 2, LossConfig(scale_weights=onehot))
        coarse = downsample_target(target, mask, points, tuple(depth[index].shape[-2:]))
        single = scale_loss(depth[index], conf[index], *coarse, 2, LossConfig())
        assert float(got["loss"]) == pytest.approx(float(single["loss"]), rel=1e-6)
        singles.append(float(single["loss"]))
    assert float(total["loss"]) == pytest.approx(sum(w * s for w, s in zip(weights, singles)), rel=1e-5)


def test_multiscale_log_and_sparse_only_and_no_confidence():
    depth, _, target, mask, points = _outputs(EVEN, seed=2, with_conf=False)
    cfg = LossConfig(log_and_sparse_only=True, phi=20.0, beta=1.0)
    out = multiscale_loss(depth, None, target, mask, points, 1, cfg)
    expected = 0.0
    for pred, gamma in zip(depth, cfg.scale_weights):
        coarse_t, coarse_m, coarse_p = downsample_target(target, mask, points, tuple(pred.shape[-2:]))
        l_sparse = sparse_loss(pred, coarse_t, coarse_p, coarse_m)
        expected += gamma * (float(log_loss(pred, coarse_t, coarse_m)) + 20.0 * float(l_sparse))
    assert float(out["loss"]) == pytest.approx(expected, rel=1e-5)
    assert float(out["l_grad"]) == float(out["l_norm"]) == float(out["l_conf"]) == float(out["l_hessian"]) == 0.0
    full = multiscale_loss(depth, None, target, mask, points, 1, LossConfig())
    assert float(full["l_conf"]) == 0.0 and float(full["l_grad"]) > 0


def test_multiscale_bad_inputs():
    depth, conf, target, mask, points = _outputs(EVEN)
    cfg = LossConfig()
    with pytest.raises(ValueError, match="scale weights"):
        multiscale_loss(depth[:4], None, target, mask, points, 1, cfg)
    with pytest.raises(ValueError, match=r"\(2, 1, 40, 64\).*\(2, 1, 48, 64\)"):
        multiscale_loss(depth, conf, target[:, :, :40], None, None, 1, cfg)
    with pytest.raises(ValueError, match="epoch"):
        multiscale_loss(depth, conf, target, mask, points, 0, cfg)


def test_multiscale_under_autocast_matches_float32():
    depth, conf, target, mask, points = _outputs(EVEN, seed=4)
    ref = multiscale_loss(depth, conf, target, mask, points, 1, LossConfig())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        amp = multiscale_loss(depth, conf, target, mask, points, 1, LossConfig())
    assert amp["loss"].dtype == torch.float32
    assert float(amp["loss"]) == pytest.approx(float(ref["loss"]), rel=1e-6)


def test_sparse_loss_never_rewards_worse_pixels_away_from_the_points():
    """The denominator normalises: gradients reach only the point pixels.

    Making other pixels worse does not lower the loss through the gradient.
    """
    torch.manual_seed(0)
    target = 1 + torch.rand(1, 1, 8, 8)
    pred = (target + 0.3 * torch.randn(1, 1, 8, 8)).requires_grad_(True)
    points = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    points[0, 0, 2, 3] = points[0, 0, 5, 6] = True
    sparse_loss(pred, target, points).backward()
    assert pred.grad[~points].abs().max() == 0
    assert pred.grad[points].abs().min() > 0


def test_saliency_target_and_loss():
    from fusanet_core.training.losses import saliency_loss, saliency_target

    gt = torch.full((1, 1, 4, 4), 2.0)
    d1 = gt.clone()
    d1[..., :2] = 3.0  # left half wrong
    goal, valid = saliency_target(d1, gt)
    assert (goal[..., 2:] == 1).all() and (goal[..., :2] < 0.5).all() and valid.sum() == 16
    good = torch.where(goal > 0.5, torch.full_like(gt, 0.9), torch.full_like(gt, 0.1))
    flat = torch.full_like(gt, 0.5, requires_grad=True)
    assert saliency_loss(good, d1, gt) < saliency_loss(flat, d1, gt)
    saliency_loss(flat, d1, gt).backward()
    assert flat.grad[..., 2:].sum() < 0 < flat.grad[..., :2].sum()  # raise the accurate half
    none = saliency_loss(flat, d1, torch.zeros_like(gt))
    assert none == 0


def test_silog_is_scale_invariant_at_lambda_one_and_unet_loss_runs():
    from fusanet_core.config import LossConfig
    from fusanet_core.training.losses import silog_loss, unet_loss

    torch.manual_seed(0)
    gt = 1 + torch.rand(2, 1, 16, 16)
    pred = gt * torch.exp(0.1 * torch.randn_like(gt))
    assert torch.allclose(silog_loss(pred, gt, lam=1.0), silog_loss(pred * 3, gt, lam=1.0), atol=1e-5)
    assert silog_loss(gt, gt) < 1e-3
    outs = [pred] + [torch.nn.functional.avg_pool2d(pred, 2**k) for k in range(1, 5)]
    parts = unet_loss(outs, gt, None, LossConfig())
    assert torch.isfinite(parts["loss"]) and {"l_silog", "l_grad"} <= set(parts)
