"""Scattered-point interpolation (`fusanet_core.inference.interpolation`): exact on planes, nearest outside."""

from __future__ import annotations

import numpy as np

from fusanet_core.inference.interpolation import interpolate, nearest, unique_points


def test_linear_inside_the_hull_reproduces_a_plane_and_nearest_outside() -> None:
    pts = np.array([[0, 0, 1.0], [10, 0, 2.0], [0, 10, 3.0], [10, 10, 4.0]])  # value = 1 + u / 10 + 2 v / 10
    u, v = np.array([5.0, 2.5, 20.0]), np.array([5.0, 7.5, 10.0])
    out = interpolate(pts, u, v)
    np.testing.assert_allclose(out[:2], [1 + 0.5 + 1.0, 1 + 0.25 + 1.5])
    assert out[2] == 4.0  # beyond the hull: the nearest point's value


def test_degenerate_inputs_have_defined_answers() -> None:
    assert np.isnan(interpolate(np.zeros((0, 3)), np.array([1.0]), np.array([1.0]))).all()
    np.testing.assert_allclose(interpolate(np.array([[0, 0, 1.0], [5, 5, 3.0]]), np.array([9.0]), np.array([0.0])), 2.0)
    line = np.array([[0, 0, 1.0], [5, 0, 2.0], [10, 0, 3.0]])  # collinear: no triangle, nearest everywhere
    np.testing.assert_allclose(interpolate(line, np.array([6.0]), np.array([3.0])), 2.0)
    dup = unique_points(np.array([[1, 1, 2.0], [1, 1, 4.0], [np.nan, 0, 1.0]]))
    np.testing.assert_allclose(dup, [[1, 1, 3.0]])  # duplicates averaged, non-finite dropped
    np.testing.assert_allclose(nearest(line, np.array([9.0, -3.0]), np.array([0.0, 0.0])), [3.0, 1.0])
