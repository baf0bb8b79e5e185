"""FuSaNet depth node: `ros2 launch fusanet depth.launch.py image_topic:=/camera/color/image_raw`.

The nodes, parameters and remappings come from `fusanet_ros.startup.launch_description`, the same plain
description that `fusanet launch depth` starts as processes on pip-only installs, so both ways
run the same thing.

Arguments: params_file, namespace, image_topic, camera_info_topic, sparse_points_topic,
checkpoint, device (see `ros2 launch fusanet depth.launch.py --show-args`).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from fusanet_ros.startup.launch_description import DEPTH_ARGUMENTS, depth_nodes


def _nodes(context, *args, **kwargs):
    """Resolve the launch arguments to strings, then build Node actions from the description."""
    values = {arg.name: LaunchConfiguration(arg.name).perform(context) for arg in DEPTH_ARGUMENTS}
    return [Node(**spec.launch_ros_kwargs()) for spec in depth_nodes(**values)]


def generate_launch_description():
    arguments = [DeclareLaunchArgument(a.name, default_value=a.default, description=a.description) for a in DEPTH_ARGUMENTS]
    return LaunchDescription([*arguments, OpaqueFunction(function=_nodes)])
