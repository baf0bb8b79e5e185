"""Run state of a training process (`fusanet_core.training.run_state`): RNG states, the metrics log."""

from __future__ import annotations

import json
from pathlib import Path
import random

import numpy as np
import torch

from fusanet_core.training.run_state import DistInfo, rng_state, seed_everything, set_rng_state, trim_metrics_log


def test_rng_state_round_trip_repeats_every_generator() -> None:
    seed_everything(3)
    state = rng_state()
    first = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(state)
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], again[0]) and np.array_equal(first[1], again[1]) and first[2] == again[2]


def test_one_process_is_the_main_and_not_distributed() -> None:
    info = DistInfo()
    assert info.main and not info.enabled and DistInfo(rank=1, world_size=2).enabled


def test_trim_metrics_log_keeps_what_the_checkpoint_covers(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    records = [{"event": "step", "epoch": 1, "step": 1}, {"event": "epoch", "epoch": 1, "step": 2},
               {"event": "step", "epoch": 2, "step": 3}, {"event": "epoch", "epoch": 2, "step": 4}]
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + '{"event": "st')  # a half-written line
    trim_metrics_log(path, epoch=2, step=3)  # resumed inside epoch 2, after step 3
    assert [json.loads(line) for line in path.read_text().splitlines()] == records[:3]
    trim_metrics_log(tmp_path / "absent.jsonl", 1, 1)  # nothing to trim: no error, no file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl"]
