"""Calibrated confidence: the fit on known values, the map, the config keys and the Predictor's use of them."""

import numpy as np
import pytest

from fusanet_core import Predictor, preset_config
from fusanet_core.checkpoint import load_model
from fusanet_core.config import config_from_dict, InferenceConfig
from fusanet_core.inference.confidence import (anchor_distance, Calibration, fit_calibration,
                                               pool_adjacent_violators, reliability, score_features)

RAW = np.linspace(0.0, 1.0, 1000)


def test_a_confidence_that_orders_the_error_gets_the_observed_share_per_bin():
    rel = 1.0 - RAW  # higher confidence, lower error: within 0.35 exactly above raw 0.65
    cal = fit_calibration(RAW, rel, bound=0.35, bins=10)
    rows = reliability(RAW, rel, 0.35, 10)
    assert len(cal.raw) == 10 and cal.bound == 0.35
    assert np.allclose(cal.raw, [r["mean_confidence"] for r in rows])
    assert np.allclose(cal.calibrated, [r["within"] for r in rows])  # already monotone: PAV keeps it
    assert cal.calibrated[:6] == (0.0,) * 6 and cal.calibrated[7:] == (1.0,) * 3
    assert 0 < cal.calibrated[6] < 1  # the bin the bound falls in: its observed share
    assert np.allclose(cal.apply(np.array(cal.raw)), cal.calibrated)


def test_a_decreasing_relation_is_pooled_flat():
    rel = RAW  # higher confidence, higher error: no order to trust
    cal = fit_calibration(RAW, rel, bound=0.5, bins=10)
    assert np.allclose(cal.calibrated, np.mean(rel < 0.5))
    assert pool_adjacent_violators([1.0, 3.0, 2.0, 4.0], [1, 1, 1, 1]) == [1.0, 2.5, 2.5, 4.0]
    assert pool_adjacent_violators([3.0, 1.0], [1, 3]) == [1.5, 1.5]  # weighted by pixels


def test_apply_is_monotone_clipped_and_maps_the_knots():
    cal = Calibration(0.1, (0.2, 0.5, 0.8), (0.1, 0.4, 0.9))
    x = np.linspace(-1.0, 2.0, 301).reshape(7, 43)
    y = cal.apply(x)
    assert y.shape == x.shape and y.dtype == np.float32
    assert np.all(np.diff(y.ravel()) >= 0) and y.min() == pytest.approx(0.1) and y.max() == pytest.approx(0.9)
    assert np.allclose(cal.apply(np.array([0.2, 0.5, 0.8, 0.35])), [0.1, 0.4, 0.9, 0.25])
    assert Calibration.from_dict(cal.as_dict()) == cal


def test_constant_confidence_gives_one_knot_and_nans_are_dropped():
    rel = np.tile([0.05, 0.2, 0.3, 0.01], 50)
    cal = fit_calibration(np.full(rel.shape, 0.3), rel, bound=0.1)
    assert cal.raw == pytest.approx((0.3,)) and cal.calibrated == (0.5,)
    assert np.allclose(cal.apply(np.array([0.0, 0.3, 1.0])), 0.5)
    noisy_raw, noisy_rel = RAW.copy(), 1.0 - RAW
    noisy_raw[::7], noisy_rel[3::11] = np.nan, np.nan
    keep = np.isfinite(noisy_raw) & np.isfinite(noisy_rel)
    assert fit_calibration(noisy_raw, noisy_rel, 0.35) == fit_calibration(RAW[keep], 1.0 - RAW[keep], 0.35)
    with pytest.raises(ValueError, match="no pixel with finite confidence"):
        fit_calibration(np.full(4, np.nan), np.ones(4))
    with pytest.raises(ValueError, match="no pixel"):
        fit_calibration(np.zeros(0), np.zeros(0))
    with pytest.raises(ValueError, match="same size"):
        fit_calibration(np.zeros(3), np.zeros(4))


def test_the_calibration_survives_the_config_round_trip_and_old_configs_load():
    cfg = preset_config("tiny")
    cal = Calibration(0.1, (0.02, 0.05, 0.09), (0.2, 0.3, 0.7))
    cal.to_inference(cfg.inference)
    back = config_from_dict(cfg.to_dict())
    assert Calibration.from_inference(back.inference) == cal
    old = cfg.to_dict()
    old["inference"] = {"input_size": [120, 160], "fp16": False, "channels_last": True}  # saved before the keys
    assert Calibration.from_inference(config_from_dict(old).inference) is None


