"""sensor_msgs -> numpy readers that need no ROS: they work on rclpy messages and on `rosbags` objects.

Every reader checks the message before touching its bytes (encoding, zero size, step, data length,
endianness) and raises `ConversionError` (a ValueError) naming what is wrong, so that a node can
count and log bad input and a dataset can name the bad frame. ROS 1 field names of rosbags objects
(`K`/`P`, `nsec`) are accepted, and encodings are matched case-insensitively ("RGB8", "16uc1").

Used by `fusanet_core.datasets.bag` (training from bags), `fusanet_core.evaluation.bag_eval` (offline bag
evaluation) and, re-exported beside the writers, by `fusanet_ros.nodes.conversions` (the nodes).
Message data is read with `np.frombuffer` (zero copy).
"""

from __future__ import annotations

from typing import Any, Sequence

import cv2
import numpy as np

from . import images
from .images import decode_image, DEFAULT_MAX_INPUT_PIXELS  # noqa: F401  (the limit is re-exported for the nodes)
from ..errors import ConversionError
from ..geometry import check_intrinsics, Intrinsics

# encoding -> (numpy dtype, channels)
ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "rgba8": (np.dtype(np.uint8), 4),
    "bgra8": (np.dtype(np.uint8), 4),
    "mono8": (np.dtype(np.uint8), 1),
    "16UC1": (np.dtype(np.uint16), 1),
    "mono16": (np.dtype(np.uint16), 1),
    "32FC1": (np.dtype(np.float32), 1),
}
COLOR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8")
DEPTH_ENCODINGS = ("16UC1", "mono16", "32FC1")

# sensor_msgs/PointField datatype constants -> numpy dtype (fixed by the message definition)
POINTFIELD_DTYPES = {
    1: np.dtype(np.int8), 2: np.dtype(np.uint8), 3: np.dtype(np.int16), 4: np.dtype(np.uint16),
    5: np.dtype(np.int32), 6: np.dtype(np.uint32), 7: np.dtype(np.float32), 8: np.dtype(np.float64),
}  # fmt: skip


class TooLargeError(ConversionError):
    """A message image above the `max_input_pixels` rule, refused before its pixels are decoded."""


def norm_encoding(encoding: Any) -> str:
    """Normalise an encoding's case, "16uc1" -> "16UC1", "RGB8" -> "rgb8": ROS spells the two families differently."""
    text = str(encoding).strip()
    return text.upper() if text.upper() in ("16UC1", "32FC1") else text.lower() if text.lower() in ENCODINGS else text


# --------------------------------------------------------------------------------------- images
def image_to_array(msg: Any) -> np.ndarray:
    """Pixels of an Image as HxW or HxWxC in the encoding's dtype (native byte order).

    Raises:
        ConversionError: unsupported encoding, zero size, step too small or data length not
            height * step.
    """
    encoding = norm_encoding(msg.encoding)
    if encoding not in ENCODINGS:
        raise ConversionError(f"unsupported encoding {str(msg.encoding)!r} (supported: {', '.join(ENCODINGS)})")
    dtype, channels = ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height == 0 or width == 0:
        raise ConversionError(f"zero-size image {width}x{height}")
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ConversionError(f"step {step} < width {width} * {channels * dtype.itemsize} bytes per pixel ({encoding})")
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size != height * step:
        raise ConversionError(f"data length {data.size} != height {height} * step {step} = {height * step}")
    order = ">" if int(msg.is_bigendian) else "<"
    rows = data.reshape(height, step)[:, :row_bytes]
    pixels = np.ascontiguousarray(rows).view(dtype.newbyteorder(order)) if dtype.itemsize > 1 else rows
    pixels = pixels.astype(dtype, copy=False)  # native byte order
    return pixels.reshape(height, width, channels) if channels > 1 else pixels.reshape(height, width)


def check_pixel_count(width: int, height: int, max_pixels: int | None, what: str = "image") -> None:
    """Refuse a `width` x `height` image above `max_pixels` (None = no limit) before its data is touched.

    Raises:
        TooLargeError: e.g. "image 12000x12000 (144.0 MP) exceeds max_input_pixels 16777216".
    """
    try:
        images.check_pixel_count(width, height, max_pixels, what)  # the one size rule
    except images.ImageTooLargeError as err:
        raise TooLargeError(str(err)) from None


def image_to_rgb(msg: Any, *, max_pixels: int | None = None) -> np.ndarray:
    """HxWx3 uint8 RGB from an rgb8/bgr8/rgba8/bgra8/mono8 Image.

    Args:
        msg: sensor_msgs/Image.
        max_pixels: refuse images of more pixels (checked on width * height, before the data);
            None = no limit.

    Raises:
        ConversionError: not a colour encoding, too many pixels, or a malformed message.
    """
    encoding = norm_encoding(msg.encoding)
    if encoding in ENCODINGS and encoding not in COLOR_ENCODINGS:
        raise ConversionError(f"image encoding {str(msg.encoding)!r} is not a colour encoding "
                              f"({', '.join(COLOR_ENCODINGS)})")
    check_pixel_count(int(msg.width), int(msg.height), max_pixels)
    pixels = image_to_array(msg)
    if encoding == "mono8":
        return np.repeat(pixels[:, :, None], 3, axis=2)
    if encoding.startswith("bgr"):
        return np.ascontiguousarray(pixels[:, :, 2::-1])
    return np.ascontiguousarray(pixels[:, :, :3])


