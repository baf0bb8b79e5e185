"""The evaluation report (`fusanet_core.evaluation.report`): strict JSON, Markdown and plots of an Evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fusanet_core.evaluation.report import markdown_summary, write_report
from fusanet_core.evaluation.scoring import EvalSettings, Evaluation


def test_an_empty_run_writes_a_report_that_says_nothing_was_scored(tmp_path: Path) -> None:
    ev = Evaluation()
    ev.add_missing(7, "unpaired", "no ground truth")
    paths = write_report(ev, tmp_path / "out", {"bag": "x.mcap"})
    assert set(paths) == {"json", "markdown"}  # no scored frame: no plots, no panels
    data = json.loads(paths["json"].read_text())
    assert data["summary"] is None and data["counts"]["unpaired"] == 1 and data["meta"] == {"bag": "x.mcap"}
    md = paths["markdown"].read_text()
    assert md == markdown_summary(data) and "No frame could be scored" in md and "no ground truth" in md
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["report.json", "report.md"]  # no temp files


def test_panels_are_written_in_frame_order(tmp_path: Path) -> None:
    ev = Evaluation(EvalSettings(max_panels=2))
    gt = np.full((8, 8), 2.0, np.float32)
    for index in (3, 1):
        ev.add(index, gt * 1.1, gt, np.zeros((8, 8, 3), np.uint8))
    paths = write_report(ev, tmp_path, None)
    panels = [key for key in paths if key.startswith("panel_")]
    assert panels == sorted(panels) and all(paths[key].stat().st_size > 0 for key in panels)
    assert json.loads(paths["json"].read_text())["files"]["markdown"] == "report.md"
