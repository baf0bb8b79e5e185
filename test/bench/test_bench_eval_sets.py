"""bench/eval_sets.py: scores, pooling and the acceptance checks on synthetic numbers; one small real-data run."""

from __future__ import annotations

import json
from pathlib import Path
import sys

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import eval_sets  # noqa: E402, I100 (needs the sys.path insert above)
from eval_sets import label, MEDIAN  # noqa: E402


def test_the_truth_scores_perfectly_and_median_scaling_removes_only_the_scale():
    gt = np.linspace(0.5, 4.0, 48, dtype=np.float32).reshape(6, 8)
    gt[0, 0] = 0  # invalid: not scored
    exact = eval_sets.frame_scores(gt.copy(), gt, 10.0)
    assert exact["rmse"] == 0 and exact["abs_rel"] == 0 and exact["delta1"] == 1 and exact["ms_delta1"] == 1
    doubled = eval_sets.frame_scores(2 * gt, gt, 10.0)  # right structure, wrong scale
    assert doubled["delta1"] == 0 and doubled["ms_delta1"] == 1 and doubled["ms_abs_rel"] < 1e-6


def _frame(rmse: float, d1: float) -> dict:
    return {"rmse": rmse, "abs_rel": rmse / 4, "delta1": d1, "ms_abs_rel": rmse / 5, "ms_delta1": d1}


def _records(new: float, other: float) -> dict:
    """Two unseen sets of 1 and 3 frames; the new model's error `new`, the baselines' `other`."""
    methods = {"new": new, MEDIAN: other}
    for kind in ("exact", "noisy"):
        methods[label("new primed", 50, kind)] = new
        methods[label(eval_sets.NODE_DEFAULT, 50, kind)] = new
        methods[label("interpolation", 50, kind)] = other
    return {name: {m: [_frame(err * scale, 1 - err) for _ in range(frames)] for m, err in methods.items()}
            for name, frames, scale in (("a", 1, 1.0), ("b", 3, 2.0))}


def _sets() -> list:
    return [eval_sets.EvalSet("unseen", name, name, None, 10.0, [0]) for name in ("a", "b")]


def test_pools_weigh_frames_and_the_pass_column_follows_the_numbers():
    summaries = eval_sets.summarise_all(_records(0.1, 0.4), _sets())
    pooled = summaries["unseen pooled"]
    assert pooled["new"]["frames"] == 4
    assert np.isclose(pooled["new"]["rmse"], (0.1 + 3 * 0.2) / 4)  # frames weigh the same, not sets
    checks = eval_sets.acceptance(pooled, [20, 50])
    # vs the median; primed and the node default with 50 points, exact and noisy x RMSE and delta1 (no 200 run)
    assert len(checks) == 2 + 2 * 2 * 2
    assert all(c["pass"] for c in checks)
    assert "**Acceptance: PASS** (10 of 10" in "\n".join(eval_sets.acceptance_table(checks))

    flipped = eval_sets.acceptance(eval_sets.summarise_all(_records(0.4, 0.1), _sets())["unseen pooled"], [50])
    assert not any(c["pass"] for c in flipped)
    assert "**Acceptance: FAIL** (0 of 10" in "\n".join(eval_sets.acceptance_table(flipped))


def test_frames_are_spread_evenly_and_deterministically():
    assert eval_sets.spread(100, 5) == [0, 25, 50, 74, 99]
    assert eval_sets.spread(3, 20) == [0, 1, 2]
    assert eval_sets.set_name("../data/rs_d435_office/manifest.csv[198:248]") == "rs_d435_office[198:248]"
    assert eval_sets.set_name("/data/rs_tabletop") == "rs_tabletop"


def test_triangulated_and_noisy_points_are_compared_on_the_same_frames():
    es = eval_sets.EvalSet("val", "a", "a", None, 10.0, [0, 1, 2])
    es.point_errors = {"50 noisy": [np.array([0.01, -0.2]), np.array([0.0]), np.array([0.02])],
                       "50 triangulated": [np.array([0.05, np.nan, 0.3]), np.zeros(0), np.array([-0.01])]}
    per_kind = {"noisy": (0.1, 0.5, 0.3), "triangulated": (0.2, 0.4)}  # no triangulated row on frame 1
    records = {"a": {label(m, 50, kind): [_frame(err, 0.9) for err in errors]
                     for _, m in eval_sets.COMPARED for kind, errors in per_kind.items()}}
    stats = eval_sets.point_statistics_all([es], records, [50])
    tri, noisy = stats["a"]["50 triangulated"], stats["a"]["50 noisy"]
    assert tri["frames"] == 3 and tri["frames_without_points"] == 1 and tri["points_per_frame"] == 4 / 3
    assert tri["points_with_truth"] == 3 and np.isclose(tri["median_abs_rel"], 0.05)
    assert np.isclose(tri["outlier_share"], 1 / 3)
    assert np.isclose(noisy["interpolation"]["rmse"], 0.2) and noisy["interpolation"]["frames"] == 2  # frames 0 and 2
    assert np.isclose(tri["interpolation"]["rmse"], 0.3)
    assert stats[eval_sets.POSED_POOL]["50 noisy"]["frames"] == 3


