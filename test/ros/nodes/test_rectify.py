"""Rectification, the published camera_info, REP 117 marking and sparse frames, in-process (no DDS)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

pytest.importorskip("sensor_msgs.msg")

from std_msgs.msg import Header  # noqa: E402

from fusanet_core.geometry import scale_intrinsics  # noqa: E402
from fusanet_ros.nodes import conversions as conv  # noqa: E402
from fusanet_ros.nodes.depth_pipeline import BadInput, mark_invalid, sparse_cloud_in_camera, sparse_to_uvz  # noqa: E402
from fusanet_ros.nodes.depth_settings import PARAMETERS, validate_settings  # noqa: E402
from fusanet_ros.nodes.params import defaults  # noqa: E402
from fusanet_ros.nodes.rectify import needs_rectification, Rectifier, topic_is_rectified  # noqa: E402

K = (500.0, 505.0, 319.5, 239.5)
D = [-0.3, 0.09, 0.001, -0.0015, 0.0]


def _distorted_info() -> object:
    info = conv.make_camera_info(K, 640, 480)
    info.d = D
    return info


def test_topic_names_say_raw_or_rectified() -> None:
    assert not topic_is_rectified("/camera/color/image_raw")
    assert not topic_is_rectified("/camera/color/image_raw/compressed")
    assert topic_is_rectified("/camera/color/image_rect_color") and topic_is_rectified("/cam/image_rect/compressed")


def test_what_needs_rectification() -> None:
    assert not needs_rectification(conv.make_camera_info(K, 640, 480))
    assert needs_rectification(_distorted_info())
    other_p = conv.make_camera_info(K, 640, 480)
    other_p.p = np.array([450.0, 0, 320, 0, 0, 450.0, 240, 0, 0, 0, 1, 0])  # P != K: raw pixels follow K
    assert needs_rectification(other_p)
    unset_p = conv.make_camera_info(K, 640, 480)
    unset_p.p = np.zeros(12)
    assert not needs_rectification(unset_p)


def test_a_raw_pixel_lands_where_opencv_undistorts_it() -> None:
    raw_uv = np.array([[60.0, 50.0]])  # near a corner: distortion moves it by several pixels
    image = np.zeros((480, 640, 3), np.uint8)
    cv2.circle(image, (60, 50), 3, (255, 255, 255), -1)
    rectified = Rectifier().rectify(image, _distorted_info())
    k = np.array([[K[0], 0, K[2]], [0, K[1], K[3]], [0, 0, 1]])
    expected = cv2.undistortPoints(raw_uv.reshape(1, 1, 2), k, np.array(D), P=k).reshape(2)
    v, u = np.nonzero(rectified[..., 0] > 128)
    assert np.hypot(u.mean() - expected[0], v.mean() - expected[1]) < 1.0
    assert np.hypot(*(expected - raw_uv[0])) > 5  # it did move: the test can tell


def test_maps_are_cached_per_camera_info_and_bad_models_are_named() -> None:
    rect = Rectifier(cache_size=2)
    image = np.zeros((480, 640, 3), np.uint8)
    rect.rectify(image, _distorted_info())
    first = next(iter(rect._maps.values()))
    rect.rectify(image, _distorted_info())  # an equal message: the same maps, not rebuilt
    assert len(rect._maps) == 1 and next(iter(rect._maps.values())) is first
    odd = _distorted_info()
    odd.distortion_model = "kannala_brandt_9"
    with pytest.raises(conv.ConversionError, match="kannala_brandt_9.*rectify:=off"):
        rect.rectify(image, odd)


def test_published_camera_info_is_the_rectified_camera_at_the_output_size() -> None:
    info = _distorted_info()
    info.p = np.array([K[0], 0, K[2], -25.0, 0, K[1], K[3], 0, 0, 0, 1, 0])  # right camera of a stereo pair
    header = Header(frame_id="cam")
    out = conv.output_camera_info(info, K, 320, 240, (640, 480), header)
    assert list(out.d) == [0.0] * 5 and np.allclose(np.reshape(out.r, (3, 3)), np.eye(3))
    fx, fy, cx, cy = scale_intrinsics(K, 0.5, 0.5)
    np.testing.assert_allclose(out.k, [fx, 0, cx, 0, fy, cy, 0, 0, 1])
    np.testing.assert_allclose(out.p, [fx, 0, cx, -12.5, 0, fy, cy, 0, 0, 0, 1, 0])
    assert (out.width, out.height, out.header.frame_id) == (320, 240, "cam")


def test_rep117_marking() -> None:
    depth = np.array([[1.0, 12.0, np.nan, 0.0], [-1.0, 12.0, 5.0, 9.9]], np.float32)
    conf = np.array([[0.9, 0.9, 0.9, 0.9], [0.9, 0.1, 0.1, 0.9]], np.float32)
    mark_invalid(depth, conf, max_depth=10.0, min_confidence=0.5)
    expected = np.array([[1.0, np.inf, np.nan, np.nan], [np.nan, np.nan, np.nan, 9.9]], np.float32)
    np.testing.assert_array_equal(depth, expected)  # assert_array_equal treats NaN == NaN
    as_mm = conv.image_to_array(conv.depth_to_image(depth, "16UC1"))
    np.testing.assert_array_equal(as_mm, [[1000, 0, 0, 0], [0, 0, 0, 9900]])


def _settings(**values: object) -> object:
    return validate_settings({**defaults(PARAMETERS), **{k.replace("__", "."): v for k, v in values.items()}})


def _cloud(xyz: np.ndarray, frame: str) -> object:
    return conv.points_to_cloud(xyz, Header(frame_id=frame))


def test_sparse_clouds_are_taken_in_the_camera_frame_or_through_the_extrinsic() -> None:
    xyz = np.array([[0.1, 0.2, 1.0], [0.0, 0.0, 2.0]], np.float32)
    np.testing.assert_allclose(sparse_cloud_in_camera(_cloud(xyz, "cam"), "cam", _settings()), xyz)
    with pytest.raises(BadInput, match="frame 'lidar'.*set sparse.frame_id and sparse.extrinsic") as err:
        sparse_cloud_in_camera(_cloud(xyz, "lidar"), "cam", _settings())
    assert err.value.kind == "sparse_wrong_frame"
    # 90 degrees about z, then 1 m along x: p_cam = R p_lidar + t
    s = _settings(sparse__frame_id="lidar", sparse__extrinsic="1 0 0 0 0 0.7071068 0.7071068")
    moved = sparse_cloud_in_camera(_cloud(xyz, "lidar"), "cam", s)
    np.testing.assert_allclose(moved, [[1 - 0.2, 0.1, 1.0], [1.0, 0.0, 2.0]], atol=1e-6)
    with pytest.raises(BadInput, match="sparse.frame_id is 'lidar'"):
        sparse_cloud_in_camera(_cloud(xyz, "radar"), "cam", s)
    with pytest.raises(BadInput, match="sparse.extrinsic is empty"):
        sparse_cloud_in_camera(_cloud(xyz, "lidar"), "cam", _settings(sparse__frame_id="lidar"))


def test_matrix_extrinsic_and_frame_only_settings() -> None:
    s = _settings(sparse__frame_id="base", sparse__extrinsic=" ".join(map(str, [1, 0, 0, 0.5, 0, 1, 0, 0, 0, 0, 1, 0])))
    assert np.allclose(s.sparse_extrinsic.translation, [0.5, 0, 0])
    assert _settings(sparse__frame_id="lidar").sparse_extrinsic is None  # settable one at a time at runtime


def _rotated_info() -> tuple[object, np.ndarray]:
    """Return a distorted raw camera with a rectifying rotation R and a P with another focal length."""
    info = _distorted_info()
    r = cv2.Rodrigues(np.array([0.02, -0.03, 0.01]))[0]
    info.r = r.reshape(-1)
    info.p = np.array([450.0, 0, 322.0, 0, 0, 450.0, 236.0, 0, 0, 0, 1, 0])
    return info, r


def test_raw_sparse_pixels_become_the_same_3d_points_in_the_rectified_camera() -> None:
    info, r = _rotated_info()
    xyz_raw = np.array([[-0.9, -0.7, 1.5], [0.0, 0.0, 2.0], [0.6, 0.4, 0.8]])  # first one near a corner
    k = np.array([[K[0], 0, K[2]], [0, K[1], K[3]], [0, 0, 1]])
    raw_uv = cv2.projectPoints(xyz_raw, np.zeros(3), np.zeros(3), k, np.array(D))[0].reshape(-1, 2)
    uvz = np.concatenate([raw_uv, xyz_raw[:, 2:]], axis=1)
    np.testing.assert_allclose(Rectifier.raw_pixels_to_points(uvz, info), xyz_raw @ r.T, atol=1e-4)
    assert Rectifier.raw_pixels_to_points(np.zeros((0, 3)), info).shape == (0, 3)


def test_a_sparse_depth_image_on_a_raw_image_moves_with_the_rectification() -> None:
    """The node's sparse depth path: pixels on the raw grid land where the rectified image has them."""
    info, _ = _rotated_info()
    sparse = np.full((480, 640), np.nan, np.float32)
    sparse[50, 60] = 1.5  # near a corner: distortion moves it by several pixels
    msg = conv.array_to_image(sparse, "32FC1", Header(frame_id="cam"))
    p_k = conv.camera_info_intrinsics(info)  # the rectified camera: the network's intrinsics
    s = _settings(sparse__type="depth_image")
    raw, dropped = sparse_to_uvz(msg, Header(frame_id="cam"), p_k, None, 640, 480, s)
    assert dropped == 0 and np.allclose(raw, [[60, 50, 1.5]])  # not rectified: untouched
    moved, dropped = sparse_to_uvz(msg, Header(frame_id="cam"), p_k, info, 640, 480, s)
    k = np.array([[K[0], 0, K[2]], [0, K[1], K[3]], [0, 0, 1]])
    expected = cv2.undistortPoints(np.array([[[60.0, 50.0]]]), k, np.array(D), R=np.reshape(info.r, (3, 3)),
                                   P=np.reshape(info.p, (3, 4))).reshape(2)
    assert dropped == 0 and moved.shape == (1, 3)
    assert np.hypot(*(moved[0, :2] - expected)) < 0.05 and np.hypot(*(expected - [60, 50])) > 5
    assert 1.45 < moved[0, 2] < 1.55  # z in the rotated camera: changed a little, not lost
