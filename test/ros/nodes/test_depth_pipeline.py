"""DepthPipeline (the depth nodes' composed pipeline), in-process with a stand-in node.

Settings reach the Predictor; camera poses place map clouds in the camera; floor-plane fits are counted.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

pytest.importorskip("rclpy")

# E402, I100: the ROS imports must follow pytest.importorskip
from geometry_msgs.msg import PoseStamped  # noqa: E402, I100
from std_msgs.msg import Header  # noqa: E402

from fusanet_core.geometry import parse_extrinsic, project_points  # noqa: E402
from fusanet_ros.nodes import conversions as conv  # noqa: E402
from fusanet_ros.nodes.depth_pipeline import DepthPipeline  # noqa: E402
from fusanet_ros.nodes.depth_settings import PARAMETERS, validate_settings  # noqa: E402
from fusanet_ros.nodes.params import defaults  # noqa: E402

K = (520.9, 521.0, 325.1, 249.7)
W, H = 640, 480
CAMERA = "cam_optical"
# A camera pose in the map: turned and moved (p_map = R p_camera + t), as "tx ty tz qx qy qz qw".
POSE = parse_extrinsic([1.2, -0.7, 0.4, 0.3, -0.5, 0.6, 0.5477225575051661])


class FakeNode:
    """The parts of an rclpy node that the pipeline's callbacks use."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values
        self.warnings: list[str] = []

    def get_parameter(self, name: str) -> Any:
        return SimpleNamespace(value=self.values[name])

    def get_logger(self) -> Any:
        return SimpleNamespace(warning=self.warnings.append)


class RecordingPredictor:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, bool]] = []

    def set_point_fit(self, mode: str, min_points: int = 3, prime: bool = True) -> None:
        self.calls.append((mode, min_points, prime))


def _param(name: str, value: Any) -> Any:
    return SimpleNamespace(name=name, value=value)


def test_point_fit_settings_reach_the_predictor_when_they_change_and_only_valid_ones() -> None:
    values = defaults(PARAMETERS)
    pipeline = DepthPipeline(FakeNode(values))
    pipeline.settings = validate_settings(values)
    pipeline.predictor = RecordingPredictor()
    assert pipeline._on_set_parameters([_param("scale_from_points", "scale_shift")]).successful
    assert pipeline.settings.scale_from_points == "scale_shift"
    expected = ("scale_shift", pipeline.settings.scale_fit_min_points, pipeline.settings.prime_with_points)
    assert pipeline.predictor.calls == [expected]
    refused = pipeline._on_set_parameters([_param("scale_from_points", "cubic")])
    assert not refused.successful and "cubic" in refused.reason
    assert pipeline.predictor.calls == [expected] and pipeline.settings.scale_from_points == "scale_shift"
    assert pipeline._on_set_parameters([_param("qos_overrides./x.reliability", "reliable")]).successful  # not ours
    assert len(pipeline.predictor.calls) == 1


def test_a_pipeline_before_configure_has_no_inputs_and_no_model() -> None:
    pipeline = DepthPipeline(FakeNode(defaults(PARAMETERS)))
    assert not pipeline.has_inputs and pipeline.predictor is None
    pipeline._apply_point_fit(validate_settings(defaults(PARAMETERS)))  # no model yet: nothing to set, no error


def _header(sec: float, frame_id: str = CAMERA) -> Header:
    header = Header(frame_id=frame_id)
    header.stamp.sec, header.stamp.nanosec = int(sec), int(round((sec % 1) * 1e9))
    return header


def _pose_msg(sec: float, frame_id: str = "map", pose: Any = POSE, quaternion: Any = None) -> PoseStamped:
    values = pose.as_list()
    msg = PoseStamped(header=_header(sec, frame_id))
    msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = values[:3]
    q = values[3:] if quaternion is None else quaternion
    msg.pose.orientation.x, msg.pose.orientation.y, msg.pose.orientation.z, msg.pose.orientation.w = q
    return msg


