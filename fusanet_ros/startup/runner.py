"""Start launch-description nodes as processes, without `ros2 launch` (pip-only ROS 2 installs).

Each `NodeSpec` becomes `python -m module --ros-args ...` run by this venv's interpreter (the ROS
wheels re-exec Python with their library path, so children must use the same `sys.executable`),
with the DDS environment this machine needs (`dds.dds_env`; docs/ros.md, "DDS on pip installs").

Managed (lifecycle) nodes with autostart are driven through configure and activate by calling
their `<node>/change_state` service, as launch_ros' LifecycleNode + ChangeState events do.

SIGINT/SIGTERM are forwarded to the children (each runs in its own session, so a terminal Ctrl-C
reaches them once, through us); children still running after a grace period get SIGTERM, then
SIGKILL. Shared-memory files that dead participants leave in /dev/shm are removed afterwards.
"""

from __future__ import annotations

import logging
from pathlib import Path
import signal
import subprocess
import time
from typing import Any, Callable, IO, Sequence

from fusanet_ros.startup.dds import dds_env, remove_stale_shm, shm_files
from fusanet_ros.startup.launch_description import NodeSpec

log = logging.getLogger(__name__)

AUTOSTART = ("configure", "activate")
CONFIGURE_TIMEOUT = 600.0  # s: configure loads and warms up the model (minutes on a slow CPU)


