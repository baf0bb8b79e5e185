"""Calibrate a checkpoint's confidence: P(relative error < bound) from the raw confidence and the known points.

Runs the Predictor as the depth node does by default (manifest intrinsics passed; RGB-only
network, `scale_local` fit) on up to --frames-per-set frames spread evenly over every validation
block of the config (`data.val`), once without points and once per --points count (SIFT
keypoints with 3 % noise and 5 % outliers, bench/eval_sets.py's "noisy" points). On
--pixels-per-frame seeded random valid ground-truth pixels per frame and condition (full
ground-truth resolution, caps 1e-3..10 m) it fits `fusanet_core.inference.confidence`'s score (logistic
regression on the raw confidence and the distance to the fit's points) and the monotone map of
that score, and writes a copy of the checkpoint (fp16, its training info kept, as
bench/bundle_checkpoint.py does) with both in `inference.confidence_*`. The unseen sets
(`data.unseen`, never trained on) are scored the same way but never fitted on: they show whether
the probability holds on other rooms and sensors.

Prints Markdown: per confidence bin (raw: the validation pixels' quantile bins; calibrated:
tenths of [0, 1]), for validation and unseen, without and with points, the share of pixels,
their mean confidence and the observed share within the bound; per set the mean calibrated
confidence against the observed share; what a threshold keeps. The plot (--plot): observed share
within the bound against calibrated confidence, with the diagonal, per group and condition; and
the median relative error per raw-confidence bin.

Usage:
    python bench/calibrate_confidence.py --checkpoint runs/all/best.pt --config config/train_all.yaml \
        --out fusanet_core/weights/NEW.pt --plot docs/img/confidence_reliability.png \
        [--frames-per-set 30] [--bound 0.1] [--points 50 200]
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path
import time
import zlib

from bundle_checkpoint import trained_info
from eval_sets import collect_sets, EvalSet, frame_points, MIN_DEPTH, pyplot, save_small
import numpy as np
import torch

from fusanet_core import load_config, Predictor
from fusanet_core.checkpoint import load_model, read_checkpoint, save_checkpoint
from fusanet_core.evaluation.metrics import valid_mask
from fusanet_core.inference.confidence import (
    Calibration,
    FEATURES,
    fit_calibration,
    kept_by_threshold,
    quantile_edges,
    reliability,
    score_features,
)
from fusanet_core.inference.point_fit import fit_to_points

GROUPS = ("val", "unseen")  # fitted on; checked only
TABLE_BINS = 10


NO_POINTS = "no points"
FIT = "scale_local"  # the depth node's default fit (with prime_with_points false)


def sample_set(es: EvalSet, predictor: Predictor, pixels: int, seed: int, counts: list[int]) -> tuple[dict, int]:
    """Return ({condition: (raw confidence, score features, relative error)}, frames used) at seeded valid pixels.

    Conditions: NO_POINTS and "K points" per count; the same pixels in every condition.
    """
    found: dict[str, list[tuple]] = {}
    used = 0
    for index in es.indices:
        frame = es.source.load(index)
        valid_map = valid_mask(frame.depth.astype(np.float64), min_depth=MIN_DEPTH, max_depth=es.cap)
        valid = np.flatnonzero(valid_map)
        if not valid.size:
            es.skipped += 1
            continue
        # one seed per set and frame: the same pixels whatever else the run scores
        key = [seed, zlib.crc32(es.name.encode()), index]
        pick = np.random.default_rng(key).choice(valid, min(pixels, valid.size), replace=False)
        gt = frame.depth.ravel()[pick].astype(np.float64)
        points = frame_points(frame, valid_map, counts, key)
        result = predictor.predict(frame.rgb, frame.intrinsics)  # RGB only: the node's default network run
        raw = result["confidence"]
        for condition, pts in [(NO_POINTS, None), *((f"{c} points", points[(c, "noisy")]) for c in counts)]:
            # the Predictor's scale_local fit, done here to see its anchors (predictor.py _fit_points)
            fit = fit_to_points(result["depth"], pts, FIT if pts is not None else "none")
            features = score_features(raw, fit.anchor_pixels()).reshape(-1, 1 + len(FEATURES))[pick]
            depth = fit.apply(result["depth"]).ravel()[pick]
            found.setdefault(condition, []).append((raw.ravel()[pick], features, np.abs(depth - gt) / gt))
        used += 1
    return {c: tuple(np.concatenate(parts) for parts in zip(*rows)) for c, rows in found.items()}, used


def pooled(per_set: list[tuple[EvalSet, int, dict]], group: str, conditions: list[str] | None = None) -> tuple | None:
    """Return (raw, features, relative error) of a group's sets (and conditions, default all); None if empty."""
    chosen = [parts for es, _, samples in per_set if es.group == group
              for condition, parts in samples.items() if conditions is None or condition in conditions]
    if not chosen:
        return None
    return tuple(np.concatenate(column) for column in zip(*chosen))