def image_to_depth(msg: Any, scale: float = 0.001) -> np.ndarray:
    """Return depth in metres (float32, NaN = invalid) from a 16UC1/mono16 or 32FC1 Image.

    16UC1/mono16 values are taken times `scale` (default mm; 0 invalid), 32FC1 ones as metres
    (non-finite and <= 0 invalid).
    """
    if norm_encoding(msg.encoding) not in DEPTH_ENCODINGS:
        raise ConversionError(f"depth encoding must be one of {', '.join(DEPTH_ENCODINGS)}, got {str(msg.encoding)!r}")
    raw = image_to_array(msg)
    if raw.dtype == np.uint16:
        depth = raw.astype(np.float32) * np.float32(scale)
        depth[raw == 0] = np.nan
        return depth
    depth = raw.astype(np.float32, copy=True)
    depth[~np.isfinite(depth) | (depth <= 0)] = np.nan
    return depth


def _decode_compressed(msg: Any, color: bool, max_pixels: int | None) -> np.ndarray:
    """`images.decode_image` of a CompressedImage's data (size, truncation and corruption checks)."""
    try:
        what = f"compressed image (format {str(msg.format)!r})"
        return decode_image(msg.data, what, color=color, max_pixels=max_pixels)
    except images.ImageTooLargeError as err:
        raise TooLargeError(str(err)) from None
    except ValueError as err:
        raise ConversionError(str(err)) from None


def compressed_to_rgb(msg: Any, *, max_pixels: int | None = None) -> np.ndarray:
    """HxWx3 uint8 RGB from a CompressedImage (JPEG/PNG; compressedDepth is rejected).

    Args:
        msg: sensor_msgs/CompressedImage.
        max_pixels: refuse images whose header declares more pixels (read before decoding);
            None = no limit.

    Raises:
        ConversionError: a depth format, empty, not an image, too many pixels, truncated or corrupt.
    """
    fmt = str(msg.format).lower()
    if "compresseddepth" in fmt:
        raise ConversionError(f"compressed format {msg.format!r} is a depth format, not a colour image")
    return _decode_compressed(msg, True, max_pixels)


def compressed_to_depth(msg: Any, scale: float = 0.001, *, max_pixels: int | None = None) -> np.ndarray:
    """Return depth in metres (float32, NaN = invalid) from a single-channel CompressedImage (e.g. a 16-bit PNG).

    16-bit values are taken times `scale`, others as metres; 0 is invalid. (image_transport's
    `compressedDepth` adds a header and, for 32FC1, quantised inverse depth: not read here.)
    """
    raw = _decode_compressed(msg, False, max_pixels)
    if raw.ndim != 2:
        raise ConversionError(f"compressed depth must be single-channel, got {raw.shape[2]} channels "
                              f"(format {msg.format!r})")
    depth = raw.astype(np.float32) * (np.float32(scale) if raw.dtype == np.uint16 else np.float32(1.0))
    depth[~np.isfinite(depth) | (depth <= 0)] = np.nan
    return depth


# ---------------------------------------------------------------------------------- camera info
def msg_field(msg: Any, name: str) -> Any:
    """ROS 2 lower-case field, or the ROS 1 upper-case one (rosbags objects of ROS 1 bags)."""
    return getattr(msg, name) if hasattr(msg, name) else getattr(msg, name.upper())


def camera_info_intrinsics(msg: Any) -> Intrinsics:
    """(fx, fy, cx, cy) from P (as image_geometry does), falling back to K when P is unset.

    The chosen matrix must be plausible for the camera_info's width x height (`check_intrinsics`).

    Raises:
        ConversionError: neither P nor K has a positive, finite focal length and a finite centre,
            or the chosen one is implausible for the image size (the message names the value).
    """
    p = np.asarray(msg_field(msg, "p"), dtype=np.float64).reshape(-1)
    k = np.asarray(msg_field(msg, "k"), dtype=np.float64).reshape(-1)
    candidates = []
    if p.size == 12:
        candidates.append(("P", (p[0], p[5], p[2], p[6])))
    if k.size == 9:
        candidates.append(("K", (k[0], k[4], k[2], k[5])))
    for name, (fx, fy, cx, cy) in candidates:
        if np.all(np.isfinite([fx, fy, cx, cy])) and fx > 0 and fy > 0:
            return check_intrinsics((fx, fy, cx, cy), int(msg.width), int(msg.height), f"camera_info {name}")
    raise ConversionError("camera_info has no valid focal length (P and K have zero, negative or NaN fx/fy)")


