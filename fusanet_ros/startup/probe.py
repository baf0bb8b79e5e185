"""A probe node for talking to running nodes over DDS from tests, benchmarks and scripts.

The probe lives in its own rclpy Context (so several can exist in one process, one per domain),
publishes inputs, records outputs and calls parameter services; every wait has a timeout.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable

from fusanet_ros.startup.dds import dds_env


def prepare_process_env(domain_id: int) -> dict[str, str]:
    """Return the environment of DDS processes for `domain_id`, and apply it to this process too.

    This process must see the same discovery range and Fast DDS profile before its first
    participant exists.
    """
    env = dds_env(domain_id)
    for key in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "FASTDDS_DEFAULT_PROFILES_FILE"):
        os.environ[key] = env[key]
    return env


class Probe:
    """A node in this process on `domain_id` (call close() or use as a context manager)."""

    def __init__(self, domain_id: int, name: str = "fusanet_probe") -> None:
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.signals import SignalHandlerOptions

        prepare_process_env(domain_id)
        self.context = Context()
        # No signal handlers: the host process (pytest, a benchmark) keeps its own Ctrl-C handling.
        rclpy.init(context=self.context, domain_id=domain_id, signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.recorders: list[Any] = []  # the subscriptions of record()

    def publisher(self, msg_type: type, topic: str, depth: int = 5) -> Any:
        """Create a reliable keep-last publisher, which reaches best-effort subscribers too."""
        return self.node.create_publisher(msg_type, topic, depth)

    def record(self, msg_type: type, topic: str, keep: int = 50, best_effort: bool = False) -> list[Any]:
        """Subscribe and return the list the messages are appended to (at most `keep` kept)."""
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        received: list[Any] = []

        def store(msg: Any) -> None:
            received.append(msg)
            del received[:-keep]

        qos = QoSProfile(depth=10,
                         reliability=ReliabilityPolicy.BEST_EFFORT if best_effort else ReliabilityPolicy.RELIABLE)
        self.recorders.append(self.node.create_subscription(msg_type, topic, store, qos))
        return received

    def spin_until(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Spin until `condition()` holds; False after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                return False
            self.executor.spin_once(timeout_sec=0.02)
        return True

    def spin_for(self, seconds: float) -> None:
        self.spin_until(lambda: False, seconds)

    def wait_for_subscriber(self, topic: str, timeout: float) -> bool:
        return self.spin_until(lambda: self.node.count_subscribers(topic) > 0, timeout)

    def wait_for_publisher(self, topic: str, timeout: float) -> bool:
        return self.spin_until(lambda: self.node.count_publishers(topic) > 0, timeout)

    def wait_until_recorders_matched(self, timeout: float) -> bool:
        """Wait until every record() subscription is matched to a publisher.

        A publisher known to the graph (count_publishers) may not be matched to this reader yet, and
        what it publishes before that is lost on volatile topics.
        """
        return self.spin_until(lambda: all(sub.get_publisher_count() > 0 for sub in self.recorders), timeout)

    def set_parameters(self, node_name: str, values: dict[str, Any], timeout: float = 10.0) -> list[Any]:
        """Call <node_name>/set_parameters; returns the SetParametersResult list (one per value)."""
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        client = self.node.create_client(SetParameters, f"{node_name}/set_parameters")
        try:
            if not self.spin_until(client.service_is_ready, timeout):
                raise TimeoutError(f"no parameter service {node_name}/set_parameters after {timeout} s")
            request = SetParameters.Request(
                parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()])
            future = client.call_async(request)
            if not self.spin_until(future.done, timeout):
                raise TimeoutError(f"{node_name}/set_parameters did not answer within {timeout} s")
            return list(future.result().results)
        finally:
            self.node.destroy_client(client)

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        self.context.try_shutdown()

    def __enter__(self) -> Probe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
