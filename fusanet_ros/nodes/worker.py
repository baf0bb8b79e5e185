"""The depth node's worker plumbing, without rclpy.

The single-slot mailbox between the image callback and the inference thread, the counters and
timing windows behind /diagnostics, and the rule that turns them into a diagnostic level.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
import threading
import time
from typing import Any

import numpy as np

from fusanet_core.evaluation.metrics import timing_summary

# Bad input: counted per kind, logged (throttled) and reported; the node goes on.
BAD_INPUT_KINDS = ("bad_image", "too_large", "too_small", "stamp_zero", "stamp_backwards", "bad_camera_info",
                   "bad_sparse", "sparse_wrong_frame", "bad_pose", "inference_errors")
# Reported from the start (0 until something happens) so monitors see every key.
COUNTERS = ("frames_in", "frames_out", "dropped", "skipped_no_subscribers", *BAD_INPUT_KINDS,
            "frames_without_camera_info", "waiting_camera_info", "frames_rectified", "sparse_in", "sparse_points_used",
            "sparse_points_rejected", "sparse_all_rejected", "sparse_stale", "poses_in", "pose_stale",
            "sparse_no_pose", "sparse_posed", "scale_fit_applied", "scale_fit_rejected", "ground_fit_applied",
            "ground_fallback")
# The last scale_from_points fit, reported under these keys ("" until a fit was tried).
SCALE_FIT_KEYS = ("mode", "applied", "scale", "shift", "inliers", "reason")
# The last floor-plane fit (ground.plane / ground.extrinsic), likewise ("" while no plane is set).
GROUND_FIT_KEYS = ("applied", "found", "scale", "floor_pixels", "floor_share", "reason")
ERROR_AFTER_FAILURES = 3  # consecutive inference failures that make the status ERROR
STALE_PERIODS = 3  # periods of expected_rate without an image that make the status STALE
STALE_WITHOUT_RATE = 5.0  # s without an image before STALE when no expected_rate is set
IDLE_TEXT = "no subscribers"
TIMINGS = ("latency", "model", "overhead", "overhead_cpu")


@dataclass
class Frame:
    """One received image waiting for the worker."""

    msg: Any
    compressed: bool
    received: float  # time.perf_counter() in the callback


class LatestSlot:
    """Single-slot mailbox: `put` replaces the waiting item (the caller counts it as dropped)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Any = None
        self._closed = False

    def put(self, item: Any) -> bool:
        """Store `item`; True when an unprocessed item was replaced (a dropped frame)."""
        with self._cond:
            replaced = self._item is not None
            self._item = item
            self._cond.notify()
            return replaced

    def take(self) -> Any:
        """Wait for an item; None once closed."""
        with self._cond:
            while self._item is None and not self._closed:
                self._cond.wait()
            item, self._item = self._item, None
            return item

    def clear(self) -> None:
        """Forget the waiting item (a deactivated node serves nothing received before)."""
        with self._cond:
            self._item = None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._item = None
            self._cond.notify_all()