def camera_info_k(msg: Any) -> Intrinsics:
    """Return (fx, fy, cx, cy) from K only (the camera matrix of the raw image, before rectification).

    The values are checked with `check_intrinsics` against the camera_info's size.

    Raises:
        ConversionError: K has no positive, finite focal length, or an implausible value.
    """
    k = np.asarray(msg_field(msg, "k"), dtype=np.float64).reshape(-1)
    if k.size == 9 and np.all(np.isfinite(k[[0, 4, 2, 5]])) and k[0] > 0 and k[4] > 0:
        return check_intrinsics((k[0], k[4], k[2], k[5]), int(msg.width), int(msg.height), "camera_info K")
    raise ConversionError("camera_info has no valid focal length in K")


def check_camera_info_size(msg: Any, width: int, height: int) -> None:
    """Check that a CameraInfo whose size is set matches the image it describes."""
    info_w, info_h = int(msg.width), int(msg.height)
    if (info_w or info_h) and (info_w, info_h) != (width, height):
        raise ConversionError(f"camera_info is {info_w}x{info_h} but the image is {width}x{height}")


# --------------------------------------------------------------------------------- point clouds
def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 RGB -> float32 whose bits are 0x00RRGGBB (the PCL/RViz convention)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    if rgb.size == 0:
        return np.zeros(rgb.shape[:-1], np.float32)
    # Little-endian bytes B, G, R, 0 are the uint32 0x00RRGGBB; OpenCV interleaves them fastest.
    bgra = cv2.cvtColor(rgb.reshape(-1, 1, 3), cv2.COLOR_RGB2BGRA)
    bgra[..., 3] = 0  # alpha 0 keeps the float finite (0xFF...... would be NaN)
    return bgra.view("<f4").reshape(rgb.shape[:-1])


def unpack_rgb(packed: np.ndarray) -> np.ndarray:
    """Inverse of `pack_rgb`: float32 -> (..., 3) uint8."""
    bits = np.asarray(packed, dtype=np.float32).view(np.uint32)
    return np.stack([(bits >> 16) & 255, (bits >> 8) & 255, bits & 255], axis=-1).astype(np.uint8)


def read_cloud_fields(msg: Any, names: Sequence[str] = ("x", "y", "z")) -> dict[str, np.ndarray]:
    """Named fields of a PointCloud2 as (height, width) arrays (copies, native byte order).

    Supports FLOAT32/FLOAT64 and the other PointField scalar types, any point_step/row_step
    padding and either byte order.

    Raises:
        ConversionError: a field is missing, or point_step/row_step/data length are inconsistent.
    """
    fields = {f.name: f for f in msg.fields}
    height, width = int(msg.height), int(msg.width)
    point_step, row_step = int(msg.point_step), int(msg.row_step)
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if row_step < width * point_step:
        raise ConversionError(f"row_step {row_step} < width {width} * point_step {point_step}")
    if data.size != height * row_step:
        raise ConversionError(f"data length {data.size} != height {height} * row_step {row_step}")
    order = ">" if msg.is_bigendian else "<"
    out = {}
    for name in names:
        if name not in fields:
            raise ConversionError(f"point cloud has no field {name!r} (fields: {', '.join(fields) or 'none'})")
        field = fields[name]
        dtype = POINTFIELD_DTYPES.get(int(field.datatype))
        if dtype is None:
            raise ConversionError(f"field {name!r} has unknown datatype {field.datatype}")
        if int(field.offset) + dtype.itemsize > point_step:
            raise ConversionError(f"field {name!r} at offset {field.offset} does not fit point_step {point_step}")
        if height * width == 0:
            out[name] = np.zeros((height, width), dtype)
            continue
        rows = data.reshape(height, row_step)[:, : width * point_step].reshape(height, width, point_step)
        raw = np.ascontiguousarray(rows[:, :, int(field.offset): int(field.offset) + dtype.itemsize])
        out[name] = raw.view(dtype.newbyteorder(order)).reshape(height, width).astype(dtype)
    return out


def cloud_to_xyz(msg: Any, skip_nans: bool = True) -> np.ndarray:
    """(N, 3) float32 x, y, z of a PointCloud2 (row-major); NaN/inf points dropped by default."""
    fields = read_cloud_fields(msg, ("x", "y", "z"))
    xyz = np.stack([fields[n].reshape(-1) for n in ("x", "y", "z")], axis=1).astype(np.float32)
    return xyz[np.all(np.isfinite(xyz), axis=1)] if skip_nans else xyz


# -------------------------------------------------------------------------------- sparse points
def sparse_depth_to_points(msg: Any) -> np.ndarray:
    """(N, 3) float32 (u, v, z) of the valid pixels of a sparse 16UC1/mono16/32FC1 depth Image."""
    depth = image_to_depth(msg)
    v, u = np.nonzero(np.isfinite(depth))
    return np.stack([u, v, depth[v, u]], axis=1).astype(np.float32)


# ---------------------------------------------------------------------------------------- stamps
def stamp_ns(header: Any) -> int:
    """Header stamp in integer nanoseconds (ROS 2 `nanosec`, or ROS 1 `nsec` of rosbags objects)."""
    stamp = header.stamp
    return int(stamp.sec) * 1_000_000_000 + int(getattr(stamp, "nanosec", getattr(stamp, "nsec", 0)))
