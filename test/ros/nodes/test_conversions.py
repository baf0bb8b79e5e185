"""Message <-> array conversions: round trips, layouts, and every malformed-message check (no DDS)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sensor_msgs.msg")

from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from fusanet_core.geometry import project_points, scale_intrinsics  # noqa: E402
from fusanet_ros.nodes import conversions as conv  # noqa: E402

RNG = np.random.default_rng(0)
K = (520.9, 521.0, 325.1, 249.7)


def _rgb(h: int = 6, w: int = 5) -> np.ndarray:
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _header(sec: int = 12, frame: str = "cam_optical") -> Header:
    header = Header(frame_id=frame)
    header.stamp.sec, header.stamp.nanosec = sec, 345
    return header


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
def test_colour_round_trip(encoding: str) -> None:
    rgb = _rgb()
    msg = conv.rgb_to_image(rgb, encoding, _header())
    assert msg.encoding == encoding and msg.step == rgb.shape[1] * (4 if encoding.endswith("a8") else 3)
    assert isinstance(msg.data, (bytes, bytearray)) or msg.data.typecode == "B"
    np.testing.assert_array_equal(conv.image_to_rgb(msg), rgb)
    assert msg.header.frame_id == "cam_optical" and msg.header.stamp.sec == 12


def test_mono8_becomes_grey_rgb() -> None:
    grey = RNG.integers(0, 256, (4, 7), dtype=np.uint8)
    out = conv.image_to_rgb(conv.array_to_image(grey, "mono8"))
    assert out.shape == (4, 7, 3) and all(np.array_equal(out[..., c], grey) for c in range(3))


@pytest.mark.parametrize("encoding,dtype", [("16UC1", np.uint16), ("mono16", np.uint16), ("32FC1", np.float32)])
def test_depth_arrays_round_trip(encoding: str, dtype: type) -> None:
    arr = (RNG.random((5, 4)) * 1000).astype(dtype)
    np.testing.assert_array_equal(conv.image_to_array(conv.array_to_image(arr, encoding)), arr)


def test_row_padding_and_big_endian_are_read() -> None:
    arr = np.arange(12, dtype=np.uint16).reshape(3, 4) * 300
    padded = np.zeros((3, 12), np.uint8)  # step 12 > 4 * 2 bytes
    padded[:, :8] = arr.astype(">u2").view(np.uint8).reshape(3, 8)
    msg = Image(height=3, width=4, encoding="16UC1", is_bigendian=1, step=12, data=padded.tobytes())
    np.testing.assert_array_equal(conv.image_to_array(msg), arr)


def test_depth_image_units_and_invalid_values() -> None:
    depth = np.array([[1.2345, np.nan], [0.0, 70.0]], np.float32)
    as_mm = conv.depth_to_image(depth, "16UC1")
    np.testing.assert_array_equal(conv.image_to_array(as_mm), [[1234, 0], [0, 0]])  # 70 m does not fit in mm
    back = conv.image_to_depth(as_mm)
    assert back[0, 0] == pytest.approx(1.234) and np.isnan(back[0, 1]) and np.isnan(back[1, 0])
    as_m = conv.image_to_depth(conv.depth_to_image(depth, "32FC1"))
    assert as_m[0, 0] == pytest.approx(1.2345) and np.isnan(as_m[1, 0]) and as_m[1, 1] == 70.0
    with pytest.raises(conv.ConversionError, match="32FC1 or 16UC1"):
        conv.depth_to_image(depth, "8UC1")


@pytest.mark.parametrize(
    "change,match",
    [
        ({"encoding": "yuv422"}, "unsupported encoding 'yuv422'"),
        ({"height": 0}, "zero-size"),
        ({"width": 0}, "zero-size"),
        ({"step": 5}, "step 5 <"),
        ({"data": bytes(10)}, "data length 10"),
        ({"height": 7}, "data length"),
    ],
)
def test_malformed_images_are_rejected(change: dict, match: str) -> None:
    msg = conv.rgb_to_image(_rgb(6, 5))
    for key, value in change.items():
        setattr(msg, key, value)
    with pytest.raises(conv.ConversionError, match=match):
        conv.image_to_rgb(msg)


def test_depth_encoding_is_not_a_colour_image() -> None:
    with pytest.raises(conv.ConversionError, match="not a colour encoding"):
        conv.image_to_rgb(conv.array_to_image(np.zeros((2, 2), np.uint16), "16UC1"))
    with pytest.raises(conv.ConversionError, match="needs uint8"):
        conv.array_to_image(np.zeros((2, 2, 3), np.float32), "rgb8")


def test_compressed_round_trip_and_errors() -> None:
    rgb = _rgb(16, 16)
    np.testing.assert_array_equal(conv.compressed_to_rgb(conv.rgb_to_compressed(rgb, "png")), rgb)
    smooth = np.broadcast_to(np.linspace(0, 255, 16, dtype=np.uint8)[None, :, None], (16, 16, 3)).copy()
    decoded = conv.compressed_to_rgb(conv.rgb_to_compressed(smooth, "jpeg", quality=95))
    assert decoded.shape == (16, 16, 3) and np.abs(decoded.astype(int) - smooth).mean() < 3
    with pytest.raises(conv.ConversionError, match="empty"):
        conv.compressed_to_rgb(CompressedImage(format="jpeg"))
    with pytest.raises(conv.ConversionError, match="cannot decode"):
        conv.compressed_to_rgb(CompressedImage(format="jpeg", data=b"not a jpeg at all"))
    with pytest.raises(conv.ConversionError, match="depth format"):
        conv.compressed_to_rgb(CompressedImage(format="16UC1; compressedDepth png", data=b"x"))


def test_camera_info_prefers_p_then_k_and_rejects_bad_focal() -> None:
    info = conv.make_camera_info(K, 640, 480)
    assert conv.camera_info_intrinsics(info) == pytest.approx(K)
    info.p = np.array([500.0, 0, 320, 0, 0, 501, 240, 0, 0, 0, 1, 0])
    assert conv.camera_info_intrinsics(info) == pytest.approx((500, 501, 320, 240))
    info.p = np.zeros(12)  # unset P (many drivers) -> K
    assert conv.camera_info_intrinsics(info) == pytest.approx(K)
    for bad in (np.zeros(9), np.array([np.nan, 0, 320, 0, 500, 240, 0, 0, 1.0]),
                np.array([-5.0, 0, 320, 0, 500, 240, 0, 0, 1])):
        info.k = bad
        with pytest.raises(conv.ConversionError, match="no valid focal length"):
            conv.camera_info_intrinsics(info)


def test_camera_info_size_check() -> None:
    info = conv.make_camera_info(K, 640, 480)
    conv.check_camera_info_size(info, 640, 480)
    conv.check_camera_info_size(CameraInfo(), 640, 480)  # size unset: accepted
    with pytest.raises(conv.ConversionError, match="640x480 but the image is 320x240"):
        conv.check_camera_info_size(info, 320, 240)


def test_scaled_camera_info_matches_scale_intrinsics() -> None:
    info = conv.make_camera_info(K, 640, 480, _header())
    info.p[3] = -52.09  # stereo Tx = -fx * B
    half = conv.scaled_camera_info(info, 320, 240)
    assert (half.width, half.height) == (320, 240) and half.header.frame_id == "cam_optical"
    expected = scale_intrinsics(K, 0.5, 0.5)
    assert conv.camera_info_intrinsics(half) == pytest.approx(expected)
    assert (half.k[0], half.k[4], half.k[2], half.k[5]) == pytest.approx(expected)
    assert half.p[3] == pytest.approx(-52.09 / 2)
    same = conv.scaled_camera_info(info, 640, 480)
    np.testing.assert_allclose(same.k, info.k)
    np.testing.assert_allclose(same.p, info.p)


def _backproject(depth: np.ndarray, k: tuple, stride: int) -> np.ndarray:
    fx, fy, cx, cy = k
    v, u = np.mgrid[0:depth.shape[0]:stride, 0:depth.shape[1]:stride]
    z = depth[::stride, ::stride]
    return np.stack([(u - cx) * z / fx, (v - cy) * z / fy, z], axis=-1)


def test_organised_cloud_layout_and_values() -> None:
    depth = RNG.uniform(0.5, 4.0, (6, 8)).astype(np.float32)
    depth[1, 2] = np.nan
    conf = np.ones_like(depth)
    conf[3, 3] = 0.1
    rgb = _rgb(6, 8)
    cloud = conv.depth_to_cloud(depth, K, _header(), rgb, conf, min_confidence=0.5, organized=True)
    assert (cloud.height, cloud.width, cloud.point_step, cloud.row_step) == (6, 8, 32, 256)
    assert [(f.name, f.offset, f.datatype) for f in cloud.fields] == [("x", 0, 7), ("y", 4, 7), ("z", 8, 7),
                                                                      ("rgb", 16, 7)]
    assert not cloud.is_dense and not cloud.is_bigendian and cloud.header.frame_id == "cam_optical"
    fields = conv.read_cloud_fields(cloud, ("x", "y", "z", "rgb"))
    xyz = np.stack([fields["x"], fields["y"], fields["z"]], axis=-1)
    expected = _backproject(depth, K, 1)
    expected[1, 2] = expected[3, 3] = np.nan
    np.testing.assert_allclose(xyz, expected, atol=1e-5)
    np.testing.assert_array_equal(conv.unpack_rgb(fields["rgb"]), rgb)


def test_unorganised_strided_cloud_keeps_only_confident_points() -> None:
    depth = RNG.uniform(0.5, 4.0, (10, 12)).astype(np.float32)
    conf = RNG.random((10, 12)).astype(np.float32)
    cloud = conv.depth_to_cloud(depth, K, None, None, conf, min_confidence=0.5, stride=3)
    keep = conf[::3, ::3] >= 0.5
    assert (cloud.height, cloud.width, cloud.point_step) == (1, int(keep.sum()), 16) and cloud.is_dense
    np.testing.assert_allclose(conv.cloud_to_xyz(cloud), _backproject(depth, K, 3)[keep], atol=1e-5)


def test_cloud_reader_handles_padding_float64_and_bad_layouts() -> None:
    pts = RNG.random((5, 3))
    raw = np.zeros((5, 40), np.uint8)  # x, y, z float64 at 8/16/24 in a 40-byte point
    raw[:, 8:32] = pts.astype("<f8").view(np.uint8).reshape(5, 24)
    fields = [PointField(name=n, offset=o, datatype=PointField.FLOAT64, count=1)
              for n, o in (("x", 8), ("y", 16), ("z", 24))]
    msg = PointCloud2(height=1, width=5, fields=fields, point_step=40, row_step=200, data=raw.tobytes())
    np.testing.assert_allclose(conv.cloud_to_xyz(msg), pts, rtol=1e-6)
    msg.row_step = 100
    with pytest.raises(conv.ConversionError, match="row_step"):
        conv.cloud_to_xyz(msg)
    msg.row_step, msg.data = 200, bytes(20)
    with pytest.raises(conv.ConversionError, match="data length"):
        conv.cloud_to_xyz(msg)
    msg.data, msg.fields = raw.tobytes(), fields[:2]
    with pytest.raises(conv.ConversionError, match="no field 'z'"):
        conv.cloud_to_xyz(msg)


def test_core_pointfield_table_matches_sensor_msgs() -> None:
    from fusanet_core.io.messages import POINTFIELD_DTYPES

    names = {"INT8": np.int8, "UINT8": np.uint8, "INT16": np.int16, "UINT16": np.uint16, "INT32": np.int32,
             "UINT32": np.uint32, "FLOAT32": np.float32, "FLOAT64": np.float64}
    assert POINTFIELD_DTYPES == {getattr(PointField, name): np.dtype(dtype) for name, dtype in names.items()}


def test_points_to_cloud_round_trip_and_nan_filter() -> None:
    xyz = RNG.random((7, 3)).astype(np.float32)
    xyz[2] = np.nan
    cloud = conv.points_to_cloud(xyz)
    assert not cloud.is_dense and cloud.width == 7
    np.testing.assert_array_equal(conv.cloud_to_xyz(cloud), xyz[np.isfinite(xyz).all(axis=1)])
    assert conv.cloud_to_xyz(cloud, skip_nans=False).shape == (7, 3)
    assert conv.cloud_to_xyz(conv.points_to_cloud(np.zeros((0, 3)))).shape == (0, 3)


def test_projection_drops_nan_behind_and_out_of_frame_points() -> None:
    fx, fy, cx, cy = K
    good = np.array([[0.0, 0.0, 2.0], [0.5, -0.2, 1.5]])
    bad = np.array([[np.nan, 0, 1], [0, 0, -1.0], [0, 0, 0], [10.0, 0, 1.0]])
    uvz, dropped = project_points(np.concatenate([good, bad]), K, 640, 480)
    assert dropped == 4 and uvz.shape == (2, 3)
    np.testing.assert_allclose(uvz[1], [fx * 0.5 / 1.5 + cx, fy * -0.2 / 1.5 + cy, 1.5], rtol=1e-5)


def test_sparse_depth_image_to_points() -> None:
    mm = np.zeros((4, 5), np.uint16)
    mm[1, 3], mm[2, 0] = 1500, 800
    uvz = conv.sparse_depth_to_points(conv.array_to_image(mm, "16UC1"))
    np.testing.assert_allclose(uvz, [[3, 1, 1.5], [0, 2, 0.8]], rtol=1e-6)
    metres = np.full((3, 3), np.nan, np.float32)
    metres[0, 2] = 2.5
    np.testing.assert_allclose(conv.sparse_depth_to_points(conv.array_to_image(metres, "32FC1")), [[2, 0, 2.5]])


def test_stamp_ns() -> None:
    assert conv.stamp_ns(_header(3)) == 3_000_000_345
