"""What known geometry costs per frame: the Predictor RGB only vs with points and the floor.

Usage: python bench/bench_known_geometry.py [--checkpoint PT] [--backend torch] [--threads 1] [--repeats 40]
       [--json out.json]

`Predictor.predict` on the bundled 640x480 TUM frame with the node's defaults (the checkpoint's
input size, RGB-only network, scale_local fit; torch or onnxruntime), four conditions interleaved round
robin (each round times each once, so machine noise hits them alike), medians:
RGB only; the floor plane alone; 200 known points (the scale_local fit); 200 points + the floor.
The points are SLAM-like (SIFT keypoints at valid ground truth, 3 % noise and 5 % outliers:
bench/point_baselines.py), clustered as a SLAM map's are, so the fit runs all three of its
interpolants (the smoothing spline included: the costlier case); the floor is the frame's own plane
fitted to its ground truth (bench/floor_truth.py). The target: points + floor <= 1.3x RGB only, >= 15 fps.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import statistics
import sys
import time

from bench_backends import cpu_name  # bench/ is on the path when run as a script
import cv2
from floor_truth import floor_plane
import numpy as np
from point_baselines import keypoint_points
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fusanet_core.inference.predictor import default_checkpoint, Predictor  # noqa: E402

SAMPLE = ROOT / "sample" / "tum_rgbd"
K = (520.9, 521.0, 325.1, 249.7)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="default: the bundled one")
    parser.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    rgb = cv2.cvtColor(cv2.imread(str(SAMPLE / "00.color.jpg")), cv2.COLOR_BGR2RGB)
    depth = cv2.imread(str(SAMPLE / "00.depth.png"), cv2.IMREAD_UNCHANGED).astype(np.float32) * 0.0002
    rng = np.random.default_rng(0)
    points = keypoint_points(rgb, depth, 200, rng, noise=0.03, outlier_share=0.05)
    plane, _ = floor_plane(depth, np.array(K), depth > 0, rng)
    if plane is None:
        raise SystemExit("no floor found in the sample frame's ground truth")
    checkpoint = Path(args.checkpoint) if args.checkpoint else default_checkpoint()
    predictor = Predictor.from_checkpoint(checkpoint, "cpu", backend=args.backend, scale_from_points="scale_local",
                                          prime_with_points=False)
    conditions = {"RGB only": (None, None), "floor": (None, plane), "200 points (scale_local)": (points, None),
                  "200 points + floor": (points, plane)}
    times: dict[str, list[float]] = {name: [] for name in conditions}
    for pts, ground in conditions.values():  # warm-up
        predictor.predict(rgb, K, pts, ground=ground)
    for _ in range(args.repeats):
        for name, (pts, ground) in conditions.items():
            start = time.perf_counter()
            predictor.predict(rgb, K, pts, ground=ground)
            times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(t) * 1000 for name, t in times.items()}
    info = {"cpu": cpu_name(), "backend": args.backend, "threads": args.threads, "repeats": args.repeats,
            "checkpoint": checkpoint.name,
            "input_size": list(predictor.input_size), "torch": torch.__version__}
    print(f"CPU {info['cpu']}, {args.backend}, {args.threads} thread(s), {args.repeats} interleaved rounds, medians; "
          f"{info['checkpoint']} (network input {info['input_size'][0]}x{info['input_size'][1]}), "
          f"Predictor.predict on the 480x640 sample frame\n")
    print("| condition | median ms | fps | vs RGB only |")
    print("|---|---|---|---|")
    for name, ms in median.items():
        print(f"| {name} | {ms:.1f} | {1000 / ms:.1f} | {ms / median['RGB only']:.2f}x |")
    if args.json:
        Path(args.json).write_text(json.dumps({"info": info, "median_ms": median}, indent=2))


if __name__ == "__main__":
    main()
