"""Frame-by-frame scoring (`fusanet_core.evaluation.scoring`) and its report (`report.write_report`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fusanet_core.evaluation.metrics import compute_metrics
from fusanet_core.evaluation.report import write_report
from fusanet_core.evaluation.scoring import EvalSettings, Evaluation, PanelKeeper, parse_crop
from fusanet_core.io.bags import closest_topic


def test_crop_and_info_topic_parsing() -> None:
    assert parse_crop("") is None and parse_crop("none") is None and parse_crop("garg") == "garg"
    assert parse_crop("1,2,3,4") == (1, 2, 3, 4)
    with pytest.raises(ValueError, match="'diagonal'"):
        parse_crop("diagonal")
    infos = ["/cam/color/camera_info", "/cam/depth/camera_info"]
    assert closest_topic("/cam/depth/image_raw", infos) == "/cam/depth/camera_info"
    assert closest_topic("/other/image", infos) is None


def test_evaluation_scores_holes_as_coverage_and_counts_skips(tmp_path: Path) -> None:
    ev = Evaluation(EvalSettings(max_depth=10.0, max_panels=2))
    gt = np.full((12, 16), 2.0, np.float32)
    pred = np.full((12, 16), 2.5, np.float32)
    pred[:6] = np.nan  # the node publishes NaN where it has no prediction
    rec = ev.add(1, pred, gt, np.zeros((12, 16, 3), np.uint8))
    assert rec.status == "ok" and rec.coverage == pytest.approx(0.5)
    assert rec.metrics == pytest.approx(compute_metrics(pred[6:], gt[6:], max_depth=10.0))
    assert ev.add(2, pred, np.zeros_like(gt)).status == "no_valid_gt"
    assert ev.add(3, np.full_like(gt, np.nan), gt).status == "no_coverage"
    small = ev.add(4, np.full((6, 8), 2.5, np.float32), gt)  # same aspect ratio: resized, scored
    assert small.status == "ok" and small.metrics["abs_rel"] == pytest.approx(0.25)
    wide = ev.add(5, np.full((12, 32), 2.5, np.float32), gt)
    assert wide.status == "size_mismatch" and "aspect" in wide.message
    ev.add_missing(6, "unpaired", "no ground truth")
    paths = write_report(ev, tmp_path, {"mode": "test"})
    data = json.loads(paths["json"].read_text())  # strict JSON: NaN would not parse back as a number
    assert data["counts"]["ok"] == 2 and data["counts"]["no_valid_gt"] == 1 and data["counts"]["size_mismatch"] == 1
    assert data["summary"]["n_images"] == 2 and sum(data["error_histogram"]["counts"]) == 96 + 192
    assert any("resized" in n for n in data["notes"])
    md = paths["markdown"].read_text()
    assert "size_mismatch" in md and "| 0.2500 |" not in md.split("## Metrics")[0]
    for key in ("metrics_plot", "histogram_plot"):
        assert paths[key].stat().st_size > 1000


def test_panel_keeper_stays_bounded_and_spread() -> None:
    keeper = PanelKeeper(4)
    for i in range(100):
        if keeper.wants(i):
            keeper.add(i, i)
    assert len(keeper.panels) <= 4 and min(keeper.panels) == 0 and max(keeper.panels) >= 64
