"""sensor_msgs <-> numpy without cv_bridge or sensor_msgs_py (neither installs from pip).

Every reader checks the message before touching its bytes (encoding, zero size, step, data length,
endianness) and raises `ConversionError` (a ValueError) naming what is wrong, so that a node can
count and log bad input instead of crashing. Readers accept rclpy messages and the equivalent
`rosbags` objects (ROS 1 field names such as `K`/`P` included).

Message data is written as `bytes` (assigning numpy arrays to `msg.data` costs 45-75 ms for VGA in
rclpy) and read with `np.frombuffer` (zero copy).
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import cv2
import numpy as np
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField
from std_msgs.msg import Header

Intrinsics = tuple[float, float, float, float]  # fx, fy, cx, cy in pixels

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



class ConversionError(ValueError):
    """A message that cannot be converted; the text says why (used for bad-input counters)."""


# --------------------------------------------------------------------------------------- images
def image_to_array(msg: Any) -> np.ndarray:
    """Pixels of an Image as HxW or HxWxC in the encoding's dtype (native byte order).

    Raises:
        ConversionError: unsupported encoding, zero size, step too small or data length not
            height * step.
    """
    encoding = str(msg.encoding)
    if encoding not in ENCODINGS:
        raise ConversionError(f"unsupported encoding {encoding!r} (supported: {', '.join(ENCODINGS)})")
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


def image_to_rgb(msg: Any) -> np.ndarray:
    """HxWx3 uint8 RGB from an rgb8/bgr8/rgba8/bgra8/mono8 Image."""
    if str(msg.encoding) in ENCODINGS and str(msg.encoding) not in COLOR_ENCODINGS:
        raise ConversionError(f"image encoding {msg.encoding!r} is not a colour encoding ({', '.join(COLOR_ENCODINGS)})")
    pixels = image_to_array(msg)
    encoding = str(msg.encoding)
    if encoding == "mono8":
        return np.repeat(pixels[:, :, None], 3, axis=2)
    if encoding.startswith("bgr"):
        return np.ascontiguousarray(pixels[:, :, 2::-1])
    return np.ascontiguousarray(pixels[:, :, :3])


def compressed_to_rgb(msg: Any) -> np.ndarray:
    """HxWx3 uint8 RGB from a CompressedImage (JPEG/PNG; compressedDepth is rejected)."""
    fmt = str(msg.format).lower()
    if "compresseddepth" in fmt:
        raise ConversionError(f"compressed format {msg.format!r} is a depth format, not a colour image")
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size == 0:
        raise ConversionError("empty compressed image")
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if bgr is None or bgr.size == 0:
        raise ConversionError(f"cannot decode compressed image (format {msg.format!r}, {data.size} bytes)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def image_to_depth(msg: Any) -> np.ndarray:
    """Depth in metres (float32, NaN = invalid) from a 16UC1/mono16 (mm) or 32FC1 (m) Image."""
    if str(msg.encoding) not in DEPTH_ENCODINGS:
        raise ConversionError(f"depth encoding must be one of {', '.join(DEPTH_ENCODINGS)}, got {msg.encoding!r}")
    raw = image_to_array(msg)
    if raw.dtype == np.uint16:
        depth = raw.astype(np.float32) * np.float32(0.001)
        depth[raw == 0] = np.nan
        return depth
    depth = raw.astype(np.float32, copy=True)
    depth[~np.isfinite(depth) | (depth <= 0)] = np.nan
    return depth


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


def rgb_to_compressed(rgb: np.ndarray, fmt: str = "jpeg", header: Header | None = None, quality: int = 90) -> CompressedImage:
    """CompressedImage (jpeg or png) from HxWx3 uint8 RGB."""
    ext = {"jpeg": ".jpg", "jpg": ".jpg", "png": ".png"}.get(fmt)
    if ext is None:
        raise ConversionError(f"compressed format must be jpeg or png, got {fmt!r}")
    ok, buf = cv2.imencode(ext, cv2.cvtColor(np.asarray(rgb, np.uint8), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ConversionError(f"could not encode a {rgb.shape} image as {fmt}")
    msg = CompressedImage()
    if header is not None:
        msg.header = header
    msg.format = "jpeg" if ext == ".jpg" else "png"
    msg.data = buf.tobytes()
    return msg


def depth_to_image(depth_m: np.ndarray, encoding: str = "32FC1", header: Header | None = None) -> Image:
    """Depth Image (REP 118): 32FC1 metres with NaN invalid, or 16UC1 millimetres with 0 invalid."""
    depth = np.asarray(depth_m, dtype=np.float32)
    if encoding == "32FC1":
        return array_to_image(depth, encoding, header)
    if encoding == "16UC1":
        mm = np.nan_to_num(depth * 1000.0, nan=0.0, posinf=0.0, neginf=0.0)
        mm = np.where((mm > 0) & (mm < 65535), np.round(mm), 0).astype(np.uint16)
        return array_to_image(mm, encoding, header)
    raise ConversionError(f"depth output encoding must be 32FC1 or 16UC1, got {encoding!r}")


# ---------------------------------------------------------------------------------- camera info
def _field(msg: Any, name: str) -> Any:
    """ROS 2 lower-case field, or the ROS 1 upper-case one (rosbags objects of ROS 1 bags)."""
    return getattr(msg, name) if hasattr(msg, name) else getattr(msg, name.upper())


def camera_info_intrinsics(msg: Any) -> Intrinsics:
    """(fx, fy, cx, cy) from P (as image_geometry does), falling back to K when P is unset.

    Raises:
        ConversionError: neither P nor K has a positive, finite focal length and a finite centre.
    """
    p = np.asarray(_field(msg, "p"), dtype=np.float64).reshape(-1)
    k = np.asarray(_field(msg, "k"), dtype=np.float64).reshape(-1)
    candidates = []
    if p.size == 12:
        candidates.append((p[0], p[5], p[2], p[6]))
    if k.size == 9:
        candidates.append((k[0], k[4], k[2], k[5]))
    for fx, fy, cx, cy in candidates:
        if np.all(np.isfinite([fx, fy, cx, cy])) and fx > 0 and fy > 0:
            return float(fx), float(fy), float(cx), float(cy)
    raise ConversionError("camera_info has no valid focal length (P and K have zero, negative or NaN fx/fy)")


def check_camera_info_size(msg: Any, width: int, height: int) -> None:
    """A CameraInfo whose size is set must match the image it describes."""
    info_w, info_h = int(msg.width), int(msg.height)
    if (info_w or info_h) and (info_w, info_h) != (width, height):
        raise ConversionError(f"camera_info is {info_w}x{info_h} but the image is {width}x{height}")


def scale_intrinsics(k: Intrinsics, sx: float, sy: float) -> Intrinsics:
    """Intrinsics after resizing by (sx, sy), pixel-centre convention (as the Predictor uses)."""
    fx, fy, cx, cy = k
    return fx * sx, fy * sy, (cx + 0.5) * sx - 0.5, (cy + 0.5) * sy - 0.5


def scaled_camera_info(msg: Any, width: int, height: int, source_size: tuple[int, int] | None = None, header: Header | None = None) -> CameraInfo:
    """CameraInfo for an output of `width` x `height` with K and P rescaled.

    Args:
        msg: the input CameraInfo.
        width, height: output size.
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
    out.d = [float(v) for v in _field(msg, "d")]
    out.r = np.asarray(_field(msg, "r"), dtype=np.float64).reshape(9)
    k = np.asarray(_field(msg, "k"), dtype=np.float64).reshape(3, 3).copy()
    p = np.asarray(_field(msg, "p"), dtype=np.float64).reshape(3, 4).copy()
    for mat in (k, p):
        mat[0, 0] *= sx
        mat[1, 1] *= sy
        mat[0, 2] = (mat[0, 2] + 0.5) * sx - 0.5
        mat[1, 2] = (mat[1, 2] + 0.5) * sy - 0.5
    p[0, 3] *= sx  # Tx = -fx * baseline scales with fx
    p[1, 3] *= sy
    out.k, out.p = k.reshape(9), p.reshape(12)
    out.binning_x, out.binning_y = int(msg.binning_x), int(msg.binning_y)
    if (sx, sy) == (1.0, 1.0):
        out.roi = msg.roi
    return out