@pytest.mark.parametrize("keys, match", [
    ({"confidence_raw": [0.5, 0.2], "confidence_calibrated": [0.1, 0.2]}, "inference.confidence_raw must be"),
    ({"confidence_raw": [0.2, 0.5], "confidence_calibrated": [0.3, 0.2]}, "inference.confidence_calibrated must"),
    ({"confidence_raw": [0.2, 0.5], "confidence_calibrated": [0.3, 1.2]}, "inference.confidence_calibrated must"),
    ({"confidence_raw": [0.2], "confidence_calibrated": [0.3, 0.4]}, "inference.confidence_raw and"),
    ({}, "inference.confidence_raw is empty"),
    ({"confidence_bound": -0.1}, "inference.confidence_bound must be"),
])
def test_invalid_knots_are_refused_naming_the_key(keys, match):
    with pytest.raises(ValueError, match=match):
        config_from_dict({"inference": {"confidence_bound": 0.1, **keys}})
    with pytest.raises(ValueError, match=match):
        InferenceConfig(**{"confidence_bound": 0.1, **keys})


def test_the_predictor_returns_the_calibrated_confidence(tiny_checkpoint):
    rgb = np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    plain = Predictor.from_checkpoint(tiny_checkpoint, "cpu", input_size=(48, 64)).predict(rgb)
    assert plain["confidence_calibrated"] is False
    raw = plain["confidence"]
    model, cfg = load_model(tiny_checkpoint)
    cfg.inference.input_size = (48, 64)
    cal = Calibration(0.1, (float(raw.min()), float(raw.max()) + 1e-3), (0.2, 0.9))
    cal.to_inference(cfg.inference)
    out = Predictor(model, cfg, "cpu").predict(rgb)
    assert out["confidence_calibrated"] is True
    assert np.allclose(out["confidence"], cal.apply(raw)) and out["confidence"].dtype == np.float32
    assert np.allclose(out["depth"], plain["depth"])  # the depth is untouched


def test_a_score_with_point_distance_is_fitted_and_applied_per_pixel():
    """Error that grows away from the known points: the fitted score ranks near-point pixels higher."""
    rng = np.random.default_rng(0)
    h, w = 60, 80
    anchors = rng.uniform([0, 0], [w - 1, h - 1], (30, 2))
    dist = anchor_distance(anchors, (h, w))
    assert dist[int(round(anchors[0, 1])), int(round(anchors[0, 0]))] == 0 and dist.max() > 0.3
    raw = rng.uniform(0.2, 0.8, (h, w))  # carries no information
    rel = 0.05 + 0.4 * dist + rng.normal(0, 0.02, (h, w))
    with_points = score_features(raw, anchors).reshape(-1, 4)
    rgb_only = score_features(raw, None).reshape(-1, 4)
    assert np.all(rgb_only[:, 2:] == 0) and np.all(with_points[:, 2] == 1)
    features = np.concatenate([with_points, rgb_only])
    rel_all = np.concatenate([rel.ravel(), np.full(raw.size, 0.3)])  # without points: 0.3 everywhere
    cal = fit_calibration(np.concatenate([raw.ravel(), raw.ravel()]), rel_all, bound=0.2, bins=10, features=features)
    assert len(cal.weights) == 4 and cal.weights[3] < 0  # farther from the points, less confident
    near_far = cal.apply(raw, anchors)
    assert near_far[dist < 0.05].mean() > 0.8 > 0.2 > near_far[dist > 0.5].mean()
    # apply's per-frame shortcut is the fitted score: the same map as the rows calibration fitted on
    np.testing.assert_allclose(near_far.ravel(), cal.apply_features(with_points), atol=1e-6)
    assert np.allclose(cal.apply(raw), cal.apply(raw)[0, 0], atol=0.05)  # no points: the flat share (0)
    assert Calibration.from_dict(cal.as_dict()) == cal
    cfg = preset_config("tiny")
    cal.to_inference(cfg.inference)
    assert Calibration.from_inference(config_from_dict(cfg.to_dict()).inference) == cal
    with pytest.raises(ValueError, match="inference.confidence_weights must be empty or 4 finite values"):
        InferenceConfig(confidence_bound=0.1, confidence_raw=(0.1,), confidence_calibrated=(0.5,),
                        confidence_weights=(1.0, 2.0))
