"""report.md and plots of a fine-tuning run: before/after on its validation frames, the learning curve."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .before_after import POINT_COLUMNS, RGB_COLUMNS
from .report import new_figure
from ..checkpoint import atomic_write

NAMES = {"rmse": "RMSE (m)", "abs_rel": "abs_rel", "delta1": "δ1", "ms_abs_rel": "median-scaled abs_rel"}


def learning_curve(metrics_path: Path) -> list[tuple[float, float]]:
    """(minutes into the run, validation RMSE at the network's input size) per validation."""
    curve = []
    if metrics_path.is_file():
        for line in metrics_path.read_text().splitlines():
            record = json.loads(line)
            if record.get("event") == "epoch" and "val" in record and "seconds" in record:
                curve.append((record["seconds"] / 60.0, record["val"]["all"]["rmse"]))
    return curve


def markdown(report: dict[str, Any]) -> str:
    """Return the report's text: what was tuned on and how, then before/after tables."""
    before, after = report["before"], report["after"]
    lines = ["# Fine-tuning report", "",
             f"- tuned at {report['tuned_at']} from `{Path(report['checkpoint']).name}` "
             f"(sha256 {report['checkpoint_sha256'][:12]}), {report['steps']} steps in {report['minutes']} min; "
             f"stopped by the {report['stopped']}; weights of `run/{report['weights_from']}`",
             f"- settings: {', '.join(f'{k} {v}' for k, v in report['settings'].items())}", "",
             "| recording | training frames | validation frames (last 20 %) | skipped |", "|---|---|---|---|"]
    for spec, n in report["frames"].items():
        skipped = ", ".join(f"{count} {why}" for why, count in n["skipped"].items()) or "none"
        lines.append(f"| `{spec}` | {n['train']} | {n['val']} | {skipped} |")
    lines += ["", f"## Validation frames ({after['n']}), full resolution, intrinsics given", "",
              "RGB only:", "", "| | " + " | ".join(NAMES[c] for c in RGB_COLUMNS) + " |",
              "|---" * (len(RGB_COLUMNS) + 1) + "|"]
    for name, scores in (("before", before), ("after", after)):
        lines.append(f"| {name} | " + " | ".join(f"{scores[c]:.3f}" for c in RGB_COLUMNS) + " |")
    counts = sorted({int(key.split("@")[1]) for key in after if "@" in key})
    if counts:
        lines += ["", "With known points (exact SIFT keypoints), the node's default (RGB-only network fitted "
                  "through them, `scale_from_points: scale_local`), RMSE m / δ1:", "",
                  "| | " + " | ".join(f"{k} points" for k in counts) + " |", "|---" * (len(counts) + 1) + "|"]
        for name, scores in (("before", before), ("after", after)):
            cells = [" / ".join(f"{scores[f'{c}@{k}']:.3f}" for c in POINT_COLUMNS) for k in counts]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "![validation RMSE vs minutes](val_rmse_vs_minutes.png)", "",
              "![per validation frame](val_frames.png)", "",
              "Load it: `ros2 launch fusanet depth.launch.py checkpoint:=<this folder>/finetuned.pt` or "
              "`fusanet predict --checkpoint <this folder>/finetuned.pt ...`. Its confidence calibration "
              "(if the start had one) is the start's, not refitted to the new weights.", ""]
    return "\n".join(lines)


def write_report(out: Path, report: dict[str, Any], metrics_path: Path) -> None:
    """Write report.md, val_rmse_vs_minutes.png and val_frames.png into `out` (each atomically)."""
    _save(out / "val_rmse_vs_minutes.png", _curve_figure(learning_curve(metrics_path)))
    _save(out / "val_frames.png", _frames_figure(report["before"]["frames"], report["after"]["frames"]))
    with atomic_write(out / "report.md") as tmp:
        tmp.write_text(markdown(report), encoding="utf-8")


def _save(path: Path, fig: Any) -> None:
    with atomic_write(path) as tmp:
        fig.savefig(tmp, format="png")


def _curve_figure(curve: list[tuple[float, float]]) -> Any:
    fig = new_figure(6.0, 3.5)
    ax = fig.add_subplot(111)
    if curve:
        ax.plot([m for m, _ in curve], [r for _, r in curve], "o-", color="tab:red", markersize=3)
    ax.set_xlabel("minutes of fine-tuning")
    ax.set_ylabel("validation RMSE (m, network input size)")
    ax.set_title("learning curve")
    ax.grid(alpha=0.3)
    return fig


def _frames_figure(before: list[dict], after: list[dict]) -> Any:
    fig = new_figure(8.0, 3.5)
    ax = fig.add_subplot(111)
    ax.plot([f["rmse"] for f in before], "o-", color="tab:gray", markersize=3, label="before")
    ax.plot([f["rmse"] for f in after], "o-", color="tab:green", markersize=3, label="after")
    ax.set_xlabel("validation frame (time order)")
    ax.set_ylabel("RMSE (m), RGB only")
    ax.legend()
    ax.grid(alpha=0.3)
    return fig
