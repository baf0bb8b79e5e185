"""Accuracy per real RGB-D set as users see it: RGB only, primed with points, fitted to points.

For every validation block (config `data.val`) and every unseen set (`data.unseen`, whole sets
never trained on) of a training config, on up to --frames-per-set frames spread evenly over the set:

* the new checkpoint RGB only; primed with K points (K in --points); and each of these fitted to
  the same K points afterwards (`fusanet_core.inference.point_fit`, --fits scale scale_local scale_shift);
* baselines on the same frames and points: the per-frame median of the ground truth (an ORACLE
  constant: it knows the true scale of every frame), the training-median constant (the median
  ground truth of `data.train`, as a user without points could guess), linear interpolation of
  the points (bench/point_baselines.py), and the old (bundled) checkpoint RGB only and primed.

Points are SIFT keypoints at valid ground truth, "exact" or "noisy" (3 % relative Gaussian noise,
5 % outliers uniform in 0.5-2x); one seed per frame and K, so every method sees the same points.
Sets with recorded poses (bench/slam_points.py load_trajectory_poses: 7-Scenes, the T265 office
walk, the HoloLens walk) also get "triangulated" points, as a SLAM map gives them: SIFT matches
with neighbouring frames of the whole trajectory triangulated with the poses, never read from the
ground truth (K is the cap; frames where none was found have no triangulated rows). Their own
error against the ground truth is reported beside that of the noisy points, per set and pooled
over the sets with poses ("posed pooled"); the acceptance checks do not use them.
Frames whose ground truth shows a floor (bench/floor_truth.py: RANSAC, the lowest well-supported
plane facing up) are also scored RGB only with that plane given to the Predictor (`ground=`, the
floor's scale, fusanet_core/inference/ground.py), beside the RGB-only and oracle rows of the same
frames ("..., floor frames"), with how many frames had a floor and on how many the floor was used.
Metrics at the ground truth's full resolution, caps 1e-3..10 m (80 m for KITTI), per frame then
averaged over frames: raw RMSE / abs_rel / delta1, and median-scaled ("ms", per frame) abs_rel /
delta1, which score the structure alone. Pools: all frames of a group together ("unseen pooled").

Usage:
    python bench/eval_sets.py --checkpoint runs/all/best.pt \
        --baseline-checkpoint fusanet_core/weights/fusanet_small_indoor.pt \
        --config config/train_all.yaml --out runs/eval_sets [--frames-per-set 20] [--points 20 50 200]

--extra-sets adds sets outside the config (reported per set and as "other pooled"; paths relative
to the current directory). The cross-scene sets the earlier bench/eval_real_sets.py scored:
    --extra-sets ../shared/data/{gqcnn_primesense_bin,posecnn_ycbvideo,slambook,graspnet_example} \
        "../shared/data/open3d_testdata/manifest.csv[0:6]" ../shared/data/kitti_object_vis \
        ../shared/data/middlebury_motorcycle_skimage
(open3d row 6 is a bit-rotated SUN frame; the Middlebury stereo pair has no manifest and is read
by MiddleburySource).

Writes into --out: results.json (everything, per frame too), results.md (tables for BENCHMARKS.md,
acceptance computed), per_set_bars.png, rmse_vs_points.png and panels.png. The data sets stay out
of the repository.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field
import json
import math
from pathlib import Path
import time
from typing import Any
import zlib

import cv2
from floor_truth import floor_plane
import numpy as np
from point_baselines import interpolate_points, keypoint_points
from slam_points import (depth_errors, FeatureCache, load_trajectory_poses, trajectory_intrinsics, triangulated_points,
                         TriangulationSettings)
import torch

from fusanet_core import load_config, Predictor
from fusanet_core.checkpoint import FIRST_CHECKPOINT
from fusanet_core.datasets import build_source, parse_spec, resolve_path, split_repeat
from fusanet_core.datasets.base import range_label
from fusanet_core.datasets.manifest import ManifestSource
from fusanet_core.datasets.transforms import Frame
from fusanet_core.evaluation.metrics import compute_metrics, valid_mask
from fusanet_core.inference.point_fit import fit_to_points
from fusanet_core.io.images import read_rgb

POINT_KINDS = {"exact": (0.0, 0.0), "noisy": (0.03, 0.05)}  # (relative noise sigma, outlier share)
FITS = ("scale", "scale_local", "scale_shift")
MIN_DEPTH = 1e-3
KITTI_CAP = 80.0  # KITTI's LiDAR reaches 80 m; every other set is indoor (config data.max_depth)
MEDIAN = "median constant (oracle)"
TRAIN_MEDIAN = "train-median constant"
METRICS = ("rmse", "abs_rel", "delta1", "ms_abs_rel", "ms_delta1")
HEADERS = {"rmse": "RMSE (m)", "abs_rel": "abs_rel", "delta1": "δ1", "ms_abs_rel": "ms abs_rel",
           "ms_delta1": "ms δ1"}
HIGHER_IS_BETTER = {"delta1", "ms_delta1"}
NODE_DEFAULT = "new + scale_local fit"  # the depth node's defaults: RGB-only network, scale_local fit
ACCEPT_COUNTS = (50, 200)  # the issue: primed with 50 and with 200 points beats interpolation
GROUPS = {"val": "Validation blocks", "unseen": "Unseen sets", "other": "Other sets"}
PANELS = 6
PANEL_WIDTH = 200  # px per panel image: keeps panels.png small
TRIANGULATED = "triangulated"  # points triangulated from the trajectory's poses (bench/slam_points.py)
POSED_POOL = "posed pooled"  # every set with poses, whatever its group: the triangulated rows' pool
POINT_OUTLIER = 0.10  # a point is an outlier when |z / gt - 1| exceeds this
FLOOR = "new + floor"  # RGB only with the frame's floor plane (Predictor.predict(ground=...))
FLOOR_ROWS = ("new", MEDIAN, FLOOR)  # scored on the frames with a floor, as "<row>, floor frames"
FLOOR_TARGET = {"rmse": 1.0, "delta1": 0.55}  # RGB only + the floor on unseen frames with a floor: at most / least
COMPARED = (("node default", NODE_DEFAULT), ("interpolation", "interpolation"), ("primed", "new primed"))


def label(method: str, count: int | None = None, kind: str = "") -> str:
    """Return a row name, e.g. "new primed (50 noisy)"; methods without points have no suffix."""
    return method if count is None else f"{method} ({count} {kind})"


class MiddleburySource:
    """Middlebury 2014 Motorcycle (no manifest): Z = f B / (d + doffs) from the dense disparity."""

    F, BASELINE, DOFFS = 994.978, 0.193001, 31.086

    def __init__(self, root: Path) -> None:
        self.root = root
        self.name = root.name

    def __len__(self) -> int:
        return 1

    def load(self, index: int) -> Frame:
        disp = np.load(self.root / "motorcycle_disp.npz")["arr_0"]
        depth = np.where(np.isfinite(disp), self.F * self.BASELINE / (disp + self.DOFFS), 0).astype(np.float32)
        h, w = depth.shape
        return Frame(read_rgb(self.root / "motorcycle_left.png"), depth,
                     np.array([self.F, self.F, (w - 1) / 2, (h - 1) / 2]))


@dataclass
class EvalSet:
    """One set to score: where it comes from, its depth cap and the frames taken."""

    group: str
    name: str
    spec: str
    source: Any
    cap: float
    indices: list[int]
    skipped: int = 0
    panel_at: dict[int, int] = field(default_factory=dict)  # frame index -> panel rank
    point_errors: dict[str, list[np.ndarray]] = field(default_factory=dict)  # "K kind" -> per frame z / gt - 1


@dataclass
class Trajectory:
    """The whole trajectory of a set with poses, for triangulation: its frames, poses and features."""

    source: ManifestSource  # every row of the manifest, whatever rows the set scores
    poses: np.ndarray  # (rows, 4, 4) camera-to-world
    rows: list[int]  # manifest row of each frame index of the set
    folder: Path
    cache: FeatureCache
    settings: TriangulationSettings


def trajectory(es: EvalSet, settings: TriangulationSettings | None = None) -> Trajectory | None:
    """Return the trajectory of a manifest set that has poses, else None."""
    path = getattr(es.source, "path", None)
    if not isinstance(es.source, ManifestSource) or path is None:
        return None
    poses = load_trajectory_poses(path.parent)
    if poses is None:
        return None
    full = ManifestSource(path)
    return Trajectory(full, poses, list(range(len(full)))[parse_spec(es.spec)[1]], path.parent, FeatureCache(full),
                      settings or TriangulationSettings())


def triangulated_frame_points(traj: Trajectory, index: int, frame: Frame, counts: list[int]) -> dict[tuple, np.ndarray]:
    """{(K, "triangulated"): the first K triangulated points} of one frame; none when no point was found."""
    row = traj.rows[index]
    intrinsics = trajectory_intrinsics(traj.folder, frame.intrinsics)
    pts = triangulated_points(traj.source, row, traj.poses, intrinsics, max(counts), traj.settings, traj.cache)
    return {(count, TRIANGULATED): pts[:count] for count in counts if len(pts)}


def record_point_errors(es: EvalSet, points: dict[tuple, np.ndarray], frame: Frame, valid: np.ndarray,
                        counts: list[int]) -> None:
    """Keep each point set's errors z / gt - 1 against the scored ground truth (NaN: no truth there)."""
    gt = np.where(valid, frame.depth, np.nan)
    for count in counts:
        for kind in ("noisy", TRIANGULATED):
            pts = points.get((count, kind), np.zeros((0, 3), np.float32))
            es.point_errors.setdefault(f"{count} {kind}", []).append(depth_errors(pts, gt))


