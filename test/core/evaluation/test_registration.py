"""Depth -> colour registration and extrinsics from bags (`fusanet_core.evaluation.registration`)."""

from __future__ import annotations

import numpy as np
import pytest

from fusanet_core.evaluation.registration import realsense_extrinsic, register_depth, tf_static_extrinsic
from fusanet_core.geometry import RigidTransform

D435_TOPICS = {"image": "/device_0/sensor_1/Color_0/image/data", "depth": "/device_0/sensor_0/Depth_0/image/data"}


def test_registration_identity_keeps_depth_and_translation_shifts_it() -> None:
    k = (100.0, 100.0, 31.5, 23.5)
    depth = np.full((48, 64), 2.0, np.float32)
    depth[10:20, 10:20] = np.nan
    same = register_depth(depth, k, k, (64, 48), RigidTransform.identity())
    np.testing.assert_array_equal(np.isnan(same), np.isnan(depth))
    np.testing.assert_allclose(same[~np.isnan(same)], 2.0)
    # Colour camera 0.1 m to the right (p_c = p_d - [0.1, 0, 0]): at 2 m a point moves fx * 0.1 / 2 = 5 px left.
    shifted = register_depth(depth, k, k, (64, 48), RigidTransform(np.eye(3), np.array([-0.1, 0, 0])))
    assert np.isnan(shifted[15, 5:15]).all() and not np.isnan(shifted[15, 15:59]).any()
    assert np.isnan(shifted[:, 59:]).all()  # nothing lands beyond the shifted right edge


@pytest.mark.parametrize("near_first", [True, False])
def test_registration_z_buffer_keeps_the_nearest_surface(near_first: bool) -> None:
    # Two depth pixels whose points land on one colour pixel (column 2); the nearer (1 m) must win
    # whichever of them comes first in memory.
    if near_first:  # pixel 0: X = 0 at 1 m; pixel 1: X = 0.02 at 2 m; shift +0.02 -> u = 100 * 0.02 / 1 = 2
        depth, t, color_k, width = np.array([[1.0, 2.0]], np.float32), 0.02, (100.0, 100.0, 0.0, 0.0), 3
    else:  # pixel 0: X = 0 at 2 m; pixel 1: X = 0.01 at 1 m; shift -0.02 -> u = -1 + 3 = 2
        depth, t, color_k, width = np.array([[2.0, 1.0]], np.float32), -0.02, (100.0, 100.0, 3.0, 0.0), 4
    out = register_depth(depth, (100.0, 100.0, 0.0, 0.0), color_k, (width, 1),
                         RigidTransform(np.eye(3), np.array([t, 0, 0])))
    assert out[0, 2] == pytest.approx(1.0)
    assert np.isfinite(out).sum() == 1


def test_extrinsics_from_tf_static_chains_and_realsense_topics() -> None:
    link_color = RigidTransform.from_quaternion([0.015, 0, 0], [0, 0, np.sin(0.05), np.cos(0.05)])
    link_depth = RigidTransform.from_quaternion([0, 0.002, 0], [0, 0, 0, 1])
    edges = [("link", "color", link_color), ("link", "depth", link_depth)]
    found = tf_static_extrinsic(edges, "depth", "color")
    p = np.array([[0.3, -0.2, 1.5]])
    # p_link = link_depth(p_depth) and p_link = link_color(p_color)  =>  p_color = link_color^-1(link_depth(p_depth))
    np.testing.assert_allclose(found.apply(p), link_color.inverse().apply(link_depth.apply(p)), atol=1e-12)
    assert tf_static_extrinsic(edges, "depth", "elsewhere") is None

    class Msg:  # geometry_msgs/Transform duck type
        def __init__(self, t: RigidTransform) -> None:
            tx, ty, tz, qx, qy, qz, qw = t.as_list()
            self.translation = type("V", (), {"x": tx, "y": ty, "z": tz})()
            self.rotation = type("Q", (), {"x": qx, "y": qy, "z": qz, "w": qw})()

    topics = {"/device_0/sensor_0/Depth_0/tf/0": Msg(link_depth), "/device_0/sensor_1/Color_0/tf/0": Msg(link_color)}
    rs, source = realsense_extrinsic(topics, D435_TOPICS["depth"], D435_TOPICS["image"])
    # librealsense: <stream>/tf/<group> maps the group's reference stream into that stream.
    np.testing.assert_allclose(rs.apply(p), link_color.apply(link_depth.inverse().apply(p)), atol=1e-12)
    assert "tf/0" in source
    assert realsense_extrinsic(topics, "/camera/depth", "/camera/color") is None
