"""Offline training of FuSaNet: a small, resumable trainer (`fusanet train` is in cli.py).

The trainer owns the loop only: the loss comes from `DepthTask`, data from `fusanet_core.datasets`,
metrics from `fusanet_core.evaluation.metrics`. Everything that decides the next step (weights, optimiser,
AMP scaler, epoch and step counters, the position inside the epoch, RNG states) is written to
`last.pt` at the end of every epoch and every `train.checkpoint_every_min` minutes /
`train.checkpoint_every_steps` steps, atomically, so a run killed at any time continues with
`--resume` exactly as if it had not stopped.

metrics.jsonl holds each step once: a resume first drops the records the lost part of the run wrote
after its checkpoint (the resumed run writes them again, identically), and the running sums behind
an epoch's `train_*` means are part of the checkpoint, so a resumed epoch's means cover the whole
epoch. `train_s` and `sec_per_step` are wall time of the process that finished the epoch only.

Multi-GPU / multi-process: start with `torchrun --nproc_per_node N -m fusanet_core.cli train ...`
(gloo on CPU, nccl on CUDA); `train.batch_size` is the global batch, split over the processes;
only rank 0 validates and writes files.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
import json
import logging
import math
import os
from pathlib import Path
import sys
import time
from typing import Any

import torch
from torch import nn
import torch.distributed as dist
from torch.utils.data import BatchSampler, DataLoader

from .run_state import init_distributed, open_tensorboard, rng_state, seed_everything, set_rng_state, trim_metrics_log
from .task import batch_to, DepthTask
from ..checkpoint import load_weights, read_checkpoint, remove_temp_files, save_checkpoint
from ..config import Config, TrainConfig
from ..datasets import build_dataset, collate, ConcatDataset, EpochSampler, RGBDDataset, split_repeat
from ..datasets.base import resolve_path
from ..device import resolve_device
from ..evaluation.metrics import MetricAccumulator
from ..model import build_model

log = logging.getLogger(__name__)

CHECKPOINT_NAMES = ("last.pt", "best.pt")  # what the trainer writes into train.out_dir


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. too many consecutive non-finite losses)."""


def param_groups(model: torch.nn.Module, backbone_lr_scale: float) -> list[dict]:
    """Optimiser groups: the pretrained backbone (`backbone.*`) at `backbone_lr_scale` x lr, the rest at lr.

    The usual fine-tuning guard for a pretrained encoder (e.g. 1e-4 encoder / 5e-4 decoder); at 600
    steps x0.2 made no measurable difference here (BENCHMARKS.md, network v2 ablation).
    """
    backbone = [p for n, p in model.named_parameters() if n.split(".", 1)[0] == "backbone"]
    rest = [p for n, p in model.named_parameters() if n.split(".", 1)[0] != "backbone"]
    groups = [{"params": rest, "lr_scale": 1.0}]
    if backbone:
        groups.append({"params": backbone, "lr_scale": backbone_lr_scale})
    return groups


