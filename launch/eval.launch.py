"""Live evaluation: bag player + FuSaNet depth node + evaluator.

    ros2 launch fusanet eval.launch.py bag:=/path/to/bag image_topic:=/camera/color/image_raw \
        camera_info_topic:=/camera/color/camera_info depth_topic:=/camera/depth/image_raw

The nodes, parameters and remappings come from `fusanet_ros.startup.eval_launch.eval_nodes`, the same plain
description that `fusanet_ros.startup.eval_launch.run_eval_launch` starts as processes on pip-only installs.
The player is `fusanet play` (it reads ROS 1 and ROS 2 bags); leave `bag` empty to evaluate live
topics from a camera. The launch ends when the evaluator has written its report (after
`idle_timeout` seconds without messages) or on Ctrl-C (the evaluator writes the report then too).

Arguments: see `ros2 launch fusanet eval.launch.py --show-args`.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, ExecuteProcess, OpaqueFunction, RegisterEventHandler
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from fusanet_ros.startup.eval_launch import eval_arguments, eval_nodes, eval_player


def _actions(context, *args, **kwargs):
    """Resolve the launch arguments to strings, then build the actions from the description."""
    values = {arg.name: LaunchConfiguration(arg.name).perform(context) for arg in eval_arguments()}
    actions = []
    for spec in eval_nodes(**values):
        node = Node(**spec.launch_ros_kwargs())
        actions.append(node)
        if spec.name == "evaluator":  # the report is written: end the whole launch
            actions.append(RegisterEventHandler(OnProcessExit(target_action=node,
                                                              on_exit=[EmitEvent(event=Shutdown())])))
    if values["bag"]:
        # The player waits for a subscriber on each topic; only the depth node subscribes to the
        # colour camera_info, so nothing is played before its model is loaded.
        player = eval_player(values)
        process = ExecuteProcess(cmd=player, name="player", output="screen")
        actions += [process, RegisterEventHandler(OnProcessExit(target_action=process, on_exit=_end_if_failed))]
    return actions


def _end_if_failed(event, context):
    """End the launch when the player fails (e.g. topics not in the bag): no frame will come."""
    if not event.returncode:
        return []
    return [EmitEvent(event=Shutdown(reason=f"the bag player failed (exit {event.returncode})"))]


def generate_launch_description():
    arguments = [DeclareLaunchArgument(a.name, default_value=a.default, description=a.description)
                 for a in eval_arguments()]
    return LaunchDescription([*arguments, OpaqueFunction(function=_actions)])