def point_statistics(frames: list[np.ndarray]) -> dict[str, float]:
    """Return points per frame (frames with none included) and the error of all points with ground truth.

    The error: the median |z / gt - 1|, its 90th percentile and the outlier share (beyond POINT_OUTLIER).
    """
    found = np.array([len(f) for f in frames], np.float64)
    errors = np.abs(np.concatenate(frames)) if frames else np.zeros(0)
    errors = errors[np.isfinite(errors)]
    some = len(errors) > 0
    return {"frames": len(frames), "frames_without_points": int(np.sum(found == 0)),
            "points_per_frame": float(found.mean()) if len(found) else 0.0,
            "points_with_truth": len(errors),
            "median_abs_rel": float(np.median(errors)) if some else float("nan"),
            "p90_abs_rel": float(np.percentile(errors, 90)) if some else float("nan"),
            "outlier_share": float(np.mean(errors > POINT_OUTLIER)) if some else float("nan")}


def point_statistics_all(sets: list[EvalSet], records: dict, counts: list[int]) -> dict[str, dict[str, dict]]:
    """{set or POSED_POOL: {"K kind": point statistics and scores}} for noisy and triangulated points.

    Only sets where triangulation found points. The point statistics cover every scored frame; the
    scores of COMPARED (mean over frames) cover the frames where triangulation found points, for
    both kinds: the same frames.
    """
    out: dict[str, dict[str, dict]] = {}
    pooled: dict[str, dict[str, list]] = {}
    for es in sets:
        tri = {c: es.point_errors.get(f"{c} {TRIANGULATED}", []) for c in counts}
        if not any(len(f) for frames in tri.values() for f in frames):
            continue
        out[es.name] = {}
        for count in counts:
            found = [len(f) > 0 for f in tri[count]]
            for kind in ("noisy", TRIANGULATED):
                key = f"{count} {kind}"
                part = {"errors": es.point_errors[key]}
                for name, method in COMPARED:
                    rows = records[es.name].get(label(method, count, kind), [])
                    part[name] = [r for r, keep in zip(rows, found) if keep] if kind == "noisy" else rows
                out[es.name][key] = _point_entry(part)
                for field_name, values in part.items():
                    pooled.setdefault(key, {}).setdefault(field_name, []).extend(values)
    if out:
        out[POSED_POOL] = {key: _point_entry(part) for key, part in pooled.items()}
    return out


