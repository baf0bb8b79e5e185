"""`depth_lifecycle_node`: the depth node as a managed (lifecycle) node, REP 2002 style.

The same pipeline as `depth_node` (`DepthCore`), set up in steps that a lifecycle manager (launch_ros,
nav2's lifecycle_manager, or `fusanet launch depth --lifecycle` with autostart) drives through
`<node>/change_state`:

    configure   validate the parameters, load and warm up the model, start the worker; create
                the outputs as LifecyclePublishers (inactive: they publish nothing yet)
    activate    activate the publishers, subscribe to the inputs: frames are served
    deactivate  unsubscribe, deactivate the publishers: nothing is published
    cleanup     stop the worker, destroy the publishers, drop the model
    shutdown    all of the above, from any state

Invalid parameters or a missing checkpoint make `configure` fail (the node stays unconfigured
and logs why) instead of ending the process; parameters can then be fixed and configure retried.
"""

from __future__ import annotations

import sys
from typing import Any

import rclpy
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from fusanet_ros.nodes.depth_node import DepthCore, NODE_NAME
from fusanet_ros.nodes.depth_settings import PARAMETERS
from fusanet_ros.nodes.node_main import run_node, start_error_text, START_ERRORS
from fusanet_ros.nodes.ros_common import declare_parameters


class DepthLifecycleNode(DepthCore, LifecycleNode):
    """The FuSaNet depth node, managed (see the module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self._init_core()
        # Declared now, so that they can be listed and set before configure.
        declare_parameters(self, PARAMETERS)

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._configure()
        except START_ERRORS as err:
            self.get_logger().error(f"cannot configure: {start_error_text(err)}")
            self._unconfigure()
            return TransitionCallbackReturn.FAILURE
        self._open_outputs(self.create_lifecycle_publisher)
        self.get_logger().info(f"configured: {self._model_name} on {self._predictor.device}")
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_activate(state)  # activates the LifecyclePublishers first
        self._open_inputs()
        self.get_logger().info(self._ready_text())
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._close_inputs()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return super().on_shutdown(state)

    def _release(self) -> None:
        """Undo whatever configure and activate set up (the worker stops before its publishers go)."""
        if self._subs:
            self._close_inputs()
        self._stop_worker()
        self._close_outputs(self.destroy_lifecycle_publisher)
        self._unconfigure()

    def stop(self) -> None:
        """Stop the worker on process exit; destroy_node() frees the rest."""
        self._stop_worker()


def main(args: list[str] | None = None) -> int:
    """Console script `depth_lifecycle_node`: starts unconfigured and waits for transitions."""
    return run_node(NODE_NAME, DepthLifecycleNode, rclpy.spin, _stop, args)


def _stop(node: DepthLifecycleNode) -> int:
    node.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
