"""Inference backends: torch eager vs torch channels_last vs onnxruntime, one Predictor each.

Usage: python bench/bench_backends.py [--checkpoint PT] [--threads 1] [--repeats 30] [--json out.json]

For the checkpoint's own input size and for 240x320: the full `Predictor.predict` (resize,
network, un-resize) on the bundled TUM frame, without points and with 100 known points (primed,
and the node's default: RGB-only network + scale_local fit), variants interleaved round-robin so
that machine noise hits them alike; medians. The ONNX graphs
go to a temporary cache (exported once per size, not timed). Compare ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import platform
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = Path(__file__).resolve().parents[1]
# (label, with points, scale_from_points, prime_with_points): RGB only; 100 points fed to the
# network (the paper's priming, no fit); 100 points the depth node's default way (RGB-only network
# + scale_local fit through them, with the calibrated confidence that knows them).
CONDITIONS = (("no points", False, "none", True), ("100 points primed", True, "none", True),
              ("100 points, node default (RGB only + scale_local)", True, "scale_local", False))
sys.path.insert(0, str(ROOT))


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", help="default: the bundled one")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--sizes", nargs="*", default=None, help="HxW sizes (default: the checkpoint's and 240x320)")
    parser.add_argument("--json")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    import cv2
    import numpy as np
    import torch

    from fusanet_core.inference.predictor import default_checkpoint, Predictor

    torch.set_num_threads(args.threads)  # the onnxruntime backend takes its intra-op threads from here
    checkpoint = Path(args.checkpoint) if args.checkpoint else default_checkpoint()
    sample = ROOT / "sample" / "tum_rgbd"
    rgb = cv2.cvtColor(cv2.imread(str(sample / "00.color.jpg")), cv2.COLOR_BGR2RGB)
    depth = cv2.imread(str(sample / "00.depth.png"), cv2.IMREAD_UNCHANGED).astype(np.float32) * 0.0002
    ys, xs = np.nonzero(depth > 0)
    pick = np.random.default_rng(0).choice(len(ys), 100, replace=False)
    points = np.stack([xs[pick], ys[pick], depth[ys[pick], xs[pick]]], 1).astype(np.float32)
    k = (520.9, 521.0, 325.1, 249.7)

    base = Predictor.from_checkpoint(checkpoint, "cpu")
    sizes = ([tuple(base.input_size)] + [(240, 320)] if args.sizes is None
             else [tuple(map(int, s.split("x"))) for s in args.sizes])
    sizes = list(dict.fromkeys(sizes))
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        for size in sizes:
            eager = Predictor.from_checkpoint(checkpoint, "cpu", input_size=size)
            eager.model.to(memory_format=torch.contiguous_format)
            eager.memory_format = torch.contiguous_format
            chl = Predictor.from_checkpoint(checkpoint, "cpu", input_size=size)
            chl.model.to(memory_format=torch.channels_last)
            chl.memory_format = torch.channels_last
            ort = Predictor.from_checkpoint(checkpoint, "cpu", input_size=size, backend="onnxruntime",
                                            cache_dir=cache)
            start = time.perf_counter()
            ort.onnx_sessions()
            export_s = time.perf_counter() - start
            variants = {"torch eager": eager, "torch channels_last": chl, "onnxruntime": ort}
            for label, with_points, fit, prime in CONDITIONS:
                pts = points if with_points else None
                for p in variants.values():
                    p.set_point_fit(fit, 8, prime)
                times = {name: [] for name in variants}
                for p in variants.values():  # warm-up
                    p.predict(rgb, k, pts)
                for _ in range(args.repeats):
                    for name, p in variants.items():
                        t0 = time.perf_counter()
                        p.predict(rgb, k, pts)
                        times[name].append(time.perf_counter() - t0)
                med = {name: statistics.median(t) * 1000 for name, t in times.items()}
                for name, ms in med.items():
                    rows.append({"size": f"{size[0]}x{size[1]}", "points": label, "backend": name,
                                 "median_ms": round(ms, 1),
                                 "speedup_vs_eager": round(med["torch eager"] / ms, 2),
                                 "first_use_export_s": round(export_s, 1) if name == "onnxruntime" else None})
    import onnxruntime

    info = {"cpu": cpu_name(), "threads": args.threads, "repeats": args.repeats, "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__, "checkpoint": checkpoint.name,
            "input": f"{rgb.shape[0]}x{rgb.shape[1]} RGB"}
    print(f"CPU {info['cpu']}, {args.threads} thread(s), {args.repeats} interleaved repeats, medians; torch "
          f"{info['torch']}, onnxruntime {info['onnxruntime']}; {info['checkpoint']}, Predictor.predict on a "
          f"{info['input']} frame (resize + network + un-resize)\n")
    print("| network input | points | backend | median ms | vs eager |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']} | {r['points']} | {r['backend']} | {r['median_ms']} | {r['speedup_vs_eager']:.2f}x |")
    exports = {r["size"]: r["first_use_export_s"] for r in rows if r["first_use_export_s"] is not None}
    print("\nfirst use (export + check of both graphs, then cached): "
          + ", ".join(f"{s} {v} s" for s, v in exports.items()))
    if args.json:
        Path(args.json).write_text(json.dumps({"info": info, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
