"""The floor's scale: a rendered room with a known floor, the guards, and the Predictor's use of it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fusanet_core import Predictor
from fusanet_core.geometry import check_ground_plane, ground_plane_from_pose, RigidTransform
from fusanet_core.inference.ground import fit_ground

K = (500.0, 500.0, 319.5, 239.5)
H, W = 480, 640


def pitched_plane(pitch_deg: float, height: float) -> np.ndarray:
    """Floor plane of a camera `height` m above it, pitched down by `pitch_deg` (no roll)."""
    p = math.radians(pitch_deg)
    return np.array([0.0, -math.cos(p), -math.sin(p), height])


def floor_depth(plane: np.ndarray) -> np.ndarray:
    """Return the depth where each pixel's ray meets the plane (inf above the horizon)."""
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    rays = np.stack([(u - K[2]) / K[0], (v - K[3]) / K[1], np.ones_like(u)], -1)
    down = -(rays @ plane[:3])
    return np.where(down > 0, plane[3] / np.maximum(down, 1e-9), np.inf)


def room_depth(plane: np.ndarray, wall: float = 4.0, box: bool = True) -> np.ndarray:
    """Return the true depth of a floor, a fronto-parallel wall at `wall` m and a box standing on the floor."""
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    depth = np.minimum(floor_depth(plane), wall)
    if box:  # a box front 1.5 m away over part of the lower image: nearer than the floor behind it
        region = (u > 380) & (u < 520) & (v > 300)
        depth = np.where(region, np.minimum(depth, 1.5), depth)
    return depth.astype(np.float32)


@pytest.mark.parametrize("pitch", [10.0, 30.0])
def test_recovers_the_scale_of_a_wrongly_scaled_room(pitch):
    plane = pitched_plane(pitch, 0.8)
    truth = room_depth(plane)
    fit = fit_ground(truth / 2.5, K, plane)  # the network 2.5x too near
    assert fit.applied, fit.reason
    assert fit.scale == pytest.approx(2.5, rel=0.03)
    on_floor = np.abs(truth - floor_depth(plane)) < 1e-3  # not the wall, not the box
    assert fit.floor_share == pytest.approx(on_floor.mean(), abs=0.05)


def test_a_table_top_is_not_taken_for_the_floor():
    plane = pitched_plane(25.0, 1.0)
    truth = room_depth(plane, box=False)
    v, u = np.mgrid[0:H, 0:W]
    top = floor_depth(pitched_plane(25.0, 0.3))  # a large horizontal surface 0.7 m above the floor
    region = (u > 20) & (u < 620) & (v > 230)  # more table (49 %) than floor (21 %) in view
    truth = np.where(region & (top < truth), top, truth).astype(np.float32)
    fit = fit_ground(truth * 0.5, K, plane)
    assert fit.applied, fit.reason
    assert fit.scale == pytest.approx(2.0, rel=0.03)


def test_falls_back_when_the_floor_is_not_seen():
    looking_up = pitched_plane(-60.0, 1.0)  # the horizon is below the image
    fit = fit_ground(np.full((H, W), 3.0, np.float32), K, looking_up)
    assert not fit.applied and "horizon is below the image" in fit.reason
    plane = pitched_plane(5.0, 1.0)
    wall = np.full((H, W), 2.0, np.float32)  # a wall fills the view: nothing faces up
    fit = fit_ground(wall, K, plane)
    assert not fit.applied and not fit.found and "too little floor" in fit.reason
    assert "no camera intrinsics" in fit_ground(wall, None, plane).reason


@pytest.mark.parametrize("plane, message", [
    ((0.0, -1.0, 0.0, 0.0), "h must be > 0"),
    ((0.0, -1.0, 0.0, -1.2), "h must be > 0"),
    ((0.0, -2.0, 0.0, 1.0), "unit vector"),
    ((0.0, -1.0, np.nan, 1.0), "finite"),
    ((0.0, -1.0, 1.0), "4 finite numbers"),
    ("floor", "4 numbers"),
])
def test_bad_planes_are_named(plane, message):
    with pytest.raises(ValueError, match=message):
        check_ground_plane(plane)


def test_plane_from_the_cameras_pose_in_the_base():
    """A camera 0.5 m up, optical axis along the base's x, pitched 30 deg down: n = (0, -cos, -sin)."""
    pitch = math.radians(30.0)
    level = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])  # optical (x right, y down, z fwd)
    c, s = math.cos(pitch), math.sin(pitch)
    tilt = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])  # about the base's y: forward goes down
    pose = RigidTransform(tilt @ level, np.array([0.1, 0.0, 0.5]))  # p_base = R p_camera + t
    plane = ground_plane_from_pose(pose)
    assert np.allclose(plane, [0.0, -math.cos(pitch), -math.sin(pitch), 0.5], atol=1e-9)
    with pytest.raises(ValueError, match="h must be > 0"):
        ground_plane_from_pose(RigidTransform(level, np.array([0.0, 0.0, -0.2])))


def test_predictor_scales_by_the_floor_unless_points_fit(tiny_checkpoint, sample_frame):
    """The floor scales the map and the salient points by one factor; known points take precedence.

    The "floor" here faces the camera (normal (0, 0, -1), h = 3 m): every ray meets it at depth 3,
    so the fit must scale the untrained network's smooth output to about 3 m.
    """
    pred = Predictor.from_checkpoint(tiny_checkpoint, "cpu", input_size=(48, 64), scale_from_points="scale")
    rgb, k = sample_frame["rgb"], sample_frame["intrinsics"]
    alone = pred.predict(rgb, k)
    plane = (0.0, 0.0, -1.0, 3.0)
    floored = pred.predict(rgb, k, ground=plane)
    fit = floored["ground_fit"]
    assert alone["ground_fit"] == {"applied": False, "found": False, "scale": 1.0, "floor_pixels": 0,
                                   "floor_share": 0.0, "reason": "no ground plane"}
    assert fit["applied"], fit["reason"]
    assert fit["scale"] == pytest.approx(3.0 / np.median(alone["depth"]), rel=0.1)
    assert np.allclose(floored["depth"], alone["depth"] * fit["scale"], rtol=1e-5)
    assert np.allclose(floored["salient_points"][:, 2], alone["salient_points"][:, 2] * fit["scale"], rtol=1e-5)
    uvz = np.column_stack([np.linspace(10, 600, 30), np.linspace(10, 460, 30), np.full(30, 2.0)])
    with_points = pred.predict(rgb, k, uvz, ground=plane)
    assert with_points["point_fit"]["applied"] and not with_points["ground_fit"]["applied"]
    assert with_points["ground_fit"]["found"]  # found and reported, not applied: no fallback
    assert "points" in with_points["ground_fit"]["reason"]
    assert np.median(with_points["depth"]) == pytest.approx(2.0, rel=0.05)
    with pytest.raises(ValueError, match="unit vector"):
        pred.predict(rgb, k, ground=(0.0, -0.5, 0.0, 1.0))
