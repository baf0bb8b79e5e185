"""Camera poses for the depth node, without DDS: reading PoseStamped and matching a pose to an image stamp."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from fusanet_core.geometry import RigidTransform
from fusanet_core.io.messages import ConversionError
from fusanet_ros.nodes.poses import match_pose, pose_from_msg, PoseBuffer, StampedPose

S = 1_000_000_000  # ns per second


def _msg(position=(1.0, 2.0, 3.0), orientation=(0.0, 0.0, 0.0, 1.0), frame_id="map", stamp=5 * S) -> SimpleNamespace:
    """Build a PoseStamped-shaped object (what rclpy and rosbags messages both look like)."""
    x, y, z = position
    qx, qy, qz, qw = orientation
    header = SimpleNamespace(frame_id=frame_id, stamp=SimpleNamespace(sec=stamp // S, nanosec=stamp % S))
    pose = SimpleNamespace(position=SimpleNamespace(x=x, y=y, z=z),
                           orientation=SimpleNamespace(x=qx, y=qy, z=qz, w=qw))
    return SimpleNamespace(header=header, pose=pose)


def _pose(stamp: int, frame_id: str = "map", tx: float = 0.0) -> StampedPose:
    return StampedPose(stamp, frame_id, RigidTransform(np.eye(3), np.array([tx, 0.0, 0.0])))


def test_a_pose_message_becomes_the_camera_to_frame_transform() -> None:
    half = np.sqrt(0.5)
    pose = pose_from_msg(_msg(orientation=(0.0, 0.0, half, half), stamp=5 * S + 250))  # 90 deg about z
    assert (pose.frame_id, pose.stamp) == ("map", 5 * S + 250)
    # p_map = R p_camera + t: the camera's x axis points along the map's y
    np.testing.assert_allclose(pose.camera_to_frame.apply([[1.0, 0.0, 0.0]]), [[1.0, 3.0, 3.0]], atol=1e-12)


@pytest.mark.parametrize("change, match", [
    ({"orientation": (np.nan, 0.0, 0.0, 1.0)}, "non-zero quaternion"),
    ({"orientation": (0.0, 0.0, 0.0, 2.0)}, "unit length, got length 2"),
    ({"orientation": (0.0, 0.0, 0.0, 1.01)}, "unit length"),  # beyond UNIT_TOLERANCE (1e-3)
    ({"orientation": (0.0, 0.0, 0.0, 0.0)}, "non-zero quaternion"),
    ({"position": (np.inf, 0.0, 0.0)}, "finite translation"),
    ({"frame_id": ""}, "empty header.frame_id"),
])
def test_broken_poses_are_refused_with_the_reason(change: dict, match: str) -> None:
    with pytest.raises(ConversionError, match=match):
        pose_from_msg(_msg(**change))


def test_a_quaternion_within_the_tolerance_is_taken() -> None:
    pose = pose_from_msg(_msg(orientation=(0.0, 0.0, 0.0, 1.0005)))
    np.testing.assert_allclose(pose.camera_to_frame.rotation, np.eye(3))


def test_the_nearest_pose_in_the_frame_is_used_within_max_age() -> None:
    buffer = PoseBuffer()
    for i, stamp in enumerate((10 * S, 11 * S, 12 * S)):
        buffer.add(_pose(stamp, tx=float(i)))
    buffer.add(_pose(int(11.4 * S), "odom", tx=99.0))  # another frame never answers for "map"
    pose, gap = match_pose(buffer, int(11.3 * S), "map", 0.5)
    assert pose is not None and pose.stamp == 11 * S and gap == pytest.approx(0.3)
    pose, _ = match_pose(buffer, int(11.8 * S), "map", 0.5)  # a later pose is as good as an earlier one
    assert pose is not None and pose.stamp == 12 * S
    pose, _ = match_pose(buffer, int(11.4 * S), "odom", 0.5)
    assert pose is not None and pose.camera_to_frame.translation[0] == 99.0
    assert buffer.has_frame("odom") and not buffer.has_frame("world") and buffer.frames() == ["map", "odom"]


def test_a_stale_pose_is_refused_and_no_pose_is_told_apart() -> None:
    buffer = PoseBuffer()
    buffer.add(_pose(10 * S))
    pose, gap = match_pose(buffer, int(10.6 * S), "map", 0.5)
    assert pose is None and gap == pytest.approx(0.6)  # stale: the gap says by how much
    assert match_pose(buffer, 10 * S, "world", 0.5) == (None, None)  # none in that frame


def test_the_buffer_is_bounded_and_keeps_the_newest() -> None:
    buffer = PoseBuffer(size=3)
    for i in range(5):
        buffer.add(_pose(i * S))
    pose, gap = match_pose(buffer, 0, "map", 10.0)
    assert pose is not None and pose.stamp == 2 * S and gap == pytest.approx(2.0)  # 0 and 1 s were dropped
    buffer.clear()
    assert match_pose(buffer, 0, "map", 10.0) == (None, None) and not buffer.has_frame("map")


def test_frame_names_cycling_through_the_buffer_do_not_grow_it() -> None:
    """A publisher inventing a frame per message: only the buffered poses' frames are known."""
    buffer = PoseBuffer(size=3)
    for i in range(1000):
        buffer.add(_pose(i * S, frame_id=f"frame_{i}"))
    assert buffer.frames() == ["frame_997", "frame_998", "frame_999"]
    assert buffer.has_frame("frame_999") and not buffer.has_frame("frame_0")
