"""Trainer: schedule, checkpoints, bitwise-exact resume, NaN guard, 2-process DDP on CPU."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
import subprocess
import sys

import pytest
import torch
import yaml

from fusanet_core.checkpoint import CheckpointError, load_model, read_checkpoint
from fusanet_core.config import config_from_dict
from fusanet_core.datasets import build_dataset, collate
from fusanet_core.model import build_model
from fusanet_core.training.task import batch_to, DepthTask
from fusanet_core.training.trainer import lr_at, Trainer, TrainingError

ROOT = Path(__file__).resolve().parents[3]
SAMPLE = ROOT / "sample" / "tum_rgbd"


def tiny_config(out_dir: Path, **train) -> dict:
    """Tiny preset at 48x64; six training frames (the sample twice), batch 2 -> 3 steps/epoch."""
    return {
        "preset": "tiny",
        "inference": {"input_size": [48, 64]},
        "data": {"train": [f"{SAMPLE}/manifest.csv", str(SAMPLE)], "val": [f"{SAMPLE}/manifest.csv[0:2]"],
                 "image_size": [48, 64]},
        "train": {"epochs": 1, "batch_size": 2, "out_dir": str(out_dir), "threads": 1, "log_every": 1, **train},
    }


def test_lr_schedule_is_the_papers():
    cfg = config_from_dict({})
    assert lr_at(1, cfg) == lr_at(9, cfg) == pytest.approx(7e-4)
    assert lr_at(10, cfg) == lr_at(14, cfg) == pytest.approx(7e-4 * 0.95)
    assert lr_at(15, cfg) == pytest.approx(7e-4 * 0.95**2)
    assert lr_at(150, cfg) == pytest.approx(7e-4 * 0.95**29)
    with pytest.raises(ValueError, match="1-based"):
        lr_at(0, cfg)


def test_lr_cooldown_only_changes_the_last_epochs():
    plain = config_from_dict({"train": {"epochs": 30}})
    cooled = config_from_dict({"train": {"epochs": 30, "lr_cooldown_epochs": 10}})
    assert [lr_at(e, cooled) for e in range(1, 21)] == [lr_at(e, plain) for e in range(1, 21)]
    ratios = [lr_at(e, cooled) / lr_at(e, plain) for e in range(21, 31)]
    assert all(a > b for a, b in zip(ratios, ratios[1:]))  # strictly falling
    assert 0.9 < ratios[0] < 1.0 and 0.0 < ratios[-1] < 0.05
    with pytest.raises(ValueError, match="lr_cooldown_epochs"):
        config_from_dict({"train": {"epochs": 5, "lr_cooldown_epochs": 6}})


def test_task_loss_has_both_passes_and_gradients():
    cfg = config_from_dict(tiny_config(Path("unused")))
    torch.manual_seed(0)
    dataset = build_dataset(str(SAMPLE), cfg, train=True)
    batch = batch_to(collate([dataset[(0, 1)], dataset[(1, 2)]]), "cpu")
    model = build_model(cfg)
    result = DepthTask(cfg)(model, batch, epoch=1)
    assert {"loss", "final", "pass1", "l_log", "l_sparse", "l_hessian", "l_sparse_full"} <= set(result)
    assert torch.isfinite(result["loss"]) and result["loss"].requires_grad
    expected = result["final"].item() + cfg.loss.pass1_weight * result["pass1"].item()
    if cfg.model.use_saliency and cfg.loss.saliency_weight > 0:  # the map's own training signal (docs/architecture.md)
        assert result["l_saliency"].item() > 0
        expected += cfg.loss.saliency_weight * result["l_saliency"].item()
    assert result["loss"].item() == pytest.approx(expected, rel=1e-5)
    result["loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_two_steps_write_checkpoints_and_resume_is_bitwise_exact(tmp_path):
    straight = Trainer(config_from_dict(tiny_config(tmp_path / "a", max_steps=2))).fit()
    assert straight["step"] == 2
    Trainer(config_from_dict(tiny_config(tmp_path / "b", max_steps=1))).fit()
    first, _ = read_checkpoint(tmp_path / "b" / "last.pt")
    assert first["trainer"]["step"] == 1 and first["trainer"]["step_in_epoch"] == 1
    resumed = Trainer(config_from_dict(tiny_config(tmp_path / "b", max_steps=2)), resume=tmp_path / "b" / "last.pt")
    assert resumed.state.step == 1
    resumed.fit()

    a, _ = read_checkpoint(tmp_path / "a" / "last.pt")
    b, _ = read_checkpoint(tmp_path / "b" / "last.pt")
    timing = ("seconds",)  # wall-clock spent (the max_minutes budget): the one field two runs cannot share
    assert {k: v for k, v in a["trainer"].items() if k not in timing} == \
        {k: v for k, v in b["trainer"].items() if k not in timing}
    assert 0 < b["trainer"]["seconds"] and 0 < a["trainer"]["seconds"]
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    state_a, state_b = a["optimizer"]["state"], b["optimizer"]["state"]
    assert state_a.keys() == state_b.keys()
    for index in state_a:
        for name, value in state_a[index].items():
            assert torch.equal(value, state_b[index][name]), (index, name)
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])

    model, cfg = load_model(tmp_path / "a" / "last.pt")  # a training checkpoint serves inference
    assert cfg.preset == "tiny" and not model.training
    lines = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines if line["event"] == "train"] == [1, 2]
    assert math.isfinite(lines[-1]["loss"])


def test_resume_after_a_crash_logs_each_step_once_and_means_cover_the_whole_epoch(tmp_path):
    """Resume after a crash: each step is logged once and the epoch means cover the whole epoch.

    A run checkpoints at step 1, goes on to log step 2, dies; the resume from the step-1
    checkpoint redoes step 2. metrics.jsonl must hold steps 1, 2, 3 once each, and the epoch's
    train_loss must be the mean over all three steps, as in an uninterrupted run.
    """
    import shutil

    straight_dir, crash_dir = tmp_path / "straight", tmp_path / "crash"
    Trainer(config_from_dict(tiny_config(straight_dir))).fit()
    Trainer(config_from_dict(tiny_config(crash_dir, max_steps=1))).fit()
    shutil.copy(crash_dir / "last.pt", tmp_path / "step1.pt")  # the checkpoint the crash falls back to
    Trainer(config_from_dict(tiny_config(crash_dir, max_steps=2)), resume=crash_dir / "last.pt").fit()  # the lost part
    Trainer(config_from_dict(tiny_config(crash_dir)), resume=tmp_path / "step1.pt").fit()

    def records(run: Path) -> list[dict]:
        return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]

    crashed, straight = records(crash_dir), records(straight_dir)
    assert [r["step"] for r in crashed if r["event"] == "train"] == [1, 2, 3]
    assert [r["epoch"] for r in crashed if r["event"] == "epoch"] == [1]
    train_loss = [r["train_loss"] for r in crashed if r["event"] == "epoch"][0]
    assert train_loss == pytest.approx([r["train_loss"] for r in straight if r["event"] == "epoch"][0], rel=1e-12)
    assert [r["loss"] for r in crashed if r["event"] == "train"] == pytest.approx(
        [r["loss"] for r in straight if r["event"] == "train"], rel=1e-12)  # running means over the epoch so far


def test_epoch_end_validates_and_keeps_best(tmp_path):
    summary = Trainer(config_from_dict(tiny_config(tmp_path, epochs=1, lr=1e-4))).fit()
    assert summary["step"] == 3 and summary["best_epoch"] == 1
    assert (tmp_path / "best.pt").is_file() and (tmp_path / "last.pt").is_file()
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["preset"] == "tiny"
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    epoch = [r for r in records if r["event"] == "epoch"][-1]
    assert set(epoch["val"]) == {"tum_rgbd[0:2]", "all"}
    assert epoch["val"]["all"]["rmse"] == pytest.approx(summary["best_rmse"])
    assert epoch["train_s"] > 0  # this process's time on the epoch's steps
    last, _ = read_checkpoint(tmp_path / "last.pt")
    assert last["trainer"]["epoch"] == 2 and last["trainer"]["step_in_epoch"] == 0  # next epoch
    with pytest.raises(ValueError, match="--resume"):
        Trainer(config_from_dict(tiny_config(tmp_path)))  # never overwrite a run by accident


def test_start_removes_the_temp_files_of_killed_checkpoint_writes(tmp_path, caplog):
    import logging
    import tempfile

    from fusanet_core.checkpoint import TEMP_SUFFIX

    tmp_path.joinpath("last.pt").write_bytes(b"a real checkpoint")
    kept = [tmp_path / n for n in ("last.pt", "metrics.jsonl.tmp", "notes.tmp", "last.pt.tmp", "other.ptabcdefgh.tmp")]
    for path in kept[1:]:
        path.write_text("not a checkpoint write")
    # what save_checkpoint's mkstemp leaves when the process is killed before the rename
    stale = [Path(tempfile.mkstemp(prefix=n, suffix=TEMP_SUFFIX, dir=tmp_path)[1]) for n in ("last.pt", "best.pt")]
    with caplog.at_level(logging.INFO, logger="fusanet_core.training.trainer"):
        Trainer(config_from_dict(tiny_config(tmp_path)), force=True)
    assert not any(p.exists() for p in stale) and all(p.exists() for p in kept)
    lines = [r.getMessage() for r in caplog.records if "temp file" in r.getMessage()]
    assert len(lines) == 1 and all(p.name in lines[0] for p in stale), lines


def test_non_finite_losses_are_skipped_then_stop(tmp_path, monkeypatch):
    calls = {"n": 0}
    real_call = DepthTask.__call__

    def poisoned(self, model, batch, epoch):
        result = real_call(self, model, batch, epoch)
        calls["n"] += 1
        result["loss"] = result["loss"] * float("nan")
        return result

    monkeypatch.setattr(DepthTask, "__call__", poisoned)
    trainer = Trainer(config_from_dict(tiny_config(tmp_path, max_bad_steps=2)))
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    with pytest.raises(TrainingError, match="2 consecutive non-finite"):
        trainer.fit()
    assert calls["n"] == 2 and trainer.state.skipped_steps == 2
    after = trainer.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if not k.endswith("num_batches_tracked"))
    assert (tmp_path / "last.pt").is_file()


@pytest.mark.slow
def test_ddp_two_processes_on_cpu(tmp_path):
    """Train under torchrun with 2 gloo processes: only rank 0 writes."""
    cfg = tiny_config(tmp_path / "run", epochs=2, batch_size=4, max_steps=2)
    cfg["train"]["threads"] = 0  # let the trainer split the cores between the processes
    config = tmp_path / "ddp.yaml"
    config.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "fusanet_core.cli", "train", "--config", str(config)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 processes" in done.stderr
    payload, _ = read_checkpoint(tmp_path / "run" / "last.pt")
    assert payload["trainer"]["step"] == 2
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["event"] == "train"] == [1, 2]  # one writer


def test_init_from_starts_a_fresh_run_from_a_checkpoints_weights(tmp_path):
    Trainer(config_from_dict(tiny_config(tmp_path / "a", max_steps=1))).fit()
    source, _ = read_checkpoint(tmp_path / "a" / "last.pt")
    start = str(tmp_path / "a" / "last.pt")
    tuned = Trainer(config_from_dict(tiny_config(tmp_path / "b", max_steps=1, init_from=start)))
    assert tuned.state.step == 0 and not tuned.optimizer.state  # a fresh run: step 0, no Adam moments
    for key, value in tuned.model.state_dict().items():
        assert torch.equal(value, source["model"][key]), key
    other = tiny_config(tmp_path / "c", init_from=start)
    other["model"] = {"stem_channels": 16}  # another architecture: refused, naming the mismatch
    with pytest.raises(CheckpointError, match="does not match the model: .*shape mismatch"):
        Trainer(config_from_dict(other))


def test_early_stop_after_patience_validations_without_a_new_best(tmp_path, monkeypatch):
    scores = iter([1.0, 0.9, 0.95, 0.92, 0.5, 0.4])  # a new best at epochs 1 and 2, then two misses
    monkeypatch.setattr(Trainer, "validate",
                        lambda self: {"all": {"rmse": next(scores), "abs_rel": 0.0, "delta1": 0.0}})
    summary = Trainer(config_from_dict(tiny_config(tmp_path, epochs=6, early_stop_patience=2))).fit()
    assert (summary["step"], summary["best_epoch"], summary["best_rmse"]) == (12, 2, 0.9)  # 4 epochs of 3 steps
    resumed = Trainer(config_from_dict(tiny_config(tmp_path, epochs=6, early_stop_patience=2)),
                      resume=tmp_path / "last.pt")
    assert resumed.fit()["step"] == 12  # a stopped run stays stopped when resumed


def test_time_budget_stops_training(tmp_path, monkeypatch):
    clock = iter(range(0, 100_000, 30))  # every time.monotonic() call: 30 s later, so a step takes >= 30 s
    monkeypatch.setattr("fusanet_core.training.trainer.time.monotonic", lambda: float(next(clock)))
    summary = Trainer(config_from_dict(tiny_config(tmp_path, epochs=50, max_minutes=2.0, val_every=0))).fit()
    assert 1 <= summary["step"] <= 4  # the 2-minute budget is spent within 4 steps (50 epochs would be 150)
    state, _ = read_checkpoint(tmp_path / "last.pt")
    assert state["trainer"]["seconds"] >= 120.0
    with pytest.raises(ValueError, match="train.max_minutes"):
        config_from_dict({"train": {"max_minutes": -1}})
