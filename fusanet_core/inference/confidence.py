"""Calibrated confidence: the network's raw confidence mapped to a probability with a stated meaning.

The raw confidence (the nConv confidence of the finest scale) orders pixels by reliability but
its values mean nothing in themselves (the bundled model's sit at 0.01-0.10). A `Calibration`
maps it, monotonically, to "the probability that this pixel's relative error |d - gt| / gt is
below `bound`", measured on calibration data: quantile bins of raw confidence, the share of
pixels within the bound per bin, made non-decreasing by pool-adjacent-violators (isotonic
regression), and linear interpolation between the bins' mean raw confidences.

With `weights` the calibrated quantity is not the raw confidence alone but a score that also
knows where the depth was fitted to known points (the `scale_local` fit's anchors): measured, the
error grows with the distance to the nearest known point, while the raw confidence does not order
it. score = w0 + w1 logit(raw) + w2 p + w3 p log(1 + dist / spacing), p = 1 where a scale_local
fit was applied (0 otherwise), dist the pixel distance to the nearest anchor and spacing the
anchors' mean spacing sqrt(H W / N). The weights are a logistic regression of "within the
bound" on those features (`fit_score_weights`), the knots the monotone map of that score.

The map lives in the checkpoint's config (`inference.confidence_*`), so the Predictor applies it
to every backend; docs/architecture.md "Calibrated confidence".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
import math
from typing import Any

import cv2
import numpy as np

from ..confidence_rules import check_knots, check_weights, FEATURES

LOGIT_EPS = 1e-4  # raw confidence is clipped to [eps, 1 - eps] before the logit


@dataclass(frozen=True)
class Calibration:
    """Monotone map raw confidence -> P(relative error < bound), as knots for np.interp.

    Below the first knot the first value holds, above the last the last one.
    """

    bound: float
    raw: tuple[float, ...]  # knots of the score (the raw confidence itself without weights)
    calibrated: tuple[float, ...]
    weights: tuple[float, ...] = ()  # () = the score is the raw confidence; else 1 + len(FEATURES) values

    def __post_init__(self) -> None:
        for name in ("raw", "calibrated", "weights"):
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
        check_knots(float(self.bound), self.raw, self.calibrated, "calibration.")
        check_weights(self.weights, "calibration.")
        if self.bound <= 0:
            raise ValueError(f"calibration.bound must be > 0, got {self.bound}")

    def apply(self, conf: np.ndarray, anchors_uv: np.ndarray | None = None) -> np.ndarray:
        """Return the calibrated confidence of raw `conf` (any shape; HxW with anchors), float32 in [0, 1].

        `anchors_uv`: (N, 2) pixels of the known points a scale_local fit went through, or None.
        """
        if self.weights:
            # the weighted sum of feature_maps, not score_features @ weights: no (H, W, 4) float64
            # array per frame (~11 -> ~8 ms at 640x480, measured interleaved)
            w0, *weights = self.weights
            return self._knots(w0 + sum(w * m for w, m in zip(weights, feature_maps(conf, anchors_uv))))
        return self._knots(np.asarray(conf, np.float64))

    def apply_features(self, features: np.ndarray) -> np.ndarray:
        """Calibrated confidence from `score_features` rows (..., 1 + len(FEATURES)) (weighted calibrations)."""
        return self._knots(np.asarray(features, np.float64) @ np.asarray(self.weights))

    def _knots(self, score: np.ndarray) -> np.ndarray:
        return np.clip(np.interp(score, self.raw, self.calibrated), 0.0, 1.0).astype(np.float32)

    def as_dict(self) -> dict[str, Any]:
        return {"bound": float(self.bound), "raw": list(self.raw), "calibrated": list(self.calibrated),
                "weights": list(self.weights)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        return cls(float(data["bound"]), tuple(data["raw"]), tuple(data["calibrated"]), tuple(data.get("weights", ())))

    @classmethod
    def from_inference(cls, inference: Any) -> Calibration | None:
        """Return the calibration an `InferenceConfig` holds, or None (confidence_bound 0)."""
        if inference.confidence_bound <= 0:
            return None
        return cls(inference.confidence_bound, inference.confidence_raw, inference.confidence_calibrated,
                   inference.confidence_weights)

    def to_inference(self, inference: Any) -> None:
        """Store this calibration in an `InferenceConfig` (in place)."""
        inference.confidence_bound = float(self.bound)
        inference.confidence_raw = self.raw
        inference.confidence_calibrated = self.calibrated
        inference.confidence_weights = self.weights
        inference.__post_init__()


def feature_maps(conf: np.ndarray, anchors_uv: np.ndarray | None) -> list[np.ndarray | float]:
    """Return FEATURES for every pixel of `conf`, float32 maps (or scalars where constant), in order.

    Without anchors (no points, or no scale_local fit applied) the point features are 0.
    """
    conf = np.clip(np.asarray(conf, np.float32), LOGIT_EPS, 1.0 - LOGIT_EPS)
    logit = np.log(conf / (1.0 - conf))
    if anchors_uv is not None and len(anchors_uv) and conf.ndim == 2:
        return [logit, 1.0, np.log1p(anchor_distance(np.asarray(anchors_uv, np.float64), conf.shape))]
    return [logit, 0.0, 0.0]


def score_features(conf: np.ndarray, anchors_uv: np.ndarray | None) -> np.ndarray:
    """Return (..., 1 + len(FEATURES)) float64: the constant 1 and `feature_maps` per pixel of `conf`."""
    out = np.ones(np.shape(conf) + (1 + len(FEATURES),))
    for column, values in enumerate(feature_maps(conf, anchors_uv), start=1):
        out[..., column] = values
    return out


def anchor_distance(anchors_uv: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Return the HxW distance to the nearest anchor pixel, in units of the anchors' mean spacing sqrt(H W / N)."""
    h, w = shape
    mask = np.ones((h, w), np.uint8)
    cols = np.clip(np.rint(anchors_uv[:, 0]).astype(np.int64), 0, w - 1)
    rows = np.clip(np.rint(anchors_uv[:, 1]).astype(np.int64), 0, h - 1)
    mask[rows, cols] = 0
    return cv2.distanceTransform(mask, cv2.DIST_L2, 3) / np.float32(math.sqrt(h * w / len(anchors_uv)))


