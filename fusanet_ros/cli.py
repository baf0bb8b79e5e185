"""`fusanet` entry point: the core commands plus the ROS ones (launch, play, demo, bag-eval).

rclpy is imported only when a ROS command runs, so the core commands work without ROS.
"""

from __future__ import annotations

import argparse
import sys

from fusanet_core import cli as core_cli


def add_ros_commands(sub: argparse._SubParsersAction) -> None:
    """Register `launch`, `play` and `demo` (and `bag-eval` where its module exists)."""
    _add_launch(sub)
    _add_play(sub)
    from .demo import add_demo_command

    add_demo_command(sub)
    try:  # bag evaluation lands separately
        from .bag_eval import add_cli_commands
    except ImportError:
        return
    add_cli_commands(sub)


def _add_launch(sub: argparse._SubParsersAction) -> None:
    from .launch_description import LAUNCHES

    p = sub.add_parser("launch", help="start a launch description's nodes as processes (like ros2 launch fusanet <name>.launch.py)")
    p.add_argument("name", choices=sorted(LAUNCHES), help="launch description (launch/<name>.launch.py)")
    p.add_argument("--params-file", default="", help="node parameter YAML (default: the package's config/depth.yaml)")
    p.add_argument("--namespace", default="", help="namespace of the nodes and their topics")
    p.add_argument("--image-topic", default="/camera/color/image_raw", help="colour image topic (default: %(default)s)")
    p.add_argument("--camera-info-topic", default="/camera/color/camera_info", help="camera_info topic (default: %(default)s)")
    p.add_argument("--sparse-points-topic", default="sparse_points", help="sparse points topic (default: %(default)s)")
    p.add_argument("--checkpoint", default="", help="checkpoint file (default: the params file's, i.e. the bundled model)")
    p.add_argument("--device", default="", help="auto | cpu | cuda[:N] (default: the params file's)")
    p.add_argument("--param", action="append", default=[], metavar="NAME:=VALUE", help="node parameter override (repeatable)")
    p.add_argument("--domain-id", type=int, help="ROS_DOMAIN_ID (default: the environment's)")
    p.add_argument("--dry-run", action="store_true", help="print the command lines and environment, start nothing")
    p.set_defaults(run=run_launch)


def run_launch(args: argparse.Namespace) -> int:
    from .launch_description import LAUNCHES, parse_param
    from .runner import Runner, dds_env, run_foreground

    _, build = LAUNCHES[args.name]
    specs = build(params_file=args.params_file, namespace=args.namespace, image_topic=args.image_topic,
                  camera_info_topic=args.camera_info_topic, sparse_points_topic=args.sparse_points_topic,
                  checkpoint=args.checkpoint, device=args.device, extra_parameters=dict(parse_param(p) for p in args.param))
    env = dds_env(args.domain_id)
    if args.dry_run:
        for key in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE", "FASTDDS_DEFAULT_PROFILES_FILE"):
            print(f"{key}={env.get(key, '') or '(unset: 0)'}")
        for spec in specs:
            print(" ".join(_quote(a) for a in spec.command()))
        return 0
    return run_foreground(Runner(specs, env))


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


def _add_play(sub: argparse._SubParsersAction) -> None:
    from .bag_player import add_play_arguments, run_play

    p = sub.add_parser("play", help="publish a ROS 2 (sqlite3/MCAP) or ROS 1 bag (like ros2 bag play)")
    add_play_arguments(p)
    p.set_defaults(run=run_play)


def main(argv: list[str] | None = None) -> int:
    return core_cli.main(argv, extend=add_ros_commands)


if __name__ == "__main__":
    sys.exit(main())
