"""What every fusanet node does the same way with rclpy.

QoS profiles (overridable by parameters), declaring a `Param` table with descriptors, refusing
removed parameters, and throttled warnings.
"""

from __future__ import annotations

import math
import time
from typing import Any, Mapping

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.qos_overriding_options import QoSOverridingOptions

from fusanet_ros.nodes.params import Param, removed_parameter_error


def qos_overrides() -> QoSOverridingOptions:
    """Give the options to pass as `qos_overriding_options` to every publisher and subscription.

    Users then set QoS with read-only parameters
    `qos_overrides./<resolved topic>.<publisher|subscription>.<policy>` (reliability, depth,
    history, durability) in a params file or with `-p`.
    """
    return QoSOverridingOptions.with_default_policies()


def sensor_qos(depth: int = 2) -> QoSProfile:
    """Build the input QoS: best effort, keep last `depth`.

    Stale frames drop, and a best-effort subscription also matches reliable publishers (bag
    players, most drivers). A new profile per call: rclpy writes qos_overrides into the profile
    it is given, so sharing one would carry one topic's override to the next.
    """
    return QoSProfile(depth=depth, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.BEST_EFFORT)


def reliable_qos(depth: int = 2) -> QoSProfile:
    """Build the output QoS: reliable, keep last `depth` (matches both kinds of subscribers)."""
    return QoSProfile(depth=depth, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)


def descriptor(spec: Param) -> ParameterDescriptor:
    """Describe a table entry: description, read_only and its numeric range."""
    desc = ParameterDescriptor(description=spec.description, read_only=not spec.runtime,
                               dynamic_typing=spec.any_type)
    if spec.low is not None and spec.high is not None:
        if spec.is_int:
            desc.integer_range = [IntegerRange(from_value=int(spec.low), to_value=int(spec.high), step=0)]
        elif isinstance(spec.default, float):
            desc.floating_point_range = [FloatingPointRange(from_value=float(spec.low), to_value=float(spec.high),
                                                            step=0.0)]
    return desc


def declare_parameters(node: Node, table: Mapping[str, Param]) -> dict[str, Any]:
    """Declare every parameter of `table` on `node`; returns name -> current value.

    Raises:
        ValueError: a removed parameter (REMOVED_PARAMETERS) is set for this node; rclpy would
            ignore it silently, so the user would never learn the setting has no effect.
    """
    reason = removed_parameter_error(list(getattr(node, "_parameter_overrides", {})))
    if reason:
        raise ValueError(reason)
    for name, spec in table.items():
        if not node.has_parameter(name):  # a lifecycle node configured again keeps its parameters
            node.declare_parameter(name, spec.default, descriptor(spec))
    return {name: node.get_parameter(name).value for name in table}


class ThrottledLog:
    """Warnings at most once per `period` seconds per key (a bad stream must not flood the log)."""

    def __init__(self, node: Node, period: float = 5.0) -> None:
        self._node = node
        self._period = period
        self._times: dict[str, float] = {}

    def warning(self, key: str, text: str) -> bool:
        """Log `text` unless `key` was logged less than `period` s ago; True when logged."""
        now = time.monotonic()
        if now - self._times.get(key, -math.inf) < self._period:
            return False
        self._times[key] = now
        self._node.get_logger().warning(text)
        return True