def _camera_points(n: int = 40) -> np.ndarray:
    """Points on a tilted plane 2-3.5 m ahead, spread over the image."""
    rng = np.random.default_rng(3)
    u, v = rng.uniform(20, W - 20, n), rng.uniform(20, H - 20, n)
    xn, yn = (u - K[2]) / K[0], (v - K[3]) / K[1]
    z = 2.5 / (1 + 0.3 * xn + 0.25 * yn)
    return np.stack([xn * z, yn * z, z], axis=1)


def _pipeline(**change: Any) -> DepthPipeline:
    values = {**defaults(PARAMETERS), **change}
    pipeline = DepthPipeline(FakeNode(values))
    pipeline.settings = validate_settings(values)
    return pipeline


def _points_for(pipeline: DepthPipeline, sec: float) -> np.ndarray | None:
    return pipeline._sparse_points(_header(sec), K, None, W, H, pipeline.settings)


def test_a_map_cloud_is_placed_in_the_camera_by_the_nearest_pose_whatever_its_own_stamp() -> None:
    pipeline = _pipeline()
    camera = _camera_points()
    padding = np.zeros((5, 3))  # what ORB-SLAM3 wrappers write for keypoints without a map point
    pipeline._on_sparse(conv.points_to_cloud(np.concatenate([POSE.apply(camera), padding]), _header(3.0, "map")))
    pipeline._on_pose(_pose_msg(99.9))
    pipeline._on_pose(_pose_msg(100.1, pose=parse_extrinsic([0, 0, 0, 0, 0, 0, 1])))  # not the nearest one
    uvz = _points_for(pipeline, 100.0)  # the cloud is 97 s old: a map holds while a pose is fresh
    expected, dropped = project_points(camera, K, W, H)
    assert dropped == 0 and uvz is not None
    np.testing.assert_allclose(uvz, expected, rtol=1e-5, atol=1e-3)
    counters = pipeline._stats.counters
    assert (counters["sparse_posed"], counters["sparse_points_used"], counters["sparse_points_rejected"]) == (
        1, len(camera), len(padding))
    assert counters["sparse_stale"] == counters["pose_stale"] == 0 and not pipeline.node.warnings  # expected drops


def test_a_stale_pose_leaves_the_frame_without_points_and_says_why() -> None:
    pipeline = _pipeline()
    pipeline._on_sparse(conv.points_to_cloud(POSE.apply(_camera_points()), _header(100.0, "map")))
    pipeline._on_pose(_pose_msg(100.0))
    assert _points_for(pipeline, 100.8) is None  # 0.8 s > sparse.max_age 0.5 s
    counters = pipeline._stats.counters
    assert counters["pose_stale"] == 1 and counters["sparse_no_pose"] == 1 and counters["sparse_posed"] == 0
    assert "0.800 s from the image" in pipeline.node.warnings[-1]
    assert _points_for(pipeline, 100.3) is not None  # the same pose is fresh for a nearer image


def test_broken_poses_are_counted_and_never_used() -> None:
    pipeline = _pipeline()
    pipeline._on_sparse(conv.points_to_cloud(POSE.apply(_camera_points()), _header(100.0, "map")))
    pipeline._on_pose(_pose_msg(100.0, quaternion=(float("nan"), 0.0, 0.0, 1.0)))
    pipeline._on_pose(_pose_msg(100.0, quaternion=(0.0, 0.0, 0.0, 2.0)))
    assert pipeline._stats.counters["bad_pose"] == 2 and pipeline._stats.counters["poses_in"] == 2
    assert "unit length, got length 2" in pipeline._stats.last_bad
    # No good pose in "map" ever arrived: the map cloud is a cloud of an unknown frame.
    assert _points_for(pipeline, 100.0) is None
    assert pipeline._stats.counters["sparse_wrong_frame"] == 1


def test_a_cloud_of_no_pose_frame_is_refused_naming_the_pose_frames() -> None:
    pipeline = _pipeline()
    pipeline._on_pose(_pose_msg(100.0, "odom"))
    pipeline._on_sparse(conv.points_to_cloud(POSE.apply(_camera_points()), _header(100.0, "map")))
    assert _points_for(pipeline, 100.0) is None
    assert pipeline._stats.counters["sparse_wrong_frame"] == 1
    assert "camera_pose arrived in 'odom'" in pipeline._stats.last_bad


