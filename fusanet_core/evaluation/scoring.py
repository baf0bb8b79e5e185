"""Scoring of predicted depth against ground truth, frame by frame: the `Evaluation` accumulator.

Shared by the offline `fusanet bag-eval` and the live `evaluator_node`, so both give the same
numbers for the same frames. ROS-free: inputs are numpy arrays in metres (NaN = invalid).

Policies (also written into every report):

* scored pixels: valid ground truth (finite, within [min_depth, max_depth], inside the crop) where
  the prediction is valid too. Prediction holes (NaN / <= 0: the depth node publishes NaN beyond
  its own `max_depth` and below `min_confidence`) are left out and reported as `coverage`, the
  fraction of valid ground-truth pixels that have a prediction.
* size: frames are scored at the ground-truth resolution. A prediction of another size with the
  same aspect ratio (within 1 %) is resized to it with nearest-neighbour interpolation (it never
  blends foreground and background into depths that exist in neither); a different aspect ratio
  means a different field of view, so the frame is skipped with a message (register the ground
  truth to the colour camera instead).
* metrics are `fusanet_core.evaluation.metrics.compute_metrics` per frame, averaged over the scored frames
  (no median scaling). Frames with no valid ground-truth pixel are skipped and counted.

The report files (JSON, Markdown, plots, panels) are written by `fusanet_core.evaluation.report`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
import logging
import math
from typing import Any

import cv2
import numpy as np

from fusanet_core.evaluation.metrics import CROPS, MetricAccumulator, timing_summary, valid_mask
from fusanet_core.io.images import colorize_depth

log = logging.getLogger(__name__)

STATUSES = ("ok", "no_valid_gt", "no_coverage", "size_mismatch", "error", "unpaired", "dropped")
HIST_EDGES = np.linspace(-1.0, 1.0, 101)  # relative error, 2 % bins; outliers land in the end bins
PANEL_WIDTH = 320  # pixels per tile in the saved panels
ASPECT_TOLERANCE = 0.01


def parse_crop(text: str | None) -> str | tuple[int, int, int, int] | None:
    """'' / 'none' -> None; a crop name; or 'top,bottom,left,right' in pixels."""
    if text is None or str(text).strip().lower() in ("", "none"):
        return None
    text = str(text).strip()
    if text in CROPS:
        return text
    try:
        box = tuple(int(v) for v in text.split(","))
    except ValueError:
        box = ()
    if len(box) != 4:
        raise ValueError(f"crop must be none, {', '.join(CROPS)} or top,bottom,left,right in pixels, got {text!r}")
    return box  # type: ignore[return-value]


@dataclass(frozen=True)
class EvalSettings:
    """How frames are scored (see the module docstring)."""

    min_depth: float = 1e-3
    max_depth: float = 10.0
    crop: str | tuple[int, int, int, int] | None = None
    max_panels: int = 4

    def __post_init__(self) -> None:
        if not (math.isfinite(self.min_depth) and math.isfinite(self.max_depth)
                and 0 < self.min_depth < self.max_depth):
            raise ValueError(f"need 0 < min_depth < max_depth, got min_depth={self.min_depth}, "
                             f"max_depth={self.max_depth}")
        if self.max_panels < 0:
            raise ValueError(f"max_panels must be >= 0, got {self.max_panels}")


@dataclass
class FrameRecord:
    """Outcome of one input frame (scored or not, and why)."""

    index: int
    stamp_ns: int
    status: str
    message: str = ""
    gt_stamp_ns: int | None = None
    metrics: dict[str, float] | None = None
    coverage: float | None = None
    latency_ms: float | None = None


class PanelKeeper:
    """Keeps at most `limit` panels spread evenly over a stream of unknown length.

    Frames whose index is a multiple of `stride` are kept; when more than `limit` are held the
    stride doubles and the in-between ones go, so memory stays bounded.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.stride = 1
        self.panels: dict[int, Any] = {}

    def wants(self, index: int) -> bool:
        return self.limit > 0 and index % self.stride == 0

    def add(self, index: int, panel: Any) -> None:
        self.panels[index] = panel
        while len(self.panels) > self.limit:
            self.stride *= 2
            self.panels = {i: p for i, p in self.panels.items() if i % self.stride == 0}


