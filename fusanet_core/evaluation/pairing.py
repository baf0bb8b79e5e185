"""Stamp pairing of predictions with ground truth, ROS-free.

The offline rule (`pair_nearest`, each image with the nearest depth within the slop) and the live
one (`StampPairing`, streaming, bounded).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
import math
from typing import Any, Sequence

import numpy as np

DEFAULT_SLOP = 0.05  # s: half a frame at 10 Hz; cameras that are not hardware-synced need more
IMAGE_CACHE = 8  # input images kept for panels: predictions arrive a few frames after their input


def check_slop(slop: float) -> int:
    """Slop in seconds -> integer nanoseconds (0 = exact stamps)."""
    if not np.isfinite(slop) or slop < 0:
        raise ValueError(f"slop must be >= 0 seconds, got {slop}")
    return int(round(slop * 1e9))


def pair_nearest(image_stamps: Sequence[int], gt_stamps: Sequence[int], slop_ns: int) -> list[int | None]:
    """Return, for each image stamp, the index of the nearest ground-truth stamp within `slop_ns`, or None.

    Ties go to the earlier one.
    """
    if not len(gt_stamps):
        return [None] * len(image_stamps)
    gt = np.asarray(gt_stamps, dtype=np.int64)
    order = np.argsort(gt, kind="stable")
    sorted_gt = gt[order]
    result: list[int | None] = []
    for stamp in image_stamps:
        pos = int(np.searchsorted(sorted_gt, stamp))
        candidates = [p for p in (pos - 1, pos) if 0 <= p < len(sorted_gt)]
        best = min(candidates, key=lambda p: (abs(int(sorted_gt[p]) - stamp), sorted_gt[p]))
        result.append(int(order[best]) if abs(int(sorted_gt[best]) - stamp) <= slop_ns else None)
    return result


@dataclass
class Settled:
    """A prediction or input frame whose fate is decided (a pair to score, or a miss)."""

    stamp_ns: int
    status: str  # "pair" | "unpaired" | "dropped"
    pred: Any = None
    gt: Any = None
    gt_stamp_ns: int | None = None
    latency_ms: float | None = None
    image: Any = None


class StampPairing:
    """Pairs predictions with ground truth and inputs by stamp; ROS-free and single-threaded.

    A prediction is settled when a ground truth with its exact stamp is in, when a ground truth
    at least `slop` newer has arrived (no closer one can follow on a time-ordered topic), or when
    it ages out / on `flush`. Inputs that never got a prediction are settled as dropped.
    """

    def __init__(self, slop_ns: int, max_pending: int = 100, max_age_ns: int = 5_000_000_000) -> None:
        self.slop_ns, self.max_pending, self.max_age_ns = slop_ns, max_pending, max_age_ns
        self.inputs: OrderedDict[int, float] = OrderedDict()  # stamp -> arrival (s)
        self.images: OrderedDict[int, Any] = OrderedDict()  # stamp -> input message (panels)
        self.early: OrderedDict[int, None] = OrderedDict()  # predictions seen before their input
        self.preds: OrderedDict[int, tuple[Any, float | None]] = OrderedDict()
        self.gts: OrderedDict[int, Any] = OrderedDict()
        self.newest = -math.inf
        self.newest_gt = -math.inf
        self.counts = {"inputs": 0, "predictions": 0, "ground_truth": 0}

    def on_input(self, stamp: int, arrival: float, msg: Any = None) -> list[Settled]:
        self.counts["inputs"] += 1
        if stamp in self.early:  # its prediction came first: nothing left to wait for
            del self.early[stamp]
            return self._prune()
        self.inputs[stamp] = arrival
        if msg is not None:
            self.images[stamp] = msg
            while len(self.images) > IMAGE_CACHE:
                self.images.popitem(last=False)
        self._seen(stamp)
        return self._prune()

    def on_prediction(self, stamp: int, arrival: float, msg: Any) -> list[Settled]:
        self.counts["predictions"] += 1
        sent = self.inputs.pop(stamp, None)
        if sent is None:
            self.early[stamp] = None
            while len(self.early) > self.max_pending:
                self.early.popitem(last=False)
        self.preds[stamp] = (msg, None if sent is None else (arrival - sent) * 1000.0)
        self._seen(stamp)
        return self._match() + self._prune()

    def on_ground_truth(self, stamp: int, msg: Any) -> list[Settled]:
        self.counts["ground_truth"] += 1
        self.gts[stamp] = msg
        self.newest_gt = max(self.newest_gt, stamp)
        self._seen(stamp)
        return self._match() + self._prune()

    def flush(self) -> list[Settled]:
        """Settle everything still pending (end of the run)."""
        out = [self._settle(stamp) for stamp in list(self.preds)]
        out += [Settled(stamp, "dropped") for stamp in self.inputs]
        self.inputs.clear()
        return out

    def _seen(self, stamp: int) -> None:
        self.newest = max(self.newest, stamp)

    def _match(self) -> list[Settled]:
        ready = [s for s in self.preds if s in self.gts or self.newest_gt >= s + self.slop_ns]
        return [self._settle(s) for s in ready]

    def _settle(self, stamp: int) -> Settled:
        msg, latency = self.preds.pop(stamp)
        image = self.images.pop(stamp, None)
        gt_stamp = self._nearest_gt(stamp)
        if gt_stamp is None:
            return Settled(stamp, "unpaired", pred=msg, latency_ms=latency)
        return Settled(stamp, "pair", msg, self.gts[gt_stamp], gt_stamp, latency, image)

    def _nearest_gt(self, stamp: int) -> int | None:
        best = min(self.gts, key=lambda g: (abs(g - stamp), g), default=None)
        return best if best is not None and abs(best - stamp) <= self.slop_ns else None

    def _prune(self) -> list[Settled]:
        """Settle / forget what is too old or over the caps."""
        horizon = self.newest - self.max_age_ns
        out: list[Settled] = []
        while self.preds and (next(iter(self.preds)) < horizon or len(self.preds) > self.max_pending):
            out.append(self._settle(next(iter(self.preds))))
        while self.inputs and (next(iter(self.inputs)) < horizon or len(self.inputs) > self.max_pending):
            out.append(Settled(self.inputs.popitem(last=False)[0], "dropped"))
        # Ground truth stays one slop longer: a late prediction may still pair with it.
        while self.gts and (min(self.gts) < horizon - self.slop_ns or len(self.gts) > self.max_pending):
            del self.gts[min(self.gts)]
        return out


# -------------------------------------------------------------------------------------- node
