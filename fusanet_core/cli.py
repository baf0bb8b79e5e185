"""The `fusanet` command line (core part; fusanet_ros.cli adds the ROS commands).

Every command returns an exit code; user errors end as one readable line and a non-zero exit.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
import sys
from typing import Callable

import numpy as np

from .checkpoint import CheckpointError
from .errors import error_reason

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
    p.set_defaults(run=run_predict)

    _add_training_commands(sub)
    return parser, sub


def _add_training_commands(sub: argparse._SubParsersAction) -> None:
    """Add the train / eval / export commands, which live in the trainer and export modules (imported when used)."""
    try:
        from .trainer import add_cli_commands
    except ImportError:  # trainer not built into this version
        return
    add_cli_commands(sub)


def run_predict(args: argparse.Namespace) -> int:
    from .image_io import list_images, read_rgb, write_confidence_png, write_depth_png, write_rgb
    from .predictor import Predictor

    images = list_images(args.inputs)
    predictor = Predictor.from_checkpoint(args.checkpoint, args.device, args.fp16 or None, args.input_size,
                                          backend=args.backend)
    out = Path(args.out)
    for path in images:
        rgb = read_rgb(path)
        result = predictor.predict(rgb, args.intrinsics)
        depth = result["depth"]
        write_depth_png(out / f"{path.stem}_depth.png", depth)
        write_confidence_png(out / f"{path.stem}_confidence.png", result["confidence"])
        from .preview import depth_preview  # image | coloured depth | colour bar in metres

        write_rgb(out / f"{path.stem}_preview.png", depth_preview(rgb, depth))
        print(f"{path.name}: depth {np.median(depth):.2f} m median ({depth.min():.2f}-{depth.max():.2f} m), "
              f"confidence {result['confidence'].mean():.2f} mean -> {out}/{path.stem}_*.png")
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
