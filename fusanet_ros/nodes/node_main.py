"""The life cycle shared by the console scripts of the nodes: start, spin, stop cleanly."""

from __future__ import annotations

import signal
from typing import Callable, TypeVar

import rclpy
import rclpy.exceptions
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node

from fusanet_core.errors import error_reason

N = TypeVar("N", bound=Node)
START_ERRORS = (ValueError, FileNotFoundError, OSError, rclpy.exceptions.ParameterException)


def start_error_text(err: BaseException) -> str:
    """Write a start-up error as one line.

    rclpy's rejection of a value outside a descriptor's range ("Invalid parameter value (...) for
    parameter. Reason: <reason>: <name>") becomes its reason.
    """
    if isinstance(err, rclpy.exceptions.InvalidParameterValueException) and "Reason: " in str(err.args[0]):
        return error_reason(Exception(str(err.args[0]).split("Reason: ", 1)[1]))
    return error_reason(err)


def run_node(name: str, build: Callable[[], N], spin: Callable[[N], None], finish: Callable[[N], int],
             args: list[str] | None = None) -> int:
    """Build and spin a node; returns the exit code.

    A bad parameter or file at start-up ends as one logged line and exit code 2. SIGINT/SIGTERM
    at any time, even while the node is still starting, is a requested stop: `finish` still runs
    (stop workers, write reports) and its code is returned.
    """
    rclpy.init(args=args)
    node: N | None = None
    code = 0
    try:
        node = build()
        spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except START_ERRORS as err:
        rclpy.logging.get_logger(name).error(f"cannot start: {start_error_text(err)}")
        code = 2
    except Exception:
        if rclpy.ok():
            raise
        # A signal while starting shuts the context down under rclpy's feet ("context is not
        # valid"): a requested stop, not a failure.
    finally:
        # rclpy has shut down and removed its handlers: a second Ctrl-C must not break the clean-up.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if node is not None:
            code = finish(node) or code
            node.destroy_node()
        rclpy.try_shutdown()
    return code
