"""The rules of a confidence calibration's numbers (`inference.confidence_*` keys, `Calibration`).

Shared by the config, which validates the keys when it is loaded, and `inference.confidence`,
which applies the calibration (docs/architecture.md "Calibrated confidence"). Pure Python, so the
config stays light.
"""

from __future__ import annotations

from collections.abc import Sequence
import math

FEATURES = ("raw_logit", "points", "points_log_distance")  # the score's inputs after the constant w0


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


def check_weights(weights: Sequence[float], prefix: str) -> None:
    """Refuse score weights of the wrong count or non-finite ones (`prefix` + "weights" names the key)."""
    if weights and (len(weights) != 1 + len(FEATURES) or not all(math.isfinite(w) for w in weights)):
        raise ValueError(f"{prefix}weights must be empty or {1 + len(FEATURES)} finite values (constant, "
                         f"{', '.join(FEATURES)}), got {list(weights)}")
