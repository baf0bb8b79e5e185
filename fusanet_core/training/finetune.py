"""Teach the model a robot's building: fine-tune on its own recordings (`fusanet finetune`).

One call does it all. Each recording (manifest, NYU/KITTI list file or ROS bag) is read once:
frames that fail to load or hold no valid depth are skipped and counted, and the rest is split by
time, the last 20 % for validation (never random frames: neighbouring frames are near copies).
Training starts from a checkpoint (the bundled one by default) with its preset and input size,
batch-norm statistics frozen (docs/training.md "Batch norm and points"), for a budget in minutes,
and stops early when validation stops improving. The output folder gets `finetuned.pt` (the
weights plus what they were tuned on, when and how), `report.md` with before/after scores and
plots, and the run itself (`run/`), so a killed call resumes where it stopped.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
import datetime
import json
import logging
from pathlib import Path
import shutil
from typing import Any

from .trainer import Trainer
from ..checkpoint import atomic_write, default_checkpoint, file_sha256, load_weights, read_checkpoint, save_checkpoint
from ..config import Config, config_from_dict
from ..datasets import build_source, dataset_from_source, FrameSource, SubsetSource
from ..datasets.base import valid_depth
from ..evaluation.before_after import node_default_predictor, score_frames
from ..evaluation.finetune_report import write_report

log = logging.getLogger(__name__)

VAL_SHARE = 0.2  # the last fifth of each recording validates
MIN_VALID_SHARE = 0.002  # a frame with less valid depth teaches nothing (a sparse LiDAR image has ~4 %)
REQUEST_FILE = "finetune.json"
RESULT_FILE = "finetuned.pt"
OUR_FILES = {REQUEST_FILE, RESULT_FILE, "report.md", "before.json", "run", "val_rmse_vs_minutes.png",
             "val_frames.png"}


class FinetuneError(ValueError):
    """Input that cannot be fine-tuned on, explained in one line."""


@dataclass
class FinetuneSettings:
    """How a fine-tuning run trains (measured choices: BENCHMARKS.md "Teach it your building")."""

    minutes: float = 15.0
    max_steps: int = 0  # also stop after this many steps (0 = the budget alone)
    batch_size: int = 8
    lr: float = 2e-4
    backbone_lr_scale: float = 0.2
    augment: bool = False
    zero_points_prob: float = 0.4  # the rest of the samples carry points: priming keeps working
    patience: int = 4  # validations without a new best before stopping early
    device: str = "auto"
    threads: int = 0  # torch threads (0 = torch's default)
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.minutes > 0:
            raise FinetuneError(f"--minutes must be > 0, got {self.minutes}")
        if self.max_steps < 0:
            raise FinetuneError(f"--max-steps must be >= 0, got {self.max_steps}")
        if self.batch_size < 1:
            raise FinetuneError(f"--batch-size must be >= 1, got {self.batch_size}")


@dataclass
class Recording:
    """One recording after the scan: its usable frames in time order and what was skipped."""

    spec: str
    source: FrameSource
    usable: list[int]
    skipped: Counter = field(default_factory=Counter)

    def split(self) -> tuple[list[int], list[int]]:
        """(training frames, validation frames): the last VAL_SHARE of the usable ones validate."""
        n_val = max(1, int(round(VAL_SHARE * len(self.usable))))
        return self.usable[:-n_val], self.usable[-n_val:]


def scan_recording(spec: str, cfg: Config) -> Recording:
    """Open a recording and try every frame once; raises FinetuneError when none is usable."""
    try:
        source = build_source(spec, cfg)
    except (ValueError, FileNotFoundError, OSError) as err:
        raise FinetuneError(f"{spec}: {_cli_names(str(err))}") from None
    recording = Recording(spec, source, [])
    for index in range(len(source)):
        try:
            frame = source.load(index)
        except (ValueError, OSError) as err:
            recording.skipped[_skip_reason(err)] += 1
            continue
        if valid_depth(frame.depth, cfg.data.max_depth).mean() < MIN_VALID_SHARE:
            recording.skipped["no valid depth"] += 1
            continue
        recording.usable.append(index)
    if len(recording.usable) < 2:
        reasons = ", ".join(f"{n} {why}" for why, n in recording.skipped.most_common()) or "too few frames"
        raise FinetuneError(f"{spec}: {len(recording.usable)} usable frame(s) of {len(source)} ({reasons}); "
                            "fine-tuning needs colour with registered, valid depth")
    if recording.skipped:
        log.warning("%s: skipped %d of %d frames (%s)", spec, sum(recording.skipped.values()), len(source),
                    ", ".join(f"{n} {why}" for why, n in recording.skipped.items()))
    return recording


def _cli_names(text: str) -> str:
    """Name the command's options where a data error names the config keys they set."""
    for key, option in (("data.bag_rgb_topic", "--image-topic"), ("data.bag_depth_topic", "--depth-topic"),
                        ("data.bag_info_topic", "--camera-info-topic")):
        text = text.replace(key, option)
    return text