def bin_table(title: str, samples: dict[str, tuple], edges: np.ndarray, bound: float) -> list[str]:
    """Markdown table: one row per bin that holds pixels, share / mean confidence / observed share within per group."""
    header = "| bin | " + " | ".join(f"{g} share | {g} mean conf | {g} rel err < {bound:g}" for g in samples) + " |"
    rows = {g: reliability(conf, rel, bound, edges) for g, (conf, rel) in samples.items()}
    lines = [f"**{title}**", "", header, "|---" * (1 + 3 * len(samples)) + "|"]
    for i in range(len(edges) - 1):
        if not any(rows[g][i]["pixels"] for g in rows):
            continue
        first = rows[next(iter(rows))][i]
        cells = [cell for g in rows for cell in _bin_cells(rows[g][i])]
        lines.append(f"| {first['lo']:.3f}-{first['hi']:.3f} | " + " | ".join(cells) + " |")
    return lines


def _bin_cells(row: dict) -> list[str]:
    if not row["pixels"]:
        return ["0.0 %", "-", "-"]
    return [f"{100 * row['share']:.1f} %", f"{row['mean_confidence']:.3f}", f"{100 * row['within']:.1f} %"]


def threshold_lines(samples: dict[str, dict[str, tuple]], bound: float, thresholds: list[float]) -> list[str]:
    """One line per kind (raw / calibrated), group and threshold: what a threshold keeps."""
    lines = []
    for kind, groups in samples.items():
        for group, (conf, rel) in groups.items():
            for t in thresholds:
                kept, within = kept_by_threshold(conf, rel, bound, t)
                share = "-" if np.isnan(within) else f"{100 * within:.1f} %"
                lines.append(f"- {kind}, {group}: threshold {t:g} keeps {100 * kept:.1f} % of pixels, of which "
                             f"{share} are within the bound (all pixels: {100 * np.mean(rel < bound):.1f} %)")
    return lines


def set_table(per_set: list[tuple[EvalSet, int, dict]], calibration: Calibration) -> list[str]:
    """Markdown table: per set and condition, the mean calibrated confidence against the observed share within."""
    lines = ["| set | group | points | frames | pixels | mean calibrated conf | observed rel err < "
             f"{calibration.bound:g} | median rel err |", "|---|---|---|---|---|---|---|---|"]
    for es, frames, samples in per_set:
        for condition, (_, features, rel) in samples.items():
            lines.append(f"| {es.name} | {es.group} | {condition} | {frames} | {rel.size} | "
                         f"{calibration.apply_features(features).mean():.3f} | "
                         f"{100 * np.mean(rel < calibration.bound):.1f} % | {np.median(rel):.3f} |")
    return lines


def plot(path: Path, samples: dict[str, dict[str, tuple]], raw_edges: np.ndarray, bound: float) -> None:
    """Reliability (observed share within vs calibrated confidence) and median error per raw-confidence bin."""
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2))
    left.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect calibration")
    for group, (conf, rel) in samples["calibrated"].items():
        rows = [r for r in reliability(conf, rel, bound, TABLE_BINS) if r["pixels"]]  # ties (flat parts) merge
        left.plot([r["mean_confidence"] for r in rows], [r["within"] for r in rows], marker="o", label=group)
    left.set(xlim=(0, 1), ylim=(0, 1), xlabel="calibrated confidence (bin mean, quantile bins)",
             ylabel=f"observed share with rel error < {bound:g}", title="reliability, calibrated")
    for group, (conf, rel) in samples["raw"].items():
        rows = [r for r in reliability(conf, rel, bound, raw_edges) if r["pixels"]]
        right.plot([r["mean_confidence"] for r in rows], [r["median_rel_error"] for r in rows], marker="o",
                   label=group)
    right.axhline(bound, color="grey", linestyle=":", label=f"bound {bound:g}")
    right.set(xlabel="raw confidence (bin mean, validation quantile bins)", ylabel="median relative error",
              title="error per raw-confidence bin")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_small(fig, path, dpi=80)
    plt.close(fig)