class Evaluation:
    """Accumulates per-frame results, the error histogram and panels (`report.write_report` writes them)."""

    def __init__(self, settings: EvalSettings | None = None) -> None:
        self.settings = settings or EvalSettings()
        self.frames: list[FrameRecord] = []
        self.notes: list[str] = []
        self.counts: dict[str, int] = {}
        self._acc = MetricAccumulator(min_depth=self.settings.min_depth, max_depth=self.settings.max_depth,
                                      crop=self.settings.crop)
        self._hist = np.zeros(len(HIST_EDGES) - 1, dtype=np.int64)
        self._panels = PanelKeeper(self.settings.max_panels)
        self._n_scored = 0

    # ------------------------------------------------------------------------------- input
    def note(self, text: str) -> None:
        """Add a remark for the report (once per distinct text).

        Logged at debug level only: a run that fails must end with its one error line, and the
        report (or the CLI summary) shows the notes.
        """
        if text not in self.notes:
            self.notes.append(text)
            log.debug(text)

    def count(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n

    def add_missing(self, stamp_ns: int, status: str, message: str = "", *, index: int | None = None,
                    latency_ms: float | None = None) -> FrameRecord:
        """Record an input frame that could not be scored before any pixel was seen.

        Its status is `unpaired` (no ground truth within the slop), `dropped` (no prediction
        arrived) or `error`.
        """
        index = len(self.frames) if index is None else int(index)
        return self._record(FrameRecord(index, int(stamp_ns), status, message, latency_ms=latency_ms))

    def add(
        self,
        stamp_ns: int,
        pred: np.ndarray,
        gt: np.ndarray,
        rgb: np.ndarray | None = None,
        *,
        gt_stamp_ns: int | None = None,
        latency_ms: float | None = None,
        index: int | None = None,
    ) -> FrameRecord:
        """Score one frame; never raises for bad data (the record says what went wrong).

        Args:
            stamp_ns: stamp of the input image (and its prediction).
            pred: (h, w) predicted metres, NaN / <= 0 = no prediction.
            gt: (H, W) ground-truth metres in the colour camera, NaN / <= 0 = invalid.
            rgb: optional (h, w, 3) uint8 input, used for panels.
            gt_stamp_ns: stamp of the paired ground truth.
            latency_ms: prediction arrival minus input arrival (live mode).
            index: frame number for the report (default: order of arrival).
        """
        index = len(self.frames) if index is None else int(index)
        record = FrameRecord(index, int(stamp_ns), "ok", gt_stamp_ns=gt_stamp_ns, latency_ms=latency_ms)
        try:
            pred = self._fit_prediction(np.asarray(pred, dtype=np.float32), np.asarray(gt, dtype=np.float32))
            self._score(record, pred, np.asarray(gt, dtype=np.float32), rgb)
        except _Skip as skip:
            record.status, record.message = skip.status, str(skip)
        except ValueError as err:  # e.g. a non-2D image: the frame is reported, the run goes on
            record.status, record.message = "error", str(err)
        if record.status != "ok":
            log.debug("frame %d (stamp %.3f s) not scored: %s", record.index, stamp_ns * 1e-9, record.message)
        return self._record(record)

    def _record(self, record: FrameRecord) -> FrameRecord:
        if record.status not in STATUSES:
            raise ValueError(f"unknown frame status {record.status!r}; choose one of {STATUSES}")
        self.frames.append(record)
        self.count(record.status)
        return record

    def _fit_prediction(self, pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
        """Prediction at the ground-truth size (nearest-neighbour resize when only the scale differs)."""
        if pred.ndim != 2 or gt.ndim != 2:
            raise ValueError(f"prediction and ground truth must be (H, W) images, got {pred.shape} and {gt.shape}")
        if pred.shape == gt.shape:
            return pred
        (ph, pw), (gh, gw) = pred.shape, gt.shape
        if abs((pw / ph) / (gw / gh) - 1.0) > ASPECT_TOLERANCE:
            raise _Skip("size_mismatch", f"prediction {pw}x{ph} and ground truth {gw}x{gh} have different aspect "
                                         "ratios (different fields of view): register the ground truth to the colour "
                                         "camera")
        self.note(f"prediction {pw}x{ph} resized to the ground truth {gw}x{gh} (nearest neighbour) before scoring")
        return cv2.resize(pred, (gw, gh), interpolation=cv2.INTER_NEAREST)

    def _score(self, record: FrameRecord, pred: np.ndarray, gt: np.ndarray, rgb: np.ndarray | None) -> None:
        s = self.settings
        gt_ok = valid_mask(gt, min_depth=s.min_depth, max_depth=s.max_depth, crop=s.crop)
        n_gt = int(gt_ok.sum())
        if n_gt == 0:
            raise _Skip("no_valid_gt", f"ground truth has no valid pixel in [{s.min_depth}, {s.max_depth}] m"
                                       + (f" inside crop {s.crop!r}" if s.crop is not None else ""))
        pred_ok = np.isfinite(pred) & (pred > 0)
        scored = gt_ok & pred_ok
        record.coverage = float(scored.sum() / n_gt)
        if not scored.any():
            raise _Skip("no_coverage", f"the prediction is invalid (NaN/0) at all {n_gt} valid ground-truth pixels")
        # Holes hold a placeholder: they are masked out, and compute_metrics rejects NaN at scored pixels.
        filled = np.where(pred_ok, pred, 1.0).astype(np.float32)
        record.metrics = self._acc.add(filled, gt, mask=pred_ok)
        clipped = np.clip(filled[scored], s.min_depth, s.max_depth)
        rel = np.clip((clipped - gt[scored]) / gt[scored], HIST_EDGES[0], HIST_EDGES[-1])
        self._hist += np.histogram(rel, HIST_EDGES)[0]
        if rgb is not None and self._panels.wants(self._n_scored):
            panel = make_panel(rgb, gt, np.where(pred_ok, pred, np.nan), scored, s.max_depth)
            self._panels.add(self._n_scored, (record.index, panel))
        self._n_scored += 1

    # ----------------------------------------------------------------------------- results
    def summary(self) -> dict[str, Any] | None:
        """Mean metrics over the scored frames (plus mean coverage), or None when none was scored."""
        if not self._acc.per_image:
            return None
        summary = self._acc.summary()
        summary.pop("n_skipped", None)  # the report's counts say why frames were skipped
        summary["coverage"] = float(np.mean([f.coverage for f in self.frames if f.status == "ok"]))
        return summary

    def main_skip(self) -> tuple[str, str] | None:
        """Return (status, "8 of 10 frames <status>: <message>") of the most common reason frames were not scored.

        The message is that status's most common one; None when every frame was scored or none was
        seen.
        """
        skipped = [f for f in self.frames if f.status != "ok"]
        if not skipped:
            return None
        status, n = Counter(f.status for f in skipped).most_common(1)[0]
        message = Counter(f.message for f in skipped if f.status == status).most_common(1)[0][0]
        return status, f"{n} of {len(self.frames)} frames {status}" + (f": {message}" if message else "")

    def latency(self) -> dict[str, float] | None:
        """p50 / p95 / mean / max latency in ms over the frames that have one."""
        values = [f.latency_ms for f in self.frames if f.latency_ms is not None]
        return timing_summary(values) if values else None

    def to_dict(self, meta: dict[str, Any]) -> dict[str, Any]:
        counts = {"frames": len(self.frames), **{k: self.counts.get(k, 0) for k in STATUSES},
                  **{k: v for k, v in self.counts.items() if k not in STATUSES}}
        return {
            "meta": meta,
            "settings": {"min_depth": self.settings.min_depth, "max_depth": self.settings.max_depth,
                         "crop": (list(self.settings.crop) if isinstance(self.settings.crop, tuple)
                                  else self.settings.crop),
                         "pixels": "valid ground truth with a valid prediction "
                                   "(coverage = their share of valid ground truth)",
                         "resize": "prediction resized to the ground-truth size, nearest neighbour, "
                                   "when only the scale differs",
                         "median_scaling": False},
            "counts": counts,
            "summary": self.summary(),
            "latency_ms": self.latency(),
            "notes": list(self.notes),
            "error_histogram": {"quantity": "(pred - gt) / gt, clipped to [-1, 1]", "edges": HIST_EDGES.tolist(),
                                "counts": self._hist.tolist()},
            "frames": [asdict(f) for f in sorted(self.frames, key=lambda f: (f.stamp_ns, f.index))],
        }

    @property
    def histogram(self) -> np.ndarray:
        """Return the counts of the relative error (pred - gt) / gt over every scored pixel, in HIST_EDGES bins."""
        return self._hist

    def panels(self) -> list[tuple[int, np.ndarray]]:
        """Return the kept panels as (frame index, RGB image), in frame order."""
        return sorted(self._panels.panels.values(), key=lambda item: item[0])


class _Skip(ValueError):
    """A frame that is counted under `status` instead of being scored."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


# ------------------------------------------------------------------------------------ images
def make_panel(rgb: np.ndarray, gt: np.ndarray, pred: np.ndarray, scored: np.ndarray, max_depth: float) -> np.ndarray:
    """Make a panel RGB | ground truth | prediction | relative error, each PANEL_WIDTH wide.

    One colour scale for both depths (98th percentile of the ground truth); the error map is black
    where not scored.
    """
    height, width = gt.shape
    rgb = cv2.resize(np.asarray(rgb, dtype=np.uint8), (width, height), interpolation=cv2.INTER_AREA)
    gt_valid = gt[np.isfinite(gt) & (gt > 0)]
    top = min(float(np.percentile(gt_valid, 98)), max_depth) if gt_valid.size else max_depth
    rel = np.zeros_like(gt)
    rel[scored] = np.clip(np.abs(pred[scored] - gt[scored]) / gt[scored], 0, 0.5) / 0.5
    err = cv2.cvtColor(cv2.applyColorMap(np.round(rel * 255).astype(np.uint8), cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)
    err[~scored] = 0
    tiles = [rgb, colorize_depth(gt, top), colorize_depth(pred, top), err]
    tile_h = max(1, round(height * PANEL_WIDTH / width))
    return np.concatenate([cv2.resize(t, (PANEL_WIDTH, tile_h), interpolation=cv2.INTER_NEAREST) for t in tiles],
                          axis=1)
