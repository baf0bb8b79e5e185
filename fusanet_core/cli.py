"""The `fusanet` command line: predict, train, eval, export (fusanet_ros.cli adds the ROS commands).

Every command returns an exit code; user errors end as one readable line and a non-zero exit.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
import sys
from typing import Callable

import numpy as np

from .checkpoint import CheckpointError
from .config import Config, load_config
from .errors import error_reason
from .evaluation.evaluate import evaluate
from .evaluation.metrics import format_table
from .training.trainer import Trainer, TrainingError

USER_ERRORS = (ValueError, FileNotFoundError, CheckpointError, OSError, KeyError)


def build_parser() -> tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
    parser = argparse.ArgumentParser(prog="fusanet", description="FuSaNet monocular depth: train, evaluate, predict.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("predict", help="depth PNGs (16-bit mm), confidence and previews for images or folders")
    p.add_argument("inputs", nargs="+", help="image files and/or folders of images")
    p.add_argument("--checkpoint", help="checkpoint file (default: the bundled one)")
    p.add_argument("--out", default="out/predict", help="output folder (default: out/predict)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    p.add_argument("--fp16", action="store_true", help="half precision (CUDA only)")
    p.add_argument("--intrinsics", nargs=4, type=float, metavar=("FX", "FY", "CX", "CY"), help="camera intrinsics")
    p.add_argument("--input-size", nargs=2, type=int, metavar=("H", "W"), help="network input size")
    p.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch",
                   help="torch (eager) | onnxruntime (the exported graph, built and cached on first use)")
    floor = p.add_mutually_exclusive_group()
    floor.add_argument("--ground-plane", nargs=4, type=float, metavar=("NX", "NY", "NZ", "H"),
                       help="the floor in the camera optical frame (unit normal up, camera height H m): metric "
                            "scale from the floor; needs --intrinsics")
    floor.add_argument("--ground-extrinsic", nargs=7, type=float, metavar=("TX", "TY", "TZ", "QX", "QY", "QZ", "QW"),
                       help="or the camera optical frame's pose over the floor (base_footprint -> optical frame)")
    p.set_defaults(run=run_predict)

    _add_train(sub)
    _add_finetune(sub)
    _add_eval(sub)
    _add_export(sub)
    return parser, sub


def run_predict(args: argparse.Namespace) -> int:
    from .io.images import list_images, read_rgb, write_confidence_png, write_depth_png, write_rgb
    from .inference.predictor import Predictor

    ground = _ground_plane(args)
    images = list_images(args.inputs)
    predictor = Predictor.from_checkpoint(args.checkpoint, args.device, args.fp16 or None, args.input_size,
                                          backend=args.backend)
    out = Path(args.out)
    for path in images:
        rgb = read_rgb(path)
        result = predictor.predict(rgb, args.intrinsics, ground=ground)
        depth = result["depth"]
        if ground is not None:
            fit = result["ground_fit"]
            used = f"scale {fit['scale']:.3f} on {fit['floor_share']:.0%} of the image" if fit["applied"] else None
            print(f"{path.name}: floor {used or 'not used (' + fit['reason'] + '): the network scale'}")
        write_depth_png(out / f"{path.stem}_depth.png", depth)
        write_confidence_png(out / f"{path.stem}_confidence.png", result["confidence"])
        from .io.preview import depth_preview  # image | coloured depth | colour bar in metres

        write_rgb(out / f"{path.stem}_preview.png", depth_preview(rgb, depth))
        print(f"{path.name}: depth {np.median(depth):.2f} m median ({depth.min():.2f}-{depth.max():.2f} m), "
              f"confidence {result['confidence'].mean():.2f} mean -> {out}/{path.stem}_*.png")
    return 0


def _ground_plane(args: argparse.Namespace) -> np.ndarray | None:
    """Return the floor plane of --ground-plane / --ground-extrinsic, checked (ValueError names the problem)."""
    from .geometry import check_ground_plane, ground_plane_from_pose, parse_extrinsic

    if args.ground_plane is None and args.ground_extrinsic is None:
        return None
    if args.intrinsics is None:
        raise ValueError("--ground-plane / --ground-extrinsic need --intrinsics (the floor is projected with them)")
    if args.ground_extrinsic is not None:
        return ground_plane_from_pose(parse_extrinsic(args.ground_extrinsic, strict=True))
    return check_ground_plane(args.ground_plane)


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train FuSaNet from a YAML config (see docs/training.md)")
    p.add_argument("--config", required=True, help="training YAML, e.g. config/train_indoor.yaml")
    p.add_argument("--resume", nargs="?", const="last", default=None, metavar="CKPT",
                   help="continue from CKPT (default: <out_dir>/last.pt)")
    p.add_argument("--force", action="store_true", help="start afresh even if out_dir holds a run")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config value, e.g. --set loss.lam=0 (repeatable)")
    p.add_argument("--out-dir", help="override train.out_dir")
    p.add_argument("--max-steps", type=int, help="override train.max_steps")
    p.add_argument("--epochs", type=int, help="override train.epochs")
    p.add_argument("--device", help="override train.device (auto | cpu | cuda[:N])")
    p.set_defaults(run=run_train)


def _add_finetune(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finetune", help="fine-tune the model on your own RGB-D recordings (bags, manifests, lists)")
    p.add_argument("data", nargs="+", help="recordings: ROS bags (sqlite3/MCAP), manifest.csv or list files; "
                   "the last 20 %% of each validates")
    p.add_argument("--out", required=True, help="output folder: finetuned.pt, report.md, the run (resumable)")
    p.add_argument("--minutes", type=float, default=15.0, help="time budget (default 15)")
    p.add_argument("--checkpoint", help="starting checkpoint (default: the bundled one)")
    p.add_argument("--image-topic", default="", help="bags: colour image topic (default: auto-detect)")
    p.add_argument("--depth-topic", default="", help="bags: depth image registered to colour (16UC1 mm or 32FC1 m)")
    p.add_argument("--camera-info-topic", default="", help="bags: the colour camera's CameraInfo")
    p.add_argument("--max-steps", type=int, default=0, help="also stop after this many steps (default: budget only)")
    p.add_argument("--batch-size", type=int, default=8, help="frames per step (default 8)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's choice)")
    p.add_argument("--force", action="store_true", help="replace another fine-tuning run in --out")
    p.set_defaults(run=run_finetune)


def run_finetune(args: argparse.Namespace) -> int:
    from .training.finetune import finetune, FinetuneSettings

    settings = FinetuneSettings(minutes=args.minutes, max_steps=args.max_steps, batch_size=args.batch_size,
                                device=args.device, threads=args.threads)
    topics = (args.image_topic, args.depth_topic, args.camera_info_topic)
    try:
        report = finetune(args.data, args.out, settings, args.checkpoint, topics, args.force)
    except TrainingError as err:
        print(f"fusanet finetune: error: {err}", file=sys.stderr)
        return 3
    before, after = report["before"], report["after"]
    print(f"fine-tuned {report['steps']} steps in {report['minutes']} min ({report['stopped']}); validation RMSE "
          f"{before['rmse']:.3f} -> {after['rmse']:.3f} m, abs_rel {before['abs_rel']:.3f} -> {after['abs_rel']:.3f} "
          f"({after['n']} frames) -> {args.out}/finetuned.pt, {args.out}/report.md")
    return 0


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="depth metrics of a checkpoint on a data set")
    p.add_argument("--checkpoint", required=True, help="checkpoint file")
    p.add_argument("--data", required=True, help="manifest.csv (or its folder), list file or bag; may end in [a:b]")
    p.add_argument("--json", help="also write the metrics to this JSON file")
    p.add_argument("--crop", choices=["eigen_nyu", "garg", "eigen_kitti"], help="evaluation crop (default none)")
    p.add_argument("--max-depth", type=float, help="depth cap in metres (default: the checkpoint's data.max_depth)")
    p.add_argument("--kind", choices=["nyu", "kitti"],
                   help="units of a list file (default: the checkpoint's data.kind)")
    p.add_argument("--data-root", help="list files: folder the RGB paths are relative to (default: the "
                   "checkpoint's data.data_root, else the list file's folder)")
    p.add_argument("--gt-root", help="list files: folder the depth paths are relative to (default: the "
                   "checkpoint's data.gt_root, else the RGB folder)")
    p.add_argument("--input-size", nargs=2, type=int, metavar=("H", "W"), help="network input size")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    p.set_defaults(run=run_eval)


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="ONNX export of the inference graph (RGB + optional known points), "
                                      "checked with onnxruntime")
    p.add_argument("--checkpoint", help="checkpoint file (default: the bundled one)")
    p.add_argument("--out", required=True, help="output .onnx file")
    p.add_argument("--input-size", nargs=2, type=int, metavar=("H", "W"), help="input size (default: the checkpoint's)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--max-points", type=int, default=512,
                   help="rows of the graph's points input (u, v, depth + validity mask; default 512, 0 = RGB only)")
    p.set_defaults(run=run_export)


def train_config(args: argparse.Namespace) -> Config:
    cfg = load_config(args.config, args.set)
    if args.out_dir:
        cfg.train.out_dir = args.out_dir
    if args.max_steps is not None:
        cfg.train.max_steps = args.max_steps
    if args.epochs is not None:
        cfg.train.epochs = args.epochs
    if args.device:
        cfg.train.device = args.device
    cfg.train.__post_init__()  # the shortcuts follow the config's own rules (--max-steps -1 is refused)
    return cfg


def run_train(args: argparse.Namespace) -> int:
    cfg = train_config(args)
    resume = None
    if args.resume is not None:
        resume = Path(cfg.train.out_dir) / "last.pt" if args.resume == "last" else Path(args.resume)
        if not resume.is_file():
            raise FileNotFoundError(f"nothing to resume: {resume} not found")
    try:
        trainer = Trainer(cfg, base_dir=Path(args.config).resolve().parent, resume=resume, force=args.force)
        summary = trainer.fit()
    except TrainingError as err:
        print(f"fusanet train: error: {err}", file=sys.stderr)
        return 3
    except (ValueError, FileNotFoundError) as err:
        raise _unwrap_worker_error(err) from None
    if trainer.dist.main:
        best = (f", best val rmse {summary['best_rmse']:.4f} (epoch {summary['best_epoch']})"
                if summary["best_epoch"] else "")
        print(f"trained to step {summary['step']}{best}; checkpoints in {cfg.train.out_dir}")
    return 0


def _unwrap_worker_error(err: Exception) -> Exception:
    """Return the original error of a DataLoader worker's re-raised one.

    A DataLoader worker re-raises "Caught ValueError in DataLoader worker process 0" + a
    traceback; the CLI's one line should be the original message (its last line).
    """
    text = str(err)
    if not text.startswith("Caught "):
        return err
    last = [line for line in text.strip().splitlines() if line.strip()][-1]
    prefix = f"{type(err).__name__}: "
    return type(err)(last[len(prefix):] if last.startswith(prefix) else last)


def run_eval(args: argparse.Namespace) -> int:
    input_size = tuple(args.input_size) if args.input_size else None
    metrics = evaluate(args.checkpoint, args.data, args.device, args.crop, args.max_depth, args.kind, input_size,
                       args.data_root, args.gt_root)
    print(f"{args.data}: {metrics['n_images']} images, crop {args.crop or 'none'}")
    print(format_table(metrics))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(metrics, indent=2))
    return 0


def run_export(args: argparse.Namespace) -> int:
    from .inference.export import export_onnx

    input_size = tuple(args.input_size) if args.input_size else None
    if args.max_points < 0:
        raise ValueError(f"--max-points must be >= 0, got {args.max_points}")
    report = export_onnx(args.checkpoint, args.out, input_size, args.opset, args.max_points)
    print(f"exported {report['path']} (input 1x3x{report['height']}x{report['width']}); onnxruntime vs PyTorch: "
          f"max |depth diff| {report['max_abs_diff']:.2e} m, max rel {report['max_rel_diff']:.2e}")
    return 0


def main(argv: list[str] | None = None, extend: Callable[[argparse._SubParsersAction], None] | None = None) -> int:
    """Parse and run; `extend` lets fusanet_ros add its commands to the same parser."""
    parser, sub = build_parser()
    if extend is not None:
        extend(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.run(args) or 0)
    except USER_ERRORS as err:
        print(f"fusanet {args.command}: error: {error_reason(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