def write_checkpoint(src: str, dst: str, calibration: Calibration) -> Path:
    """Copy `src` to `dst` with the calibration in its config (fp16, no optimiser, training info kept)."""
    payload, _ = read_checkpoint(src)
    model, cfg = load_model(src)
    calibration.to_inference(cfg.inference)
    return save_checkpoint(dst, model, cfg, half=True, trained=trained_info(payload))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="the checkpoint to calibrate")
    parser.add_argument("--config", required=True, help="training config: data.val (fitted on), data.unseen (checked)")
    parser.add_argument("--out", required=True, help="the calibrated checkpoint to write")
    parser.add_argument("--plot", default=None, help="reliability plot (PNG)")
    parser.add_argument("--frames-per-set", type=int, default=30)
    parser.add_argument("--pixels-per-frame", type=int, default=20000)
    parser.add_argument("--bound", type=float, default=0.1, help="relative error bound of the probability")
    parser.add_argument("--bins", type=int, default=20, help="quantile bins (knots) of the fit")
    parser.add_argument("--points", type=int, nargs="*", default=[50, 200],
                        help="known-point counts to calibrate with besides none (noisy SIFT points, scale_local)")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.5], help="thresholds to report")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 on a shared machine)")
    args = parser.parse_args(argv)
    if min(args.frames_per_set, args.pixels_per_frame, args.bins) < 1 or not args.bound > 0:
        parser.error("--frames-per-set, --pixels-per-frame and --bins must be >= 1, --bound > 0")
    return args


def main(argv: list[str] | None = None) -> Calibration:
    """Fit, write and report; returns the calibration."""
    args = parse_args(argv)
    start = time.perf_counter()
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    sets = collect_sets(cfg, Path(args.config).resolve().parent, [], args.frames_per_set)
    model, model_cfg = load_model(args.checkpoint)
    raw_cfg = copy.deepcopy(model_cfg)
    raw_cfg.inference.confidence_bound = 0.0  # fit on the raw confidence even if the checkpoint has a map
    predictor = Predictor(model, raw_cfg, "cpu")
    per_set = []
    for es in sets:
        samples, frames = sample_set(es, predictor, args.pixels_per_frame, args.seed, args.points)
        print(f"{es.group:6} {es.name}: {frames} frames, {sum(r.size for _, _, r in samples.values())} pixels",
              flush=True)
        if frames:
            per_set.append((es, frames, samples))
    fit_on = pooled(per_set, "val")
    if fit_on is None:
        raise SystemExit(f"{args.config}: no data.val frame with valid ground truth to fit on")
    calibration = fit_calibration(fit_on[0], fit_on[2], args.bound, args.bins, features=fit_on[1])
    path = write_checkpoint(args.checkpoint, args.out, calibration)
    conditions = [NO_POINTS, *(f"{c} points" for c in args.points)]
    raw = {g: (found[0], found[2]) for g in GROUPS if (found := pooled(per_set, g, [NO_POINTS])) is not None}
    calibrated = {f"{g}, {c}": (calibration.apply_features(found[1]), found[2]) for g in GROUPS for c in conditions
                  if (found := pooled(per_set, g, [c])) is not None}
    samples = {"raw": raw, "calibrated": calibrated}
    raw_edges = quantile_edges(raw["val"][0], TABLE_BINS)
    print("\n".join(report(args, calibration, samples, raw_edges, per_set)), flush=True)
    if args.plot:
        plot(Path(args.plot), samples, raw_edges, args.bound)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)" + (f" and {args.plot}" if args.plot else "")
          + f"; {time.perf_counter() - start:.0f} s", flush=True)
    return calibration


def report(args: argparse.Namespace, calibration: Calibration, samples: dict, raw_edges: np.ndarray,
           per_set: list) -> list[str]:
    """Return the Markdown report: the setup, the knots, the bin tables, the per-set table and the thresholds."""
    bound = args.bound
    knots = ", ".join(f"{r:.4f}->{c:.3f}" for r, c in zip(calibration.raw, calibration.calibrated))
    weights = ", ".join(f"{name} {w:+.3f}" for name, w in zip(("constant", *FEATURES), calibration.weights))
    return [
        "", f"Checkpoint `{args.checkpoint}`, config `{args.config}`; RGB-only network, without points and with "
        f"{', '.join(map(str, args.points))} noisy SIFT points + {FIT} fit; up to {args.frames_per_set} frames "
        f"per set spread evenly, {args.pixels_per_frame} random valid pixels per frame (seed {args.seed}); "
        f"confidence = P(|d - gt| / gt < {bound:g}), fitted on the validation blocks.", "",
        f"Score weights: {weights}", "", f"Knots (score -> calibrated): {knots}", "",
        *bin_table("Raw confidence (validation quantile bins)", samples["raw"], raw_edges, bound), "",
        *bin_table("Calibrated confidence", samples["calibrated"], np.linspace(0, 1, TABLE_BINS + 1), bound), "",
        *set_table(per_set, calibration), "",
        *threshold_lines(samples, bound, args.thresholds),
    ]


if __name__ == "__main__":
    main()
