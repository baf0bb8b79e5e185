"""Fine-tuning with known points in the batch must not spoil the depth.

Batch norm computes its statistics over the batch while training; a batch that mixes samples with
and without points has per-channel statistics far from those of either kind (the point features
dominate the variance), so the network trained a function that inference never runs. With the
statistics frozen (`train.batch_norm: frozen`, the default when starting from trained weights),
training and inference normalise alike. docs/training.md "Batch norm and points".
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fusanet_core.checkpoint import load_model, read_checkpoint
from fusanet_core.config import config_from_dict
from fusanet_core.datasets import build_dataset, collate
from fusanet_core.training.losses import sparse_loss
from fusanet_core.training.task import DepthTask
from fusanet_core.training.trainer import Trainer

ROOT = Path(__file__).resolve().parents[3]
BUNDLED = ROOT / "fusanet_core" / "weights" / "fusanet_lite_fast_indoor.pt"
SAMPLE = ROOT / "sample" / "tum_rgbd" / "manifest.csv"
SIZE = [60, 80]


def _config(tmp_path: Path, name: str, zero_points_prob: float, batch_norm: str = "auto"):
    _, bundled = read_checkpoint(BUNDLED)
    data = bundled.to_dict()
    data["points"].update({"max_points": 100, "min_points": 20, "random_share": 0.33, "depth_noise": 0.02,
                           "zero_points_prob": zero_points_prob})
    data["data"].update({"kind": "manifest", "train": [f"{SAMPLE}*4"], "val": [], "unseen": [],
                         "image_size": SIZE, "augment": True, "zoom_min": 1.0, "cache_mb": 16, "num_workers": 0})
    data["inference"]["input_size"] = SIZE
    data["train"].update({"init_from": str(BUNDLED), "epochs": 3, "batch_size": 4, "lr": 2e-4,
                          "lr_decay_start": 100, "lr_cooldown_epochs": 0, "out_dir": str(tmp_path / name),
                          "checkpoint_every_min": 0, "val_every": 0, "threads": 1, "seed": 0,
                          "batch_norm": batch_norm})
    return config_from_dict(data)


def _frames(cfg) -> dict:
    """Return the three sample frames at the training size, each with its exact SIFT points."""
    dataset = build_dataset(str(SAMPLE), cfg, train=False)
    dataset.max_points = 100
    return collate([dataset[i] for i in range(len(dataset))])


@torch.no_grad()
def _scores(model: torch.nn.Module, batch: dict) -> tuple[float, float]:
    """(RGB-only RMSE over the frames, L_S of the full-resolution depth primed with the points)."""
    model.eval()
    target, mask = batch["depth"], batch["mask"]
    rgb_only = model(batch["rgb"], None, batch["intrinsics"])["depth"][0]
    rmse = float(((rgb_only - target)[mask] ** 2).mean().sqrt())
    primed = model(batch["rgb"], batch["points"], batch["intrinsics"])["depth"][0]
    return rmse, float(sparse_loss(primed, target, DepthTask.sparse_mask(None, batch), mask))


def _fine_tune(cfg) -> torch.nn.Module:
    trainer = Trainer(cfg, force=True)
    trainer.fit()
    return trainer.model


@pytest.mark.slow
def test_points_in_the_batch_do_not_spoil_rgb_only_depth(tmp_path):
    cfg_points = _config(tmp_path, "points", zero_points_prob=0.4)
    batch = _frames(cfg_points)
    start, _ = load_model(BUNDLED)
    rmse_start, _ = _scores(start, batch)

    rmse_points, ls_points = _scores(_fine_tune(cfg_points), batch)
    rmse_plain, _ = _scores(_fine_tune(_config(tmp_path, "plain", zero_points_prob=1.0)), batch)

    assert rmse_plain < rmse_start  # fine-tuning on these frames helps ...
    assert rmse_points < rmse_start  # ... with points in the batch too,
    assert rmse_points <= 1.15 * rmse_plain, (rmse_points, rmse_plain)  # about as much
    assert ls_points < 0.5  # and the network follows the points it is given


def test_batch_norm_statistics_stay_fixed_when_frozen(tmp_path):
    """Frozen: running statistics unchanged by training steps, affine weights trained."""
    cfg = _config(tmp_path, "frozen", zero_points_prob=0.4, batch_norm="frozen")
    cfg.train.max_steps = 2
    trainer = Trainer(cfg, force=True)
    bn = trainer.model.fusion_net.stem.fuse[1]
    before = (bn.running_mean.clone(), bn.running_var.clone(), bn.weight.detach().clone())
    trainer.fit()
    assert torch.equal(bn.running_mean, before[0]) and torch.equal(bn.running_var, before[1])
    assert not torch.equal(bn.weight.detach(), before[2])


def test_batch_norm_auto_freezes_only_when_starting_from_weights(tmp_path):
    cfg = _config(tmp_path, "auto", zero_points_prob=0.4)
    assert cfg.train.resolved_batch_norm() == "frozen"
    cfg.train.init_from = ""
    assert cfg.train.resolved_batch_norm() == "batch"
    with pytest.raises(ValueError, match="train.batch_norm"):
        config_from_dict({"train": {"batch_norm": "sometimes"}})
