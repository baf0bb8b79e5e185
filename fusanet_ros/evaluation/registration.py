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

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fusanet_core import msg_arrays
from fusanet_core.msg_arrays import Intrinsics


@dataclass(frozen=True)
class RigidTransform:
    """p_out = rotation @ p_in + translation (metres)."""

    rotation: np.ndarray
    translation: np.ndarray

    @classmethod
    def identity(cls) -> RigidTransform:
        return cls(np.eye(3), np.zeros(3))

    @classmethod
    def from_quaternion(cls, translation: Sequence[float], quaternion: Sequence[float]) -> RigidTransform:
        """From (tx, ty, tz) and a quaternion (qx, qy, qz, qw), the ROS geometry_msgs order."""
        t = np.asarray(translation, dtype=np.float64).reshape(-1)
        q = np.asarray(quaternion, dtype=np.float64).reshape(-1)
        norm = float(np.linalg.norm(q)) if q.size == 4 else 0.0
        if t.size != 3 or not np.all(np.isfinite(t)) or not np.isfinite(norm) or norm < 1e-6:
            raise ValueError(f"extrinsic needs a finite translation (3) and a non-zero quaternion (4), "
                             f"got {list(t)}, {list(q)}")
        x, y, z, w = q / norm
        rotation = np.array([
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ])  # fmt: skip
        return cls(rotation, t)

    @classmethod
    def from_msg(cls, msg: Any) -> RigidTransform:
        """From a geometry_msgs/Transform (rclpy or rosbags object)."""
        tr, rot = msg.translation, msg.rotation
        return cls.from_quaternion((tr.x, tr.y, tr.z), (rot.x, rot.y, rot.z, rot.w))

    @classmethod
    def from_matrix(cls, matrix: Any) -> RigidTransform:
        """From a 3x4 or 4x4 [R | t] matrix; R must be a rotation (orthonormal, det +1)."""
        m = np.asarray(matrix, dtype=np.float64)
        if m.shape not in ((3, 4), (4, 4)) or not np.all(np.isfinite(m)):
            raise ValueError(f"extrinsic matrix must be finite 3x4 or 4x4, got shape {m.shape}")
        rotation = m[:3, :3]
        if not np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-4) or np.linalg.det(rotation) < 0:
            raise ValueError(f"extrinsic rotation is not a rotation matrix: {rotation.tolist()}")
        return cls(rotation.copy(), m[:3, 3].copy())

    def inverse(self) -> RigidTransform:
        return RigidTransform(self.rotation.T, -self.rotation.T @ self.translation)

    def then(self, other: RigidTransform) -> RigidTransform:
        """Apply self first, then `other`."""
        return RigidTransform(other.rotation @ self.rotation, other.rotation @ self.translation + other.translation)

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Transform (N, 3) points."""
        return np.asarray(points, dtype=np.float64) @ self.rotation.T + self.translation

    def is_identity(self, atol: float = 1e-9) -> bool:
        return bool(np.allclose(self.rotation, np.eye(3), atol=atol) and np.allclose(self.translation, 0, atol=atol))

    def as_list(self) -> list[float]:
        """[tx, ty, tz, qx, qy, qz, qw] for reports (the same order `parse_extrinsic` reads)."""
        return [*map(float, self.translation), *map(float, _rotation_to_quaternion(self.rotation))]


def _rotation_to_quaternion(r: np.ndarray) -> np.ndarray:
    """(qx, qy, qz, qw) of a rotation matrix (Shepperd's method, stable for every angle)."""
    trace = float(np.trace(r))
    if trace > 0:
        s = 2.0 * np.sqrt(trace + 1.0)
        q = [(r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s, 0.25 * s]
    else:
        i = int(np.argmax(np.diag(r)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(1.0 + r[i, i] - r[j, j] - r[k, k])
        q = [0.0, 0.0, 0.0, (r[k, j] - r[j, k]) / s]
        q[i], q[j], q[k] = 0.25 * s, (r[j, i] + r[i, j]) / s, (r[k, i] + r[i, k]) / s
    q = np.asarray(q)
    return q if q[3] >= 0 else -q


def parse_extrinsic(values: Sequence[float]) -> RigidTransform:
    """Parse a depth-to-colour extrinsic from 7 numbers (tx ty tz qx qy qz qw), or 12 / 16 numbers.

    The 12 / 16 numbers are a row-major 3x4 / 4x4 matrix [R | t]. Convention: p_colour = R p_depth + t,
    metres.
    """
    vals = [float(v) for v in values]
    if len(vals) == 7:
        return RigidTransform.from_quaternion(vals[:3], vals[3:])
    if len(vals) in (12, 16):
        return RigidTransform.from_matrix(np.reshape(vals, (-1, 4)))
    raise ValueError(f"extrinsic needs 7 (tx ty tz qx qy qz qw), 12 or 16 numbers, got {len(vals)}: {vals}")


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
    fx, fy, cx, cy = _check_intrinsics(depth_intrinsics, "depth")
    v, u = np.nonzero(np.isfinite(depth) & (depth > 0))
    z = depth[v, u]
    points = np.stack([(u - cx) * z / fx, (v - cy) * z / fy, z], axis=1)
    moved = depth_to_color.apply(points)
    return _project_nearest(moved, _check_intrinsics(color_intrinsics, "colour"), width, height)


def _project_nearest(points: np.ndarray, k: Intrinsics, width: int, height: int) -> np.ndarray:
    """Z-buffered projection of (N, 3) camera points to the nearest pixel centre."""
    fx, fy, cx, cy = k
    out = np.full(height * width, np.nan, dtype=np.float32)
    z = points[:, 2]
    front = z > 0
    points, z = points[front], z[front]
    col = np.rint(fx * points[:, 0] / z + cx).astype(np.int64)
    row = np.rint(fy * points[:, 1] / z + cy).astype(np.int64)
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


def _check_intrinsics(k: Any, name: str) -> Intrinsics:
    vals = np.asarray(k, dtype=np.float64).reshape(-1)
    if vals.size != 4 or not np.all(np.isfinite(vals)) or vals[0] <= 0 or vals[1] <= 0:
        raise ValueError(f"{name} intrinsics must be finite (fx, fy, cx, cy) with fx, fy > 0, got {k!r}")
    return float(vals[0]), float(vals[1]), float(vals[2]), float(vals[3])


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
    coeffs = np.asarray(msg_arrays.msg_field(info, "d"), dtype=np.float64)
    return CameraModel(msg_arrays.camera_info_intrinsics(info), int(info.width), int(info.height),
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
