"""`depth_lifecycle_node`: the depth node as a managed (lifecycle) node, REP 2002 style.

The same pipeline as `depth_node` (a `DepthPipeline`), set up in steps that a lifecycle manager (launch_ros,
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

from fusanet_ros.nodes.depth_node import NODE_NAME
from fusanet_ros.nodes.depth_pipeline import DepthPipeline
from fusanet_ros.nodes.depth_settings import PARAMETERS
from fusanet_ros.nodes.node_main import run_node, start_error_text, START_ERRORS
from fusanet_ros.nodes.ros_common import declare_parameters


class DepthLifecycleNode(LifecycleNode):
    """The FuSaNet depth node, managed (see the module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self.pipeline = DepthPipeline(self)
        # Declared now, so that they can be listed and set before configure.
        declare_parameters(self, PARAMETERS)

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.pipeline.configure()
        except START_ERRORS as err:
            self.get_logger().error(f"cannot configure: {start_error_text(err)}")
            self.pipeline.unconfigure()
            return TransitionCallbackReturn.FAILURE
        self.pipeline.open_outputs(self.create_lifecycle_publisher)
        self.get_logger().info(f"configured: {self.pipeline.model_name} on {self.pipeline.predictor.device}")
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_activate(state)  # activates the LifecyclePublishers first
        self.pipeline.open_inputs()
        self.get_logger().info(self.pipeline.ready_text())
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.pipeline.close_inputs()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return super().on_shutdown(state)

    def _release(self) -> None:
        """Undo whatever configure and activate set up (the worker stops before its publishers go)."""
        if self.pipeline.has_inputs:
            self.pipeline.close_inputs()
        self.pipeline.stop_worker()
        self.pipeline.close_outputs(self.destroy_lifecycle_publisher)
        self.pipeline.unconfigure()

    def stop(self) -> None:
        """Stop the worker on process exit; destroy_node() frees the rest."""
        self.pipeline.stop_worker()


def main(args: list[str] | None = None) -> int:
    """Console script `depth_lifecycle_node`: starts unconfigured and waits for transitions."""
    return run_node(NODE_NAME, DepthLifecycleNode, rclpy.spin, _stop, args)


def _stop(node: DepthLifecycleNode) -> int:
    node.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
