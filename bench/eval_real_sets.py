"""Accuracy of a checkpoint on every real RGB-D set in ../shared/data.

Shown next to the constant-median-depth baseline (the median ground-truth depth of the training
blocks).

Usage:
    python bench/eval_real_sets.py --checkpoint fusanet_core/weights/fusanet_small_indoor.pt \
        --config config/train_indoor.yaml [--json runs/eval_real_sets.json]

Metrics at the ground truth's full resolution, no crop, no median scaling, caps 1e-3..10 m
(80 m for KITTI). The data sets are read-only research data and stay out of the repository.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from fusanet_core import load_config, Predictor
from fusanet_core.datasets import build_source
from fusanet_core.datasets.transforms import Frame
from fusanet_core.image_io import read_rgb
from fusanet_core.metrics import MetricAccumulator

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
OTHER_SETS = {  # name: (spec, depth cap in metres)
    "gqcnn_primesense_bin": ("gqcnn_primesense_bin/manifest.csv", 10.0),
    "open3d_testdata (Redwood+TUM)": ("open3d_testdata/manifest.csv[0:6]", 10.0),  # row 6: SUN, bit-rotated
    "posecnn_ycbvideo": ("posecnn_ycbvideo/manifest.csv", 10.0),
    "slambook (Kinect+TUM)": ("slambook/manifest.csv", 10.0),
    "graspnet_example": ("graspnet_example/manifest.csv", 10.0),
    "rs_home_floor": ("rs_home_floor/manifest.csv", 10.0),
    "rs_tabletop": ("rs_tabletop/manifest.csv", 10.0),
    "kitti_object_vis (outdoor, sparse LiDAR)": ("kitti_object_vis/manifest.csv", 80.0),
}


def middlebury_frame() -> Frame:
    """Middlebury 2014 Motorcycle: Z = f B / (d + doffs) from the dense disparity."""
    root = DATA / "middlebury_motorcycle_skimage"
    disp = np.load(root / "motorcycle_disp.npz")["arr_0"]
    f, baseline, doffs = 994.978, 0.193001, 31.086
    depth = np.where(np.isfinite(disp), f * baseline / (disp + doffs), 0).astype(np.float32)
    rgb = read_rgb(root / "motorcycle_left.png")
    h, w = depth.shape
    return Frame(rgb, depth, np.array([f, f, (w - 1) / 2, (h - 1) / 2]))


def frames(spec: str, cfg) -> list[Frame]:
    source = build_source(str(DATA / spec), cfg)
    return [source.load(i) for i in range(len(source))]


def train_median(cfg, base_dir: Path) -> float:
    values = []
    for spec in cfg.data.train:
        source = build_source(spec, cfg, base_dir)
        for i in range(0, len(source), 5):  # every 5th frame: the median is stable
            d = source.load(i).depth
            values.append(d[(d > 0) & (d <= cfg.data.max_depth)][::16])
    return float(np.median(np.concatenate(values)))


def score(predictor: Predictor, items: list[Frame], cap: float, median: float) -> dict:
    model, base = MetricAccumulator(max_depth=cap), MetricAccumulator(max_depth=cap)
    for frame in items:
        model.add(predictor.predict(frame.rgb, frame.intrinsics)["depth"], frame.depth)
        base.add(np.full_like(frame.depth, median), frame.depth)
    m, b = model.summary(), base.summary()
    return {"n": m["n_images"], "model": m, "baseline": b, "rmse_gain": 1 - m["rmse"] / b["rmse"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--config", default="config/train_indoor.yaml", help="the training config (train/val blocks)")
    parser.add_argument("--json")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not DATA.is_dir():
        raise SystemExit(f"shared data not found at {DATA}")
    cfg = load_config(args.config)
    base_dir = Path(args.config).resolve().parent
    predictor = Predictor.from_checkpoint(args.checkpoint, "cpu")
    median = train_median(cfg, base_dir)
    print(f"constant baseline: training median depth {median:.3f} m")

    results = {}
    for spec in cfg.data.val:
        source = build_source(spec, cfg, base_dir)
        results[f"validation {Path(spec.split('[')[0]).parent.name}{spec[spec.find('['):]}"] = score(
            predictor, [source.load(i) for i in range(len(source))], cfg.data.max_depth, median
        )
    for name, (spec, cap) in OTHER_SETS.items():
        results[name] = score(predictor, frames(spec, cfg), cap, median)
    results["middlebury_motorcycle (stereo GT)"] = score(predictor, [middlebury_frame()], 10.0, median)

    print("| set | frames | abs_rel | rmse (m) | delta1 | baseline rmse (m) | rmse vs baseline |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        m = r["model"]
        print(f"| {name} | {r['n']} | {m['abs_rel']:.3f} | {m['rmse']:.3f} | {m['delta1']:.3f} | "
              f"{r['baseline']['rmse']:.3f} | {-100 * r['rmse_gain']:+.0f} % |")
    if args.json:
        Path(args.json).write_text(json.dumps({"median": median, "results": results}, indent=1))


if __name__ == "__main__":
    main()
