"""Equal-budget network ablations on the indoor data.

Train each variant for the same number of steps on the same blocks, then score every variant on
the same validation frames.

Each variant is `name=preset[,key=value...]` with `fusanet train --set` overrides (YAML values),
on top of a base config (default config/train_indoor.yaml: 7-Scenes [0:400] + office [0:198]
twice for training; 7-Scenes [400:500] and office [198:248] held out as contiguous blocks).
Runs go to <out>/<name>/ (resumable: a finished run is not trained again) and use one torch
thread each; --jobs runs that many at once (2 on a 2-core machine).

Scores, per validation block, at the ground truth's full resolution through the Predictor (RGB
only, caps 1e-3..10 m): raw metric RMSE / abs_rel / delta1, and median-scaled abs_rel / delta1
(structure alone). The table is printed as Markdown and written to <out>/ablation.json.

Usage:
    python bench/ablate_network.py --steps 600 --size 60 80 --out runs/ablate \
        unet=unet fusanet=small fusanet_nosal=small,model.use_saliency=false
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import subprocess
import sys
import time

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BLOCKS = {  # validation block name -> manifest spec (as in config/train_indoor.yaml)
    "7-Scenes val": "7scenes_redkitchen/manifest.csv[400:500]",
    "office val": "rs_d435_office/manifest.csv[198:248]",
}
DATA = ROOT.parent / "shared" / "data"


def parse_variant(text: str) -> tuple[str, str, list[str]]:
    """'name=preset,key=value,...' -> (name, preset, ['key=value', ...])."""
    name, _, rest = text.partition("=")
    if not name or not rest:
        raise ValueError(f"variant must be name=preset[,key=value...], got {text!r}")
    preset, *overrides = rest.split(",")
    return name, preset, overrides


def train_command(args: argparse.Namespace, name: str, preset: str, overrides: list[str]) -> list[str]:
    h, w = args.size
    sets = [f"preset={preset}", f"data.image_size=[{h}, {w}]", f"inference.input_size=[{h}, {w}]",
            f"train.max_steps={args.steps}", f"train.epochs={args.epochs}", "train.threads=1",
            f"train.out_dir={Path(args.out) / name}", "train.checkpoint_every_min=5.0", f"train.seed={args.seed}",
            "train.lr_cooldown_epochs=0", *overrides]
    cmd = [sys.executable, "-m", "fusanet_core.cli", "train", "--config", str(args.config)]
    for item in sets:
        cmd += ["--set", item]
    return cmd


def run_all(args: argparse.Namespace, variants: list[tuple[str, str, list[str]]]) -> dict[str, float]:
    """Train the variants that have no finished checkpoint, `--jobs` at a time; seconds per run."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    pending = [v for v in variants if not (Path(args.out) / v[0] / "done").is_file()]
    running: list[tuple[str, subprocess.Popen, float]] = []
    seconds: dict[str, float] = {}
    while pending or running:
        while pending and len(running) < args.jobs:
            name, preset, overrides = pending.pop(0)
            (Path(args.out) / name).mkdir(parents=True, exist_ok=True)
            log = open(Path(args.out) / name / "train.log", "ab")
            cmd = train_command(args, name, preset, overrides)
            if (Path(args.out) / name / "last.pt").is_file():
                cmd.append("--resume")
            proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
            running.append((name, proc, time.time()))
        time.sleep(5)
        for item in list(running):
            name, proc, start = item
            if proc.poll() is None:
                continue
            running.remove(item)
            if proc.returncode != 0:
                raise RuntimeError(f"training {name} failed (exit {proc.returncode}); "
                                   f"see {Path(args.out) / name / 'train.log'}")
            seconds[name] = time.time() - start
            (Path(args.out) / name / "done").write_text(f"{seconds[name]:.0f}\n")
    return seconds


def score(checkpoint: Path) -> dict[str, dict[str, float]]:
    """Raw and median-scaled metrics of a checkpoint on each validation block."""
    import torch

    from fusanet_core import load_config, Predictor
    from fusanet_core.datasets import build_source
    from fusanet_core.evaluation.metrics import MetricAccumulator

    torch.set_num_threads(1)
    predictor = Predictor.from_checkpoint(checkpoint, "cpu")
    cfg = load_config(ROOT / "config" / "train_indoor.yaml")
    out = {}
    for block, spec in BLOCKS.items():
        raw, scaled = MetricAccumulator(max_depth=10.0), MetricAccumulator(max_depth=10.0, median_scale=True)
        source = build_source(str(DATA / spec), cfg)
        for i in range(len(source)):
            frame = source.load(i)
            depth = predictor.predict(frame.rgb, frame.intrinsics)["depth"]
            raw.add(depth, frame.depth)
            scaled.add(depth, frame.depth)
        r, s = raw.summary(), scaled.summary()
        out[block] = {"rmse": r["rmse"], "abs_rel": r["abs_rel"], "delta1": r["delta1"],
                      "ms_abs_rel": s["abs_rel"], "ms_delta1": s["delta1"], "n": r["n_images"]}
    return out


def markdown(results: dict[str, dict], args: argparse.Namespace) -> str:
    lines = [f"{args.steps} steps, batch from the base config, {args.size[0]}x{args.size[1]}, 1 thread, "
             f"seed {args.seed}",
             "", "| variant | params | train min | " + " | ".join(
                 f"{b} RMSE m / abs_rel / δ1 / ms abs_rel / ms δ1" for b in BLOCKS) + " |",
             "|---|---|---|" + "---|" * len(BLOCKS)]
    for name, r in results.items():
        cells = [f"{m['rmse']:.3f} / {m['abs_rel']:.3f} / {m['delta1']:.3f} / "
                 f"{m['ms_abs_rel']:.3f} / {m['ms_delta1']:.3f}"
                 for m in (r["blocks"][b] for b in BLOCKS)]
        lines.append(f"| {name} | {r['params'] / 1e6:.2f}M | {r['train_s'] / 60:.0f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="+", help="name=preset[,key=value...]")
    parser.add_argument("--config", default=str(ROOT / "config" / "train_indoor.yaml"))
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--epochs", type=int, default=1000, help="upper bound; --steps stops the run")
    parser.add_argument("--size", nargs=2, type=int, default=[60, 80], metavar=("H", "W"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", default="runs/ablate")
    args = parser.parse_args(argv)
    variants = [parse_variant(v) for v in args.variants]
    run_all(args, variants)
    results = {}
    for name, _, _ in variants:
        from fusanet_core import build_model
        from fusanet_core.checkpoint import read_checkpoint

        ckpt = Path(args.out) / name / "last.pt"
        _payload, cfg = read_checkpoint(ckpt)
        params = sum(p.numel() for p in build_model(cfg).parameters())
        train_s = float((Path(args.out) / name / "done").read_text())
        results[name] = {"params": params, "train_s": train_s, "blocks": score(ckpt)}
        print(name, json.dumps(results[name]["blocks"]), flush=True)
    Path(args.out, "ablation.json").write_text(json.dumps({"args": vars(args), "results": results}, indent=1))
    print(markdown(results, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