def _skip_reason(err: Exception) -> str:
    text = str(err)
    if "but depth is" in text:
        return "depth size differs from colour (not registered to it)"
    return "unreadable"


def finetune_config(base: Config, settings: FinetuneSettings, checkpoint: Path, out_dir: Path) -> Config:
    """Return the run's config: the checkpoint's model and input size, the fine-tuning recipe."""
    data = base.to_dict()
    size = list(base.inference.input_size or base.data.image_size)
    data["data"].update({"train": [], "val": [], "unseen": [], "image_size": size, "crop_size": [],
                         "augment": settings.augment, "zoom_min": 1.0, "num_workers": 0})
    data["points"].update({"zero_points_prob": settings.zero_points_prob})
    data["train"].update({
        "init_from": str(checkpoint), "batch_norm": "frozen", "epochs": 10_000, "max_steps": settings.max_steps,
        "max_minutes": settings.minutes, "early_stop_patience": settings.patience, "batch_size": settings.batch_size,
        "lr": settings.lr, "backbone_lr_scale": settings.backbone_lr_scale, "lr_decay_start": 10_000,
        "lr_cooldown_epochs": 0, "out_dir": str(out_dir / "run"), "checkpoint_every_min": 1.0, "val_every": 1,
        "log_every": 5, "device": settings.device, "threads": settings.threads, "seed": settings.seed,
    })
    return config_from_dict(data)


def finetune(data: list[str], out: str | Path, settings: FinetuneSettings | None = None,
             checkpoint: str | Path | None = None, topics: tuple[str, str, str] = ("", "", ""),
             force: bool = False) -> dict[str, Any]:
    """Fine-tune on recordings; returns the summary that report.md shows.

    Args:
        data: recordings (manifest CSVs or folders, list files, ROS bags; "[a:b]" ranges allowed).
        out: output folder (created; a folder holding this same request resumes it).
        settings: the recipe (default: FinetuneSettings()).
        checkpoint: the starting weights (default: the bundled checkpoint).
        topics: bags' (colour image, depth image, colour camera_info) topics, "" = auto-detect.
        force: start afresh in a folder that holds another fine-tuning run.
    """
    settings = settings or FinetuneSettings()
    if not data:
        raise FinetuneError("no recording given")
    out = Path(out)
    start = Path(checkpoint) if checkpoint else default_checkpoint()
    _, base = read_checkpoint(start)
    base.data.bag_rgb_topic, base.data.bag_depth_topic, base.data.bag_info_topic = topics
    cfg = finetune_config(base, settings, start.resolve(), out)
    recordings = [scan_recording(spec, cfg) for spec in data]
    splits = [recording.split() for recording in recordings]
    n_train = sum(len(train) for train, _ in splits)
    if n_train < settings.batch_size:
        raise FinetuneError(f"{n_train} training frame(s) after the time split, fewer than one batch of "
                            f"{settings.batch_size}: record longer or pass a smaller --batch-size")
    request = {"data": [str(spec) for spec in data], "checkpoint": str(start.resolve()),
               "checkpoint_sha256": file_sha256(start), "topics": list(topics), "settings": asdict(settings)}
    resume = _prepare_folder(out, request, force)

    train_sets = [dataset_from_source(SubsetSource(r.source, train, f"{r.source.name}[train]"), cfg, True)
                  for r, (train, _) in zip(recordings, splits)]
    val_sources = [SubsetSource(r.source, val, f"{r.source.name}[val]") for r, (_, val) in zip(recordings, splits)]
    val_sets = [dataset_from_source(source, cfg, False) for source in val_sources]
    before = _scores_before(out, start, val_sources, cfg, settings.device)

    trainer = Trainer(cfg, resume=resume, force=resume is None, datasets=(train_sets, val_sets))
    trainer.fit()
    info = {**request, **_keep_best(trainer, out / "run"),
            "frames": {r.spec: {"train": len(train), "val": len(val), "skipped": dict(r.skipped)}
                       for r, (train, val) in zip(recordings, splits)}}
    result = save_checkpoint(out / RESULT_FILE, trainer.model, cfg, half=True, finetune=info)
    after = score_frames(node_default_predictor(str(result), settings.device), _frames(val_sources),
                         max_depth=cfg.data.max_depth)
    report = {**info, "before": before, "after": after}
    write_report(out, report, out / "run" / "metrics.jsonl")
    return report


