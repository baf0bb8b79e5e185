"""Register a depth image into a colour camera: back-project, transform, project, z-buffer.

Ground-truth depth from an RGB-D sensor often comes from a different camera than the colour image
(the RealSense D4xx depth is the left IR imager, ~15 mm beside the colour sensor, with another
focal length). To score a prediction made on the colour image, every valid depth pixel is

1. back-projected with the depth intrinsics: X = (u - cx) Z / fx, Y = (v - cy) Z / fy,
2. moved into the colour camera with the depth-to-colour extrinsic p_c = R p_d + t,
3. projected with the colour intrinsics and rounded to the nearest colour pixel,
4. z-buffered: when several depth pixels land on one colour pixel the nearest surface wins
   (the farther one is occluded from the colour camera's view point).

This is a forward projection without splatting, so the result is sparse where the colour camera
has more pixels per degree than the depth camera (D435 at 640x480: ~39 % of colour pixels).
Images are assumed rectified (distortion ignored), as RealSense and most ROS drivers publish them.

Extrinsic sources, all expressed as `RigidTransform` depth -> colour:

* a user value (7 numbers tx ty tz qx qy qz qw, or a 3x4 / 4x4 row-major matrix),
* librealsense bags: `<stream>/tf/<group>` (geometry_msgs/Transform) holds, for each stream, the
  extrinsic from the group's reference stream to that stream (librealsense ``ros_writer``:
  ``device::get_extrinsics`` = reference -> stream, rotation from the quaternion as usual);
  the reference's own transform is the identity,
* ROS ``/tf_static`` (tf2_msgs/TFMessage): each TransformStamped maps ``child_frame_id``
  coordinates into ``header.frame_id`` coordinates (REP 105 / tf2); the chain between the two
  optical frames is composed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from fusanet_core.geometry import back_project, Intrinsics, intrinsics_tuple, project, RigidTransform
from fusanet_core.io import messages


# ------------------------------------------------------------------------------- registration
def register_depth(
    depth: np.ndarray,
    depth_intrinsics: Intrinsics,
    color_intrinsics: Intrinsics,
    color_size: tuple[int, int],
    depth_to_color: RigidTransform,
) -> np.ndarray:
    """Forward-project a depth image into the colour camera (see the module docstring).

    Args:
        depth: (H, W) metres along the depth camera's optical axis; NaN / <= 0 = invalid.
        depth_intrinsics: (fx, fy, cx, cy) of the depth image.
        color_intrinsics: (fx, fy, cx, cy) of the colour image.
        color_size: (width, height) of the colour image.
        depth_to_color: extrinsic, p_colour = R p_depth + t.

    Returns:
        (height, width) float32 metres along the colour optical axis, NaN where no depth landed.
    """
    width, height = (int(v) for v in color_size)
    if width <= 0 or height <= 0:
        raise ValueError(f"colour size must be positive (width, height), got {color_size}")
    depth = np.asarray(depth, dtype=np.float64)
    if depth.ndim != 2:
        raise ValueError(f"depth must be an (H, W) image, got shape {depth.shape}")
    k_depth = intrinsics_tuple(depth_intrinsics, "depth")
    v, u = np.nonzero(np.isfinite(depth) & (depth > 0))
    z = depth[v, u]
    points = np.stack([*back_project(u, v, z, k_depth), z], axis=1)
    moved = depth_to_color.apply(points)
    return _project_nearest(moved, intrinsics_tuple(color_intrinsics, "colour"), width, height)


def _project_nearest(points: np.ndarray, k: Intrinsics, width: int, height: int) -> np.ndarray:
    """Z-buffered projection of (N, 3) camera points to the nearest pixel centre."""
    out = np.full(height * width, np.nan, dtype=np.float32)
    z = points[:, 2]
    front = z > 0
    points, z = points[front], z[front]
    u, v = project(points[:, 0], points[:, 1], z, k)
    col, row = np.rint(u).astype(np.int64), np.rint(v).astype(np.int64)
    inside = (col >= 0) & (col < width) & (row >= 0) & (row < height)
    index, z = row[inside] * width + col[inside], z[inside]
    # Sort by pixel, then depth: the first entry of each pixel's run is its nearest surface.
    # (Fancy assignment with repeated indices has no guaranteed order, so no "last write wins".)
    order = np.lexsort((z, index))
    index, z = index[order], z[order]
    first = np.ones(index.size, dtype=bool)
    first[1:] = index[1:] != index[:-1]
    out[index[first]] = z[first]
    return out.reshape(height, width)


# ----------------------------------------------------------------------- extrinsics from bags
def realsense_stream_prefix(image_topic: str) -> str | None:
    """`/device_0/sensor_1/Color_0` of a librealsense image topic `.../image/data`, else None."""
    parts = image_topic.rstrip("/").split("/")
    if len(parts) >= 6 and parts[-2:] == ["image", "data"] and parts[1].startswith("device_"):
        return "/".join(parts[:-2])
    return None


def realsense_extrinsic(transforms: dict[str, Any], depth_topic: str,
                        color_topic: str) -> tuple[RigidTransform, str] | None:
    """Depth-to-colour extrinsic from librealsense `<stream>/tf/<group>` messages.

    Args:
        transforms: topic -> geometry_msgs/Transform for every `.../tf/N` topic of the bag.
        depth_topic, color_topic: the image topics.

    Returns:
        (extrinsic, description) or None when the bag has no such pair of transforms.
    """
    depth_prefix, color_prefix = realsense_stream_prefix(depth_topic), realsense_stream_prefix(color_topic)
    if depth_prefix is None or color_prefix is None:
        return None
    for topic, msg in sorted(transforms.items()):
        if not topic.startswith(color_prefix + "/tf/"):
            continue
        group = topic.rsplit("/", 1)[1]
        depth_tf = transforms.get(f"{depth_prefix}/tf/{group}")
        if depth_tf is None:
            continue
        ref_to_depth, ref_to_color = RigidTransform.from_msg(depth_tf), RigidTransform.from_msg(msg)
        description = f"librealsense extrinsics {depth_prefix}/tf/{group} -> {topic}"
        return ref_to_depth.inverse().then(ref_to_color), description
    return None


def tf_static_extrinsic(edges: Iterable[tuple[str, str, RigidTransform]], depth_frame: str,
                        color_frame: str) -> RigidTransform | None:
    """Depth-to-colour extrinsic from tf edges (parent, child, T) where p_parent = T p_child.

    Returns None when the two frames are not connected by the given edges.
    """
    depth_frame, color_frame = depth_frame.lstrip("/"), color_frame.lstrip("/")
    edges = [(p.lstrip("/"), c.lstrip("/"), t) for p, c, t in edges]
    # pose[f] maps frame-f coordinates into depth-frame coordinates; grow it over the tree.
    pose = {depth_frame: RigidTransform.identity()}
    changed = True
    while changed and color_frame not in pose:
        changed = False
        for parent, child, t in edges:
            if parent in pose and child not in pose:
                pose[child] = t.then(pose[parent])
                changed = True
            elif child in pose and parent not in pose:
                pose[parent] = t.inverse().then(pose[child])
                changed = True
    return pose[color_frame].inverse() if color_frame in pose else None


def tf_edges(msg: Any) -> list[tuple[str, str, RigidTransform]]:
    """(parent, child, T) edges of a tf2_msgs/TFMessage."""
    return [(t.header.frame_id, t.child_frame_id, RigidTransform.from_msg(t.transform)) for t in msg.transforms]


# ----------------------------------------------------------------------- when and how to register
@dataclass(frozen=True)
class CameraModel:
    """Pinhole camera of an image stream: intrinsics at (width, height), and its optical frame."""

    intrinsics: Intrinsics
    width: int
    height: int
    frame_id: str = ""
    distorted: bool = False  # non-zero distortion coefficients (registration ignores them)

    def same_projection(self, other: CameraModel, rtol: float = 1e-6) -> bool:
        """Tell whether both have the same size and intrinsics (depth already registered to the colour camera)."""
        return (self.width, self.height) == (other.width, other.height) and bool(
            np.allclose(self.intrinsics, other.intrinsics, rtol=rtol, atol=1e-9))


def camera_model(info: Any, frame_id: str = "") -> CameraModel:
    """Return the CameraModel of a CameraInfo (rclpy or rosbags, ROS 1 or 2): P first, then K, as the node reads it."""
    coeffs = np.asarray(messages.msg_field(info, "d"), dtype=np.float64)
    return CameraModel(messages.camera_info_intrinsics(info), int(info.width), int(info.height),
                       frame_id or str(info.header.frame_id), bool(np.any(np.abs(coeffs) > 1e-9)))


def registration_reason(color: CameraModel | None, depth: CameraModel | None, color_frame: str,
                        depth_frame: str) -> str | None:
    """Why the ground truth is not in the colour camera (None when it looks registered).

    Evidence, in order: different camera_info (size or intrinsics), then different non-empty
    frame_ids of the two image streams.
    """
    if color is not None and depth is not None and not color.same_projection(depth):
        return (f"depth camera_info ({depth.width}x{depth.height}, fx {depth.intrinsics[0]:.2f}) differs from the "
                f"colour camera_info ({color.width}x{color.height}, fx {color.intrinsics[0]:.2f})")
    if color_frame and depth_frame and color_frame.lstrip("/") != depth_frame.lstrip("/"):
        return f"depth frame_id {depth_frame!r} differs from colour frame_id {color_frame!r}"
    return None


@dataclass(frozen=True)
class Registration:
    """Everything needed to move ground-truth depth into the colour camera."""

    depth: CameraModel
    color: CameraModel
    depth_to_color: RigidTransform
    source: str  # where the extrinsic came from, for the report

    def apply(self, depth: np.ndarray) -> np.ndarray:
        """Return the registered depth (colour size, NaN holes); the depth image must match its camera_info."""
        if depth.shape != (self.depth.height, self.depth.width):
            raise ValueError(f"ground-truth depth is {depth.shape[1]}x{depth.shape[0]} but its camera_info says "
                             f"{self.depth.width}x{self.depth.height}")
        return register_depth(depth, self.depth.intrinsics, self.color.intrinsics,
                              (self.color.width, self.color.height), self.depth_to_color)

    def describe(self) -> dict[str, Any]:
        return {"depth_intrinsics": list(self.depth.intrinsics), "depth_size": [self.depth.width, self.depth.height],
                "color_intrinsics": list(self.color.intrinsics), "color_size": [self.color.width, self.color.height],
                "depth_to_color_txyz_qxyzw": self.depth_to_color.as_list(), "extrinsic_source": self.source,
                "method": "forward projection to the nearest colour pixel, z-buffer keeps the nearest"}