def _point_entry(part: dict[str, list]) -> dict:
    """Point statistics of part["errors"], and the summary of each compared method's frames."""
    entry: dict[str, Any] = point_statistics(part["errors"])
    for name, _ in COMPARED:
        entry[name] = summarise(part[name]) if part[name] else None
    return entry


def add_posed_pool(summaries: dict, records: dict, sets: list[EvalSet]) -> None:
    """Add POSED_POOL: every frame of the sets with triangulated rows, per method they all have."""
    names = [s.name for s in sets if records.get(s.name) and any(TRIANGULATED in m for m in records[s.name])]
    if names:
        summaries[POSED_POOL] = {m: summarise(f) for m, f in pool(records, names).items()}


def open_source(spec: str, cfg: Any, base_dir: Path | None) -> Any:
    """Return the frame source of a spec: build_source, or MiddleburySource for that folder."""
    path = resolve_path(parse_spec(spec)[0], base_dir)
    if (path / "motorcycle_disp.npz").is_file():
        return MiddleburySource(path)
    return build_source(spec, cfg, base_dir)


def set_name(spec: str) -> str:
    """Return the set folder plus its row range: "rs_d435_office[198:248]"."""
    raw, rows = parse_spec(spec)
    path = Path(raw)
    folder = path.parent.name if path.suffix.lower() == ".csv" else path.name
    return f"{folder}{range_label(rows)}"


def spread(total: int, wanted: int) -> list[int]:
    """Up to `wanted` frame indices spread evenly over `total` frames, first and last included."""
    if wanted >= total:
        return list(range(total))
    return [int(i) for i in np.round(np.linspace(0, total - 1, wanted))]


def collect_sets(cfg: Any, base_dir: Path, extra: list[str], frames_per_set: int) -> list[EvalSet]:
    """Return the sets to score: config data.val, data.unseen, then --extra-sets (against the cwd)."""
    entries = ([("val", s, base_dir) for s in cfg.data.val] + [("unseen", s, base_dir) for s in cfg.data.unseen]
               + [("other", s, None) for s in extra])
    sets: list[EvalSet] = []
    for group, spec, where in entries:
        source = open_source(spec, cfg, where)
        name = set_name(spec)
        taken = sum(1 for s in sets if s.name == name or s.name.startswith(f"{name} #"))
        name = f"{name} #{taken + 1}" if taken else name  # the same block listed twice
        cap = KITTI_CAP if "kitti" in spec.lower() else cfg.data.max_depth
        sets.append(EvalSet(group, name, spec, source, cap, spread(len(source), frames_per_set)))
    return sets


def choose_panels(sets: list[EvalSet]) -> None:
    """Mark PANELS unseen frames (or val ones if no set is unseen), spread over the sets and over each set."""
    pool = [s for s in sets if s.group == "unseen"] or [s for s in sets if s.group == "val"]
    if not pool:
        return
    each = math.ceil(PANELS / len(pool))
    ranked = [(rank, order, s, index) for order, s in enumerate(pool)
              for rank, index in enumerate(s.indices[i] for i in spread(len(s.indices), each))]
    for rank, _, s, index in sorted(ranked, key=lambda r: r[:2])[:PANELS]:
        s.panel_at[index] = rank


def train_median(cfg: Any, base_dir: Path) -> float | None:
    """Median ground-truth depth of the training entries (every 5th frame): a constant a user could guess."""
    values = []
    for entry in dict.fromkeys(split_repeat(e)[0] for e in cfg.data.train):
        source = build_source(entry, cfg, base_dir)
        for i in range(0, len(source), 5):  # the median is stable on a fifth of the frames
            d = source.load(i).depth
            values.append(d[(d > MIN_DEPTH) & (d <= cfg.data.max_depth)][::16])
    return float(np.median(np.concatenate(values))) if values else None


def frame_points(frame: Frame, valid: np.ndarray, counts: list[int], seed: list[int]) -> dict[tuple, np.ndarray]:
    """{(K, kind): (K, 3) points}; exact and noisy share a seed, so noisy ones sit at the same pixels."""
    gt = np.where(valid, frame.depth, 0).astype(np.float32)  # points only where the frame is scored
    return {(count, kind): keypoint_points(frame.rgb, gt, count, np.random.default_rng([*seed, count]), noise, outliers)
            for count in counts for kind, (noise, outliers) in POINT_KINDS.items()}


