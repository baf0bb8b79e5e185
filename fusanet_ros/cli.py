"""`fusanet` entry point: the core commands plus the ROS ones (launch, play, bag-eval).

rclpy is imported only when a ROS command runs, so the core commands work without ROS.
"""

from __future__ import annotations

import argparse
import sys

from fusanet_core import cli as core_cli


def add_ros_commands(sub: argparse._SubParsersAction) -> None:
    """Registered by the ROS modules as they land (launch runner, bag player, bag evaluation)."""


def main(argv: list[str] | None = None) -> int:
    return core_cli.main(argv, extend=add_ros_commands)


if __name__ == "__main__":
    sys.exit(main())
