"""Guiding points: SIFT on valid depth, back-projection, caps, the zero-point path."""

import numpy as np
import torch

from fusanet_core.model.points import PointBatch, sift_guiding_points


def test_sift_points_lie_on_valid_depth_and_carry_it(sample_frame):
    rgb, depth = sample_frame["rgb"], sample_frame["depth"]
    pts = sift_guiding_points(rgb, depth, max_points=150)
    assert 50 <= len(pts) <= 150
    cols, rows = pts[:, 0].astype(int), pts[:, 1].astype(int)
    assert np.array_equal(pts[:, 2], depth[rows, cols])
    assert (pts[:, 2] > 0).all()
    assert len({(r, c) for r, c in zip(rows, cols)}) == len(pts)  # no duplicates


def test_sift_cap_randomness_and_zero_points(sample_frame):
    rgb, depth = sample_frame["rgb"], sample_frame["depth"]
    a = sift_guiding_points(rgb, depth, max_points=20, rng=np.random.default_rng(0))
    b = sift_guiding_points(rgb, depth, max_points=20, rng=np.random.default_rng(1))
    assert len(a) == len(b) == 20 and not np.array_equal(a, b)
    assert sift_guiding_points(rgb, depth, max_points=0).shape == (0, 3)
    assert sift_guiding_points(rgb, np.zeros_like(depth), max_points=10).shape == (0, 3)


def test_back_projection_matches_pinhole_model():
    pts = PointBatch.from_arrays([np.array([[325.1, 249.7, 2.0], [425.1, 149.7, 3.0]])])
    xyz = pts.xyz(torch.tensor([[520.9, 521.0, 325.1, 249.7]]))
    assert torch.allclose(xyz[0, 0], torch.tensor([0.0, 0.0, 2.0]))
    assert torch.allclose(xyz[0, 1], torch.tensor([100 * 3.0 / 520.9, -100 * 3.0 / 521.0, 3.0]))


def test_padding_rasterize_and_scaling():
    batch = PointBatch.from_arrays([np.array([[1, 2, 1.5], [3, 0, 2.5]]), None])
    assert batch.uv.shape == (2, 2, 2) and batch.weight.tolist() == [[1, 1], [0, 0]]
    depth, conf = batch.rasterize(4, 5)
    assert depth[0, 0, 2, 1] == 1.5 and depth[0, 0, 0, 3] == 2.5 and depth.sum() == 4.0
    assert conf.sum() == 2 and depth[1].abs().sum() == 0
    half = batch.scaled(0.5, 0.5)
    assert torch.allclose(half.uv[0, 0], torch.tensor([0.25, 0.75]))  # pixel-centre convention
    assert PointBatch.empty(3).num_points == 0
