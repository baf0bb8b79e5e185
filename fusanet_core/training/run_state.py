"""Run state of a training process: the process group, RNG states, the metrics log and tensorboard.

What the trainer needs around its loop but not inside it: joining the process group torchrun
describes, saving and restoring every global RNG (so a resumed run draws what the lost part would
have drawn), cutting metrics.jsonl back to a resumed checkpoint and opening tensorboard.
"""

from __future__ import annotations

from dataclasses import dataclass
import json
import logging
import os
from pathlib import Path
import random
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from ..checkpoint import atomic_write

log = logging.getLogger(__name__)


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group torchrun describes in the environment (no-op for one process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def rng_state() -> dict[str, Any]:
    """Return the torch / numpy / python global RNG states as plain data (weights_only-loadable)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    npy = state["numpy"]
    np.random.set_state((npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                         npy["cached"]))
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def trim_metrics_log(path: Path, epoch: int, step: int) -> None:
    """Drop the metrics.jsonl records of the part of the run after the resumed checkpoint (`epoch`, `step`).

    A half-written last line is dropped too: the resumed run repeats those steps and logs them again.
    """
    if not path.is_file():
        return
    kept, dropped = [], 0
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
            keep = (record["epoch"] < epoch if record.get("event") == "epoch"
                    else record["step"] <= step)
        except (ValueError, KeyError, TypeError):
            keep = False
        kept += [line] if keep else []
        dropped += 0 if keep else 1
    if dropped:
        with atomic_write(path) as tmp:
            tmp.write_text("".join(f"{line}\n" for line in kept))
        log.info("metrics.jsonl: %d records after step %d dropped (they are logged again)", dropped, step)


def open_tensorboard(out_dir: Path, step: int) -> Any:
    """Return a SummaryWriter on `<out_dir>/tb`, or None when tensorboard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional; metrics.jsonl always exists
        return None
    # A resumed run purges the events the lost part wrote after the checkpoint (as metrics.jsonl).
    return SummaryWriter(str(out_dir / "tb"), purge_step=step + 1 if step else None)
