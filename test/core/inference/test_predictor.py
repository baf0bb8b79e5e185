"""Predictor: any image size in, input-size metric depth out; bad input named."""

import numpy as np
import pytest

from fusanet_core import build_model, Predictor, preset_config
from fusanet_core.inference.predictor import as_intrinsics, resolve_device


@pytest.fixture(scope="module")
def predictor():
    cfg = preset_config("tiny")
    cfg.inference.input_size = (64, 96)
    return Predictor(build_model(cfg), cfg, device="cpu")


@pytest.mark.parametrize("shape", [(480, 640), (375, 1242), (31, 45)])
def test_outputs_at_input_size(predictor, shape):
    rgb = np.random.default_rng(0).integers(0, 255, (*shape, 3), dtype=np.uint8)
    out = predictor.predict(rgb, intrinsics=(500.0, 500.0, shape[1] / 2, shape[0] / 2))
    assert out["depth"].shape == shape and out["depth"].dtype == np.float32
    assert out["confidence"].shape == shape and 0 <= out["confidence"].min() and out["confidence"].max() <= 1
    assert np.isfinite(out["depth"]).all()
    sal = out["salient_points"]
    assert sal.shape[1] == 3 and (sal[:, 0] < shape[1]).all() and (sal[:, 1] < shape[0]).all()


def test_points_are_checked_and_used(predictor, sample_frame):
    rgb = sample_frame["rgb"]
    pts = np.array([[100, 120, 2.0], [np.nan, 5, 1.0], [10, 10, -1.0], [5000, 10, 1.0], [300, 200, 1.2]])
    with_pts = predictor.predict(rgb, sample_frame["intrinsics"], pts)
    without = predictor.predict(rgb, sample_frame["intrinsics"])
    assert with_pts["points_used"] == 2
    assert not np.allclose(with_pts["depth"], without["depth"])


def test_points_can_serve_the_fit_alone(sample_frame):
    """prime_with_points False: the network runs RGB only, the points go to the fit (and are counted)."""
    cfg = preset_config("tiny")
    cfg.inference.input_size = (64, 96)
    model = build_model(cfg)
    rgb, k = sample_frame["rgb"], sample_frame["intrinsics"]
    pts = np.array([[100.0 + 40 * i, 120.0 + 30 * j, 1.5 + 0.1 * i] for i in range(5) for j in range(4)])
    unprimed = Predictor(model, cfg, "cpu", prime_with_points=False)
    rgb_only = unprimed.predict(rgb, k)
    assert np.array_equal(unprimed.predict(rgb, k, pts)["depth"], rgb_only["depth"])  # no fit: as without points
    unprimed.set_point_fit("scale_local", 8, prime=False)
    fitted = unprimed.predict(rgb, k, pts)
    assert fitted["points_used"] == 20 and fitted["point_fit"]["applied"]
    assert np.array_equal(fitted["salient_points"][:, :2], rgb_only["salient_points"][:, :2])  # the same network run
    at = np.rint(pts[:, :2]).astype(int)
    # through the points, smoothed: the bilateral half averages neighbouring residuals (a steep
    # gradient the untrained network lacks is flattened by a few % at the ends of the grid)
    error = np.abs(fitted["depth"][at[:, 1], at[:, 0]] / pts[:, 2] - 1)
    assert np.median(error) < 0.03 and error.max() < 0.06
    # the salient points move with the map at their own pixels (scale_local's correction is per pixel)
    sal = np.rint(rgb_only["salient_points"][:, :2]).astype(int)
    map_factor = fitted["depth"][sal[:, 1], sal[:, 0]] / rgb_only["depth"][sal[:, 1], sal[:, 0]]
    np.testing.assert_allclose(fitted["salient_points"][:, 2] / rgb_only["salient_points"][:, 2], map_factor,
                               rtol=1e-5)
    assert np.ptp(map_factor) > 0.01  # a per-pixel correction indeed, not one scale


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((10, 10, 3), np.float32), "uint8"),
        (np.zeros((10, 10), np.uint8), "HxWx3"),
        (np.zeros((0, 10, 3), np.uint8), "HxWx3"),
        ([[1, 2, 3]], "uint8"),
    ],
)
def test_bad_images_are_named(predictor, bad, match):
    with pytest.raises(ValueError, match=match):
        predictor.predict(bad)


def test_bad_intrinsics_and_devices():
    with pytest.raises(ValueError, match="fx, fy > 0"):
        as_intrinsics((0.0, 500.0, 320.0, 240.0))
    with pytest.raises(ValueError, match="fx, fy > 0"):
        as_intrinsics((np.nan, 500.0, 320.0, 240.0))
    assert np.allclose(as_intrinsics(np.array([[5, 0, 1], [0, 6, 2], [0, 0, 1]])), [5, 6, 1, 2])
    with pytest.raises(ValueError, match="device"):
        resolve_device("tpu")
    assert resolve_device("cpu").type == "cpu"


