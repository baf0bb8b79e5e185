"""`depth_node`: monocular metric depth, confidence and point clouds from a colour camera.

Subscribes:
    image (sensor_msgs/Image rgb8|bgr8|rgba8|bgra8|mono8) or, with image_transport:=compressed,
        <resolved image topic>/compressed (sensor_msgs/CompressedImage)
    camera_info (sensor_msgs/CameraInfo of that image)
    sparse_points (sensor_msgs/PointCloud2 in the image's optical frame or in sparse.frame_id with
        sparse.extrinsic, or with sparse.type:=depth_image a sparse 16UC1/32FC1 Image): optional
        known depths (SLAM landmarks, LiDAR) that the output is fitted through (scale_from_points,
        default scale_local: fusanet_core/inference/point_fit.py) and, with prime_with_points, that
        prime the network; a cloud in the frame of camera_pose (e.g. map) is placed in the camera
        by the pose nearest the image stamp
    camera_pose (geometry_msgs/PoseStamped, optional): the camera optical frame's pose in
        header.frame_id (p_frame = R p_camera + t), e.g. from a SLAM system
Parameters ground.extrinsic / ground.plane give the floor plane under a ground robot, passed to
the Predictor for the metric scale where the floor is seen (fusanet_core/inference/ground.py).
Publishes (all with the input header), as camera pairs (image_transport / REP 118 layout):
    depth/image (32FC1 metres: +Inf beyond max_depth, NaN invalid (REP 117) | 16UC1 mm, 0 invalid),
    depth/camera_info and confidence/camera_info (the rectified camera at the output size: D = 0,
    K = P rescaled), confidence/image (32FC1 in [0, 1]), points (PointCloud2 xyz[rgb]),
    salient_points (PointCloud2 xyz of the network's salient points), /diagnostics.

The node is thin: message -> array -> (rectify) -> Predictor -> array -> message. Callbacks only
store the latest message; one worker thread takes the latest frame from a single-slot mailbox, so
a slow model drops stale frames (counted) instead of queueing them. The `DepthPipeline`
(depth_pipeline.py) holds the whole pipeline; `DepthNode` (here) and `DepthLifecycleNode`
(depth_lifecycle_node.py) each hold one and only decide when its parts are set up and torn down.
"""

from __future__ import annotations

import sys
from typing import Any

import rclpy
from rclpy.node import Node

from fusanet_ros.nodes.depth_pipeline import DepthPipeline
from fusanet_ros.nodes.node_main import run_node

NODE_NAME = "depth_node"


class DepthNode(Node):
    """The FuSaNet depth node (see the module docstring): everything is set up at construction."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self.pipeline = DepthPipeline(self)
        self.pipeline.configure()
        self.pipeline.open_outputs(self.create_publisher)
        self.pipeline.open_inputs()
        self.get_logger().info(self.pipeline.ready_text())

    def stop(self) -> None:
        """Stop the worker (the frame in progress finishes); destroy_node() frees the rest."""
        self.pipeline.stop_worker()


def main(args: list[str] | None = None) -> int:
    """Console script `depth_node`: exits 2 with one line on invalid parameters or checkpoint."""
    return run_node(NODE_NAME, DepthNode, rclpy.spin, _stop, args)


def _stop(node: DepthNode) -> int:
    node.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