class Runner:
    """Processes of a launch description: start, wait, forward signals, stop and clean up."""

    def __init__(self, specs: Sequence[NodeSpec], env: dict[str, str] | None = None, log_dir: str | Path | None = None,
                 extra: Sequence[tuple[str, list[str]]] = ()) -> None:
        """Prepare the commands of `specs` (and `extra`); `start()` starts them.

        Args:
            specs: nodes to start.
            env: environment of the children (default `dds_env()`).
            log_dir: write each child's output to <log_dir>/<name>.log instead of the terminal.
            extra: additional (name, command) processes (e.g. a bag player), started after the nodes.
        """
        names = [spec.name for spec in specs]
        # Process (and log file) names: the node name, or namespace_name when two nodes share a name.
        unique = [name if names.count(name) == 1 else spec.fully_qualified_name.strip("/").replace("/", "_")
                  for name, spec in zip(names, specs)]
        self.commands = [(name, spec.command()) for name, spec in zip(unique, specs)] + list(extra)
        self.managed = [spec.fully_qualified_name for spec in specs if spec.lifecycle and spec.autostart]
        self.env = env if env is not None else dds_env()
        self.log_dir = Path(log_dir) if log_dir else None
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self._logs: list[IO[bytes]] = []
        self._shm_before: set[str] = set()

    def start(self) -> Runner:
        """Start every process, then bring managed nodes with autostart to `active`.

        Raises:
            RuntimeError: a managed node did not reach `active` (it exited, or a transition failed).
        """
        self._shm_before = shm_files()
        for name, cmd in self.commands:
            self.start_process(name, cmd)
        if self.managed:
            try:
                self.autostart()
            except (RuntimeError, TimeoutError):
                self.stop()  # no half-started launch stays behind
                raise
        return self

    def autostart(self, timeout: float = CONFIGURE_TIMEOUT) -> None:
        """Configure + activate each managed node through its lifecycle services."""
        from fusanet_ros.startup.probe import Probe

        domain = int(self.env.get("ROS_DOMAIN_ID") or 0)
        children = len(self.procs)

        def alive() -> None:
            if len(self.running()) < children:
                raise RuntimeError("a process exited while managed nodes were being started: " + ", ".join(
                    name for name, proc in self.procs if proc.poll() is not None))

        with Probe(domain, "fusanet_lifecycle_starter") as probe:
            for node in self.managed:
                client = LifecycleClient(probe, node)
                for transition in AUTOSTART:
                    client.change(transition, timeout, alive)
                log.info("%s is active", node)

    def start_process(self, name: str, cmd: list[str]) -> subprocess.Popen:
        """Start one more process under this runner (same env, same clean-up)."""
        out: IO[bytes] | None = None
        if self.log_dir:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            out = open(self.log_dir / f"{name}.log", "wb")
            self._logs.append(out)
        log.debug("starting %s: %s", name, " ".join(cmd))
        proc = subprocess.Popen(cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT if out else None,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs.append((name, proc))
        return proc

    def running(self) -> list[str]:
        return [name for name, proc in self.procs if proc.poll() is None]

    def wait(self, timeout: float | None = None) -> int:
        """Wait until every process has exited (or timeout); the worst exit code (0 if all fine).

        Raises:
            subprocess.TimeoutExpired: still running after `timeout`.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        for _, proc in self.procs:
            proc.wait(None if deadline is None else max(deadline - time.monotonic(), 0.01))
        return self.exit_code()

    def exit_code(self) -> int:
        codes = [proc.returncode for _, proc in self.procs if proc.returncode is not None]
        bad = [c for c in codes if c not in (0, -signal.SIGINT, -signal.SIGTERM)]
        return abs(bad[0]) if bad else 0

    def signal_all(self, sig: int) -> None:
        for _, proc in self.procs:
            if proc.poll() is None:
                try:
                    proc.send_signal(sig)
                except ProcessLookupError:
                    pass

    def stop(self, grace: float = 10.0, signalled: bool = False) -> int:
        """SIGINT, then SIGTERM after `grace` s, then SIGKILL; closes logs and removes stale SHM.

        Args:
            grace: seconds the children get to shut down cleanly.
            signalled: the children already got a stop signal; only wait, then escalate (a second
                signal during a node's clean-up would interrupt it).
        """
        for sig, wait in ((signal.SIGINT, grace), (signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
            if not self.running():
                break
            if not (signalled and sig == signal.SIGINT):
                self.signal_all(sig)
            deadline = time.monotonic() + wait
            while self.running() and time.monotonic() < deadline:
                time.sleep(0.05)
        for handle in self._logs:
            handle.close()
        self._logs.clear()
        removed = remove_stale_shm(shm_files() - self._shm_before)
        if removed:
            log.debug("removed stale shared-memory files: %s", ", ".join(removed))
        return self.exit_code()

    def __enter__(self) -> Runner:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class LifecycleClient:
    """Calls a managed node's `<node>/change_state` and `<node>/get_state` services from a Probe."""

    def __init__(self, probe: Any, node: str) -> None:
        from lifecycle_msgs.srv import ChangeState, GetState

        self.probe, self.node = probe, node
        self._change = probe.node.create_client(ChangeState, f"{node}/change_state")
        self._get = probe.node.create_client(GetState, f"{node}/get_state")

    def state(self, timeout: float = 10.0) -> str:
        """Return the node's current state label: unconfigured, inactive, active, finalized."""
        from lifecycle_msgs.srv import GetState

        return str(self._call(self._get, GetState.Request(), timeout, None).current_state.label)

    def change(self, transition: str, timeout: float = 30.0, check: Callable[[], None] | None = None) -> None:
        """Trigger `transition` (configure, activate, deactivate, cleanup, shutdown) and wait for it.

        Raises:
            RuntimeError: the node refused or failed the transition.
            TimeoutError: no service, or no answer within `timeout` s.
        """
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState

        ids = {"configure": Transition.TRANSITION_CONFIGURE, "activate": Transition.TRANSITION_ACTIVATE,
               "deactivate": Transition.TRANSITION_DEACTIVATE, "cleanup": Transition.TRANSITION_CLEANUP,
               "shutdown": Transition.TRANSITION_UNCONFIGURED_SHUTDOWN}
        request = ChangeState.Request()
        request.transition.id = ids[transition]
        if not self._call(self._change, request, timeout, check).success:
            raise RuntimeError(f"{self.node}: transition {transition} failed (see the node's log)")

    def _call(self, client: Any, request: Any, timeout: float, check: Callable[[], None] | None) -> Any:
        def ready(condition: Callable[[], bool]) -> Callable[[], bool]:
            def wait() -> bool:
                if check is not None:
                    check()
                return condition()
            return wait

        if not self.probe.spin_until(ready(client.service_is_ready), timeout):
            raise TimeoutError(f"no service {client.srv_name} after {timeout:g} s")
        future = client.call_async(request)
        if not self.probe.spin_until(ready(future.done), timeout):
            raise TimeoutError(f"{client.srv_name} did not answer within {timeout:g} s")
        return future.result()


def run_foreground(runner: Runner) -> int:
    """Run until all processes exit or SIGINT/SIGTERM arrives (forwarded), then clean up."""
    received: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        received.append(signum)
        runner.signal_all(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            runner.start()
        except (RuntimeError, TimeoutError) as err:
            if received:  # stopped by the user while managed nodes were starting
                return runner.exit_code()
            log.error("%s", err)
            return 1
        while runner.running() and not received:
            time.sleep(0.1)
        code = runner.stop(signalled=bool(received))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code
