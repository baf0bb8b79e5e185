"""Calibrated confidence: the network's raw confidence mapped to a probability with a stated meaning.

The raw confidence (the nConv confidence of the finest scale) orders pixels by reliability but
its values mean nothing in themselves (the bundled model's sit at 0.01-0.10). A `Calibration`
maps it, monotonically, to "the probability that this pixel's relative error |d - gt| / gt is
below `bound`", measured on calibration data: quantile bins of raw confidence, the share of
pixels within the bound per bin, made non-decreasing by pool-adjacent-violators (isotonic
regression), and linear interpolation between the bins' mean raw confidences.

The map lives in the checkpoint's config (`inference.confidence_*`), so the Predictor applies it
to every backend; docs/architecture.md "Calibrated confidence".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
import math
from typing import Any

import numpy as np


def check_knots(bound: float, raw: Sequence[float], calibrated: Sequence[float], prefix: str) -> None:
    """Check a calibration's knots; `prefix` + "bound" / "raw" / "calibrated" name the keys in errors.

    bound 0 means uncalibrated (knots are then ignored); a bound > 0 needs at least one knot.

    Raises:
        ValueError: naming the first key that breaks the rule.
    """
    if not (math.isfinite(bound) and bound >= 0):
        raise ValueError(f"{prefix}bound must be finite and >= 0 (0 = uncalibrated), got {bound}")
    if len(raw) != len(calibrated):
        raise ValueError(f"{prefix}raw and {prefix}calibrated need equal lengths, got {len(raw)} and "
                         f"{len(calibrated)}")
    if bound > 0 and not raw:
        raise ValueError(f"{prefix}raw is empty but {prefix}bound is {bound}: a calibration needs knots")
    if not all(math.isfinite(v) for v in raw) or any(b < a for a, b in zip(raw, raw[1:])):
        raise ValueError(f"{prefix}raw must be finite and non-decreasing, got {list(raw)}")
    if not all(0.0 <= v <= 1.0 for v in calibrated) or any(b < a for a, b in zip(calibrated, calibrated[1:])):
        raise ValueError(f"{prefix}calibrated must be in [0, 1] and non-decreasing, got {list(calibrated)}")


@dataclass(frozen=True)
class Calibration:
    """Monotone map raw confidence -> P(relative error < bound), as knots for np.interp.

    Below the first knot the first value holds, above the last the last one.
    """

    bound: float
    raw: tuple[float, ...]
    calibrated: tuple[float, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "raw", tuple(float(v) for v in self.raw))
        object.__setattr__(self, "calibrated", tuple(float(v) for v in self.calibrated))
        check_knots(float(self.bound), self.raw, self.calibrated, "calibration.")
        if self.bound <= 0:
            raise ValueError(f"calibration.bound must be > 0, got {self.bound}")

    def apply(self, conf: np.ndarray) -> np.ndarray:
        """Return the calibrated confidence of raw `conf` (any shape), float32 in [0, 1]."""
        mapped = np.interp(np.asarray(conf, np.float64), self.raw, self.calibrated)
        return np.clip(mapped, 0.0, 1.0).astype(np.float32)

    def as_dict(self) -> dict[str, Any]:
        return {"bound": float(self.bound), "raw": list(self.raw), "calibrated": list(self.calibrated)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        return cls(float(data["bound"]), tuple(data["raw"]), tuple(data["calibrated"]))

    @classmethod
    def from_inference(cls, inference: Any) -> Calibration | None:
        """Return the calibration an `InferenceConfig` holds, or None (confidence_bound 0)."""
        if inference.confidence_bound <= 0:
            return None
        return cls(inference.confidence_bound, inference.confidence_raw, inference.confidence_calibrated)

    def to_inference(self, inference: Any) -> None:
        """Store this calibration in an `InferenceConfig` (in place)."""
        inference.confidence_bound = float(self.bound)
        inference.confidence_raw = self.raw
        inference.confidence_calibrated = self.calibrated
        inference.__post_init__()


def fit_calibration(raw: np.ndarray, rel_error: np.ndarray, bound: float = 0.1, bins: int = 20) -> Calibration:
    """Fit the map raw confidence -> share of pixels with rel_error < bound.

    Args:
        raw: raw confidence per pixel (any shape); pixels where it or rel_error is not finite are dropped.
        rel_error: |d - gt| / gt per pixel, the same size.
        bound: the relative error the calibrated value is the probability of staying below (> 0).
        bins: quantile bins of raw confidence, one knot each (tied values share a bin, so a
            constant raw confidence gives one knot).

    Raises:
        ValueError: sizes differ, bound <= 0, bins < 1, or no finite pixel is left.
    """
    if not (math.isfinite(bound) and bound > 0) or int(bins) < 1:
        raise ValueError(f"need bound > 0 and bins >= 1, got bound {bound}, bins {bins}")
    rows = [r for r in reliability(raw, rel_error, bound, int(bins)) if r["pixels"]]
    within = pool_adjacent_violators([r["within"] for r in rows], [r["pixels"] for r in rows])
    return Calibration(bound, tuple(r["mean_confidence"] for r in rows), tuple(within))


def pool_adjacent_violators(values: Sequence[float], weights: Sequence[float]) -> list[float]:
    """Return the weighted least-squares non-decreasing fit of `values` (isotonic regression)."""
    blocks: list[list[float]] = []  # [mean, weight, how many values]
    for value, weight in zip(values, weights):
        blocks.append([float(value), float(weight), 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            (m2, w2, n2), (m1, w1, n1) = blocks.pop(), blocks.pop()
            blocks.append([(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2, n1 + n2])
    return [mean for mean, _, count in blocks for _ in range(int(count))]


def quantile_edges(values: np.ndarray, bins: int) -> np.ndarray:
    """Return up to bins + 1 distinct edges at the quantiles of `values` (ties merge bins)."""
    return np.unique(np.quantile(values, np.linspace(0.0, 1.0, bins + 1)))


def reliability(conf: np.ndarray, rel_error: np.ndarray, bound: float,
                bins: int | Sequence[float] = 10) -> list[dict[str, float]]:
    """Return one row per confidence bin, for a reliability plot or table.

    Args:
        conf: raw or calibrated confidence per pixel; non-finite pixels (here or in rel_error) are dropped.
        rel_error: |d - gt| / gt per pixel, the same size.
        bound: the relative error bound of "within".
        bins: a count of quantile bins of `conf`, or explicit edges (pass another set's edges to
            compare sets bin by bin); values outside the edges fall into the first or last bin.

    Returns:
        Rows {"lo", "hi" (the bin's range), "pixels", "share" (of all pixels), "mean_confidence",
        "within" (observed share with rel_error < bound), "median_rel_error"}; NaN in an empty bin.

    Raises:
        ValueError: sizes differ, or no finite pixel is left.
    """
    conf, rel_error = finite_pairs(conf, rel_error)
    edges = quantile_edges(conf, bins) if isinstance(bins, (int, np.integer)) else np.asarray(bins, np.float64)
    if edges.size == 1:  # one value (constant confidence): one bin
        edges = np.repeat(edges, 2)
    index = np.searchsorted(edges[1:-1], conf, side="right")  # bin i holds [edge i, edge i + 1)
    rows = []
    for i in range(len(edges) - 1):
        mask = index == i
        count = int(mask.sum())
        nan = float("nan")
        rows.append({"lo": float(edges[i]), "hi": float(edges[i + 1]), "pixels": count,
                     "share": count / conf.size,
                     "mean_confidence": float(conf[mask].mean()) if count else nan,
                     "within": float((rel_error[mask] < bound).mean()) if count else nan,
                     "median_rel_error": float(np.median(rel_error[mask])) if count else nan})
    return rows


def finite_pairs(conf: np.ndarray, rel_error: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return both flattened (float64) where both are finite.

    Raises:
        ValueError: sizes differ, or no finite pair is left.
    """
    conf = np.asarray(conf, np.float64).ravel()
    rel_error = np.asarray(rel_error, np.float64).ravel()
    if conf.size != rel_error.size:
        raise ValueError(f"confidence and rel_error need the same size, got {conf.size} and {rel_error.size}")
    keep = np.isfinite(conf) & np.isfinite(rel_error)
    if not keep.any():
        raise ValueError(f"no pixel with finite confidence and relative error (of {conf.size})")
    return conf[keep], rel_error[keep]


def kept_by_threshold(conf: np.ndarray, rel_error: np.ndarray, bound: float, threshold: float) -> tuple[float, float]:
    """Return (share of pixels with conf >= threshold, share of those with rel_error < bound; NaN if none kept)."""
    conf, rel_error = finite_pairs(conf, rel_error)
    kept = conf >= threshold
    within = float((rel_error[kept] < bound).mean()) if kept.any() else float("nan")
    return float(kept.mean()), within