def fit_score_weights(features: np.ndarray, within: np.ndarray, ridge: float = 1e-3, steps: int = 25) -> np.ndarray:
    """Logistic regression of `within` (bool per sample) on `features` (N, 1 + len(FEATURES)), by Newton steps.

    A small ridge keeps a feature that is constant in the data (e.g. no frame with points) at 0.
    """
    x = np.asarray(features, np.float64)
    y = np.asarray(within, np.float64)
    w = np.zeros(x.shape[1])
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ w, -30, 30)))
        grad = x.T @ (p - y) / len(y) + ridge * w
        hess = (x * (p * (1 - p))[:, None]).T @ x / len(y) + ridge * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


def fit_calibration(raw: np.ndarray, rel_error: np.ndarray, bound: float = 0.1, bins: int = 20,
                    features: np.ndarray | None = None) -> Calibration:
    """Fit the map raw confidence (or the score of `features`) -> share of pixels with rel_error < bound.

    Args:
        raw: raw confidence per pixel (any shape); pixels where it or rel_error is not finite are dropped.
        rel_error: |d - gt| / gt per pixel, the same size.
        bound: the relative error the calibrated value is the probability of staying below (> 0).
        bins: quantile bins of the score, one knot each (tied values share a bin, so a constant
            raw confidence gives one knot).
        features: optional (pixels, 1 + len(FEATURES)) `score_features` of the same pixels: the
            score weights are fitted first (logistic regression), the knots then map their score.

    Raises:
        ValueError: sizes differ, bound <= 0, bins < 1, or no finite pixel is left.
    """
    if not (math.isfinite(bound) and bound > 0) or int(bins) < 1:
        raise ValueError(f"need bound > 0 and bins >= 1, got bound {bound}, bins {bins}")
    weights: tuple[float, ...] = ()
    if features is not None:
        features = np.asarray(features, np.float64).reshape(-1, 1 + len(FEATURES))
        if len(features) != np.size(raw):
            raise ValueError(f"features need one row per pixel, got {len(features)} rows for {np.size(raw)} pixels")
        keep = np.isfinite(np.asarray(raw, np.float64).ravel()) & np.isfinite(np.asarray(rel_error).ravel())
        keep &= np.all(np.isfinite(features), axis=1)
        weights = tuple(fit_score_weights(features[keep], np.asarray(rel_error).ravel()[keep] < bound))
        raw = np.where(keep, features @ np.asarray(weights), np.nan)
    rows = [r for r in reliability(raw, rel_error, bound, int(bins)) if r["pixels"]]
    within = pool_adjacent_violators([r["within"] for r in rows], [r["pixels"] for r in rows])
    return Calibration(bound, tuple(r["mean_confidence"] for r in rows), tuple(within), weights)


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
