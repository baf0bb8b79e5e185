"""The depth node's worker plumbing and diagnostics rule, in-process (no DDS, no rclpy)."""

from __future__ import annotations

import threading
import time

import pytest

from fusanet_ros.nodes.worker import assess, ERROR_AFTER_FAILURES, IDLE_TEXT, LatestSlot, NodeStats, rate_window


def _snap(**change: object) -> dict:
    """Build a healthy snapshot (images 0.05 s ago at 10 Hz for 10 s, 10 Hz out), then apply `change`."""
    snap = {"consecutive_inference_errors": 0, "last_inference_error": "", "seconds_since_input": 0.05, "idle": "",
            "output_rate_hz": 10.0, "input_span_s": 10.0, "bad_inputs_in_period": 0, "last_bad_input": "",
            "latency_p50_ms": 80.0}
    snap.update(change)
    return snap


@pytest.mark.parametrize("change, expected_rate, level, text", [
    ({}, 10.0, "OK", "10.0 Hz out"),
    ({}, 0.0, "OK", "Hz out"),
    ({"seconds_since_input": None}, 0.0, "STALE", "waiting for images"),
    ({"seconds_since_input": 0.31}, 10.0, "STALE", "no image for 0.3 s"),  # 3 periods at 10 Hz
    ({"seconds_since_input": 0.29}, 10.0, "OK", "Hz out"),
    ({"seconds_since_input": 4.0}, 0.0, "OK", "Hz out"),  # no expected rate: 5 s
    ({"seconds_since_input": 6.0}, 0.0, "STALE", "no image for 6.0 s"),
    ({"output_rate_hz": 4.0}, 10.0, "WARN", "output 4.0 Hz, expected 10 Hz"),
    ({"output_rate_hz": 4.0, "input_span_s": 1.0}, 10.0, "OK", "Hz out"),  # too early to judge the rate
    ({"output_rate_hz": 0.0}, 0.0, "OK", "Hz out"),  # no expected rate: no rate check
    ({"output_rate_hz": 0.0, "idle": IDLE_TEXT}, 10.0, "OK", "idle: no subscribers"),
    ({"bad_inputs_in_period": 2, "last_bad_input": "too_small: 1x1"}, 0.0, "WARN", "2 bad input(s)"),
    ({"consecutive_inference_errors": ERROR_AFTER_FAILURES, "last_inference_error": "RuntimeError: oom"}, 10.0, "ERROR",
     "3 inference failures in a row; last: RuntimeError: oom"),
    ({"consecutive_inference_errors": ERROR_AFTER_FAILURES - 1}, 10.0, "OK", "Hz out"),
    ({"consecutive_inference_errors": 5, "seconds_since_input": 9.0}, 10.0, "ERROR", "failures"),  # ERROR beats STALE
    ({"last_ground_fit_applied": False, "last_ground_fit_found": False, "last_ground_fit_reason": "no floor visible"},
     0.0, "WARN", "floor plane not used on the latest frame: no floor visible"),
    ({"last_ground_fit_applied": False, "last_ground_fit_found": True, "last_ground_fit_reason": "points"}, 0.0, "OK",
     "Hz out"),  # a floor found, the known points fitted instead
    ({"last_ground_fit_applied": True, "last_ground_fit_found": True, "last_ground_fit_reason": "ok"}, 0.0, "OK",
     "Hz out"),
    ({"last_ground_fit_applied": "", "last_ground_fit_found": "", "last_ground_fit_reason": ""}, 0.0, "OK",
     "Hz out"),  # no plane set
])
def test_diagnostic_level(change: dict, expected_rate: float, level: str, text: str) -> None:
    got_level, message = assess(_snap(**change), expected_rate)
    assert got_level == level and text in message, message


def test_failures_in_a_row_reset_on_a_served_frame() -> None:
    stats = NodeStats()
    for i in range(ERROR_AFTER_FAILURES):
        assert stats.failed(f"boom {i}") == i + 1
    snap = stats.snapshot(2.0)
    assert snap["consecutive_inference_errors"] == 3 and snap["inference_errors"] == 3
    assert assess({**snap, "seconds_since_input": 0.0}, 0.0)[0] == "ERROR"
    stats.timing(0.1, 0.08, 0.02, 0.01)
    snap = stats.snapshot(2.0)
    assert snap["consecutive_inference_errors"] == 0 and snap["inference_errors"] == 3 and snap["frames_out"] == 1