def test_a_map_cloud_all_behind_the_camera_is_counted_and_the_frame_goes_without_points() -> None:
    pipeline = _pipeline()
    behind = _camera_points() * [1.0, 1.0, -1.0]
    pipeline._on_sparse(conv.points_to_cloud(POSE.apply(behind), _header(100.0, "map")))
    pipeline._on_pose(_pose_msg(100.0))
    assert _points_for(pipeline, 100.0) is None
    counters = pipeline._stats.counters
    assert counters["sparse_all_rejected"] == 1 and counters["sparse_points_rejected"] == len(behind)
    assert "all 40 sparse points dropped" in pipeline.node.warnings[-1]


def test_camera_frame_clouds_and_the_static_extrinsic_keep_their_rules_beside_poses() -> None:
    pipeline = _pipeline(**{"sparse.frame_id": "map", "sparse.extrinsic": "0 0 0 0 0 0 1"})
    pipeline._on_pose(_pose_msg(100.0))  # a pose in "map" too: the configured static transform wins
    camera = _camera_points()
    pipeline._on_sparse(conv.points_to_cloud(camera, _header(100.0, "map")))
    np.testing.assert_allclose(_points_for(pipeline, 100.0), project_points(camera, K, W, H)[0], rtol=1e-5)
    assert _points_for(pipeline, 101.0) is None and pipeline._stats.counters["sparse_stale"] == 1  # its stamp counts
    pipeline._on_sparse(conv.points_to_cloud(camera, _header(101.0)))  # the image's own frame
    assert _points_for(pipeline, 101.0) is not None and pipeline._stats.counters["sparse_posed"] == 0


def test_ground_fits_are_counted_only_while_a_plane_is_set() -> None:
    pipeline = _pipeline()
    pipeline._count_ground(None)
    assert pipeline._stats.counters["ground_fallback"] == 0
    pipeline._count_ground({"applied": False, "found": False, "scale": 1.0, "floor_pixels": 0, "floor_share": 0.0,
                            "reason": "horizon below the image"})
    assert pipeline._stats.counters["ground_fallback"] == 1
    assert pipeline.node.warnings[-1] == "floor plane not used on this frame: horizon below the image"


def test_a_bad_floor_value_at_runtime_is_refused_and_the_running_settings_stay() -> None:
    pipeline = _pipeline()
    pipeline.predictor = RecordingPredictor()
    good = [0.0, -1.0, 0.0, 0.8]
    assert pipeline._on_set_parameters([_param("ground.plane", good)]).successful
    assert pipeline.settings.ground_plane == tuple(good)
    pipeline.node.values["ground.plane"] = good  # what rclpy does after a successful set
    for name, value, reason in [("ground.plane", [0.0, -1.0, 0.0, 0.0], "height h must be > 0"),
                                ("ground.plane", [0.0, -2.0, 0.0, 0.8], "unit vector"),
                                ("ground.extrinsic", "0.1 0 0.5 0.5 -0.5 0.5 -0.5", "both set")]:
        refused = pipeline._on_set_parameters([_param(name, value)])
        assert not refused.successful and reason in refused.reason and name in refused.reason, refused.reason
        assert pipeline.settings.ground_plane == tuple(good)
    # From the plane to the extrinsic in one call: the extrinsic's own errors show.
    for extrinsic, reason in [("0 0 0.5 0 0 0 2", "unit length"), ("0 0 0.5 0 0 0 1 9", "extrinsic needs 7")]:
        refused = pipeline._on_set_parameters([_param("ground.plane", []), _param("ground.extrinsic", extrinsic)])
        assert not refused.successful and "parameter ground.extrinsic: " in refused.reason and reason in refused.reason
        assert pipeline.settings.ground_plane == tuple(good)
    assert pipeline._on_set_parameters([_param("ground.plane", [])]).successful
    assert pipeline.settings.ground_plane is None
