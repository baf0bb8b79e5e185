"""`fusanet bag-eval`: the offline evaluation (`evaluation.bag_eval`) or, with `--live`, the eval launch.

The eval launch (bag player -> depth node -> evaluator node over DDS) takes the same options.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fusanet_core.evaluation.bag_eval import (
    BagEvalOptions,
    check_topics,
    evaluate_bag,
    plan_registration,
    REGISTER_MODES,
)
from fusanet_core.evaluation.pairing import DEFAULT_SLOP


def add_bag_eval_command(sub: argparse._SubParsersAction) -> None:
    """Register `fusanet bag-eval` (imports nothing heavy until it runs)."""
    p = sub.add_parser("bag-eval",
                       help="score the depth model on a bag (ROS 1, ROS 2 sqlite3/MCAP) against its depth",
                       description="Offline evaluation: every colour frame of the bag through the model, paired with "
                                   "the ground-truth depth of the nearest stamp; writes report.json, report.md and "
                                   "plots.")
    p.add_argument("bag", help="ROS 1 .bag file, ROS 2 bag folder (sqlite3 or MCAP) or .mcap file")
    p.add_argument("--image-topic", required=True,
                   help="colour image topic (sensor_msgs/Image rgb8/bgr8/rgba8/bgra8/mono8)")
    p.add_argument("--depth-topic", required=True, help="ground-truth depth topic (16UC1/mono16 or 32FC1)")
    p.add_argument("--camera-info-topic", help="colour CameraInfo topic (default: guessed from the image topic)")
    p.add_argument("--depth-camera-info-topic",
                   help="ground-truth CameraInfo topic (default: guessed; needed to register)")
    p.add_argument("--register", choices=REGISTER_MODES, default="auto",
                   help="register the ground truth into the colour camera: auto = when camera_infos or "
                        "frame_ids differ")
    p.add_argument("--extrinsic", nargs="+", type=float, metavar="V",
                   help="depth-to-colour extrinsic p_colour = R p_depth + t: TX TY TZ QX QY QZ QW (or 12/16 numbers "
                        "of a row-major 3x4/4x4 matrix); default: from the bag (librealsense tf topics or /tf_static)")
    p.add_argument("--checkpoint", help="checkpoint file (default: the bundled one)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    p.add_argument("--input-size", nargs=2, type=int, metavar=("H", "W"), help="network input size")
    p.add_argument("--out", default="out/bag_eval", help="report folder (default: out/bag_eval)")
    p.add_argument("--min-depth", type=float, default=1e-3, help="metres (default 0.001)")
    p.add_argument("--max-depth", type=float, default=10.0, help="metres (default 10)")
    p.add_argument("--crop", help="none, eigen_nyu, garg, eigen_kitti or top,bottom,left,right")
    p.add_argument("--slop", type=float, default=DEFAULT_SLOP,
                   help=f"max |stamp difference| in s for a pair (default {DEFAULT_SLOP}; 0 = exact)")
    p.add_argument("--depth-scale", type=float, default=0.001,
                   help="metres per unit of 16UC1/mono16 ground truth (default 0.001 = mm)")
    p.add_argument("--max-frames", type=int, default=0, help="stop after this many colour frames (0 = all)")
    p.add_argument("--panels", type=int, default=4, help="RGB | GT | prediction | error panels to save (default 4)")
    live = p.add_argument_group("live mode", "replay the bag over DDS through the depth node and the evaluator node "
                                             "(the process-runner form of launch/eval.launch.py)")
    live.add_argument("--live", action="store_true", help="evaluate live instead of offline (latency and drops too)")
    live.add_argument("--rate", type=float, default=1.0, help="playback rate (default 1.0; lower it for slow models)")
    live.add_argument("--idle-timeout", type=float, default=5.0,
                      help="s without messages before the report (default 5)")
    live.add_argument("--domain-id", type=int, help="ROS_DOMAIN_ID (default: the environment's)")
    p.set_defaults(run=run_bag_eval)


def run_bag_eval(args: argparse.Namespace) -> int:
    """Run the CLI entry: evaluate, print the summary; exit code 0, or a one-line error when nothing was scored.

    On that error, evaluate_bag's NothingScoredError names the most common reason.
    """
    from fusanet_core.evaluation.metrics import format_table

    names = set(BagEvalOptions.__dataclass_fields__)
    opts = BagEvalOptions(**{k: v for k, v in vars(args).items() if k in names})
    check_topics(opts)
    if getattr(args, "live", False):
        return _run_live(opts, args.rate, args.idle_timeout, args.domain_id)
    evaluation, paths = evaluate_bag(opts)
    summary = evaluation.summary()
    counts = evaluation.to_dict({})["counts"]
    damaged = f", {counts['corrupt']} corrupt messages skipped" if counts.get("corrupt") else ""
    skipped = sum(counts[k] for k in ("no_valid_gt", "no_coverage", "size_mismatch", "error"))
    print(f"{counts['frames']} colour frames: {counts['ok']} scored, {counts['unpaired']} without ground truth within "
          f"{opts.slop:g} s, {skipped} skipped{damaged}")
    print(format_table({k: v for k, v in summary.items() if k not in ("n_valid",)}))
    for note in evaluation.notes:
        print(f"note: {note}")
    print(f"report: {paths['markdown']}")
    return 0


def _run_live(opts: BagEvalOptions, rate: float, idle_timeout: float, domain_id: int | None) -> int:
    """`bag-eval --live`: the eval launch through the process runner, with the offline options."""
    if opts.checkpoint and not Path(opts.checkpoint).expanduser().is_file():
        raise FileNotFoundError(f"checkpoint not found: {opts.checkpoint}")
    # The same registration decision as offline; its extrinsic (e.g. from the bag) goes to the evaluator.
    color_info, depth_info, registration = plan_registration(opts)
    extrinsic = registration.depth_to_color.as_list() if registration else (opts.extrinsic or [])
    values = {
        "bag": opts.bag, "image_topic": opts.image_topic, "camera_info_topic": color_info or "",
        "depth_topic": opts.depth_topic, "depth_camera_info_topic": depth_info or "",
        "checkpoint": opts.checkpoint or "", "device": opts.device, "output_dir": opts.out, "slop": opts.slop,
        "max_depth": opts.max_depth, "rate": rate, "idle_timeout": idle_timeout,
        "extrinsic": " ".join(repr(float(v)) for v in extrinsic),
        "depth_parameters": {"input_size": list(opts.input_size)} if opts.input_size else {},
        "evaluator_parameters": {"min_depth": opts.min_depth, "crop": opts.crop or "",
                                 "gt_depth_scale": opts.depth_scale, "max_panels": opts.panels,
                                 "max_frames": opts.max_frames, "register": opts.register},
    }
    from fusanet_ros.startup.eval_launch import run_eval_launch

    code = run_eval_launch(values, domain_id)
    print(f"report: {Path(opts.out) / 'report.md'}")
    return code
