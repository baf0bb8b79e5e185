"""bench/slam_points.py: triangulation of a known textured plane, the spread order, the pose loaders on real data."""

from __future__ import annotations

from pathlib import Path
import sys
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import slam_points  # noqa: E402, I100 (needs the sys.path insert above)

K = (500.0, 500.0, 320.0, 240.0)
NORMAL = np.array([0.0, -0.25, 1.0]) / np.linalg.norm([0.0, -0.25, 1.0])  # a floor-like tilt: depth varies
DISTANCE = 2.0  # plane n . X = d in the first camera's coordinates


class ImageSource:
    """Frames holding colour only: proves the triangulation reads no depth."""

    def __init__(self, images: list[np.ndarray]) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def load(self, index: int) -> SimpleNamespace:
        return SimpleNamespace(rgb=self.images[index])


def _texture(rng: np.random.Generator) -> np.ndarray:
    """Return a 640x480 colour image full of blobs and corners (many SIFT keypoints)."""
    noise = cv2.resize(rng.random((60, 80)).astype(np.float32), (640, 480), interpolation=cv2.INTER_CUBIC)
    image = np.clip(noise * 255, 0, 255).astype(np.uint8)
    for _ in range(150):
        x, y, r = int(rng.integers(0, 640)), int(rng.integers(0, 480)), int(rng.integers(3, 15))
        cv2.circle(image, (x, y), r, int(rng.integers(0, 256)), -1)
        cv2.rectangle(image, (x + 5, y + 5), (x + 5 + r, y + 5 + r), int(rng.integers(0, 256)), -1)
    return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)


def _plane_scene() -> tuple[ImageSource, np.ndarray]:
    """Render the plane, textured as camera 0 sees it, from four known poses by the plane homography."""
    k = slam_points.camera_matrix(K)
    base = _texture(np.random.default_rng(3))
    centres = [(0.0, 0.0, 0.0), (0.12, 0.0, 0.0), (-0.1, 0.03, 0.0), (0.22, -0.02, 0.05)]
    images, poses = [], []
    for i, centre in enumerate(centres):
        rotation = cv2.Rodrigues(np.array([0.0, -0.02 * i, 0.0]))[0]  # camera-to-world, turned a little
        pose = np.eye(4)
        pose[:3, :3], pose[:3, 3] = rotation, centre
        rel = np.linalg.inv(pose)  # camera-0 (= world) coordinates -> camera i
        r, t = rel[:3, :3], rel[:3, 3]
        homography = k @ (r + np.outer(t, NORMAL) / DISTANCE) @ np.linalg.inv(k)
        images.append(cv2.warpPerspective(base, homography, (640, 480), flags=cv2.INTER_LINEAR))
        poses.append(pose)
    return ImageSource(images), np.stack(poses)


def _plane_depth(points: np.ndarray) -> np.ndarray:
    rays = np.linalg.solve(slam_points.camera_matrix(K), np.c_[points[:, :2], np.ones(len(points))].T).T
    return DISTANCE / (rays @ NORMAL)


def test_a_textured_plane_is_recovered_within_two_percent():
    source, poses = _plane_scene()
    info: dict = {}
    points = slam_points.triangulated_points(source, 0, poses, K, 200, info=info)
    assert info["neighbours"] == [1, 2, 3]
    assert points.dtype == np.float32 and points.shape[1] == 3 and 50 <= len(points) <= 200
    assert (info["views"] >= 3).all() and (info["parallax"] >= 2.0).all()
    rel = points[:, 2] / _plane_depth(points) - 1
    assert np.abs(rel).max() < 0.02, np.abs(rel).max()
    again = slam_points.triangulated_points(source, 0, poses, K, 200)
    assert np.array_equal(points, again)  # deterministic
    fewer = slam_points.triangulated_points(source, 0, poses, K, 20)
    assert np.array_equal(fewer, points[:20])  # the first K are the K a smaller cap gives
    assert len(slam_points.triangulated_points(source, 0, poses[:1].repeat(4, axis=0), K, 200)) == 0  # no baseline


