"""FuSaNet depth node: `ros2 launch fusanet depth.launch.py image_topic:=/camera/color/image_raw`.

The nodes, parameters and remappings come from `fusanet_ros.startup.launch_description`, the same plain
description that `fusanet launch depth` starts as processes on pip-only installs, so both ways
run the same thing.

Arguments: params_file, namespace (default fusanet: outputs at /fusanet/depth/image ...),
image_topic, camera_info_topic, sparse_points_topic, camera_pose_topic, checkpoint, device,
lifecycle, autostart, use_sim_time, log_level (see `ros2 launch fusanet depth.launch.py
--show-args`). With
lifecycle:=true the managed depth_lifecycle_node starts; with autostart:=true (default) this
launch file configures it and activates it once it is inactive, as `fusanet launch depth
--lifecycle true` does through the lifecycle services.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, OpaqueFunction, RegisterEventHandler
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from lifecycle_msgs.msg import Transition

from fusanet_ros.startup.launch_description import DEPTH_ARGUMENTS, depth_nodes


def _node_actions(spec):
    """Build a Node, or a LifecycleNode with the configure event and an activate-when-inactive handler."""
    if not spec.lifecycle:
        return [Node(**spec.launch_ros_kwargs())]
    node = LifecycleNode(**spec.launch_ros_kwargs())
    if not spec.autostart:
        return [node]

    def change(transition_id):
        return EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node), transition_id=transition_id))

    activate = RegisterEventHandler(OnStateTransition(target_lifecycle_node=node, goal_state="inactive",
                                                      entities=[change(Transition.TRANSITION_ACTIVATE)]))
    return [node, activate, change(Transition.TRANSITION_CONFIGURE)]


def _nodes(context, *args, **kwargs):
    """Resolve the launch arguments to strings, then build the actions from the description."""
    values = {arg.name: LaunchConfiguration(arg.name).perform(context) for arg in DEPTH_ARGUMENTS}
    return [action for spec in depth_nodes(**values) for action in _node_actions(spec)]


def generate_launch_description():
    arguments = [DeclareLaunchArgument(a.name, default_value=a.default, description=a.description)
                 for a in DEPTH_ARGUMENTS]
    return LaunchDescription([*arguments, OpaqueFunction(function=_nodes)])
