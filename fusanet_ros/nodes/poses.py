"""Recent camera poses, matched to an image by stamp (no rclpy here).

The depth node has no tf2 (no wheel): a camera pose topic (geometry_msgs/PoseStamped, the camera
optical frame's pose in header.frame_id, e.g. `map`) is its way to bring points of a world frame
into the camera. `PoseBuffer` keeps the last poses; the image takes the one nearest its stamp.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
import threading
from typing import Any

from fusanet_core.geometry import RigidTransform
from fusanet_core.io.messages import ConversionError, stamp_ns

# At a VIO's IMU rate (200 Hz) 200 poses are 1 s: more than an image waits in the node before its
# pose is looked up; at 30 Hz they are ~7 s.
POSE_BUFFER = 200


@dataclass(frozen=True)
class StampedPose:
    """The camera optical frame's pose in `frame_id` at `stamp`: p_frame = R p_camera + t."""

    stamp: int  # ns
    frame_id: str
    camera_to_frame: RigidTransform


class PoseBuffer:
    """The last `size` poses, written by the subscription callback and read by the worker thread."""

    def __init__(self, size: int = POSE_BUFFER) -> None:
        self._poses: deque[StampedPose] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, pose: StampedPose) -> None:
        with self._lock:
            self._poses.append(pose)

    def has_frame(self, frame_id: str) -> bool:
        """Tell whether a buffered pose is in `frame_id` (clouds in that frame then need a pose).

        Read from the buffer itself, not kept apart: a publisher cycling through frame names
        cannot grow the node's memory beyond the buffer.
        """
        with self._lock:
            return any(p.frame_id == frame_id for p in self._poses)

    def frames(self) -> list[str]:
        """Name the frames of the buffered poses, sorted (for messages)."""
        with self._lock:
            return sorted({p.frame_id for p in self._poses})

    def nearest(self, stamp: int, frame_id: str) -> StampedPose | None:
        """Return the pose in `frame_id` whose stamp is nearest `stamp` (ns), or None when there is none.

        Nearest in either direction: a pose estimator publishes a frame's pose after the frame, so
        the pose of the image itself may not have arrived yet; out-of-order stamps (a bag loop) do
        not matter either.
        """
        with self._lock:
            candidates = [p for p in self._poses if p.frame_id == frame_id]
        return min(candidates, key=lambda p: abs(p.stamp - stamp), default=None)

    def clear(self) -> None:
        with self._lock:
            self._poses.clear()


def pose_from_msg(msg: Any) -> StampedPose:
    """Read a geometry_msgs/PoseStamped (rclpy or rosbags object).

    Raises:
        ConversionError: no frame_id, a non-finite position or quaternion, or a quaternion whose
            length is off 1 by more than geometry.UNIT_TOLERANCE (not normalised away: a pose that
            far off is broken, and a wrong rotation would put every point in the wrong pixel).
    """
    frame_id = str(msg.header.frame_id)
    if not frame_id:
        raise ConversionError("camera_pose has an empty header.frame_id: no cloud can be matched to it")
    p, q = msg.pose.position, msg.pose.orientation
    try:
        transform = RigidTransform.from_quaternion((p.x, p.y, p.z), (q.x, q.y, q.z, q.w), strict=True)
    except ValueError as err:
        raise ConversionError(f"camera_pose in {frame_id!r}: {err}") from None
    return StampedPose(stamp_ns(msg.header), frame_id, transform)


def match_pose(buffer: PoseBuffer, stamp: int, frame_id: str,
               max_age: float) -> tuple[StampedPose | None, float | None]:
    """Pick the pose for an image at `stamp` (ns): the nearest in `frame_id`, used if within `max_age` s.

    Returns:
        (pose, gap in s) when it matches; (None, gap) when the nearest is further than `max_age`
        (stale); (None, None) when no pose in `frame_id` is buffered.
    """
    pose = buffer.nearest(stamp, frame_id)
    if pose is None:
        return None, None
    gap = abs(pose.stamp - stamp) * 1e-9
    return (pose if gap <= max_age else None), gap
