"""`fusanet` entry point: the core commands plus the ROS ones (launch, play, demo, bag-eval).

rclpy is imported only when a ROS command runs, so the core commands work without ROS.
"""

from __future__ import annotations

import argparse
from pathlib import Path
import sys

from fusanet_core import cli as core_cli


def add_ros_commands(sub: argparse._SubParsersAction) -> None:
    """Register `launch`, `play`, `demo` and `bag-eval`."""
    from fusanet_ros.tools.bag_eval_command import add_bag_eval_command
    from fusanet_ros.tools.demo import add_demo_command

    _add_launch(sub)
    _add_play(sub)
    add_demo_command(sub)
    add_bag_eval_command(sub)


def _add_launch(sub: argparse._SubParsersAction) -> None:
    """Add `fusanet launch depth|eval`.

    One option per argument of the launch file (`--image-topic` for `image_topic:=`), plus node
    parameter overrides, the DDS domain and a dry run.
    """
    from fusanet_ros.startup.eval_launch import eval_arguments
    from fusanet_ros.startup.launch_description import DEPTH_ARGUMENTS

    p = sub.add_parser("launch",
                       help="start a launch description's nodes as processes "
                            "(like ros2 launch fusanet <name>.launch.py)",
                       description="Start the nodes of launch/<name>.launch.py as processes with the DDS setup of this "
                                   "machine (for pip installs, where ros2 launch does not exist).")
    names = p.add_subparsers(dest="launch_name", required=True, metavar="NAME")
    launches = (("depth", DEPTH_ARGUMENTS, "the depth node (launch/depth.launch.py)"),
                ("eval", eval_arguments(),
                 "bag player + depth node + evaluator, writes a report (launch/eval.launch.py)"))
    for name, arguments, help_text in launches:
        q = names.add_parser(name, help=help_text, description=f"Start {help_text}.")
        for arg in arguments:
            default = f" (default: {arg.default})" if arg.default else ""
            q.add_argument(f"--{arg.name.replace('_', '-')}", default=arg.default, metavar=arg.name.upper(),
                           help=f"{arg.description}{default}")
        q.add_argument("--param", action="append", default=[], metavar="NAME:=VALUE",
                       help="depth node parameter override (repeatable)")
        q.add_argument("--domain-id", type=int, help="ROS_DOMAIN_ID (default: the environment's)")
        q.add_argument("--dry-run", action="store_true", help="print the command lines and environment, start nothing")
        q.set_defaults(run=run_launch, launch_arguments=arguments)


def run_launch(args: argparse.Namespace) -> int:
    from fusanet_ros.startup.dds import dds_env
    from fusanet_ros.startup.launch_description import depth_nodes, parse_param
    from fusanet_ros.startup.runner import run_foreground, Runner

    values = {arg.name: getattr(args, arg.name) for arg in args.launch_arguments}
    node_params = dict(parse_param(p) for p in args.param)
    player: list[list[str]] = []
    if args.launch_name == "eval":
        from fusanet_ros.startup.eval_launch import eval_nodes, eval_player, run_eval_launch

        values["depth_parameters"] = node_params
        if not args.dry_run:
            code = run_eval_launch(values, args.domain_id)
            print(f"report: {Path(values['output_dir'] or 'eval_report') / 'report.md'}")
            return code
        specs = eval_nodes(**values)
        if values["bag"]:
            player.append(eval_player(values))
    else:
        specs = depth_nodes(**values, extra_parameters=node_params)
        if not args.dry_run:
            return run_foreground(Runner(specs, dds_env(args.domain_id)))
    env = dds_env(args.domain_id)
    for key in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE", "FASTDDS_DEFAULT_PROFILES_FILE"):
        print(f"{key}={env.get(key, '') or '(unset: 0)'}")
    for command in [spec.command() for spec in specs] + player:
        print(" ".join(_quote(a) for a in command))
    return 0


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


def _add_play(sub: argparse._SubParsersAction) -> None:
    from fusanet_ros.tools.bag_player import add_play_arguments, run_play

    p = sub.add_parser("play", help="publish a ROS 2 (sqlite3/MCAP) or ROS 1 bag (like ros2 bag play)")
    add_play_arguments(p)
    p.set_defaults(run=run_play)


def main(argv: list[str] | None = None) -> int:
    return core_cli.main(argv, extend=add_ros_commands)


if __name__ == "__main__":
    sys.exit(main())
