"""Teach it your building, measured: fine-tune on the first part of a walk, score the rest.

`fusanet finetune` on the first --train-share of a recording (its own last 20 % of that part
validates and stops it early), then the starting checkpoint and the result scored on the frames
after it (never seen, never validated on) as `fusanet_core.evaluation.before_after` scores them:
RGB only (raw RMSE, abs_rel, delta1, median-scaled abs_rel) and the node default with 50 / 200
exact points. Writes --out/summary.json and prints one Markdown row per model.

    python bench/finetune_building.py ../shared/data/hololens_office_dvmvs/manifest.csv \
        --out runs/ft_hololens --minutes 15 --threads 1 [--set augment=true --set lr=1e-4]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import time

import yaml

from fusanet_core.checkpoint import default_checkpoint, read_checkpoint
from fusanet_core.datasets import build_source
from fusanet_core.evaluation.before_after import node_default_predictor, score_frames
from fusanet_core.training.finetune import finetune, FinetuneSettings

COLUMNS = ("rmse", "abs_rel", "delta1", "ms_abs_rel", "rmse@50", "delta1@50", "rmse@200", "delta1@200")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recording", help="manifest.csv, list file or bag (one walk, in time order)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--train-share", type=float, default=0.6, help="first share fine-tuned on (default 0.6)")
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--checkpoint", default=None, help="start (default: the bundled checkpoint)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a FinetuneSettings field, e.g. lr=1e-4 (repeatable)")
    args = parser.parse_args(argv)

    start = Path(args.checkpoint) if args.checkpoint else default_checkpoint()
    _, cfg = read_checkpoint(start)
    total = len(build_source(args.recording, cfg))
    cut = int(round(args.train_share * total))
    overrides = {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in args.set)}
    settings = FinetuneSettings(minutes=args.minutes, threads=args.threads, device="cpu", **overrides)
    started = time.monotonic()
    report = finetune([f"{args.recording}[0:{cut}]"], args.out, settings, start)
    held_out = build_source(f"{args.recording}[{cut}:{total}]", cfg)
    frames = [held_out.load(i) for i in range(len(held_out))]
    scores = {name: score_frames(node_default_predictor(str(path), "cpu"), frames, max_depth=cfg.data.max_depth)
              for name, path in (("start", start), ("fine-tuned", Path(args.out) / "finetuned.pt"))}
    summary = {"recording": args.recording, "train_frames": f"[0:{cut}]", "held_out": f"[{cut}:{total}]",
               "settings": report["settings"], "steps": report["steps"], "minutes": report["minutes"],
               "stopped": report["stopped"], "wall_minutes": round((time.monotonic() - started) / 60, 2),
               **{name: {k: v for k, v in s.items() if k != "frames"} for name, s in scores.items()}}
    Path(args.out, "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"| model | held-out frames | {' | '.join(COLUMNS)} |")
    for name in scores:
        print(f"| {name} | {scores[name]['n']} | " + " | ".join(f"{scores[name][c]:.3f}" for c in COLUMNS) + " |")
    print(f"{report['steps']} steps, {report['minutes']} min ({report['stopped']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
