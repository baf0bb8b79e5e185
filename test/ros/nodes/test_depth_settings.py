"""The depth node's floor-plane parameters (ground.extrinsic, ground.plane), validated without ROS."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from fusanet_core.geometry import RigidTransform
from fusanet_ros.nodes.depth_settings import PARAMETERS, validate_settings
from fusanet_ros.nodes.params import defaults


def _settings(**change: Any) -> Any:
    return validate_settings({**defaults(PARAMETERS), **{k.replace("__", "."): v for k, v in change.items()}})


def _camera_over_floor(height: float, pitch_down_deg: float) -> RigidTransform:
    """Return the pose of an optical frame (x right, y down, z forward) in a z-up base (x forward, y left).

    Built from the camera's axes seen in the base, independently of any quaternion formula.
    """
    a = math.radians(pitch_down_deg)
    forward = np.array([math.cos(a), 0.0, -math.sin(a)])
    right = np.array([0.0, -1.0, 0.0])
    down = np.cross(forward, right)  # y = z x x for a right-handed frame
    return RigidTransform(np.stack([right, down, forward], axis=1), np.array([0.0, 0.0, height]))


def test_the_floor_is_off_by_default_and_for_empty_values() -> None:
    assert _settings().ground_plane is None
    assert _settings(ground__plane=None).ground_plane is None  # a params file's `[]` arrives as "not set"
    assert _settings(ground__extrinsic="  ").ground_plane is None


def test_a_camera_half_a_metre_up_pitched_down_30_degrees_sees_the_floor_below_and_ahead() -> None:
    pose = _camera_over_floor(0.5, 30.0)
    text = " ".join(f"{v:.12f}" for v in pose.as_list())
    plane = _settings(ground__extrinsic=text).ground_plane
    np.testing.assert_allclose(plane, [0.0, -math.cos(math.radians(30)), -math.sin(math.radians(30)), 0.5],
                               atol=1e-9)
    # The optical axis meets the floor h / sin(30 deg) = 1 m ahead (z = h / (-n . r) with r = (0, 0, 1)),
    # and that point is on the base's z = 0 plane.
    n, h = np.array(plane[:3]), plane[3]
    z = h / -(n @ [0.0, 0.0, 1.0])
    assert z == pytest.approx(1.0)
    assert pose.apply([[0.0, 0.0, z]])[0, 2] == pytest.approx(0.0, abs=1e-12)
    # The same camera as a 3x4 matrix gives the same plane.
    matrix = np.hstack([pose.rotation, pose.translation[:, None]]).reshape(-1)
    np.testing.assert_allclose(_settings(ground__extrinsic=" ".join(map(str, matrix))).ground_plane, plane,
                               atol=1e-9)


def test_a_level_camera_gives_the_plane_of_the_design_notes() -> None:
    text = " ".join(map(str, _camera_over_floor(0.3, 0.0).as_list()))
    np.testing.assert_allclose(_settings(ground__extrinsic=text).ground_plane, [0.0, -1.0, 0.0, 0.3], atol=1e-12)


def test_a_plane_is_taken_as_given_integers_too() -> None:
    assert _settings(ground__plane=[0.0, -0.8, -0.6, 1.2]).ground_plane == (0.0, -0.8, -0.6, 1.2)
    assert _settings(ground__plane=[0, -1, 0, 1]).ground_plane == (0.0, -1.0, 0.0, 1.0)


@pytest.mark.parametrize("change, match", [
    ({"ground__plane": [0.0, -1.0, 0.0, 0.0]}, r"parameter ground\.plane: .*height h must be > 0"),
    ({"ground__plane": [0.0, -1.0, 0.0, -0.5]}, r"parameter ground\.plane: .*height h must be > 0"),
    ({"ground__plane": [0.0, -2.0, 0.0, 0.5]}, r"parameter ground\.plane: .*unit vector, got length 2"),
    ({"ground__plane": [0.0, -0.99, 0.0, 0.5]}, r"parameter ground\.plane: .*unit vector"),
    ({"ground__plane": [0.0, math.nan, 0.0, 0.5]}, r"parameter ground\.plane: .*finite"),
    ({"ground__plane": [0.0, -1.0, 0.5]}, r"parameter ground\.plane: .*4 finite numbers"),
    ({"ground__plane": "0 -1 0 0.5"}, r"parameter ground\.plane must be \[\] or 4 numbers"),
    ({"ground__plane": ["a", "b", "c", "d"]}, r"parameter ground\.plane: .*4 numbers"),
    ({"ground__extrinsic": "0 0 0.5 0 0 0 2"}, r"parameter ground\.extrinsic: .*unit length, got length 2"),
    ({"ground__extrinsic": "0 0 0.5 0 0 0 nan"}, r"parameter ground\.extrinsic: .*non-zero quaternion"),
    ({"ground__extrinsic": "0 0 -0.5 0.5 -0.5 0.5 -0.5"}, r"parameter ground\.extrinsic: .*height h must be > 0"),
    ({"ground__extrinsic": "0 0 0.5"}, r"parameter ground\.extrinsic: extrinsic needs 7"),
    ({"ground__extrinsic": "0 0 half 0 0 0 1"}, r"parameter ground\.extrinsic: "),
    ({"ground__extrinsic": "0 0 0.5 0.5 -0.5 0.5 -0.5", "ground__plane": [0.0, -1.0, 0.0, 0.5]},
     r"ground\.extrinsic and ground\.plane are both set"),
])
def test_every_bad_floor_value_is_refused_by_name(change: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _settings(**change)


def test_sparse_extrinsic_keeps_normalising_its_quaternion() -> None:
    """Unchanged behaviour: sparse.extrinsic divides a non-unit quaternion by its length."""
    settings = _settings(sparse__extrinsic="0 0 0.5 0 0 0 2", sparse__frame_id="lidar")
    np.testing.assert_allclose(settings.sparse_extrinsic.rotation, np.eye(3))


def test_the_plane_parameter_takes_any_type_so_that_an_empty_default_accepts_doubles() -> None:
    from fusanet_ros.nodes.ros_common import descriptor

    plane, extrinsic = descriptor(PARAMETERS["ground.plane"]), descriptor(PARAMETERS["ground.extrinsic"])
    assert plane.dynamic_typing and not plane.read_only and not extrinsic.read_only
    assert not extrinsic.dynamic_typing
