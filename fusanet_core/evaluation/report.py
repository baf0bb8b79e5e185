"""The evaluation report: the files of an `Evaluation` (scoring.py).

Report files: report.json (everything), report.md (summary), metrics_over_time.png (per-frame
RMSE and delta1 against the stamp), error_histogram.png (relative error (pred - gt) / gt over all
scored pixels) and panel_NNNN.png (RGB | ground truth | prediction | relative error) for a few
frames spread over the run.
"""

from __future__ import annotations

from collections.abc import Sequence
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from fusanet_core.checkpoint import atomic_write
from fusanet_core.evaluation.metrics import METRIC_NAMES
from fusanet_core.evaluation.scoring import Evaluation, FrameRecord, HIST_EDGES
from fusanet_core.io.images import write_rgb


def write_report(evaluation: Evaluation, out_dir: str | Path, meta: dict[str, Any] | None = None) -> dict[str, Path]:
    """Write report.json, report.md and the plots of `evaluation` into `out_dir`; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = evaluation.to_dict(dict(meta or {}))
    paths = {"json": out / "report.json", "markdown": out / "report.md"}
    paths.update(_write_plots(evaluation, out))
    data["files"] = {k: v.name for k, v in paths.items()}
    # Temp file + rename: a report interrupted by a second Ctrl-C is never half written.
    _write_text(paths["json"], json.dumps(_clean(data), indent=2, allow_nan=False) + "\n")
    _write_text(paths["markdown"], markdown_summary(data))
    return paths


def _write_plots(evaluation: Evaluation, out: Path) -> dict[str, Path]:
    paths: dict[str, Path] = {}
    scored = sorted((f for f in evaluation.frames if f.status == "ok"), key=lambda f: f.stamp_ns)
    if scored:
        paths["metrics_plot"] = plot_metrics_over_time(out / "metrics_over_time.png", scored)
        paths["histogram_plot"] = plot_histogram(out / "error_histogram.png", evaluation.histogram)
    for index, panel in evaluation.panels():
        path = out / f"panel_{index:04d}.png"
        write_rgb(path, panel)
        paths[f"panel_{index:04d}"] = path
    return paths


def _write_text(path: Path, text: str) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


# ------------------------------------------------------------------------------------- plots
def new_figure(width: float = 8.0, height: float = 4.0) -> Any:
    # The object-oriented API with the Agg canvas: no pyplot global state, no backend switch.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def plot_metrics_over_time(path: Path, frames: Sequence[FrameRecord]) -> Path:
    """Per-frame RMSE and delta1 against time since the first scored stamp."""
    t0 = frames[0].stamp_ns
    t = [(f.stamp_ns - t0) * 1e-9 for f in frames]
    fig = new_figure()
    ax = fig.add_subplot(111)
    ax.plot(t, [f.metrics["rmse"] for f in frames], "o-", color="tab:red", markersize=3, label="RMSE (m)")
    ax.set_xlabel("time since first frame (s)")
    ax.set_ylabel("RMSE (m)", color="tab:red")
    ax2 = ax.twinx()
    ax2.plot(t, [f.metrics["delta1"] for f in frames], "s-", color="tab:blue", markersize=3, label="delta1")
    ax2.set_ylabel("delta1 (fraction < 1.25)", color="tab:blue")
    ax2.set_ylim(0, 1.05)
    ax.set_title(f"per-frame RMSE and delta1 ({len(frames)} scored frames)")
    ax.grid(alpha=0.3)
    fig.savefig(path)
    return path


def plot_histogram(path: Path, counts: np.ndarray) -> Path:
    """Relative error histogram over every scored pixel."""
    fig = new_figure()
    ax = fig.add_subplot(111)
    total = max(int(counts.sum()), 1)
    ax.bar(HIST_EDGES[:-1] * 100, counts / total * 100, width=np.diff(HIST_EDGES) * 100, align="edge", color="tab:gray")
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("relative error (pred - gt) / gt (%), clipped to +-100 %")
    ax.set_ylabel("share of scored pixels (%)")
    ax.set_title(f"error histogram ({total} pixels)")
    ax.grid(alpha=0.3)
    fig.savefig(path)
    return path


# ---------------------------------------------------------------------------------- markdown
def markdown_summary(data: dict[str, Any]) -> str:
    """Human-readable summary of a report dict (as `Evaluation.to_dict` makes it)."""
    meta, counts, summary = data["meta"], data["counts"], data["summary"]
    lines = ["# FuSaNet depth evaluation", ""]
    for key, value in meta.items():
        if isinstance(value, dict):
            lines += [f"- **{key}**:"] + [f"  - {k}: {_md_value(v)}" for k, v in value.items()]
        else:
            lines.append(f"- **{key}**: {_md_value(value)}")
    st = data["settings"]
    lines += [f"- **depth range**: {st['min_depth']}-{st['max_depth']} m, crop: {st['crop'] or 'none'}, "
              "no median scaling",
              f"- **scored pixels**: {st['pixels']}", f"- **resize**: {st['resize']}", "", "## Frames", "",
              "| " + " | ".join(counts) + " |", "|" + "---|" * len(counts),
              "| " + " | ".join(str(v) for v in counts.values()) + " |", ""]
    lines += ["## Metrics (mean over scored frames)", ""]
    if summary is None:
        lines += ["No frame could be scored: see the frame counts and notes.", ""]
    else:
        names = [n for n in (*METRIC_NAMES, "coverage") if n in summary]
        lines += ["| " + " | ".join(names) + " |", "|" + "---:|" * len(names),
                  "| " + " | ".join(f"{summary[n]:.4f}" for n in names) + " |", "",
                  f"{summary['n_images']} frames, {summary['n_valid']} scored pixels. rmse, mae, sq_rel in metres; "
                  "abs_rel, delta and coverage as fractions; silog = 100 sqrt(si); imae / irmse in 1/km.", ""]
    if data.get("latency_ms"):
        lat = data["latency_ms"]
        lines += ["## Latency (prediction arrival - input arrival)", "",
                  f"p50 {lat['p50']:.1f} ms, p95 {lat['p95']:.1f} ms, mean {lat['mean']:.1f} ms, "
                  f"max {lat['max']:.1f} ms over {lat['n']} frames.", ""]
    if data["notes"]:
        lines += ["## Notes", ""] + [f"- {n}" for n in data["notes"]] + [""]
    problems = [f for f in data["frames"] if f["status"] != "ok"]
    if problems:
        lines += ["## Frames not scored", "", "| frame | stamp (s) | status | reason |", "|---:|---:|---|---|"]
        lines += [f"| {f['index']} | {f['stamp_ns'] * 1e-9:.3f} | {f['status']} | {f['message']} |"
                  for f in problems[:50]]
        lines += [f"| ... | | | {len(problems) - 50} more in report.json |"] if len(problems) > 50 else []
        lines.append("")
    images = [(k, v) for k, v in data.get("files", {}).items() if v.endswith(".png")]
    if images:
        lines += ["## Plots", ""] + [f"![{k}]({v})" for k, v in images] + [""]
    return "\n".join(lines)


def _md_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in value)
    return str(value)


# ------------------------------------------------------------------------------------ helpers
def _clean(value: Any) -> Any:
    """JSON-safe copy: NaN / inf -> None, numpy scalars -> Python numbers, tuples -> lists."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    return value