def test_unknown_backend_is_named_before_loading():
    from fusanet_core.inference.predictor import Predictor

    with pytest.raises(ValueError, match="backend must be one of torch, onnxruntime, got 'tflite'"):
        Predictor.from_checkpoint("/nonexistent.pt", "cpu", backend="tflite")


def _truth_points(frame: dict, n: int, seed: int = 0) -> np.ndarray:
    depth = frame["depth"]
    rows, cols = np.nonzero(depth > 0)
    pick = np.random.default_rng(seed).choice(len(rows), n, replace=False)
    return np.stack([cols[pick], rows[pick], depth[rows[pick], cols[pick]]], axis=1).astype(np.float32)


def test_scale_from_points_fits_the_output_to_the_points(tiny_checkpoint, sample_frame):
    pred = Predictor.from_checkpoint(tiny_checkpoint, "cpu", input_size=(48, 64), scale_from_points="scale")
    pts = _truth_points(sample_frame, 100)
    out = pred.predict(sample_frame["rgb"], sample_frame["intrinsics"], pts)
    fit = out["point_fit"]
    assert fit["mode"] == "scale" and fit["applied"], fit
    assert fit["points"] == 100 and fit["inliers"] >= 50 and fit["reason"] == "ok"
    at_points = out["depth"][pts[:, 1].astype(int), pts[:, 0].astype(int)]
    ratio = pts[:, 2] / at_points
    assert np.median(ratio) == pytest.approx(1.0, abs=0.05), fit  # all points, the outliers too
    assert set(out) == {"depth", "confidence", "confidence_calibrated", "salient_points", "salient_scores",
                        "points_used", "point_fit", "ground_fit"}
    # the same frame without the fit: the network's own scale, by the fitted factor
    pred.set_point_fit("none")
    plain = pred.predict(sample_frame["rgb"], sample_frame["intrinsics"], pts)
    assert plain["point_fit"]["mode"] == "none" and not plain["point_fit"]["applied"]
    assert np.allclose(out["depth"], plain["depth"] * fit["scale"], rtol=1e-5)
    assert np.allclose(out["salient_points"][:, 2], plain["salient_points"][:, 2] * fit["scale"], rtol=1e-5)


@pytest.mark.parametrize("mode", ["scale", "scale_local"])
def test_output_size_resizes_once_and_the_fit_works_at_that_size(tiny_checkpoint, sample_frame, mode):
    pred = Predictor.from_checkpoint(tiny_checkpoint, "cpu", input_size=(48, 64), scale_from_points=mode)
    rgb, k = sample_frame["rgb"], sample_frame["intrinsics"]
    pts = _truth_points(sample_frame, 100)
    full = pred.predict(rgb, k, pts)
    same = pred.predict(rgb, k, pts, output_size=rgb.shape[:2])  # the default, asked for: the very same maps
    assert np.array_equal(full["depth"], same["depth"]) and np.array_equal(full["confidence"], same["confidence"])
    half = pred.predict(rgb, k, pts, output_size=(240, 320))
    assert half["depth"].shape == half["confidence"].shape == (240, 320)
    assert half["point_fit"]["applied"] and half["point_fit"]["points"] == 100
    # points map to the output's pixels: the fitted depth agrees with them there, as at full size
    rows = np.round((pts[:, 1] + 0.5) * 0.5 - 0.5).astype(int)
    cols = np.round((pts[:, 0] + 0.5) * 0.5 - 0.5).astype(int)
    assert np.median(pts[:, 2] / half["depth"][rows, cols]) == pytest.approx(1.0, abs=0.05)
    np.testing.assert_array_equal(half["salient_points"][:, :2], full["salient_points"][:, :2])  # input pixels
    with pytest.raises(ValueError, match="output_size must be"):
        pred.predict(rgb, k, output_size=(0, 10))


def test_point_fit_falls_back_and_is_always_reported(predictor, sample_frame):
    rgb, k = sample_frame["rgb"], sample_frame["intrinsics"]
    assert predictor.predict(rgb, k)["point_fit"]["reason"] == "scale_from_points is none"
    predictor.set_point_fit("scale_shift", 8)
    try:
        few = predictor.predict(rgb, k, _truth_points(sample_frame, 5))
        assert few["point_fit"] == {"mode": "scale_shift", "scale": 1.0, "shift": 0.0, "points": 5, "inliers": 0,
                                    "applied": False, "reason": "too few points (5 < 8)"}
        assert predictor.predict(rgb, k)["point_fit"]["reason"] == "no points"
    finally:
        predictor.set_point_fit("none")


def test_unknown_scale_from_points_is_named():
    cfg = preset_config("tiny")
    with pytest.raises(ValueError, match="must be one of none, scale, scale_local, scale_shift, got 'median'"):
        Predictor(build_model(cfg), cfg, device="cpu", scale_from_points="median")
    with pytest.raises(ValueError, match="got 'median'"):  # before the load
        Predictor.from_checkpoint("/nonexistent.pt", "cpu", scale_from_points="median")
    with pytest.raises(ValueError, match="scale_fit_min_points must be >= 1"):
        Predictor(build_model(cfg), cfg, device="cpu", scale_fit_min_points=0)
