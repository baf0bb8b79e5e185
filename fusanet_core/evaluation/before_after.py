"""Score a model the way a robot uses it, on frames of its own recording: before and after fine-tuning.

Per frame at the ground truth's full resolution, intrinsics given: raw RMSE, abs_rel, delta1 and
median-scaled abs_rel (structure alone) of the RGB-only depth, and the RMSE / delta1 of the depth
the node gives by default with K known points (the RGB-only network fitted through them,
`scale_from_points: scale_local`). The points are SIFT keypoints at valid ground truth, exact: the
same points for every model (they depend on the frame only).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from .metrics import compute_metrics, NoValidPixelsError, valid_mask
from ..datasets.transforms import Frame
from ..inference.predictor import Predictor
from ..model.points import sift_guiding_points

RGB_COLUMNS = ("rmse", "abs_rel", "delta1", "ms_abs_rel")
POINT_COLUMNS = ("rmse", "delta1")


def frame_scores(predictor: Predictor, frame: Frame, point_counts: Sequence[int], min_depth: float,
                 max_depth: float) -> dict[str, float] | None:
    """Scores of one frame (None when it has no valid ground truth)."""
    caps = {"min_depth": min_depth, "max_depth": max_depth}
    gt = frame.depth
    depth = predictor.predict(frame.rgb, frame.intrinsics)["depth"]
    try:
        raw = compute_metrics(depth, gt, **caps)
    except NoValidPixelsError:
        return None
    scores = {name: raw[name] for name in ("rmse", "abs_rel", "delta1")}
    scores["ms_abs_rel"] = compute_metrics(depth, gt, median_scale=True, **caps)["abs_rel"]
    valid = valid_mask(gt, **caps)
    for count in point_counts:
        points = sift_guiding_points(frame.rgb, np.where(valid, gt, 0.0).astype(np.float32), valid, count)
        fitted = predictor.predict(frame.rgb, frame.intrinsics, points=points)["depth"]
        with_points = compute_metrics(fitted, gt, **caps)
        for name in POINT_COLUMNS:
            scores[f"{name}@{count}"] = with_points[name]
    return scores


def score_frames(predictor: Predictor, frames: Iterable[Frame], point_counts: Sequence[int] = (50, 200),
                 min_depth: float = 1e-3, max_depth: float = 10.0) -> dict[str, Any]:
    """Mean scores over frames, plus the per-frame list ("frames") and the count ("n")."""
    rows = [row for frame in frames
            if (row := frame_scores(predictor, frame, point_counts, min_depth, max_depth)) is not None]
    if not rows:
        raise ValueError("no frame with valid ground-truth depth to score")
    means = {key: float(np.mean([row[key] for row in rows])) for key in rows[0]}
    return {**means, "n": len(rows), "frames": rows}


def node_default_predictor(checkpoint: str, device: str = "auto") -> Predictor:
    """Build the Predictor the depth node builds by default: RGB-only network, scale_local fit through points."""
    return Predictor.from_checkpoint(checkpoint, device, scale_from_points="scale_local", prime_with_points=False)
