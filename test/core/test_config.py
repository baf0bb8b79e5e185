"""The typed config: range validation naming the key, the shipped training configs, command-line overrides."""

from __future__ import annotations

from pathlib import Path
import re

import pytest
import yaml

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


# ------------------------------------------------------------------ shipped configs, overrides
def test_later_stage_configs_are_stage1_but_their_schedule_and_loss():
    """Stage 2 copies stage 1's data, points, model and loss, stage 3 all but the loss: they must not drift apart."""
    from fusanet_core.config import load_config

    one, two = (load_config(ROOT / "config" / name).to_dict() for name in ("train_all.yaml", "train_all_stage2.yaml"))
    assert {k: v for k, v in one.items() if k != "train"} == {k: v for k, v in two.items() if k != "train"}
    assert two["train"]["init_from"] == "runs/all/best.pt" == str(Path(one["train"]["out_dir"]) / "best.pt")
    three = load_config(ROOT / "config" / "train_all_stage3.yaml").to_dict()  # the SILog fine-tune experiment
    assert {k: v for k, v in one.items() if k not in ("train", "loss")} == \
        {k: v for k, v in three.items() if k not in ("train", "loss")}
    assert three["loss"] == {**one["loss"], "depth_term": "silog", "silog_lambda": 0.5}
    assert three["train"]["init_from"] == str(Path(two["train"]["out_dir"]) / "best.pt")


def test_shipped_training_configs_follow_the_paper():
    from fusanet_core.config import load_config

    nyu, kitti = load_config(ROOT / "config" / "train_nyu.yaml"), load_config(ROOT / "config" / "train_kitti.yaml")
    assert nyu.loss.phi == 5.0 and not nyu.loss.log_and_sparse_only and nyu.data.kind == "nyu"
    assert kitti.loss.phi == 20.0 and kitti.loss.log_and_sparse_only and kitti.data.max_depth == 80.0
    assert kitti.model.max_depth == 80.0 and kitti.data.kind == "kitti"
    for cfg in (nyu, kitti):
        assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.lr) == (150, 32, 7e-4)


def test_config_overrides_parse_yaml_values_and_reject_bad_keys(tmp_path):
    from fusanet_core.config import load_config

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"preset": "tiny", "loss": {"lam": 0.01}}))
    cfg = load_config(path, ["loss.lam=0", "train.epochs=7", "data.image_size=[60, 80]"])
    assert cfg.loss.lam == 0.0 and cfg.train.epochs == 7 and cfg.data.image_size == (60, 80)
    assert load_config(path).loss.lam == 0.01  # the file itself is untouched
    with pytest.raises(ValueError, match="unknown key"):
        load_config(path, ["loss.lamda=0"])
    with pytest.raises(ValueError, match="section.key=value"):
        load_config(path, ["loss.lam"])
    with pytest.raises(ValueError, match="not a section"):
        load_config(path, ["preset.x=1"])
    with pytest.raises(ValueError, match="not valid YAML"):
        load_config(path, ["data.image_size=[60, 80"])


def test_indoor_config_resolves_the_shared_data(shared_data):
    from fusanet_core.config import load_config
    from fusanet_core.datasets import build_source

    path = ROOT / "config" / "train_indoor.yaml"
    cfg = load_config(path)
    assert cfg.preset == "small" and cfg.data.image_size == (120, 160) and cfg.train.batch_size == 8
    sizes = [len(build_source(spec, cfg, path.parent)) for spec in cfg.data.train + cfg.data.val]
    assert sizes == [400, 198, 198, 100, 50]  # office listed twice: both sets weigh equally