class NodeStats:
    """Thread-safe counters, event times and bounded timing windows for /diagnostics."""

    WINDOW = 300  # frames kept for percentiles
    EVENTS = 4096  # arrival times kept for rates (2 s at 2 kHz)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self.timings: dict[str, deque[float]] = {k: deque(maxlen=self.WINDOW) for k in TIMINGS}
        self.last_bad = ""
        self.last_failure = ""
        self.consecutive_failures = 0
        self.idle = False
        self._inputs: deque[float] = deque(maxlen=self.EVENTS)
        self._outputs: deque[float] = deque(maxlen=self.EVENTS)
        self._last_bad_total = 0
        self._first_input: float | None = None
        self.last_fit: dict[str, Any] = dict.fromkeys(SCALE_FIT_KEYS, "")
        self.last_ground: dict[str, Any] = dict.fromkeys(GROUND_FIT_KEYS, "")

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counters[name] = self.counters.get(name, 0) + n

    def frame_in(self) -> None:
        """Count an arrived image (before any check: it proves the input is alive)."""
        with self._lock:
            self.counters["frames_in"] += 1
            self._inputs.append(time.monotonic())
            if self._first_input is None:
                self._first_input = self._inputs[-1]

    def bad(self, kind: str, reason: str) -> int:
        """Count a bad input of `kind`; returns the count so far."""
        with self._lock:
            self.counters[kind] = self.counters.get(kind, 0) + 1
            self.last_bad = f"{kind}: {reason}"
            return self.counters[kind]

    def failed(self, reason: str) -> int:
        """Count an inference failure (a bad input too); returns the failures in a row."""
        self.bad("inference_errors", reason)
        with self._lock:
            self.consecutive_failures += 1
            self.last_failure = reason
            return self.consecutive_failures

    def scale_fit(self, fit: dict[str, Any]) -> None:
        """Count a tried scale_from_points fit (a `PointFit.as_dict()`) as applied or rejected; keep it."""
        with self._lock:
            key = "scale_fit_applied" if fit["applied"] else "scale_fit_rejected"
            self.counters[key] += 1
            self.last_fit = {"mode": fit["mode"], "applied": bool(fit["applied"]), "scale": float(fit["scale"]),
                             "shift": float(fit["shift"]), "inliers": f"{fit['inliers']}/{fit['points']}",
                             "reason": fit["reason"]}

    def ground_fit(self, fit: dict[str, Any] | None) -> None:
        """Count a floor-plane fit (a `GroundFit.as_dict()`) as applied or fallen back, and keep it.

        A floor found but not applied because known points were fitted is neither. None: no plane
        is set; the last fit is forgotten, so that a plane switched off at runtime leaves no
        warning behind.
        """
        with self._lock:
            if fit is None:
                self.last_ground = dict.fromkeys(GROUND_FIT_KEYS, "")
                return
            if fit["applied"] or not fit["found"]:
                self.counters["ground_fit_applied" if fit["applied"] else "ground_fallback"] += 1
            self.last_ground = {"applied": bool(fit["applied"]), "found": bool(fit["found"]),
                                "scale": float(fit["scale"]),
                                "floor_pixels": int(fit["floor_pixels"]), "floor_share": float(fit["floor_share"]),
                                "reason": str(fit["reason"])}

    def timing(self, latency: float, model: float, overhead: float, overhead_cpu: float) -> None:
        """Seconds of one served frame: receive -> publish, predict, everything else (wall, CPU)."""
        with self._lock:
            self.counters["frames_out"] += 1
            self.consecutive_failures = 0
            self._outputs.append(time.monotonic())
            for name, value in zip(TIMINGS, (latency, model, overhead, overhead_cpu)):
                self.timings[name].append(value)

    def snapshot(self, rate_window: float) -> dict[str, Any]:
        """Take the values /diagnostics reports.

        Counters, input/output rates over the last `rate_window` s, bad inputs since the previous
        snapshot, seconds since the last image and p50/p95 of the timing windows (ms).
        """
        with self._lock:
            now = time.monotonic()
            counts = dict(self.counters)
            bad_total = sum(counts.get(k, 0) for k in BAD_INPUT_KINDS)
            # Rates over the time images have been arriving, up to the window: no low rate at start.
            window = min(rate_window, max(now - self._first_input, 1e-3)) if self._first_input else rate_window
            values: dict[str, Any] = {
                "input_rate_hz": sum(t > now - window for t in self._inputs) / window,
                "output_rate_hz": sum(t > now - window for t in self._outputs) / window,
                "bad_inputs_in_period": bad_total - self._last_bad_total,
                "seconds_since_input": now - self._inputs[-1] if self._inputs else None,
                "input_span_s": now - self._first_input if self._first_input else 0.0,
                "consecutive_inference_errors": self.consecutive_failures,
                "idle": IDLE_TEXT if self.idle else "",
            }
            self._last_bad_total = bad_total
            for name, timing in self.timings.items():
                stats = timing_summary(np.asarray(timing, dtype=np.float64) * 1000.0)
                values[f"{name}_p50_ms"], values[f"{name}_p95_ms"] = stats["p50"], stats["p95"]
            fit = {f"last_scale_fit_{key}": value for key, value in self.last_fit.items()}
            ground = {f"last_ground_fit_{key}": value for key, value in self.last_ground.items()}
            last = {"last_bad_input": self.last_bad, "last_inference_error": self.last_failure}
            return {**counts, **values, **fit, **ground, **last}


def rate_window(expected_rate: float) -> float:
    """Seconds over which rates are measured: a few frames at the expected rate, at least 2 s."""
    return max(2.0, 4.0 / expected_rate) if expected_rate > 0 else 2.0


def assess(snap: dict[str, Any], expected_rate: float) -> tuple[str, str]:
    """(level, message) of a snapshot: ERROR > STALE > WARN > OK (diagnostic_msgs levels by name).

    ERROR: ERROR_AFTER_FAILURES inference failures in a row. STALE: no image yet, or none for
    STALE_PERIODS periods of `expected_rate` (STALE_WITHOUT_RATE s without one). WARN: the output
    rate below half of `expected_rate` while subscribed, bad input since the last report, or a
    floor plane that the latest frame could not use (its depth has the network's scale, not the
    floor's).
    """
    failures = snap["consecutive_inference_errors"]
    if failures >= ERROR_AFTER_FAILURES:
        return "ERROR", f"{failures} inference failures in a row; last: {snap['last_inference_error']}"
    since = snap["seconds_since_input"]
    if since is None:
        return "STALE", "waiting for images"
    stale_after = STALE_PERIODS / expected_rate if expected_rate > 0 else STALE_WITHOUT_RATE
    if since > stale_after:
        return "STALE", f"no image for {since:.1f} s"
    if snap["idle"]:
        return "OK", f"idle: {snap['idle']} (inference skipped)"
    low_output = snap["output_rate_hz"] < 0.5 * expected_rate and snap["input_span_s"] > rate_window(expected_rate)
    if expected_rate > 0 and low_output:
        return "WARN", f"output {snap['output_rate_hz']:.1f} Hz, expected {expected_rate:g} Hz"
    if snap["bad_inputs_in_period"]:
        return "WARN", f"{snap['bad_inputs_in_period']} bad input(s) in the last period; last: {snap['last_bad_input']}"
    if snap.get("last_ground_fit_found") is False:
        return "WARN", f"floor plane not used on the latest frame: {snap['last_ground_fit_reason']}"
    return "OK", f"{snap['output_rate_hz']:.1f} Hz out, latency p50 {snap['latency_p50_ms']:.0f} ms"