def lr_at(epoch: int, cfg: TrainConfig | Config) -> float:
    """Return the learning rate of a 1-based epoch.

    That is `lr` until `lr_decay_start - 1`, then multiplied by `lr_decay` at epoch
    `lr_decay_start` and again every `lr_decay_every` epochs (paper: 7e-4, x0.95 every 5 epochs
    from epoch 10). Optionally the last `lr_cooldown_epochs` epochs scale that by a half-cosine
    towards 0 (not in the paper: short CPU runs end too noisy without it).
    """
    train = cfg.train if isinstance(cfg, Config) else cfg
    if epoch < 1:
        raise ValueError(f"epoch is 1-based, got {epoch}")
    lr = train.lr
    if epoch >= train.lr_decay_start:
        lr *= train.lr_decay ** ((epoch - train.lr_decay_start) // train.lr_decay_every + 1)
    into_cooldown = epoch - (train.epochs - train.lr_cooldown_epochs)  # 1..N in the last N epochs
    if train.lr_cooldown_epochs and into_cooldown > 0:
        lr *= 0.5 * (1.0 + math.cos(math.pi * into_cooldown / (train.lr_cooldown_epochs + 1)))
    return lr


@dataclass
class TrainState:
    """Counters that, with the weights, optimiser and RNG states, define where a run stands."""

    epoch: int = 1  # epoch in progress (1-based)
    step_in_epoch: int = 0  # batches of that epoch already done
    step: int = 0  # optimiser steps done in total (skipped bad steps included)
    bad_steps: int = 0  # consecutive non-finite steps
    skipped_steps: int = 0  # all non-finite steps so far
    best_rmse: float = math.inf
    best_epoch: int = 0
    epoch_sums: dict[str, float] = field(default_factory=dict)  # loss parts summed over the epoch's finite steps
    epoch_count: int = 0  # finite steps in those sums
    seconds: float = 0.0  # training and validation time so far, resumed parts included (train.max_minutes)
    stale_validations: int = 0  # validations since the best one (train.early_stop_patience)


@dataclass
class EpochClock:
    """Wall-clock bookkeeping of this process; not in checkpoints (a resumed run starts its own clocks)."""

    last_save: float = field(default_factory=time.monotonic)  # when last.pt was written (or the run began)
    epoch_seconds: float = 0.0  # time this process spent on the current epoch's steps (metrics.jsonl train_s)


class Trainer:
    """Trains a FuSaNet from a config.

    Args:
        cfg: the run's config.
        base_dir: folder that relative data paths resolve against first (the config file's).
        resume: checkpoint to continue from (normally `<out_dir>/last.pt`), or None.
        force: start afresh even when `out_dir` already holds a `last.pt`.
        datasets: (training datasets, validation datasets) built by the caller, in place of
            `data.train` / `data.val` (fusanet finetune hands over its time-split recordings).
    """

    def __init__(self, cfg: Config, base_dir: str | Path | None = None, resume: str | Path | None = None,
                 force: bool = False, datasets: tuple[list[RGBDDataset], list[RGBDDataset]] | None = None):
        self.cfg = cfg
        self.out_dir = Path(cfg.train.out_dir)
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = resolve_device(cfg.train.device, local_rank, "train.device")
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.dist = init_distributed(self.device)
        if cfg.train.threads > 0:
            torch.set_num_threads(cfg.train.threads)
        elif self.dist.enabled and self.device.type == "cpu":
            # processes share the cores: more threads than cores each only thrash
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // self.dist.world_size))
        if resume is None and not force and (self.out_dir / "last.pt").exists():
            raise ValueError(f"{self.out_dir} already holds last.pt: pass --resume to continue it or --force to "
                             "start over")
        if self.dist.main:
            self._remove_temp_files()
        seed_everything(cfg.train.seed)
        self.task = DepthTask(cfg)
        self.model = build_model(cfg, self.device)
        self.optimizer = torch.optim.Adam(param_groups(self.model, cfg.train.backbone_lr_scale), lr=lr_at(1, cfg),
                                          betas=(0.9, 0.999), eps=1e-8)
        self.amp = bool(cfg.train.amp) and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.state = TrainState()
        self.clock = EpochClock()
        if datasets is None:
            self.train_set = ConcatDataset([dataset for s in self._entries(cfg.data.train, "train")
                                            for dataset in _repeated(s, cfg, base_dir)])
            self.val_sets = [self._val_dataset(s, base_dir) for s in cfg.data.val]
        else:
            self.train_set, self.val_sets = ConcatDataset(datasets[0]), list(datasets[1])
        self.unseen_sets = [self._val_dataset(s, base_dir) for s in cfg.data.unseen]
        if resume is not None:
            self._load(resume)
        elif cfg.train.init_from:
            self._init_weights(resolve_path(cfg.train.init_from, base_dir))
        self.net: nn.Module = self.model
        if self.dist.enabled:
            # Zero-point iterations leave the point branch of pass 1 unused.
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(self.model, device_ids=ids, find_unused_parameters=True)
        self.batch_size = self._rank_batch()
        self.sampler = EpochSampler(len(self.train_set), cfg.train.seed, True, self.dist.rank, self.dist.world_size)
        self.tb = self._tensorboard() if self.dist.main else None

    # ------------------------------------------------------------------ setup helpers

    @staticmethod
    def _entries(entries: list[str], name: str) -> list[str]:
        if not entries:
            raise ValueError(f"data.{name} is empty: list at least one manifest, list file or bag")
        return entries

    def _val_dataset(self, spec: str, base_dir: str | Path | None) -> RGBDDataset:
        dataset = build_dataset(spec, self.cfg, False, base_dir)
        dataset.max_points = 0  # validation runs the deployed RGB-only path: no guiding points
        return dataset

    def _rank_batch(self) -> int:
        total = self.cfg.train.batch_size
        if total % self.dist.world_size:
            log.warning("train.batch_size %d is not divisible by %d processes", total, self.dist.world_size)
        return max(1, total // self.dist.world_size)

    def _tensorboard(self) -> Any:
        return open_tensorboard(self.out_dir, self.state.step)

    def steps_per_epoch(self) -> int:
        per_rank = len(EpochSampler(len(self.train_set), 0, True, self.dist.rank, self.dist.world_size))
        return max(per_rank // self.batch_size, 1)

    # ------------------------------------------------------------------ checkpoints

    def _remove_temp_files(self) -> None:
        """Delete what checkpoint writes killed mid-way left in out_dir (the checkpoints themselves are whole)."""
        removed = remove_temp_files(self.out_dir, CHECKPOINT_NAMES)
        if removed:
            log.info("removed %d temp file(s) of killed checkpoint writes from %s: %s", len(removed), self.out_dir,
                     ", ".join(p.name for p in removed))

    def _extra(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "trainer": asdict(self.state),
            "rng": rng_state(),
        }

    def save(self, name: str) -> Path | None:
        """Write `<out_dir>/<name>` atomically (rank 0 only)."""
        if not self.dist.main:
            return None
        return save_checkpoint(self.out_dir / name, self.model, self.cfg, **self._extra())

    def _load(self, path: str | Path) -> None:
        payload, _ = read_checkpoint(path, map_location="cpu")
        missing = [k for k in ("optimizer", "trainer", "rng") if k not in payload]
        if missing:
            raise ValueError(f"checkpoint {path} cannot be resumed: it lacks {missing} (weights-only checkpoint?)")
        load_weights(self.model, payload["model"], path)
        self.optimizer.load_state_dict(payload["optimizer"])
        if payload.get("scaler"):
            self.scaler.load_state_dict(payload["scaler"])
        self.state = TrainState(**payload["trainer"])
        set_rng_state(payload["rng"])
        self._trim_metrics_log()
        log.info("resumed %s at epoch %d, step %d (%d done in this epoch)", path, self.state.epoch, self.state.step,
                 self.state.step_in_epoch)

    def _init_weights(self, path: Path) -> None:
        """Fine-tuning: the weights of `path` (same architecture), nothing of its optimiser or schedule."""
        payload, _ = read_checkpoint(path, map_location="cpu")
        load_weights(self.model, payload["model"], path)
        log.info("initialised the weights from %s (train.init_from)", path)

    # ------------------------------------------------------------------ logging

    def _trim_metrics_log(self) -> None:
        if self.dist.main:
            trim_metrics_log(self.out_dir / "metrics.jsonl", self.state.epoch, self.state.step)

    def _log_json(self, record: dict[str, Any]) -> None:
        if not self.dist.main:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with (self.out_dir / "metrics.jsonl").open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.tb is not None:
            prefix = record.get("event", "log")
            for key, value in _flatten(record).items():
                if isinstance(value, (int, float)) and key not in ("epoch", "step"):
                    self.tb.add_scalar(f"{prefix}/{key}", value, record.get("step", 0))

    # ------------------------------------------------------------------ training

    def fit(self) -> dict[str, Any]:
        """Train until `train.epochs`, `max_steps`, `max_minutes` or early stopping; returns a short summary."""
        cfg = self.cfg.train
        if self.dist.main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "config.yaml").write_text(_yaml(self.cfg.to_dict()))
        log.info("training %d frames (%d steps/epoch, batch %d x %d processes) on %s; validation: %s",
                 len(self.train_set), self.steps_per_epoch(), self.batch_size, self.dist.world_size, self.device,
                 ", ".join(f"{v.name} ({len(v)})" for v in self.val_sets) or "none")
        self.clock.last_save = time.monotonic()
        while self.state.epoch <= cfg.epochs and not self.validation_stalled():
            if not self._train_epoch(self.state.epoch):
                self.save("last.pt")
                break
            self._end_epoch(self.state.epoch)
        if self.validation_stalled():
            log.info("validation has not improved for %d validations: stopped early", self.state.stale_validations)
        self._barrier()
        if self.tb is not None:
            self.tb.close()
        return {"epoch": self.state.epoch, "step": self.state.step, "best_rmse": self.state.best_rmse,
                "best_epoch": self.state.best_epoch, "skipped_steps": self.state.skipped_steps}

    def _train_mode(self) -> None:
        self.model.train()
        if self.cfg.train.resolved_batch_norm() == "frozen":
            freeze_batch_norm(self.model)

    def _budget_spent(self) -> bool:
        """Tell whether train.max_steps steps or train.max_minutes minutes are spent."""
        if 0 < self.cfg.train.max_steps <= self.state.step:
            return True
        budget = self.cfg.train.max_minutes * 60.0
        spent = 0 < budget <= self.state.seconds
        if budget > 0 and self.dist.enabled:  # each process has its own clock: all stop when the first one must
            flag = torch.tensor([float(spent)], device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            spent = bool(flag.item() > 0)
        return spent

    def validation_stalled(self) -> bool:
        patience = self.cfg.train.early_stop_patience
        return 0 < patience <= self.state.stale_validations

    def _loader(self, epoch: int) -> DataLoader:
        self.sampler.set_epoch(epoch, self.state.step_in_epoch * self.batch_size)
        drop_last = len(self.sampler) >= self.batch_size
        workers = self.cfg.data.num_workers
        # An own generator: a loader otherwise draws its worker seed from the global RNG, which
        # would make the RNG state depend on how many loaders a (resumed) run created.
        generator = torch.Generator().manual_seed(self.cfg.train.seed * 1_000_003 + epoch)
        return DataLoader(self.train_set, batch_sampler=BatchSampler(self.sampler, self.batch_size, drop_last),
                          collate_fn=collate, num_workers=workers, persistent_workers=False, generator=generator)

    def _train_epoch(self, epoch: int) -> bool:
        """Run the rest of an epoch; False when max_steps stopped it early."""
        lr = lr_at(epoch, self.cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        self._train_mode()
        total = self.steps_per_epoch()
        if self.state.step_in_epoch >= total:
            return True
        if self._budget_spent():
            return False
        bar = _progress(total, self.state.step_in_epoch, f"epoch {epoch}/{self.cfg.train.epochs}", self.dist.main)
        sums = self.state.epoch_sums  # whole-epoch sums: they travel in the checkpoint
        done_here, started = 0, time.monotonic()
        for batch in self._loader(epoch):
            if self.state.step_in_epoch >= total:
                break
            step_started = time.monotonic()
            parts = self._step(batch, epoch)
            self.state.seconds += time.monotonic() - step_started
            self.state.step += 1
            self.state.step_in_epoch += 1
            done_here += 1
            if parts is not None:
                for key, value in parts.items():
                    sums[key] = sums.get(key, 0.0) + value
                self.state.epoch_count += 1
                bar.set_postfix(loss=f"{parts['loss']:.4f}")
            bar.update(1)
            count = self.state.epoch_count
            if count and self.state.step % max(self.cfg.train.log_every, 1) == 0:
                # Means over the epoch so far (resumed part included); time over this process's steps.
                record = {"event": "train", "epoch": epoch, "step": self.state.step, "lr": lr,
                          **{k: v / count for k, v in sums.items()},
                          "sec_per_step": (time.monotonic() - started) / done_here}
                self._log_json(record)
                self.task.check_health(record)  # warns when the saliency map has gone flat
                if bar.disable and self.dist.main:  # no progress bar (not a terminal): a heartbeat line
                    log.info("epoch %d step %d/%d: loss %.4f, %.2f s/step", epoch, self.state.step_in_epoch, total,
                             record["loss"], record["sec_per_step"])
            self._maybe_save()
            if self._budget_spent():
                bar.close()
                self.clock.epoch_seconds = round(time.monotonic() - started, 2)
                return self.state.step_in_epoch >= total
        bar.close()
        self.clock.epoch_seconds = round(time.monotonic() - started, 2)  # the part of the epoch this process did
        return True

    def _step(self, batch: dict[str, Any], epoch: int) -> dict[str, float] | None:
        """One optimiser step; None when the loss or gradients were not finite (step skipped)."""
        batch = batch_to(batch, self.device)
        self.optimizer.zero_grad(set_to_none=True)
        # Batch-norm statistics change in the forward pass: a skipped step must not keep them
        # (a NaN activation would poison them for good). They are small; copying is cheap.
        buffers = [b.detach().clone() for b in self.model.buffers()]
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            result = self.task(self.net, batch, epoch)
        loss = result["loss"]
        if not self._all_finite(loss.detach()):
            self._restore_buffers(buffers)
            return self._bad_step(f"loss {loss.item()}")
        self.scaler.scale(loss).backward()
        if self.cfg.train.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.grad_clip)
            if not self.amp and not torch.isfinite(norm):  # with AMP the scaler skips such steps
                self.optimizer.zero_grad(set_to_none=True)
                self._restore_buffers(buffers)
                return self._bad_step(f"gradient norm {norm.item()}")
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.state.bad_steps = 0
        return {k: float(v.detach()) for k, v in result.items()}

    @torch.no_grad()
    def _restore_buffers(self, saved: list[torch.Tensor]) -> None:
        for buffer, value in zip(self.model.buffers(), saved):
            buffer.copy_(value)

    def _all_finite(self, value: torch.Tensor) -> bool:
        """Every process must take the same decision, else DDP would hang."""
        flag = torch.isfinite(value).to(torch.float32).reshape(1)
        if self.dist.enabled:
            flag = flag.to(self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return bool(flag.item() > 0)

    def _bad_step(self, what: str) -> None:
        self.state.bad_steps += 1
        self.state.skipped_steps += 1
        log.warning("step %d: non-finite %s, step skipped (%d in a row)", self.state.step + 1, what,
                    self.state.bad_steps)
        if self.state.bad_steps >= self.cfg.train.max_bad_steps:
            self.save("last.pt")
            raise TrainingError(
                f"{self.state.bad_steps} consecutive non-finite steps (train.max_bad_steps = "
                f"{self.cfg.train.max_bad_steps}): lower train.lr or check the data; last.pt kept"
            )
        return None

    def _maybe_save(self) -> None:
        cfg = self.cfg.train
        by_steps = cfg.checkpoint_every_steps > 0 and self.state.step % cfg.checkpoint_every_steps == 0
        since_save = time.monotonic() - self.clock.last_save
        by_time = cfg.checkpoint_every_min > 0 and since_save >= cfg.checkpoint_every_min * 60
        if by_steps or by_time:
            self.save("last.pt")
            self.clock.last_save = time.monotonic()

    def _end_epoch(self, epoch: int) -> None:
        """Validate, keep best.pt, then move the state to the next epoch and write last.pt."""
        record: dict[str, Any] = {"event": "epoch", "epoch": epoch, "step": self.state.step,
                                  "lr": lr_at(epoch, self.cfg),
                                  **{f"train_{k}": v / self.state.epoch_count
                                     for k, v in self.state.epoch_sums.items()},
                                  "train_s": self.clock.epoch_seconds}
        improved = False
        if self.val_sets and (epoch % max(self.cfg.train.val_every, 1) == 0 or epoch == self.cfg.train.epochs):
            if self.dist.main:
                started = time.monotonic()
                metrics = self.validate()
                record["val"] = metrics
                record["val_s"] = round(time.monotonic() - started, 2)
                self.state.seconds += record["val_s"]
                rmse = metrics["all"]["rmse"]
                if rmse < self.state.best_rmse:
                    self.state.best_rmse, self.state.best_epoch, improved = rmse, epoch, True
                self.state.stale_validations = 0 if improved else self.state.stale_validations + 1
            self._barrier()
            if self.dist.enabled:  # only the main process validates: the others stop early when it does
                stale = torch.tensor([self.state.stale_validations], device=self.device)
                dist.broadcast(stale, src=0)
                self.state.stale_validations = int(stale.item())
        record["seconds"] = round(self.state.seconds, 2)
        self._log_json(record)
        log.info("epoch %d done: %s", epoch, _summary_line(record))
        if self.cfg.train.max_minutes:
            log.info("%.1f of %g minutes spent", self.state.seconds / 60.0, self.cfg.train.max_minutes)
        self.state.epoch, self.state.step_in_epoch = epoch + 1, 0
        self.state.epoch_sums, self.state.epoch_count = {}, 0
        if improved:
            self.save("best.pt")
        self.save("last.pt")
        self.clock = EpochClock()

    # ------------------------------------------------------------------ validation

    @torch.no_grad()
    def validate(self) -> dict[str, dict[str, float]]:
        """Compute the metrics per validation set, over all of them ("all") and over the unseen sets.

        RGB-only inference at the training resolution, caps data.min_depth..data.max_depth, no crop.
        "all" pools data.val only (it picks best.pt); "unseen" pools data.unseen.
        """
        was_training = self.model.training
        self.model.eval()
        results: dict[str, dict[str, float]] = {}
        for pool, sets in (("all", self.val_sets), ("unseen", self.unseen_sets)):
            if sets:
                results.update(self._score_sets(sets, pool))
        if was_training:
            self._train_mode()
        return results

    def _score_sets(self, sets: list[RGBDDataset], pool: str) -> dict[str, dict[str, float]]:
        caps = {"min_depth": self.cfg.data.min_depth, "max_depth": self.cfg.data.max_depth}
        overall = MetricAccumulator(**caps)
        results: dict[str, dict[str, float]] = {}
        batch_size = self.cfg.train.val_batch_size or self.cfg.train.batch_size
        for dataset in sets:
            acc = MetricAccumulator(**caps)
            loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate,
                                num_workers=self.cfg.data.num_workers, generator=torch.Generator().manual_seed(0))
            for batch in loader:
                batch = batch_to(batch, self.device)
                with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
                    pred = DepthTask.predict(self.model, batch)
                pred = pred.float().cpu().numpy()
                for i in range(pred.shape[0]):
                    gt, mask = batch["depth"][i, 0].cpu().numpy(), batch["mask"][i, 0].cpu().numpy()
                    acc.add(pred[i, 0], gt, mask=mask)
                    overall.add(pred[i, 0], gt, mask=mask)
            results[dataset.name] = acc.summary()
        results[pool] = overall.summary()
        return results

    def _barrier(self) -> None:
        if self.dist.enabled:
            dist.barrier()


# ---------------------------------------------------------------------- helpers


def freeze_batch_norm(model: nn.Module) -> None:
    """Put every batch-norm layer in eval mode: running statistics normalise, and stay as they are.

    Its affine weights still train. Inference normalises with the running statistics, so training
    then optimises exactly the function the Predictor runs, for samples with and without points.
    """
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def _repeated(spec: str, cfg: Config, base_dir: str | Path | None) -> list[RGBDDataset]:
    """One training dataset for "path[a:b]*N", listed N times (shared frames and cache)."""
    entry, times = split_repeat(spec)
    return [build_dataset(entry, cfg, True, base_dir)] * times


def _progress(total: int, done: int, desc: str, main: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, initial=done, desc=desc, disable=not (main and sys.stderr.isatty()), leave=False)


def _flatten(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}/"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _summary_line(record: dict[str, Any]) -> str:
    parts = [f"train loss {record['train_loss']:.4f}" if "train_loss" in record else "no finite step"]
    for name, metrics in record.get("val", {}).items():
        parts.append(f"{name} rmse {metrics['rmse']:.3f} abs_rel {metrics['abs_rel']:.3f} d1 {metrics['delta1']:.3f}")
    return "; ".join(parts)


def _yaml(data: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False)