def fitted(depth: np.ndarray, points: np.ndarray, mode: str, extra: dict) -> tuple[np.ndarray, dict]:
    """Return the depth fitted to the points, and whether the fit was applied (the share is reported)."""
    fit = fit_to_points(depth, points, mode)
    return fit.apply(depth), {**extra, "fit_applied": float(fit.applied)}


def floor_row(row: str) -> str:
    """Return the name of a row scored on the frames with a floor: "new, floor frames"."""
    return f"{row}, floor frames"


def frame_predictions(frame: Frame, valid: np.ndarray, models: dict[str, Predictor], points: dict[tuple, np.ndarray],
                      fits: list[str], constant: float | None,
                      plane: np.ndarray | None = None) -> dict[str, tuple[np.ndarray, dict]]:
    """{row name: (HxW depth, extra per-frame numbers)} of every method on one frame.

    Each network runs once RGB only and once per point set; the fits reuse those predictions.
    A frame with a floor `plane` also gets FLOOR_ROWS (the floor's row with "floor_applied").
    """
    shape, rgb, k = frame.depth.shape, frame.rgb, frame.intrinsics
    out = {MEDIAN: (np.full(shape, np.median(frame.depth[valid]), np.float32), {})}
    if constant is not None:
        out[TRAIN_MEDIAN] = (np.full(shape, constant, np.float32), {})
    rgb_only = {name: model.predict(rgb, k)["depth"] for name, model in models.items()}
    out.update((name, (depth, {})) for name, depth in rgb_only.items())
    if plane is not None:  # the floor rows exist on the floor frames only: pooled apart from the others
        floored = models["new"].predict(rgb, k, ground=plane)
        out[floor_row(FLOOR)] = (floored["depth"], {"floor_applied": float(floored["ground_fit"]["applied"])})
        out.update((floor_row(row), out[row]) for row in FLOOR_ROWS if row != FLOOR)
    for (count, kind), pts in points.items():
        extra = {"points": float(len(pts))}
        out[label("interpolation", count, kind)] = (interpolate_points(pts, *shape), extra)
        primed = {name: model.predict(rgb, k, pts)["depth"] for name, model in models.items()}
        out.update((label(f"{name} primed", count, kind), (depth, extra)) for name, depth in primed.items())
        for mode in fits:
            out[label(f"new + {mode} fit", count, kind)] = fitted(rgb_only["new"], pts, mode, extra)
            out[label(f"new primed + {mode} fit", count, kind)] = fitted(primed["new"], pts, mode, extra)
    return out


def frame_scores(pred: np.ndarray, gt: np.ndarray, cap: float) -> dict[str, float]:
    """Return raw RMSE / abs_rel / delta1 and median-scaled abs_rel / delta1 of one frame."""
    raw = compute_metrics(pred, gt, min_depth=MIN_DEPTH, max_depth=cap)
    scaled = compute_metrics(pred, gt, min_depth=MIN_DEPTH, max_depth=cap, median_scale=True)
    return {"rmse": raw["rmse"], "abs_rel": raw["abs_rel"], "delta1": raw["delta1"],
            "ms_abs_rel": scaled["abs_rel"], "ms_delta1": scaled["delta1"]}


def run_set(es: EvalSet, models: dict[str, Predictor], counts: list[int], fits: list[str], seed: int,
            constant: float | None, triangulation: TriangulationSettings | None = None
            ) -> tuple[dict[str, list[dict]], list[dict]]:
    """Score every method on the set's frames: ({row: [per-frame scores]}, panel images).

    Sets with poses also get triangulated points unless `triangulation` is None.
    """
    records: dict[str, list[dict]] = {}
    panels = []
    traj = trajectory(es, triangulation) if counts and triangulation is not None else None
    for index in es.indices:
        frame = es.source.load(index)
        valid = valid_mask(frame.depth.astype(np.float64), min_depth=MIN_DEPTH, max_depth=es.cap)
        if not valid.any():
            es.skipped += 1
            continue
        points = frame_points(frame, valid, counts, [seed, zlib.crc32(es.name.encode()), index])
        plane = None
        if frame.intrinsics is not None:
            plane, _ = floor_plane(frame.depth, np.asarray(frame.intrinsics), valid,
                                   np.random.default_rng([seed, zlib.crc32(es.name.encode()), index]))
        if traj is not None:
            points.update(triangulated_frame_points(traj, index, frame, counts))
            record_point_errors(es, points, frame, valid, counts)
        for name, (depth, extra) in frame_predictions(frame, valid, models, points, fits, constant, plane).items():
            records.setdefault(name, []).append({**frame_scores(depth, frame.depth, es.cap), **extra})
            if name == "new" and index in es.panel_at:
                panels.append(panel(frame, valid, depth, f"{es.name} #{index}", es.panel_at[index]))
    return records, panels


def summarise(frames: list[dict]) -> dict[str, float]:
    """Mean over frames of every number (each frame weighs the same, as in MetricAccumulator)."""
    return {"frames": len(frames), **{key: float(np.mean([f[key] for f in frames])) for key in frames[0]}}


def pool(records: dict[str, dict[str, list[dict]]], names: list[str]) -> dict[str, list[dict]]:
    """Return all frames of the named sets together, per method (methods every set has)."""
    methods = [m for m in records[names[0]] if all(m in records[n] for n in names)]
    return {m: [f for n in names for f in records[n][m]] for m in methods}


