"""Config range validation: a value out of range is refused, naming the key, the range and the value."""

from __future__ import annotations

from pathlib import Path
import re

import pytest

from fusanet_core.config import config_from_dict, load_config, preset_config, PRESETS

ROOT = Path(__file__).resolve().parents[2]
NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("section,key,value,message", [
    ("train", "grad_clip", NAN, "train.grad_clip must be finite and >= 0, got nan"),
    ("train", "grad_clip", -1.0, "train.grad_clip must be finite and >= 0, got -1.0"),
    ("train", "lr", 0.0, "train.lr must be finite and > 0, got 0.0"),
    ("train", "lr", INF, "train.lr must be finite and > 0, got inf"),
    ("train", "lr_decay", 0.0, "train.lr_decay must be in (0, 1], got 0.0"),
    ("train", "lr_decay", 1.5, "train.lr_decay must be in (0, 1], got 1.5"),
    ("train", "max_steps", -1, "train.max_steps must be >= 0, got -1"),
    ("train", "max_bad_steps", 0, "train.max_bad_steps must be >= 1, got 0"),
    ("train", "checkpoint_every_min", -0.5, "train.checkpoint_every_min must be finite and >= 0, got -0.5"),
    ("points", "zero_points_prob", 2.0, "points.zero_points_prob must be in [0, 1], got 2.0"),
    ("points", "zero_points_prob", NAN, "points.zero_points_prob must be in [0, 1], got nan"),
    ("points", "max_points", -5, "points.max_points must be >= 0, got -5"),
    ("loss", "phi", -1.0, "loss.phi must be finite and >= 0, got -1.0"),
    ("loss", "lam", NAN, "loss.lam must be finite and >= 0, got nan"),
    ("loss", "hessian_sigma", 0.0, "loss.hessian_sigma must be finite and > 0, got 0.0"),
    ("loss", "silog_lambda", 1.5, "loss.silog_lambda must be in [0, 1], got 1.5"),
    ("loss", "scale_weights", [1, 1, 1, 1, NAN],
     "loss.scale_weights must be finite and >= 0, got [1.0, 1.0, 1.0, 1.0, nan]"),
    ("data", "max_depth", INF, "data.max_depth must be finite, got inf"),
    ("data", "cache_mb", -1.0, "data.cache_mb must be finite and >= 0, got -1.0"),
    ("data", "num_workers", -2, "data.num_workers must be >= 0, got -2"),
    ("data", "rotation_deg", 270.0, "data.rotation_deg must be in [0, 180], got 270.0"),
    ("data", "flip_prob", 1.1, "data.flip_prob must be in [0, 1], got 1.1"),
    ("data", "drop_prob", -0.1, "data.drop_prob must be in [0, 1], got -0.1"),
    ("data", "jitter", 2.0, "data.jitter must be in [0, 1], got 2.0"),
    ("model", "max_depth", INF, "model.max_depth must be finite, got inf"),
])
def test_out_of_range_values_are_refused_by_name(section, key, value, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        config_from_dict({section: {key: value}})


def test_edges_of_the_ranges_are_accepted():
    cfg = config_from_dict({
        "train": {"grad_clip": 0, "lr_decay": 1.0, "max_steps": 0, "checkpoint_every_min": 0},
        "points": {"zero_points_prob": 1.0, "max_points": 0},
        "loss": {"lam": 0, "scale_weights": [0, 0, 0, 0, 0]},
        "data": {"rotation_deg": 0, "flip_prob": 0, "jitter": 1.0, "cache_mb": 0},
    })
    assert cfg.train.grad_clip == 0.0 and cfg.points.max_points == 0


def test_shipped_configs_and_presets_are_in_range():
    for path in sorted((ROOT / "config").glob("train_*.yaml")):
        load_config(path)
    for name in PRESETS:
        preset_config(name)


def test_a_yaml_nan_override_names_the_file_and_the_key(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("preset: tiny\n")
    with pytest.raises(ValueError, match=rf"^config {re.escape(str(path))}: train\.grad_clip must be finite and >= 0, "
                                         r"got nan$"):
        load_config(path, ["train.grad_clip=.nan"])


def test_yaml_exponents_without_a_dot_are_floats(tmp_path):
    """A YAML `3e-4` is a number: PyYAML (YAML 1.1) reads it as a string, YAML 1.2 tools and users do not."""
    path = tmp_path / "train.yaml"
    path.write_text("preset: tiny\ntrain:\n  lr: 3e-4\nloss:\n  scale_weights: [1, 75E-2, 5e-1, 2.5e-1, +1e-1]\n")
    cfg = load_config(path)
    assert cfg.train.lr == 3e-4 and isinstance(cfg.train.lr, float)
    assert cfg.loss.scale_weights == (1.0, 0.75, 0.5, 0.25, 0.1)
    with pytest.raises(ValueError, match=r"train\.lr must be a number \(float\), got '3e-4x'"):
        config_from_dict({"train": {"lr": "3e-4x"}})
    with pytest.raises(ValueError, match=r"train\.epochs must be a number \(int\), got '1e2'"):
        config_from_dict({"train": {"epochs": "1e2"}})  # only floats: an int field stays strict