def _prepare_folder(out: Path, request: dict[str, Any], force: bool) -> Path | None:
    """Check the output folder; return the checkpoint to resume, or None to start afresh."""
    request_file = out / REQUEST_FILE
    if out.exists() and not out.is_dir():
        raise FinetuneError(f"--out {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not request_file.is_file():
            raise FinetuneError(f"--out {out} is not empty and holds no fine-tuning run: choose an empty or new folder")
        held = _read_request(request_file)
        if held != request and not force:
            what = f"another fine-tuning run (of {', '.join(map(str, held.get('data', [])))})" if held else \
                f"an unreadable {REQUEST_FILE}"
            raise FinetuneError(f"--out {out} holds {what}; choose another folder, or pass --force to replace it")
        if held != request or force:
            for name in OUR_FILES:
                path = out / name
                shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(request_file) as tmp:
        tmp.write_text(json.dumps(request, indent=2))
    last = out / "run" / "last.pt"
    if last.is_file():
        log.info("resuming the fine-tuning run in %s", out)
        return last
    return None


def _read_request(path: Path) -> dict[str, Any] | None:
    """Return the request a folder's run was made for (None when the file is not a readable request)."""
    try:
        held = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return held if isinstance(held, dict) else None


def _frames(sources: list[SubsetSource]):
    for source in sources:
        for index in range(len(source)):
            yield source.load(index)


def _scores_before(out: Path, start: Path, val_sources: list[SubsetSource], cfg: Config, device: str) -> dict:
    """Score the starting checkpoint on the validation frames (kept in before.json for a resume)."""
    cached = out / "before.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    log.info("scoring %s on the validation frames before fine-tuning", start.name)
    scores = score_frames(node_default_predictor(str(start), device), _frames(val_sources),
                          max_depth=cfg.data.max_depth)
    with atomic_write(cached) as tmp:
        tmp.write_text(json.dumps(scores))
    return scores


def _keep_best(trainer: Trainer, run: Path) -> dict[str, Any]:
    """Load the run's best validated weights (its last ones when it never validated) into the model."""
    best = run / ("best.pt" if (run / "best.pt").is_file() else "last.pt")
    payload, _ = read_checkpoint(best)
    load_weights(trainer.model, payload["model"], best)
    return {"tuned_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "weights_from": best.name, "steps": trainer.state.step, "minutes": round(trainer.state.seconds / 60.0, 2),
            "stopped": _why_stopped(trainer, trainer.cfg)}


def _why_stopped(trainer: Trainer, cfg: Config) -> str:
    if trainer.validation_stalled():
        return f"validation stopped improving ({cfg.train.early_stop_patience} validations without a new best)"
    if cfg.train.max_steps and trainer.state.step >= cfg.train.max_steps:
        return f"step limit ({cfg.train.max_steps})"
    return f"time budget ({cfg.train.max_minutes:g} min)"