def make_camera_info(k: Intrinsics, width: int, height: int, header: Header | None = None) -> CameraInfo:
    """A pinhole CameraInfo (no distortion) with K and P from (fx, fy, cx, cy)."""
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
def _rays(rows: int, cols: int, stride: int, fx: float, fy: float, cx: float, cy: float) -> tuple[np.ndarray, np.ndarray]:
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


def _make_cloud(points: np.ndarray, shape: tuple[int, int], header: Header | None, with_rgb: bool, dense: bool) -> PointCloud2:
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
        dtype = _POINTFIELD_DTYPES.get(int(field.datatype))
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


_POINTFIELD_DTYPES = {
    PointField.INT8: np.dtype(np.int8), PointField.UINT8: np.dtype(np.uint8),
    PointField.INT16: np.dtype(np.int16), PointField.UINT16: np.dtype(np.uint16),
    PointField.INT32: np.dtype(np.int32), PointField.UINT32: np.dtype(np.uint32),
    PointField.FLOAT32: np.dtype(np.float32), PointField.FLOAT64: np.dtype(np.float64),
}  # fmt: skip


def cloud_to_xyz(msg: Any, skip_nans: bool = True) -> np.ndarray:
    """(N, 3) float32 x, y, z of a PointCloud2 (row-major); NaN/inf points dropped by default."""
    fields = read_cloud_fields(msg, ("x", "y", "z"))
    xyz = np.stack([fields[n].reshape(-1) for n in ("x", "y", "z")], axis=1).astype(np.float32)
    return xyz[np.all(np.isfinite(xyz), axis=1)] if skip_nans else xyz


# -------------------------------------------------------------------------------- sparse points
def project_points(xyz: np.ndarray, intrinsics: Intrinsics, width: int, height: int) -> tuple[np.ndarray, int]:
    """Project camera-frame points to (u, v, z) pixels; drops NaN, z <= 0 and out-of-frame points.

    Returns:
        ((M, 3) float32 (u, v, z), number of points dropped).
    """
    fx, fy, cx, cy = intrinsics
    xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    with np.errstate(divide="ignore", invalid="ignore"):
        u = fx * xyz[:, 0] / xyz[:, 2] + cx
        v = fy * xyz[:, 1] / xyz[:, 2] + cy
    uvz = np.stack([u, v, xyz[:, 2]], axis=1)
    keep = np.all(np.isfinite(uvz), axis=1) & (uvz[:, 2] > 0)
    keep &= (u > -0.5) & (u < width - 0.5) & (v > -0.5) & (v < height - 0.5)
    return uvz[keep].astype(np.float32), int(len(uvz) - keep.sum())


def sparse_depth_to_points(msg: Any) -> np.ndarray:
    """(N, 3) float32 (u, v, z) of the valid pixels of a sparse 16UC1/mono16/32FC1 depth Image."""
    depth = image_to_depth(msg)
    v, u = np.nonzero(np.isfinite(depth))
    return np.stack([u, v, depth[v, u]], axis=1).astype(np.float32)


def stamp_ns(header: Any) -> int:
    """Header stamp in integer nanoseconds."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)
