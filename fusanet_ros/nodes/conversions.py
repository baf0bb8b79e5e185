"""numpy -> sensor_msgs writers without cv_bridge or sensor_msgs_py (neither installs from pip).

Also the message -> numpy readers of `fusanet_core.io.messages`, re-exported so that the nodes have
one `conversions` module.

The readers need no ROS and live in the core (datasets and bag evaluation use them on `rosbags`
objects); the writers build rclpy messages and stay here. Message data is written as `bytes`
(assigning numpy arrays to `msg.data` costs 45-75 ms for VGA in rclpy).
"""

from __future__ import annotations

import functools
from typing import Any

import cv2
import numpy as np
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField
from std_msgs.msg import Header

from fusanet_core.geometry import Intrinsics, scale_intrinsics
from fusanet_core.io.messages import (
    camera_info_intrinsics,
    check_camera_info_size,
    cloud_to_xyz,
    COLOR_ENCODINGS,
    compressed_to_rgb,
    ConversionError,
    DEPTH_ENCODINGS,
    ENCODINGS,
    image_to_array,
    image_to_depth,
    image_to_rgb,
    msg_field,
    pack_rgb,
    read_cloud_fields,
    sparse_depth_to_points,
    stamp_ns,
    TooLargeError,
    unpack_rgb,
)

__all__ = [
    # readers (fusanet_core.io.messages)
    "COLOR_ENCODINGS", "DEPTH_ENCODINGS", "ENCODINGS", "ConversionError", "camera_info_intrinsics",
    "check_camera_info_size", "cloud_to_xyz", "compressed_to_rgb", "image_to_array", "image_to_depth", "image_to_rgb",
    "pack_rgb", "read_cloud_fields", "sparse_depth_to_points", "stamp_ns", "TooLargeError", "unpack_rgb",
    # writers
    "array_to_image", "depth_to_cloud", "depth_to_image", "make_camera_info", "output_camera_info", "points_to_cloud",
    "rgb_to_compressed", "rgb_to_image", "scaled_camera_info",
]  # fmt: skip


