"""The one camera-maths module (`fusanet_core.geometry`): pinhole projection, intrinsics, rigid transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fusanet_core.errors import ConversionError
from fusanet_core.geometry import (as_intrinsics, back_project, back_project_points, check_intrinsics,
                                   intrinsics_tuple, parse_extrinsic, project, project_points, RigidTransform,
                                   scale_intrinsics, scale_pixel, scale_points, UNIT_TOLERANCE)

K = (525.0, 520.0, 319.5, 239.5)


def test_back_projection_and_projection_are_inverse_in_numpy_and_torch() -> None:
    rng = np.random.default_rng(0)
    u, v, z = rng.uniform(0, 640, 50), rng.uniform(0, 480, 50), rng.uniform(0.3, 8.0, 50)
    x, y = back_project(u, v, z, K)
    np.testing.assert_allclose(project(x, y, z, K), (u, v), atol=1e-9)
    # the pinhole model by hand for one pixel
    assert back_project(319.5 + 52.5, 239.5, 2.0, K) == pytest.approx((0.2, 0.0))
    # batched torch: intrinsics as (B, 1) columns, as PointBatch.xyz uses them
    kt = torch.tensor([K], dtype=torch.float64)
    cols = [kt[:, i:i + 1] for i in range(4)]
    xt, yt = back_project(torch.from_numpy(u)[None], torch.from_numpy(v)[None], torch.from_numpy(z)[None], cols)
    np.testing.assert_allclose(xt[0].numpy(), x, rtol=1e-12)
    np.testing.assert_allclose(yt[0].numpy(), y, rtol=1e-12)


def test_back_project_points_gives_float32_camera_points() -> None:
    uvz = np.array([[319.5, 239.5, 2.0], [844.5, 759.5, 1.0]], np.float32)
    xyz = back_project_points(uvz, K)
    assert xyz.dtype == np.float32 and xyz.shape == (2, 3)
    np.testing.assert_allclose(xyz, [[0.0, 0.0, 2.0], [1.0, 1.0, 1.0]], atol=1e-6)


def test_project_points_drops_behind_nan_and_out_of_frame_points() -> None:
    xyz = np.array([[0.0, 0.0, 2.0], [0.0, 0.0, -1.0], [np.nan, 0, 1.0], [10.0, 0.0, 1.0]])
    uvz, dropped = project_points(xyz, K, 640, 480)
    assert dropped == 3 and uvz.dtype == np.float32
    np.testing.assert_allclose(uvz, [[319.5, 239.5, 2.0]])


def test_scaling_follows_the_pixel_centre_convention() -> None:
    assert scale_pixel(-0.5, 2.0) == -0.5 and scale_pixel(0.0, 2.0) == 0.5  # image edge stays, centres move
    fx, fy, cx, cy = scale_intrinsics(K, 0.5, 0.25)
    assert (fx, fy) == (262.5, 130.0) and (cx, cy) == (scale_pixel(319.5, 0.5), scale_pixel(239.5, 0.25))
    # a point projected in the resized camera lands where the resized pixel grid puts it
    u, v = project(0.3, -0.2, 2.0, K)
    np.testing.assert_allclose(project(0.3, -0.2, 2.0, (fx, fy, cx, cy)), (scale_pixel(u, 0.5), scale_pixel(v, 0.25)))
    uvz = np.array([[10.0, 20.0, 3.0]])
    assert scale_points(uvz, 1.0, 1.0) is uvz and scale_points(None, 2.0, 2.0) is None
    np.testing.assert_allclose(scale_points(uvz, 2.0, 0.5), [[20.5, 9.75, 3.0]])
    assert uvz[0, 0] == 10.0  # a copy was scaled


def test_intrinsics_checks_name_the_bad_value() -> None:
    np.testing.assert_allclose(as_intrinsics(np.array([[5, 0, 1], [0, 6, 2], [0, 0, 1]])), [5, 6, 1, 2])
    with pytest.raises(ValueError, match="fx, fy > 0"):
        as_intrinsics((0.0, 500.0, 320.0, 240.0))
    assert intrinsics_tuple(np.array(K), "depth") == K
    with pytest.raises(ValueError, match="colour intrinsics must be finite"):
        intrinsics_tuple((1.0, np.nan, 0.0, 0.0), "colour")
    assert check_intrinsics(K, 640, 480) == K
    with pytest.raises(ConversionError, match=r"camera_info fx = 10 is implausible for a 640x480 image"):
        check_intrinsics((10.0, 520.0, 319.5, 239.5), 640, 480)
    with pytest.raises(ConversionError, match="cy = 900 is implausible"):
        check_intrinsics((525.0, 520.0, 319.5, 900.0), 640, 480)
    assert check_intrinsics((10.0, 10.0, 1e4, 1e4), 0, 0)[0] == 10.0  # unknown size: only signs and finiteness
    assert issubclass(ConversionError, ValueError)


def test_rigid_transforms_round_trip_and_reject_bad_values() -> None:
    rng = np.random.default_rng(0)
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    q = q if q[3] >= 0 else -q
    t = RigidTransform.from_quaternion([0.1, -0.2, 0.3], q)
    np.testing.assert_allclose(t.as_list()[3:], q, atol=1e-12)
    np.testing.assert_allclose(t.rotation @ t.rotation.T, np.eye(3), atol=1e-12)
    assert t.then(t.inverse()).is_identity(1e-12)
    p = rng.normal(size=(5, 3))
    np.testing.assert_allclose(t.then(t).apply(p), t.apply(t.apply(p)), atol=1e-12)
    matrix = np.hstack([t.rotation, t.translation[:, None]])
    np.testing.assert_allclose(parse_extrinsic(matrix.reshape(-1)).apply(p), t.apply(p), atol=1e-12)
    np.testing.assert_allclose(parse_extrinsic([*t.translation, *q]).apply(p), t.apply(p), atol=1e-12)
    with pytest.raises(ValueError, match="7 .*12 or 16 numbers, got 3"):
        parse_extrinsic([1, 2, 3])
    with pytest.raises(ValueError, match="non-zero quaternion"):
        parse_extrinsic([0, 0, 0, 0, 0, 0, 0])
    with pytest.raises(ValueError, match="not a rotation"):
        parse_extrinsic([2, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0])


def test_strict_quaternions_must_be_unit_and_lenient_ones_are_normalised() -> None:
    assert parse_extrinsic([0, 0, 0, 0, 0, 0, 2]).is_identity()  # the lenient default (sparse.extrinsic)
    assert parse_extrinsic([0, 0, 0, 0, 0, 0, 1 + 0.5 * UNIT_TOLERANCE], strict=True).is_identity()
    for q in ([0, 0, 0, 2], [0, 0, 0, 1 + 2 * UNIT_TOLERANCE], [0.5, 0.5, 0.5, 0.4]):
        with pytest.raises(ValueError, match="unit length"):
            RigidTransform.from_quaternion([0, 0, 0], q, strict=True)
    with pytest.raises(ValueError, match="non-zero quaternion"):  # NaN: the same message with or without strict
        RigidTransform.from_quaternion([0, 0, 0], [np.nan, 0, 0, 1], strict=True)