def summarise_all(records: dict[str, dict[str, list[dict]]], sets: list[EvalSet]) -> dict[str, dict[str, dict]]:
    """{set or "<group> pooled": {row: summary}} for every set that scored a frame, then each group's pool."""
    scored = [s for s in sets if records.get(s.name)]
    out = {s.name: {m: summarise(f) for m, f in records[s.name].items()} for s in scored}
    for group in GROUPS:
        names = [s.name for s in scored if s.group == group]
        if names:
            out[f"{group} pooled"] = {m: summarise(f) for m, f in pool(records, names).items()}
            for row in map(floor_row, FLOOR_ROWS):  # the floor frames of every set that has some
                frames = [f for n in names for f in records[n].get(row, [])]
                if frames:
                    out[f"{group} pooled"][row] = summarise(frames)
    return out


def better(metric: str, value: float, baseline: float) -> bool:
    """Return whether `value` beats `baseline` (strictly; delta metrics higher, errors lower)."""
    return value > baseline if metric in HIGHER_IS_BETTER else value < baseline


def acceptance(pooled: dict[str, dict], counts: list[int]) -> list[dict]:
    """Return the issue's checks on a pool.

    The new model against the median constant in ms delta1 / ms abs_rel, and with 50 and 200
    points (exact and noisy) against interpolation of the same points in RMSE / delta1: the
    primed network alone (no fit), primed with the scale_local fit, and RGB only with the
    scale_local fit (NODE_DEFAULT: what the node gives by default, prime_with_points false), each
    judged on its own rows.
    """
    checks = [("new", MEDIAN, "ms_delta1"), ("new", MEDIAN, "ms_abs_rel")]
    checks += [(label(method, count, kind), label("interpolation", count, kind), metric)
               for method in ("new primed", "new primed + scale_local fit", NODE_DEFAULT)
               for count in ACCEPT_COUNTS if count in counts for kind in POINT_KINDS for metric in ("rmse", "delta1")]
    return [check(pooled, *c) for c in checks if c[0] in pooled and c[1] in pooled]


def check(pooled: dict[str, dict], method: str, baseline: str, metric: str) -> dict:
    """Return one acceptance row: both numbers and whether the method beats the baseline."""
    value, base = pooled[method][metric], pooled[baseline][metric]
    return {"method": method, "baseline": baseline, "metric": metric, "value": value, "baseline_value": base,
            "pass": better(metric, value, base)}