def test_neighbours_need_baseline_and_overlapping_views():
    poses = np.tile(np.eye(4), (6, 1, 1))
    poses[1, 0, 3] = 0.02  # too close
    poses[2, 0, 3] = 0.10
    poses[3, 0, 3] = 0.11  # beside neighbour 2: not a distinct view
    poses[4, 0, 3] = -0.2
    poses[5, :3, :3] = cv2.Rodrigues(np.array([0.0, 1.0, 0.0]))[0]  # turned 57 deg: no overlap
    poses[5, 0, 3] = 0.3
    assert slam_points.choose_neighbours(poses, 0, count=4) == [2, 4]
    poses[0] = np.nan  # no pose: nothing
    assert slam_points.choose_neighbours(poses, 0) == []


def test_the_spread_order_takes_every_cell_first():
    uv = np.array([[10, 10], [12, 12], [14, 10], [600, 400], [300, 200]], np.float64)
    score = np.array([1.0, 3.0, 2.0, 0.5, 0.1])
    order = slam_points.spread_order(uv, score, (480, 640))
    assert list(order) == [1, 3, 4, 2, 0]  # the best of each cell by score, then the rest of the crowded cell


def test_depth_errors_read_the_truth_at_the_rounded_pixel():
    depth = np.full((4, 5), 2.0, np.float32)
    depth[1, 3] = 0  # no truth
    errors = slam_points.depth_errors(np.array([[0.4, 0.4, 2.2], [2.6, 1.2, 1.0], [4.0, 3.0, 1.0]]), depth)
    assert np.isclose(errors[0], 0.1) and np.isnan(errors[1]) and np.isclose(errors[2], -0.5)


def test_the_pose_loaders_read_the_real_files(shared_data):
    seven = slam_points.load_trajectory_poses(shared_data / "7scenes_redkitchen")
    assert seven.shape == (500, 4, 4) and np.isfinite(seven).all()
    assert np.allclose(seven[0], np.loadtxt(shared_data / "7scenes_redkitchen" / "frame-000000.pose.txt"))
    holo = slam_points.load_trajectory_poses(shared_data / "hololens_office_dvmvs" / "manifest.csv")
    assert holo.shape == (187, 4, 4) and np.isfinite(holo).all()
    office = slam_points.load_trajectory_poses(shared_data / "rs_d435_office")
    assert office.shape == (248, 4, 4) and np.isnan(office[0]).all()  # row 0 would need T265 row -2
    body = slam_points.read_t265_csv(shared_data / "rs_d435_office" / "camera_pose.csv")
    assert len(body) == 2480 and np.allclose(office[1], body[8] @ slam_points.T265_CAMERA_IN_BODY)
    for poses in (seven, holo, office[1:]):
        rotations = poses[:, :3, :3]
        assert np.allclose(rotations @ rotations.transpose(0, 2, 1), np.eye(3), atol=1e-3)
    assert slam_points.load_trajectory_poses(shared_data / "rs_home_floor") is None
    assert slam_points.trajectory_intrinsics(shared_data / "7scenes_redkitchen", (585, 585, 320, 240))[0] == 525.0
    assert slam_points.trajectory_intrinsics(shared_data / "hololens_office_dvmvs", (495.5, 495.4, 269.5, 169.2)) == (
        495.5, 495.4, 269.5, 169.2)


@pytest.mark.parametrize("name, i, j", [("hololens_office_dvmvs", 0, 3), ("rs_d435_office", 100, 102),
                                        ("7scenes_redkitchen", 400, 410)])
def test_the_poses_carry_ground_truth_from_one_frame_to_another(shared_data, name, i, j):
    from fusanet_core.datasets.manifest import ManifestSource

    source = ManifestSource(shared_data / name)
    poses = slam_points.load_trajectory_poses(shared_data / name)
    k = slam_points.camera_matrix(source.rows[0].intrinsics)
    di, dj = source.load(i).depth, source.load(j).depth
    agree = slam_points.depth_consistency(di, dj, slam_points.relative_pose(poses, i, j), k, step=8)
    still = slam_points.depth_consistency(di, dj, np.eye(4), k, step=8)  # as if the camera had not moved
    assert agree["median_rel"] < 0.015 and agree["within_5pct"] > 0.9
    assert still["median_rel"] > 2 * agree["median_rel"]