def test_rates_and_bad_inputs_per_period() -> None:
    stats = NodeStats()
    assert stats.snapshot(2.0)["seconds_since_input"] is None
    for _ in range(5):
        stats.frame_in()
    stats.bad("too_large", "8000x8000")
    first = stats.snapshot(2.0)
    assert first["frames_in"] == 5 and first["input_rate_hz"] > 5 / 2.0  # over the time images arrived, not 2 s
    assert first["bad_inputs_in_period"] == 1 and first["last_bad_input"] == "too_large: 8000x8000"
    assert stats.snapshot(2.0)["bad_inputs_in_period"] == 0  # counted once
    assert rate_window(0.0) == 2.0 and rate_window(1.0) == 4.0 and rate_window(30.0) == 2.0


def test_latest_slot_keeps_only_the_newest_and_clear_forgets_it() -> None:
    slot = LatestSlot()
    assert slot.put("a") is False and slot.put("b") is True  # "a" dropped
    assert slot.take() == "b"
    slot.put("c")
    slot.clear()
    taken: list = []
    worker = threading.Thread(target=lambda: taken.append(slot.take()))
    worker.start()
    time.sleep(0.05)
    assert not taken  # cleared: nothing to take, the worker waits
    slot.close()
    worker.join(1.0)
    assert taken == [None]


def test_scale_fits_are_counted_and_the_last_one_reported() -> None:
    stats = NodeStats()
    snap = stats.snapshot(2.0)
    assert snap["scale_fit_applied"] == snap["scale_fit_rejected"] == 0 and snap["last_scale_fit_reason"] == ""
    stats.scale_fit({"mode": "scale", "scale": 1.5, "shift": 0.0, "points": 40, "inliers": 36, "applied": True,
                     "reason": "ok"})
    stats.scale_fit({"mode": "scale", "scale": 1.0, "shift": 0.0, "points": 3, "inliers": 0, "applied": False,
                     "reason": "too few points (3 < 8)"})
    snap = stats.snapshot(2.0)
    assert snap["scale_fit_applied"] == 1 and snap["scale_fit_rejected"] == 1
    assert snap["last_scale_fit_applied"] is False and snap["last_scale_fit_inliers"] == "0/3"
    assert snap["last_scale_fit_reason"] == "too few points (3 < 8)" and snap["last_scale_fit_mode"] == "scale"
    assert snap["bad_inputs_in_period"] == 0  # a fallback is not bad input


def test_ground_fits_are_counted_and_the_last_one_reported_until_the_plane_is_switched_off() -> None:
    stats = NodeStats()
    snap = stats.snapshot(2.0)
    assert snap["ground_fit_applied"] == snap["ground_fallback"] == 0 and snap["last_ground_fit_applied"] == ""
    stats.ground_fit({"applied": True, "found": True, "scale": 1.2, "floor_pixels": 5000, "floor_share": 0.6,
                      "reason": "ok"})
    stats.ground_fit({"applied": False, "found": True, "scale": 1.3, "floor_pixels": 4000, "floor_share": 0.5,
                      "reason": "the known points' fit is used instead"})  # neither applied nor a fallback
    snap = stats.snapshot(2.0)
    assert snap["ground_fit_applied"] == 1 and snap["ground_fallback"] == 0
    assert assess({**snap, "seconds_since_input": 0.0, "latency_p50_ms": 1.0}, 0.0)[0] == "OK"
    stats.ground_fit({"applied": False, "found": False, "scale": 1.0, "floor_pixels": 3, "floor_share": 0.001,
                      "reason": "no floor visible"})
    snap = stats.snapshot(2.0)
    assert snap["ground_fit_applied"] == 1 and snap["ground_fallback"] == 1
    assert snap["last_ground_fit_applied"] is False and snap["last_ground_fit_reason"] == "no floor visible"
    assert snap["last_ground_fit_floor_pixels"] == 3 and snap["last_ground_fit_floor_share"] == 0.001
    assert snap["bad_inputs_in_period"] == 0  # a fallback is not bad input
    assert assess({**snap, "seconds_since_input": 0.0, "latency_p50_ms": 1.0}, 0.0)[0] == "WARN"
    stats.ground_fit(None)  # the plane was switched off: nothing left to warn about
    snap = stats.snapshot(2.0)
    assert snap["last_ground_fit_applied"] == "" and snap["ground_fallback"] == 1
    assert assess({**snap, "seconds_since_input": 0.0, "latency_p50_ms": 1.0}, 0.0)[0] == "OK"