def main_count(counts: list[int]) -> int:
    """Return the K of the main tables: 50 when evaluated, else the middle one."""
    return 50 if 50 in counts else sorted(counts)[len(counts) // 2]


def main_rows(counts: list[int]) -> list[str]:
    """Return the rows of the per-set tables: RGB only, the baselines, and noisy points at the main K.

    Rows a run lacks (no scale fit, no training median) are left out by the tables.
    """
    rows = ["new", MEDIAN, TRAIN_MEDIAN, "old"]
    if counts:
        c = main_count(counts)
        rows[1:1] = [label(m, c, "noisy") for m in (NODE_DEFAULT, "new + scale fit", "new primed")]
        rows[-1:] = [label("interpolation", c, "noisy"), "old", label("old primed", c, "noisy")]
    return rows


def point_rows(counts: list[int], fits: list[str]) -> list[str]:
    """Return every row that uses points, by K and kind."""
    methods = ["new primed", *(f"new primed + {m} fit" for m in fits), *(f"new + {m} fit" for m in fits),
               "interpolation", "old primed"]
    return [label(m, c, kind) for c in counts for kind in [*POINT_KINDS, TRIANGULATED] for m in methods]


def fmt(value: float) -> str:
    return f"{value:.3f}"


def set_table(summaries: dict, names: list[str], rows: list[str]) -> list[str]:
    """Markdown table: one block of rows per set (or pool), all five metrics."""
    lines = ["| set | frames | method | " + " | ".join(HEADERS[m] for m in METRICS) + " |",
             "|---" * (3 + len(METRICS)) + "|"]
    for name in names:
        for row in (r for r in rows if r in summaries[name]):
            s = summaries[name][row]
            cells = " | ".join(fmt(s[m]) for m in METRICS)
            lines.append(f"| {name} | {s['frames']} | {row} | {cells} |")
    return lines


def points_table(pooled: dict, rows: list[str]) -> list[str]:
    """Markdown table of every point row of a pool, with the points found and the fits applied."""
    lines = ["| method | points found | fit applied | " + " | ".join(HEADERS[m] for m in METRICS) + " |",
             "|---" * (3 + len(METRICS)) + "|"]
    for row in (r for r in rows if r in pooled):
        s = pooled[row]
        applied = f"{100 * s['fit_applied']:.0f} %" if "fit_applied" in s else "-"
        lines.append(f"| {row} | {s['points']:.0f} | {applied} | " + " | ".join(fmt(s[m]) for m in METRICS) + " |")
    return lines


def acceptance_table(checks: list[dict]) -> list[str]:
    """Markdown table of the checks, the pass column and the overall verdict, all computed."""
    lines = ["| method | baseline | metric | method's | baseline's | pass |", "|---|---|---|---|---|---|"]
    for c in checks:
        lines.append(f"| {c['method']} | {c['baseline']} | {HEADERS[c['metric']]} | {fmt(c['value'])} | "
                     f"{fmt(c['baseline_value'])} | {'pass' if c['pass'] else '**FAIL**'} |")
    passed = sum(c["pass"] for c in checks)
    verdict = "PASS" if checks and passed == len(checks) else "FAIL"
    return lines + ["", f"**Acceptance: {verdict}** ({passed} of {len(checks)} checks pass)."]


def markdown(summaries: dict, sets: list[EvalSet], checks: list[dict], meta: dict,
             point_stats: dict | None = None) -> str:
    """Return results.md: the set tables per group, the point tables per pool, the acceptance table."""
    counts, fits = meta["points"], meta["fits"]
    out = [f"Checkpoint `{meta['checkpoint']}`, old = `{meta['baseline_checkpoint']}`, config `{meta['config']}`; "
           f"up to {meta['frames_per_set']} frames per set spread evenly, seed {meta['seed']}, "
           f"{meta['seconds']:.0f} s.",
           "Full ground-truth resolution, caps 1e-3..10 m (80 m KITTI), means over frames; ms = median-scaled per "
           f"frame. {MEDIAN}: the median of each frame's own ground truth, an oracle scale no user has; "
           f"{TRAIN_MEDIAN}: the median ground truth of the training entries"
           + (f" ({meta['train_median']:.3f} m)." if meta["train_median"] else " (none: no data.train).")
           + " Points: SIFT keypoints at valid ground truth; noisy = 3 % Gaussian + 5 % outliers (0.5-2x)."]
    for group, title in GROUPS.items():
        names = [s.name for s in sets if s.group == group and s.name in summaries]
        if names:
            out += ["", f"### {title}", ""] + set_table(summaries, names + [f"{group} pooled"], main_rows(counts))
    for name in (n for n in summaries if n.endswith("pooled") and counts):
        out += ["", f"### With points, {name}", ""] + points_table(summaries[name], point_rows(counts, fits))
    if point_stats:
        out += triangulated_section(point_stats, counts)
    out += floor_section(summaries, sets)
    if checks:
        out += ["", f"### Acceptance, {meta['acceptance_pool']}", ""] + acceptance_table(checks)
    return "\n".join(out) + "\n"


def floor_section(summaries: dict, sets: list[EvalSet]) -> list[str]:
    """Markdown: RGB only with and without each frame's floor plane, on the frames where one was found."""
    names = [n for n in [*(s.name for s in sets), *(f"{g} pooled" for g in GROUPS)]
             if n in summaries and floor_row(FLOOR) in summaries[n]]
    if not names:
        return []
    lines = ["", "### RGB only with the floor plane (each frame's floor fitted to its ground truth)", "",
             "Frames with a floor: the floor plane found by RANSAC in the ground truth (bench/floor_truth.py); "
             "floor used: the Predictor applied the floor's scale (else it kept the network's, with a reason).", "",
             "| set | frames with a floor | floor used | method | " + " | ".join(HEADERS[m] for m in METRICS) + " |",
             "|---" * (4 + len(METRICS)) + "|"]
    for name in names:
        frames = summaries[name]["new"]["frames"]
        floor = summaries[name][floor_row(FLOOR)]
        for row in FLOOR_ROWS:
            s = summaries[name][floor_row(row)]
            lines.append(f"| {name} | {s['frames']} of {frames} | {100 * floor['floor_applied']:.0f} % | {row} | "
                         + " | ".join(fmt(s[m]) for m in METRICS) + " |")
    target = summaries.get("unseen pooled", {}).get(floor_row(FLOOR))
    if target:
        verdicts = [f"{HEADERS[m]} {fmt(target[m])} ({'<=' if m == 'rmse' else '>='} {limit}: "
                    f"{'pass' if (target[m] <= limit if m == 'rmse' else target[m] >= limit) else 'FAIL'})"
                    for m, limit in FLOOR_TARGET.items()]
        lines += ["", "Unseen frames with a floor, RGB only + the floor: " + ", ".join(verdicts) + "."]
    return lines


def triangulated_section(stats: dict, counts: list[int]) -> list[str]:
    """Markdown: triangulated beside noisy points per set with poses and pooled, the points and the scores."""
    lines = ["", "### Triangulated points (SLAM map from the recorded poses) beside noisy ground-truth samples", "",
             "Points: per frame found (frames without any), and over all points where there is ground truth the "
             f"median |z / gt - 1| and the share beyond {100 * POINT_OUTLIER:.0f} %. Scores: RMSE (m) / δ1, mean over "
             "the frames where triangulation found points (scored), for both kinds; node default = the new model "
             "RGB only + scale_local fit.",
             "", "| set | points | frames (none) | scored | points/frame | median error | outliers | "
             + " | ".join(f"{name} RMSE | {name} δ1" for name, _ in COMPARED) + " |",
             "|---" * (7 + 2 * len(COMPARED)) + "|"]
    for name, per_kind in stats.items():
        for count in counts:
            for kind in ("noisy", TRIANGULATED):
                st = per_kind.get(f"{count} {kind}")
                if st is None:
                    continue
                cells = []
                for method, _ in COMPARED:
                    cells += [fmt(st[method]["rmse"]), fmt(st[method]["delta1"])] if st[method] else ["-", "-"]
                scored = next((st[method]["frames"] for method, _ in COMPARED if st[method]), 0)
                lines.append(f"| {name} | {count} {kind} | {st['frames']} ({st['frames_without_points']}) | {scored} | "
                             f"{st['points_per_frame']:.0f} | {100 * st['median_abs_rel']:.1f} % | "
                             f"{100 * st['outlier_share']:.1f} % | " + " | ".join(cells) + " |")
    return lines


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_bars(summaries: dict, path: Path) -> None:
    """Raw RMSE and ms delta1 per set and pool for new / old / median constant."""
    plt = pyplot()
    names = list(summaries)
    methods = [m for m in ("new", "old", MEDIAN) if all(m in summaries[n] for n in names)]
    fig, axes = plt.subplots(2, 1, figsize=(max(6.0, 0.8 * len(names)), 6), sharex=True)
    x, width = np.arange(len(names)), 0.8 / max(len(methods), 1)
    for ax, metric in zip(axes, ("rmse", "ms_delta1")):
        for i, method in enumerate(methods):
            ax.bar(x + (i - (len(methods) - 1) / 2) * width, [summaries[n][method][metric] for n in names], width,
                   label=method)
        ax.set_ylabel(HEADERS[metric])
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    axes[1].set_xticks(x, names, rotation=30, ha="right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_points(pooled: dict, counts: list[int], fits: list[str], title: str, path: Path) -> None:
    """RMSE against K on one pool: new primed / + fit / interpolation / old primed, exact and noisy."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(POINT_KINDS), figsize=(10, 4.5), sharey=True)
    methods = ["new primed", *(f"new primed + {m} fit" for m in fits), *(f"new + {m} fit" for m in fits),
               "old primed", "interpolation"]
    for ax, kind in zip(axes, POINT_KINDS):
        for method in methods:
            style = {"color": "black", "linewidth": 2} if method == "interpolation" else {}
            ax.plot(counts, [pooled[label(method, c, kind)]["rmse"] for c in counts], marker="o", label=method, **style)
        for flat, style in (("new", "--"), (MEDIAN, ":")):
            ax.axhline(pooled[flat]["rmse"], color="grey", linestyle=style, label=f"{flat}, no points")
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(counts, [str(c) for c in counts])
        ax.set_xlabel("points")
        ax.set_title(f"{title}, {kind} points", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(HEADERS["rmse"])
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    fig.savefig(path, dpi=80)
    plt.close(fig)


def panel(frame: Frame, valid: np.ndarray, pred: np.ndarray, title: str, rank: int) -> dict:
    """Return a frame shrunk to PANEL_WIDTH for panels.png (GT by nearest pixel: holes stay holes)."""
    h, w = frame.depth.shape
    size = (PANEL_WIDTH, max(1, round(h * PANEL_WIDTH / w)))
    gt = np.where(valid, frame.depth, np.nan).astype(np.float32)
    return {"title": title, "rank": rank, "rgb": cv2.resize(frame.rgb, size, interpolation=cv2.INTER_AREA),
            "gt": cv2.resize(gt, size, interpolation=cv2.INTER_NEAREST),
            "pred": cv2.resize(pred, size, interpolation=cv2.INTER_AREA)}


def plot_panels(panels: list[dict], path: Path) -> None:
    """Image | GT | prediction | abs error per frame; GT and prediction share a scale per row; no GT = black."""
    plt = pyplot()
    fig, axes = plt.subplots(len(panels), 4, figsize=(10, 2.0 * len(panels)), squeeze=False)
    depth_map = plt.get_cmap("viridis").with_extremes(bad="black")
    error_map = plt.get_cmap("magma").with_extremes(bad="black")
    for row, p in zip(axes, panels):
        gt = np.ma.masked_invalid(p["gt"])
        error = np.ma.masked_invalid(np.abs(p["pred"] - p["gt"]))
        vmax = float(np.percentile(np.concatenate([gt.compressed(), p["pred"].ravel()]), 99))
        row[0].imshow(p["rgb"])
        row[1].imshow(gt, cmap=depth_map, vmin=0, vmax=vmax)
        shown = row[2].imshow(p["pred"], cmap=depth_map, vmin=0, vmax=vmax)
        err = row[3].imshow(error, cmap=error_map, vmin=0, vmax=float(np.percentile(error.compressed(), 99)))
        fig.colorbar(shown, ax=row[2], fraction=0.046, pad=0.02)
        fig.colorbar(err, ax=row[3], fraction=0.046, pad=0.02)
        for ax, name in zip(row, (p["title"], "ground truth (m)", "new, RGB only (m)", "abs error (m)")):
            ax.set_title(name, fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    save_small(fig, path, dpi=70)
    plt.close(fig)


def save_small(fig: Any, path: Path, dpi: int) -> None:
    """Save as a 256-colour PNG: colour-mapped images stay readable at a third of the bytes."""
    from io import BytesIO

    from PIL import Image

    buffer = BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    Image.open(buffer).convert("RGB").quantize(256).save(path, optimize=True)


def write_outputs(out: Path, summaries: dict, sets: list[EvalSet], records: dict, panels: list[dict],
                  meta: dict) -> list[dict]:
    """Write results.json, results.md and the plots; return the acceptance checks."""
    out.mkdir(parents=True, exist_ok=True)
    pool_name = "unseen pooled" if "unseen pooled" in summaries else "val pooled"
    meta["acceptance_pool"] = pool_name
    checks = acceptance(summaries.get(pool_name, {}), meta["points"])
    listing = [{"name": s.name, "group": s.group, "spec": s.spec, "cap_m": s.cap, "frames": s.indices,
                "skipped_no_gt": s.skipped} for s in sets]
    point_stats = point_statistics_all(sets, records, meta["points"])
    (out / "results.json").write_text(json.dumps({"meta": meta, "sets": listing, "summary": summaries,
                                                  "point_stats": point_stats, "acceptance": checks,
                                                  "per_frame": records}, indent=1))
    (out / "results.md").write_text(markdown(summaries, sets, checks, meta, point_stats))
    plot_bars(summaries, out / "per_set_bars.png")
    if meta["points"] and pool_name in summaries:
        plot_points(summaries[pool_name], meta["points"], meta["fits"], pool_name, out / "rmse_vs_points.png")
    if panels:
        plot_panels(sorted(panels, key=lambda p: p["rank"]), out / "panels.png")
    return checks


def progress(es: EvalSet, records: dict, counts: list[int], seconds: float) -> str:
    """Return one line per set: frames, time and the headline numbers."""
    if not records:
        return f"{es.group:6} {es.name}: no frame with valid ground truth ({es.skipped} skipped)"
    s = {m: summarise(f) for m, f in records.items()}
    text = (f"{es.group:6} {es.name}: {s['new']['frames']} frames, {seconds:.0f} s | new RMSE {s['new']['rmse']:.3f}"
            f" ms-d1 {s['new']['ms_delta1']:.3f} | median const ms-d1 {s[MEDIAN]['ms_delta1']:.3f}")
    if counts:
        c = main_count(counts)
        shown = [(name, label(method, c, "noisy")) for name, method in
                 (("node default", NODE_DEFAULT), ("primed", "new primed"), ("interpolation", "interpolation"))]
        text += f" | {c} noisy RMSE: " + ", ".join(f"{name} {s[row]['rmse']:.3f}" for name, row in shown if row in s)
        tri = [(name, label(method, c, TRIANGULATED)) for name, method in
               (("node default", NODE_DEFAULT), ("interpolation", "interpolation"))]
        if all(row in s for _, row in tri):
            text += (f" | {c} triangulated ({s[tri[0][1]]['points']:.0f} found, {s[tri[0][1]]['frames']} frames) "
                     "RMSE: " + ", ".join(f"{name} {s[row]['rmse']:.3f}" for name, row in tri))
    return text


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="the new checkpoint")
    parser.add_argument("--baseline-checkpoint", default=None, help="the old one (default: the first bundled model)")
    parser.add_argument("--config", required=True, help="training config: data.val, data.unseen, data.train")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--frames-per-set", type=int, default=20)
    parser.add_argument("--points", type=int, nargs="*", default=[20, 50, 200], help="K values (none: RGB only)")
    parser.add_argument("--fits", nargs="*", choices=FITS, default=list(FITS), help="point fits to score")
    parser.add_argument("--extra-sets", nargs="*", default=[], help="more specs, relative to the current directory")
    parser.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"),
                        help="network input of both models (default: each checkpoint's own)")
    parser.add_argument("--no-triangulated", action="store_true",
                        help="skip the points triangulated from the poses of the sets that have them")
    parser.add_argument("--triangulation-views", type=int, default=TriangulationSettings.min_views,
                        help="views a triangulated point needs, its own frame included (bench/slam_points.py)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 on a shared machine)")
    args = parser.parse_args(argv)
    if args.frames_per_set < 1 or any(k < 1 for k in args.points):
        parser.error("--frames-per-set and --points must be >= 1")
    if args.triangulation_views < 2:
        parser.error("--triangulation-views must be >= 2")
    args.points = sorted(set(args.points))
    return args


def main(argv: list[str] | None = None) -> list[dict]:
    """Run the evaluation; returns the acceptance checks."""
    args = parse_args(argv)
    start = time.perf_counter()
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    base_dir = Path(args.config).resolve().parent
    sets = collect_sets(cfg, base_dir, args.extra_sets, args.frames_per_set)
    if not sets:
        raise SystemExit(f"{args.config} lists no data.val or data.unseen entry (and no --extra-sets given)")
    choose_panels(sets)
    baseline = args.baseline_checkpoint or FIRST_CHECKPOINT
    models = {"new": Predictor.from_checkpoint(args.checkpoint, "cpu", input_size=args.input_size),
              "old": Predictor.from_checkpoint(baseline, "cpu", input_size=args.input_size)}
    constant = train_median(cfg, base_dir)
    triangulation = None if args.no_triangulated else TriangulationSettings(min_views=args.triangulation_views)
    records, panels = {}, []
    for es in sets:
        began = time.perf_counter()
        records[es.name], found = run_set(es, models, args.points, args.fits, args.seed, constant, triangulation)
        panels += found
        print(progress(es, records[es.name], args.points, time.perf_counter() - began), flush=True)
    meta = {"checkpoint": str(args.checkpoint), "baseline_checkpoint": str(baseline), "config": str(args.config),
            "frames_per_set": args.frames_per_set, "points": args.points, "fits": args.fits, "seed": args.seed,
            "input_size": args.input_size, "point_kinds": POINT_KINDS, "train_median": constant,
            "triangulation": None if triangulation is None else asdict(triangulation),
            "seconds": time.perf_counter() - start}
    summaries = summarise_all(records, sets)
    add_posed_pool(summaries, records, sets)
    checks = write_outputs(Path(args.out), summaries, sets, records, panels, meta)
    print(f"total {time.perf_counter() - start:.0f} s; acceptance {sum(c['pass'] for c in checks)} of {len(checks)} "
          f"pass; wrote {args.out}/results.md", flush=True)
    return checks


if __name__ == "__main__":
    main()
