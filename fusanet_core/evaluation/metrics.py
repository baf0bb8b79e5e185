"""Depth evaluation metrics (paper section 4.1; Eigen et al. 2014, KITTI depth benchmark).

Metrics are computed per image on the valid ground-truth pixels, then averaged over images by
``MetricAccumulator``. Conventions:

* valid = finite ground truth within [min_depth, max_depth], inside the crop and the optional
  extra mask. Zeros, NaN, inf and sentinels such as 65535 mm -> 65.535 m (> max_depth) drop out.
* predictions are clipped to [min_depth, max_depth] before scoring, the standard practice of the
  Eigen / BTS / Monodepth evaluation code (it keeps log and inverse-depth metrics finite).
* a non-finite prediction at a valid pixel raises ValueError: a NaN must never turn into a
  silently clipped (and therefore plausible) number.
* supervised models are never median-scaled; ``median_scale=True`` exists only for relative-depth
  baselines and is off by default.
* iMAE / iRMSE are in 1/km, i.e. inverse depth of metres times 1000 (KITTI convention).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

METRIC_NAMES = (
    "abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "mae",
    "delta1", "delta2", "delta3", "si", "silog", "imae", "irmse",
)  # fmt: skip

# Eigen crop of NYU-Depth-v2 as (top, bottom, left, right) on the 480 x 640 frame.
_NYU_FRAME = (480, 640)
_NYU_EIGEN = (45, 471, 41, 601)
# KITTI crops as fractions of (height, height, width, width), from Garg et al. / Eigen et al.
_KITTI_CROPS = {
    "garg": (0.40810811, 0.99189189, 0.03594771, 0.96405229),
    "eigen_kitti": (0.3324324, 0.91351351, 0.03594771, 0.96405229),
}
CROPS = ("eigen_nyu", "garg", "eigen_kitti")


class NoValidPixelsError(ValueError):
    """An image has no valid ground-truth pixel; ``MetricAccumulator`` skips and counts these."""


def crop_box(shape: Sequence[int], crop: str | Sequence[int]) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of a named crop for an image of ``shape`` (H, W).

    ``eigen_nyu`` is rows 45:471, cols 41:601 at 480 x 640; other sizes scale it proportionally
    with floor (integer arithmetic, exact at 480 x 640; e.g. 240 x 320 -> 22:235, 20:300).
    ``garg`` / ``eigen_kitti`` follow the KITTI evaluation code: int(fraction * size).
    An explicit (top, bottom, left, right) tuple is returned unchanged after a bounds check.
    """
    height, width = int(shape[0]), int(shape[1])
    if isinstance(crop, str):
        if crop == "eigen_nyu":
            top, bottom, left, right = _NYU_EIGEN
            box = (top * height // _NYU_FRAME[0], bottom * height // _NYU_FRAME[0],
                   left * width // _NYU_FRAME[1], right * width // _NYU_FRAME[1])  # fmt: skip
        elif crop in _KITTI_CROPS:
            fr = _KITTI_CROPS[crop]
            box = (int(fr[0] * height), int(fr[1] * height), int(fr[2] * width), int(fr[3] * width))
        else:
            raise ValueError(f"unknown crop {crop!r}; choose one of {CROPS}, None or (top, bottom, left, right)")
    else:
        box = tuple(int(v) for v in crop)
        if len(box) != 4:
            raise ValueError(f"crop must be a name or (top, bottom, left, right), got {crop!r}")
    top, bottom, left, right = box
    if not (0 <= top < bottom <= height and 0 <= left < right <= width):
        raise ValueError(f"crop {crop!r} gives box {box}, outside an image of size {(height, width)}")
    return box


def crop_mask(shape: Sequence[int], crop: str | Sequence[int] | None) -> np.ndarray:
    """Boolean (H, W) array, True inside the crop (everywhere when ``crop`` is None)."""
    if len(shape) != 2:
        raise ValueError(f"crop_mask needs an (H, W) shape, got {tuple(shape)}")
    if crop is None:
        return np.ones(tuple(int(v) for v in shape), dtype=bool)
    top, bottom, left, right = crop_box(shape, crop)
    mask = np.zeros(tuple(int(v) for v in shape), dtype=bool)
    mask[top:bottom, left:right] = True
    return mask


def _to_image(array: Any, name: str) -> np.ndarray:
    """Return a numpy float64 (H, W) from an array or tensor; leading singleton dims are squeezed."""
    if hasattr(array, "detach"):  # torch tensor, without importing torch here
        array = array.detach().cpu().numpy()
    array = np.asarray(array, dtype=np.float64)
    while array.ndim > 2 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise ValueError(f"{name} must be one (H, W) image, got shape {np.shape(array)}")
    return array


def valid_mask(
    gt: np.ndarray, *, min_depth: float, max_depth: float, crop: Any = None, mask: Any = None
) -> np.ndarray:
    """Pixels scored: finite gt in [min_depth, max_depth], inside the crop and ``mask``."""
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(gt) & (gt >= min_depth) & (gt <= max_depth)
    valid &= crop_mask(gt.shape, crop)
    if mask is not None:
        extra = _to_image(mask, "mask")
        if extra.shape != gt.shape:
            raise ValueError(f"mask has shape {extra.shape} but gt has shape {gt.shape}")
        valid &= extra != 0
    return valid


def compute_metrics(
    pred: Any,
    gt: Any,
    *,
    min_depth: float = 1e-3,
    max_depth: float = 10.0,
    crop: str | Sequence[int] | None = None,
    mask: Any = None,
    median_scale: bool = False,
) -> dict[str, float]:
    """Compute the standard depth metrics of one image.

    Args:
        pred: predicted depth in metres, (H, W) numpy array or tensor (leading 1-dims allowed).
        gt: ground-truth depth in metres, same shape.
        min_depth: lower cap (gt below is invalid; pred is clipped up to it).
        max_depth: upper cap (gt above is invalid; pred is clipped down to it).
        crop: None, "eigen_nyu", "garg", "eigen_kitti" or (top, bottom, left, right).
        mask: optional extra validity mask (non-zero = scored).
        median_scale: scale pred by median(gt) / median(pred) on valid pixels first (relative
            depth baselines only; never for supervised metric models).

    Returns:
        Dict with ``METRIC_NAMES`` (deltas as fractions, si in log^2 units, silog = 100 sqrt(si),
        imae / irmse in 1/km) and ``n_valid``.

    Raises:
        ValueError: shapes differ, caps are wrong, or predictions are non-finite at valid pixels.
        NoValidPixelsError: (a ValueError) no pixel is valid.
    """
    if not 0 < min_depth < max_depth:
        raise ValueError(f"need 0 < min_depth < max_depth, got {min_depth}, {max_depth}")
    pred_raw_shape, gt_raw_shape = np.shape(pred), np.shape(gt)
    pred_img, gt_img = _to_image(pred, "pred"), _to_image(gt, "gt")
    if pred_img.shape != gt_img.shape:
        raise ValueError(f"pred has shape {pred_raw_shape} but gt has shape {gt_raw_shape}")
    valid = valid_mask(gt_img, min_depth=min_depth, max_depth=max_depth, crop=crop, mask=mask)
    n_valid = int(valid.sum())
    if n_valid == 0:
        raise NoValidPixelsError(
            f"no valid ground-truth pixel (finite, in [{min_depth}, {max_depth}] m, inside crop {crop!r})"
        )
    p, g = pred_img[valid], gt_img[valid]
    bad = int((~np.isfinite(p)).sum())
    if bad:
        raise ValueError(f"prediction has {bad} non-finite values at valid pixels")
    if median_scale:
        p = p * (np.median(g) / max(float(np.median(p)), 1e-12))
    p = np.clip(p, min_depth, max_depth)
    return {**_scores(p, g), "n_valid": n_valid}


def _scores(p: np.ndarray, g: np.ndarray) -> dict[str, float]:
    """Metrics on matching 1D arrays of positive finite depths."""
    diff = p - g
    log_diff = np.log(p) - np.log(g)
    ratio = np.maximum(p / g, g / p)
    # Clamp rounding: mean(e^2) - mean(e)^2 can come out as -1e-17 for a perfect prediction.
    si = max(float(np.mean(log_diff**2) - np.mean(log_diff) ** 2), 0.0)
    inv_diff = 1000.0 / p - 1000.0 / g  # 1/km
    return {
        "abs_rel": float(np.mean(np.abs(diff) / g)),
        "sq_rel": float(np.mean(diff**2 / g)),
        "rmse": float(np.sqrt(np.mean(diff**2))),
        "rmse_log": float(np.sqrt(np.mean(log_diff**2))),
        "log10": float(np.mean(np.abs(np.log10(p) - np.log10(g)))),
        "mae": float(np.mean(np.abs(diff))),
        "delta1": float(np.mean(ratio < 1.25)),
        "delta2": float(np.mean(ratio < 1.25**2)),
        "delta3": float(np.mean(ratio < 1.25**3)),
        "si": si,
        "silog": 100.0 * float(np.sqrt(si)),
        "imae": float(np.mean(np.abs(inv_diff))),
        "irmse": float(np.sqrt(np.mean(inv_diff**2))),
    }


class MetricAccumulator:
    """Per-image metrics averaged over a data set.

    Frames without any valid ground-truth pixel are skipped and counted (``n_skipped``); every
    other error (shape mismatch, NaN prediction) propagates.

    Args:
        **defaults: keyword arguments for ``compute_metrics`` used by every ``add`` (for
            example ``max_depth=80.0, crop="garg"``); ``add`` may override them.
    """

    def __init__(self, **defaults: Any) -> None:
        self.defaults = defaults
        self.per_image: list[dict[str, float]] = []
        self.n_skipped = 0

    def add(self, pred: Any, gt: Any, **kwargs: Any) -> dict[str, float] | None:
        """Score one image; returns its metrics, or None when it had no valid pixel."""
        try:
            metrics = compute_metrics(pred, gt, **{**self.defaults, **kwargs})
        except NoValidPixelsError:
            self.n_skipped += 1
            return None
        self.per_image.append(metrics)
        return metrics

    def summary(self) -> dict[str, float]:
        """Return the mean of each metric over the scored images.

        Plus ``n_images``, ``n_skipped`` and ``n_valid`` (total scored pixels).

        Raises:
            ValueError: no image was scored.
        """
        if not self.per_image:
            raise ValueError(f"no image with valid ground truth was added ({self.n_skipped} skipped)")
        result = {name: float(np.mean([m[name] for m in self.per_image])) for name in METRIC_NAMES}
        result["n_images"] = len(self.per_image)
        result["n_skipped"] = self.n_skipped
        result["n_valid"] = int(sum(m["n_valid"] for m in self.per_image))
        return result


def format_table(metrics: dict[str, float]) -> str:
    """Two-line text table (names over values) for the CLI; known metrics first, in order."""
    names = [n for n in METRIC_NAMES if n in metrics] + [n for n in metrics if n not in METRIC_NAMES]
    cells = [_format_value(metrics[name]) for name in names]
    widths = [max(len(name), len(cell)) for name, cell in zip(names, cells)]
    header = "  ".join(name.rjust(w) for name, w in zip(names, widths))
    values = "  ".join(cell.rjust(w) for cell, w in zip(cells, widths))
    return f"{header}\n{values}"


def _format_value(value: Any) -> str:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    return f"{float(value):.4f}"


def timing_summary(values: Sequence[float] | np.ndarray) -> dict[str, float]:
    """Return count, p50, p95, mean and max of a sample of timings (latencies, step times), in its units.

    The statistics are NaN for an empty sample.
    """
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.size == 0:
        return {"n": 0, "p50": float("nan"), "p95": float("nan"), "mean": float("nan"), "max": float("nan")}
    p50, p95 = np.percentile(arr, [50, 95])
    return {"n": int(arr.size), "p50": float(p50), "p95": float(p95), "mean": float(arr.mean()),
            "max": float(arr.max())}
