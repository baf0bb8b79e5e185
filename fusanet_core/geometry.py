"""Camera geometry: the one module of pinhole maths, shared by the core and the ROS layer.

Pinhole model with intrinsics (fx, fy, cx, cy) in pixels and the optical frame (x right, y down,
z forward): a point (X, Y, Z) projects to u = fx X / Z + cx, v = fy Y / Z + cy, and a pixel
(u, v) at depth Z back-projects to X = (u - cx) Z / fx, Y = (v - cy) Z / fy. Pixel centres sit at
integer coordinates; resizing follows cv2.resize (`scale_pixel`). Rigid transforms (`RigidTransform`)
move points between camera frames (extrinsics).

No torch and no ROS here (cheap to import); the arithmetic functions take numpy arrays, torch
tensors or floats alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ConversionError

Intrinsics = tuple[float, float, float, float]  # fx, fy, cx, cy in pixels

# Plausible pinhole intrinsics relative to the image size: a focal length from 0.05 w (a 170 deg
# field of view, beyond which a pinhole model is meaningless) to 50 max(w, h) (about 1 deg); a
# principal point within half an image outside the frame (cropped or shifted sensors stay inside).
FOCAL_RANGE = (0.05, 50.0)
CENTER_MARGIN = 0.5
UNIT_TOLERANCE = 1e-3  # |norm - 1| allowed of a unit normal or quaternion given by a user or a message


# ----------------------------------------------------------------------------------- intrinsics
def as_intrinsics(intrinsics: Any) -> np.ndarray:
    """(fx, fy, cx, cy) from a 4-vector or a 3x3 K; focal lengths must be positive and finite."""
    k = np.asarray(intrinsics, dtype=np.float64)
    if k.shape == (3, 3):
        k = np.array([k[0, 0], k[1, 1], k[0, 2], k[1, 2]])
    if k.shape != (4,) or not np.all(np.isfinite(k)) or k[0] <= 0 or k[1] <= 0:
        raise ValueError(f"intrinsics must be (fx, fy, cx, cy) or a 3x3 K with fx, fy > 0, got {intrinsics!r}")
    return k


def intrinsics_tuple(k: Any, name: str) -> Intrinsics:
    """(fx, fy, cx, cy) as floats from a 4-vector; `name` names the camera in the ValueError."""
    vals = np.asarray(k, dtype=np.float64).reshape(-1)
    if vals.size != 4 or not np.all(np.isfinite(vals)) or vals[0] <= 0 or vals[1] <= 0:
        raise ValueError(f"{name} intrinsics must be finite (fx, fy, cx, cy) with fx, fy > 0, got {k!r}")
    return float(vals[0]), float(vals[1]), float(vals[2]), float(vals[3])


def check_intrinsics(intrinsics: Intrinsics, width: int, height: int, source: str = "camera_info") -> Intrinsics:
    """Refuse implausible intrinsics for a `width` x `height` image (the bounds above).

    Nothing is checked against a size of 0, i.e. unknown, besides fx, fy > 0 and finiteness.

    Raises:
        ConversionError: naming the first implausible value and its bounds.
    """
    fx, fy, cx, cy = (float(v) for v in intrinsics)
    if not (np.all(np.isfinite([fx, fy, cx, cy])) and fx > 0 and fy > 0):
        raise ConversionError(f"{source} has no valid focal length (fx {fx:g}, fy {fy:g}, cx {cx:g}, cy {cy:g})")
    if width > 0 and height > 0:
        low, high = FOCAL_RANGE[0] * width, FOCAL_RANGE[1] * max(width, height)
        for name, value in (("fx", fx), ("fy", fy)):
            if not low < value < high:
                raise ConversionError(f"{source} {name} = {value:g} is implausible for a {width}x{height} image "
                                      f"(expected {low:g} < {name} < {high:g})")
        for name, value, size in (("cx", cx, width), ("cy", cy, height)):
            if not -CENTER_MARGIN * size <= value <= (1 + CENTER_MARGIN) * size:
                raise ConversionError(f"{source} {name} = {value:g} is implausible for a {width}x{height} image "
                                      f"(expected {-CENTER_MARGIN * size:g} to {(1 + CENTER_MARGIN) * size:g})")
    return fx, fy, cx, cy


def scale_pixel(coord: Any, scale: float) -> Any:
    """Return a pixel coordinate (float, numpy or torch) after resizing its image axis by `scale`.

    Pixel-centre convention: the centre of pixel 0 moves to 0.5 * scale - 0.5 (as cv2.resize).
    """
    return (coord + 0.5) * scale - 0.5


def scale_intrinsics(k: tuple[float, float, float, float], sx: float, sy: float) -> tuple[float, float, float, float]:
    """Return (fx, fy, cx, cy) after resizing an image by (sx, sy).

    Pixel-centre convention: the centre of pixel 0 sits at 0.5 * s - 0.5 in the new image (as
    cv2.resize and PointBatch.scaled).
    """
    fx, fy, cx, cy = (float(v) for v in k)
    return fx * sx, fy * sy, scale_pixel(cx, sx), scale_pixel(cy, sy)


def scale_points(uvz: np.ndarray | None, sx: float, sy: float) -> np.ndarray | None:
    """Return (N, >= 2) points (u, v, ...) after resizing their image by (sx, sy) (`scale_pixel`).

    The points themselves (not a copy) when the size does not change, None for None.
    """
    if uvz is None or (sx == 1 and sy == 1):
        return uvz
    out = np.array(uvz, copy=True)
    out[:, 0] = scale_pixel(out[:, 0], sx)
    out[:, 1] = scale_pixel(out[:, 1], sy)
    return out


# ------------------------------------------------------------------------ projection, back-projection
def project(x: Any, y: Any, z: Any, intrinsics: Any) -> tuple[Any, Any]:
    """Pixel (u, v) of camera points (X, Y, Z): u = fx X / Z + cx, v = fy Y / Z + cy (no checks)."""
    fx, fy, cx, cy = intrinsics
    return fx * x / z + cx, fy * y / z + cy


def back_project(u: Any, v: Any, z: Any, intrinsics: Any) -> tuple[Any, Any]:
    """Camera (X, Y) of pixels (u, v) at depth Z: X = (u - cx) Z / fx, Y = (v - cy) Z / fy (no checks).

    `intrinsics` unpacks to fx, fy, cx, cy: four floats, or four (B, 1) tensors for batches.
    """
    fx, fy, cx, cy = intrinsics
    return (u - cx) * z / fx, (v - cy) * z / fy


def back_project_points(uvz: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:
    """(N, 3) float32 camera points of (N, 3) pixels (u, v, depth)."""
    uvz = np.asarray(uvz, dtype=np.float32).reshape(-1, 3)
    z = uvz[:, 2]
    x, y = back_project(uvz[:, 0], uvz[:, 1], z, intrinsics)
    return np.stack([x, y, z], axis=1)


def project_points(xyz: np.ndarray, intrinsics: Intrinsics, width: int, height: int) -> tuple[np.ndarray, int]:
    """Project camera-frame points to (u, v, z) pixels; drops NaN, z <= 0 and out-of-frame points.

    Returns:
        ((M, 3) float32 (u, v, z), number of points dropped).
    """
    xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    with np.errstate(divide="ignore", invalid="ignore"):
        u, v = project(xyz[:, 0], xyz[:, 1], xyz[:, 2], intrinsics)
    uvz = np.stack([u, v, xyz[:, 2]], axis=1)
    keep = np.all(np.isfinite(uvz), axis=1) & (uvz[:, 2] > 0)
    keep &= (u > -0.5) & (u < width - 0.5) & (v > -0.5) & (v < height - 0.5)
    return uvz[keep].astype(np.float32), int(len(uvz) - keep.sum())


# ----------------------------------------------------------------------------- rigid transforms
@dataclass(frozen=True)
class RigidTransform:
    """p_out = rotation @ p_in + translation (metres)."""

    rotation: np.ndarray
    translation: np.ndarray

    @classmethod
    def identity(cls) -> RigidTransform:
        return cls(np.eye(3), np.zeros(3))

    @classmethod
    def from_quaternion(cls, translation: Sequence[float], quaternion: Sequence[float],
                        strict: bool = False) -> RigidTransform:
        """From (tx, ty, tz) and a quaternion (qx, qy, qz, qw), the ROS geometry_msgs order.

        The quaternion is normalised. `strict` refuses one whose length is off 1 by more than
        UNIT_TOLERANCE: a pose from a message or a hand-typed extrinsic that is not unit is more
        likely a mistake (a swapped w, a truncated value) than something to normalise away.
        """
        t = np.asarray(translation, dtype=np.float64).reshape(-1)
        q = np.asarray(quaternion, dtype=np.float64).reshape(-1)
        norm = float(np.linalg.norm(q)) if q.size == 4 else 0.0
        if t.size != 3 or not np.all(np.isfinite(t)) or not np.isfinite(norm) or norm < 1e-6:
            raise ValueError(f"a rigid transform needs a finite translation (3) and a non-zero quaternion (4), "
                             f"got {t.tolist()}, {q.tolist()}")
        if strict and abs(norm - 1.0) > UNIT_TOLERANCE:
            raise ValueError(f"quaternion (qx, qy, qz, qw) must have unit length, got length {norm:.6g}: {q.tolist()}")
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


def parse_extrinsic(values: Sequence[float], strict: bool = False) -> RigidTransform:
    """Parse an extrinsic from 7 numbers (tx ty tz qx qy qz qw), or 12 / 16 numbers.

    The 12 / 16 numbers are a row-major 3x4 / 4x4 matrix [R | t]. Convention: p_out = R p_in + t,
    metres (for a depth-to-colour extrinsic: p_colour = R p_depth + t). `strict`: a quaternion
    must be unit length (`RigidTransform.from_quaternion`).
    """
    vals = [float(v) for v in values]
    if len(vals) == 7:
        return RigidTransform.from_quaternion(vals[:3], vals[3:], strict)
    if len(vals) in (12, 16):
        return RigidTransform.from_matrix(np.reshape(vals, (-1, 4)))
    raise ValueError(f"extrinsic needs 7 (tx ty tz qx qy qz qw), 12 or 16 numbers, got {len(vals)}: {vals}")


# ----------------------------------------------------------------------------- the floor plane


def check_ground_plane(plane: Any) -> np.ndarray:
    """Return a floor plane (nx, ny, nz, h) as float64, checked; raises ValueError naming the problem.

    The plane is in the camera optical frame: n a unit normal pointing up (away from the floor),
    h > 0 the camera's height above it; floor points X satisfy n . X + h = 0.
    """
    try:
        values = np.asarray(plane, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"ground plane must be 4 numbers (nx, ny, nz, h), got {plane!r}") from None
    if values.size != 4 or not np.all(np.isfinite(values)):
        raise ValueError(f"ground plane must be 4 finite numbers (nx, ny, nz, h), got {values.tolist()}")
    norm = float(np.linalg.norm(values[:3]))
    if abs(norm - 1.0) > UNIT_TOLERANCE:
        raise ValueError(f"ground plane normal must be a unit vector, got length {norm:.6g}")
    if values[3] <= 0:
        raise ValueError(f"ground plane height h must be > 0 (the camera above the floor), got {values[3]:.6g}")
    return values


def ground_plane_from_pose(camera_in_base: RigidTransform) -> np.ndarray:
    """Return the floor plane (nx, ny, nz, h) in the camera optical frame from the camera's pose in the base.

    `camera_in_base`: p_base = R p_camera + t, with the base frame z-up and its z = 0 plane the floor
    (what base_footprint -> camera_optical_frame gives). Up in the camera is R^T e_z, the height t_z.
    Raises ValueError when the camera is not above the floor.
    """
    normal = camera_in_base.rotation.T @ np.array([0.0, 0.0, 1.0])
    return check_ground_plane([*normal, camera_in_base.translation[2]])
