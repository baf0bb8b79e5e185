"""Parameter tables and value checks shared by the nodes.

No rclpy here: launch files, the CLI and tests import it without ROS.

A table maps a parameter name to a `Param`; `fusanet_ros.nodes.ros_common.declare_parameters`
turns each entry into a ParameterDescriptor (description, read_only, Integer/FloatingPointRange)
and the node's own validation reads the same bounds through `number`, so the range a tool shows
and the range the node enforces are one rule.
"""

from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Any, Mapping

# Parameters that earlier versions declared, with what replaced them. A user who still sets one
# gets a start-up error naming the replacement instead of a silently ignored value.
REMOVED_PARAMETERS: dict[str, str] = {
    "qos.reliability": "QoS is set per topic by qos_overrides parameters, e.g. "
                       "qos_overrides./camera/color/image_raw.subscription.reliability:=reliable",
    "qos.depth": "QoS is set per topic by qos_overrides parameters, e.g. "
                 "qos_overrides./camera/color/image_raw.subscription.depth:=5",
}


@dataclass(frozen=True)
class Param:
    """One declared parameter.

    Attributes:
        default: value (and so type) of the parameter.
        description: one line for `ros2 param describe`.
        runtime: changeable while the node runs; False = read-only (shapes the model, the
            subscriptions or the QoS, so a change needs a restart).
        low, high: closed numeric range (both or neither), also published in the descriptor.
        any_type: declared with dynamic typing. For a list whose default is empty: rclpy would
            type [] as a byte array and refuse doubles, and a params file's `[]` arrives as "not
            set"; the node's own validation checks the value instead.
    """

    default: Any
    description: str
    runtime: bool = False
    low: float | None = None
    high: float | None = None
    any_type: bool = False

    @property
    def is_int(self) -> bool:
        return isinstance(self.default, int) and not isinstance(self.default, bool)


def defaults(table: Mapping[str, Param]) -> dict[str, Any]:
    """Map each parameter of `table` to its default value."""
    return {name: p.default for name, p in table.items()}


def number(table: Mapping[str, Param], values: Mapping[str, Any], name: str) -> float | int:
    """Check numeric parameter `name` against its table range; returns its value.

    Raises:
        ValueError: not a number, not finite or outside [low, high]; the text names the
            parameter and shows the value as given (an int stays an int).
    """
    spec, raw = table[name], values[name]
    try:
        value = int(raw) if spec.is_int and float(raw) == int(raw) else float(raw)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"parameter {name} must be a number, got {raw!r}") from None
    if spec.is_int and not isinstance(value, int):
        raise ValueError(f"parameter {name} must be an integer, got {raw!r}")
    low = -math.inf if spec.low is None else spec.low
    high = math.inf if spec.high is None else spec.high
    if not (math.isfinite(value) and low <= value <= high):
        raise ValueError(f"parameter {name} must be in [{_text(low)}, {_text(high)}], got {raw!r}")
    return value


def choice(values: Mapping[str, Any], name: str, options: tuple[str, ...]) -> str:
    """Check that string parameter `name` is one of `options`; returns it."""
    value = str(values[name])
    if value not in options:
        raise ValueError(f"parameter {name} must be one of {', '.join(options)}, got {value!r}")
    return value


def removed_parameter_error(names: list[str]) -> str | None:
    """Name the first removed parameter among `names` and its replacement; None when there is none."""
    for name in names:
        if name in REMOVED_PARAMETERS:
            return f"parameter {name} was removed: {REMOVED_PARAMETERS[name]}"
    return None


def _text(bound: float) -> str:
    return f"{bound:g}" if isinstance(bound, float) else str(bound)