# --------------------------------------------------------------------------------------- images
def array_to_image(pixels: np.ndarray, encoding: str, header: Header | None = None) -> Image:
    """Image message (little-endian, packed rows) from an array that fits `encoding`."""
    if encoding not in ENCODINGS:
        raise ConversionError(f"unsupported encoding {encoding!r} (supported: {', '.join(ENCODINGS)})")
    dtype, channels = ENCODINGS[encoding]
    pixels = np.asarray(pixels)
    shape_ok = pixels.ndim == 2 if channels == 1 else pixels.ndim == 3 and pixels.shape[2] == channels
    if not shape_ok or pixels.dtype != dtype:
        raise ConversionError(f"{encoding} needs {dtype} with {channels} channel(s), got {pixels.dtype} {pixels.shape}")
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(pixels.shape[0]), int(pixels.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = msg.width * channels * dtype.itemsize
    msg.data = np.ascontiguousarray(pixels, dtype=dtype.newbyteorder("<")).tobytes()
    return msg


def rgb_to_image(rgb: np.ndarray, encoding: str = "rgb8", header: Header | None = None) -> Image:
    """Image in any colour encoding from HxWx3 uint8 RGB (for publishers, tests and benchmarks)."""
    rgb = np.asarray(rgb, dtype=np.uint8)
    if encoding == "mono8":
        return array_to_image(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), encoding, header)
    pixels = rgb[:, :, ::-1] if encoding.startswith("bgr") else rgb
    if encoding.endswith("a8"):
        pixels = np.concatenate([pixels, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=2)
    return array_to_image(np.ascontiguousarray(pixels), encoding, header)


def rgb_to_compressed(rgb: np.ndarray, fmt: str = "jpeg", header: Header | None = None,
                      quality: int = 90) -> CompressedImage:
    """Encode HxWx3 uint8 RGB as a CompressedImage (jpeg or png)."""
    ext = {"jpeg": ".jpg", "jpg": ".jpg", "png": ".png"}.get(fmt)
    if ext is None:
        raise ConversionError(f"compressed format must be jpeg or png, got {fmt!r}")
    flags = [cv2.IMWRITE_JPEG_QUALITY, quality] if ext == ".jpg" else []  # PNG has no quality: cv2 would warn
    ok, buf = cv2.imencode(ext, cv2.cvtColor(np.asarray(rgb, np.uint8), cv2.COLOR_RGB2BGR), flags)
    if not ok:
        raise ConversionError(f"could not encode a {rgb.shape} image as {fmt}")
    msg = CompressedImage()
    if header is not None:
        msg.header = header
    msg.format = "jpeg" if ext == ".jpg" else "png"
    msg.data = buf.tobytes()
    return msg


def depth_to_image(depth_m: np.ndarray, encoding: str = "32FC1", header: Header | None = None) -> Image:
    """Make a depth Image (REP 117/118).

    32FC1: metres as given (+Inf beyond range, -Inf too close, NaN invalid); 16UC1: millimetres,
    where every non-finite or unrepresentable value becomes 0.
    """
    depth = np.asarray(depth_m, dtype=np.float32)
    if encoding == "32FC1":
        return array_to_image(depth, encoding, header)
    if encoding == "16UC1":
        mm = np.nan_to_num(depth * 1000.0, nan=0.0, posinf=0.0, neginf=0.0)
        mm = np.where((mm > 0) & (mm < 65535), np.round(mm), 0).astype(np.uint16)
        return array_to_image(mm, encoding, header)
    raise ConversionError(f"depth output encoding must be 32FC1 or 16UC1, got {encoding!r}")


# ---------------------------------------------------------------------------------- camera info
def scaled_camera_info(msg: Any, width: int, height: int, source_size: tuple[int, int] | None = None,
                       header: Header | None = None) -> CameraInfo:
    """Return the CameraInfo for an output of `width` x `height` with K and P rescaled.

    Args:
        msg: the input CameraInfo.
        width: output width.
        height: output height.
        source_size: (width, height) the intrinsics refer to; default msg.width/height.
        header: header of the output (default: the input's).
    """
    src_w, src_h = source_size or (int(msg.width), int(msg.height))
    if src_w <= 0 or src_h <= 0:
        raise ConversionError(f"cannot rescale a camera_info of size {src_w}x{src_h}")
    sx, sy = width / src_w, height / src_h
    out = CameraInfo()
    out.header = header if header is not None else msg.header
    out.width, out.height = int(width), int(height)
    out.distortion_model = str(msg.distortion_model)
    out.d = [float(v) for v in msg_field(msg, "d")]
    out.r = np.asarray(msg_field(msg, "r"), dtype=np.float64).reshape(9)
    k = np.asarray(msg_field(msg, "k"), dtype=np.float64).reshape(3, 3).copy()
    p = np.asarray(msg_field(msg, "p"), dtype=np.float64).reshape(3, 4).copy()
    for mat in (k, p):
        mat[0, 0], mat[1, 1], mat[0, 2], mat[1, 2] = scale_intrinsics(
            (mat[0, 0], mat[1, 1], mat[0, 2], mat[1, 2]), sx, sy)
    p[0, 3] *= sx  # Tx = -fx * baseline scales with fx
    p[1, 3] *= sy
    out.k, out.p = k.reshape(9), p.reshape(12)
    out.binning_x, out.binning_y = int(msg.binning_x), int(msg.binning_y)
    if (sx, sy) == (1.0, 1.0):
        out.roi = msg.roi
    return out


def output_camera_info(msg: Any, intrinsics: Intrinsics, width: int, height: int, source_size: tuple[int, int],
                       header: Header | None = None) -> CameraInfo:
    """Return the CameraInfo of an image the node publishes: the rectified pinhole camera of `intrinsics`.

    The published depth is a rectified image (the node undistorts raw input, or was told the
    input needs none), so D is zero, R the identity and K equal to P's camera matrix, all rescaled
    from `source_size` (width, height) to `width` x `height`. P's Tx/Ty (stereo baseline) are
    kept, rescaled; binning and ROI are reset since the intrinsics are those of the output pixels.

    Args:
        msg: the input CameraInfo (for Tx/Ty of P).
        intrinsics: (fx, fy, cx, cy) of the image the network saw, at `source_size`.
        width: output width.
        height: output height.
        source_size: (width, height) that `intrinsics` refer to.
        header: header of the output.
    """
    src_w, src_h = source_size
    if src_w <= 0 or src_h <= 0:
        raise ConversionError(f"cannot rescale a camera_info of size {src_w}x{src_h}")
    sx, sy = width / src_w, height / src_h
    out = make_camera_info(scale_intrinsics(intrinsics, sx, sy), width, height, header)
    p_in = np.asarray(msg_field(msg, "p"), dtype=np.float64).reshape(-1)
    if p_in.size == 12:
        p = out.p.reshape(3, 4).copy()
        p[0, 3], p[1, 3] = p_in[3] * sx, p_in[7] * sy  # Tx = -fx' * baseline scales with fx
        out.p = p.reshape(12)
    return out


def make_camera_info(k: Intrinsics, width: int, height: int, header: Header | None = None) -> CameraInfo:
    """Make a pinhole CameraInfo (no distortion) with K and P from (fx, fy, cx, cy)."""
    fx, fy, cx, cy = (float(v) for v in k)
    msg = CameraInfo()
    if header is not None:
        msg.header = header
    msg.width, msg.height = int(width), int(height)
    msg.distortion_model = "plumb_bob"
    msg.d = [0.0] * 5
    msg.k = np.array([fx, 0, cx, 0, fy, cy, 0, 0, 1], np.float64)
    msg.r = np.eye(3).reshape(9)
    msg.p = np.array([fx, 0, cx, 0, 0, fy, cy, 0, 0, 0, 1, 0], np.float64)
    return msg


# --------------------------------------------------------------------------------- point clouds
def _cloud_fields(with_rgb: bool) -> list[PointField]:
    names = ("x", "y", "z", "rgb") if with_rgb else ("x", "y", "z")
    offsets = (0, 4, 8, 16)
    return [PointField(name=n, offset=o, datatype=PointField.FLOAT32, count=1) for n, o in zip(names, offsets)]


def depth_to_cloud(
    depth: np.ndarray,
    intrinsics: Intrinsics,
    header: Header | None = None,
    rgb: np.ndarray | None = None,
    confidence: np.ndarray | None = None,
    min_confidence: float = 0.0,
    stride: int = 1,
    organized: bool = False,
) -> PointCloud2:
    """PointCloud2 by back-projection X = (u - cx) Z / fx, Y = (v - cy) Z / fy of depth pixels.

    Args:
        depth: HxW metres along the optical axis; NaN / non-positive = invalid.
        intrinsics: (fx, fy, cx, cy) at the depth resolution.
        header: header of the cloud (stamp and optical frame of the depth).
        rgb: optional HxWx3 uint8; adds an `rgb` field (point_step 32) instead of xyz only (16).
        confidence: optional HxW in [0, 1]; pixels below `min_confidence` are invalid.
        min_confidence: confidence threshold (ignored without `confidence`).
        stride: keep every stride-th pixel in both directions.
        organized: True keeps the (strided) image grid with NaN points for invalid pixels
            (is_dense False); False keeps only valid points in one row (is_dense True).
    """
    if stride < 1:
        raise ConversionError(f"stride must be >= 1, got {stride}")
    z = np.asarray(depth, dtype=np.float32)[::stride, ::stride]
    rows, cols = z.shape
    ray_x, ray_y = _rays(rows, cols, stride, *(float(v) for v in intrinsics))
    valid = np.isfinite(z) & (z > 0)
    if confidence is not None:
        valid &= np.asarray(confidence, dtype=np.float32)[::stride, ::stride] >= min_confidence
    if organized:
        z = np.where(valid, z, np.float32(np.nan)).reshape(-1)
        pick: slice | np.ndarray = slice(None)
    else:
        pick = np.flatnonzero(valid)
        z = z.reshape(-1)[pick]
    # Plain float32 columns are several times faster to fill than a structured array.
    points = np.zeros((z.size, 8 if rgb is not None else 4), dtype="<f4")
    points[:, 0] = ray_x[pick] * z
    points[:, 1] = ray_y[pick] * z
    points[:, 2] = z
    if rgb is not None:
        points[:, 4] = pack_rgb(np.asarray(rgb)[::stride, ::stride]).reshape(-1)[pick]  # pack, then pick: 5x faster
    shape = (rows, cols) if organized else (1, z.size)
    return _make_cloud(points, shape, header, rgb is not None, dense=not organized)


@functools.lru_cache(maxsize=8)
def _rays(rows: int, cols: int, stride: int, fx: float, fy: float, cx: float,
          cy: float) -> tuple[np.ndarray, np.ndarray]:
    """Flattened (u - cx) / fx and (v - cy) / fy of the strided pixel grid (cached: same camera)."""
    u = np.arange(cols, dtype=np.float64) * stride
    v = np.arange(rows, dtype=np.float64) * stride
    ray_x = np.broadcast_to(((u - cx) / fx)[None, :], (rows, cols)).reshape(-1).astype(np.float32)
    ray_y = np.broadcast_to(((v - cy) / fy)[:, None], (rows, cols)).reshape(-1).astype(np.float32)
    ray_x.flags.writeable = ray_y.flags.writeable = False
    return ray_x, ray_y


def points_to_cloud(xyz: np.ndarray, header: Header | None = None) -> PointCloud2:
    """Unorganised xyz PointCloud2 from (N, 3) metres (e.g. sparse points or salient points)."""
    xyz = np.asarray(xyz, dtype=np.float32).reshape(-1, 3)
    points = np.zeros((len(xyz), 4), dtype="<f4")
    points[:, :3] = xyz
    return _make_cloud(points, (1, len(xyz)), header, False, dense=bool(np.all(np.isfinite(xyz))))


def _make_cloud(points: np.ndarray, shape: tuple[int, int], header: Header | None, with_rgb: bool,
                dense: bool) -> PointCloud2:
    """PointCloud2 from (N, 4) xyz+pad or (N, 8) xyz+pad+rgb+pad little-endian float32 rows."""
    msg = PointCloud2()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(shape[0]), int(shape[1])
    msg.fields = _cloud_fields(with_rgb)
    msg.is_bigendian = False
    msg.point_step = points.shape[1] * 4
    msg.row_step = msg.point_step * msg.width
    msg.is_dense = dense
    msg.data = np.ascontiguousarray(points).tobytes()
    return msg