def test_floor_rows_pool_the_frames_that_have_a_floor_and_the_target_is_judged():
    floor_rows = {eval_sets.floor_row(row): err for row, err in (("new", 2.0), (MEDIAN, 0.8), (eval_sets.FLOOR, 0.9))}
    records = _records(0.5, 0.5)
    records["b"].update({row: [{**_frame(err, 0.6), **({"floor_applied": 1.0} if eval_sets.FLOOR in row else {})}]
                         for row, err in floor_rows.items()})  # a floor on one of b's 3 frames, none in a
    summaries = eval_sets.summarise_all(records, _sets())
    floor = summaries["unseen pooled"][eval_sets.floor_row(eval_sets.FLOOR)]
    assert floor["frames"] == 1 and floor["rmse"] == 0.9 and floor["floor_applied"] == 1.0
    text = "\n".join(eval_sets.floor_section(summaries, _sets()))
    assert "| b | 1 of 3 | 100 % | new + floor |" in text and "| a |" not in text
    assert "RMSE (m) 0.900 (<= 1.0: pass), δ1 0.600 (>= 0.55: pass)" in text


def test_a_small_run_on_real_data_writes_every_output(shared_data, tiny_checkpoint, tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text("\n".join([
        "preset: tiny", "data:", "  kind: manifest",
        f"  train: ['{shared_data}/rs_home_floor/manifest.csv[0:1]']",
        f"  val: ['{shared_data}/rs_tabletop/manifest.csv[0:2]']",
        f"  unseen: ['{shared_data}/rs_home_floor/manifest.csv[0:3]',",
        f"           '{shared_data}/hololens_office_dvmvs/manifest.csv']",
    ]) + "\n")
    out = tmp_path / "out"
    checks = eval_sets.main(["--checkpoint", str(tiny_checkpoint), "--baseline-checkpoint", str(tiny_checkpoint),
                             "--config", str(config), "--out", str(out), "--frames-per-set", "1", "--points", "50",
                             "--fits", "scale", "--input-size", "60", "80",  # a small network input: fast
                             "--extra-sets", str(shared_data / "middlebury_motorcycle_skimage")])
    results = json.loads((out / "results.json").read_text())
    assert [s["name"] for s in results["sets"]] == ["rs_tabletop[0:2]", "rs_home_floor[0:3]", "hololens_office_dvmvs",
                                                    "middlebury_motorcycle_skimage"]
    assert results["sets"][2]["frames"] == [0]
    pooled = results["summary"]["unseen pooled"]
    # every method on the same frames; the floor rows on those of them where the ground truth shows a floor
    assert {row["frames"] for name, row in pooled.items() if not name.endswith("floor frames")} == {2}
    floor = pooled[eval_sets.floor_row(eval_sets.FLOOR)]
    assert 1 <= floor["frames"] <= 2 and 0.0 <= floor["floor_applied"] <= 1.0
    assert pooled[eval_sets.floor_row("new")]["frames"] == floor["frames"]
    # the same points for every method: the old model (here the same checkpoint) scores as the new one
    for kind in ("exact", "noisy"):
        assert pooled[label("old primed", 50, kind)] == pooled[label("new primed", 50, kind)]
        assert pooled[label("new + scale fit", 50, kind)]["points"] == 50
    assert MEDIAN in results["summary"]["other pooled"]
    assert results["acceptance"] == checks and len(checks) == 2 + 2 * 2  # triangulated rows are not checked
    # the HoloLens walk has poses: points triangulated from its neighbouring frames, scored like the others
    tri = results["summary"]["hololens_office_dvmvs"][label("interpolation", 50, "triangulated")]
    assert tri["frames"] == 1 and 10 <= tri["points"] <= 50
    assert label("new primed", 50, "triangulated") not in pooled  # rs_home_floor has no poses
    assert set(results["point_stats"]) == {"hololens_office_dvmvs", eval_sets.POSED_POOL}
    assert results["point_stats"][eval_sets.POSED_POOL]["50 triangulated"]["median_abs_rel"] < 0.05
    assert results["summary"][eval_sets.POSED_POOL]["new"]["frames"] == 1
    text = (out / "results.md").read_text()
    assert "### Unseen sets" in text and "### Acceptance, unseen pooled" in text and "| unseen pooled | 2 |" in text
    assert "| posed pooled | 50 triangulated | 1 (0) | 1 |" in text
    for name in ("per_set_bars.png", "rmse_vs_points.png", "panels.png"):
        assert 0 < (out / name).stat().st_size < 200_000, name
