"""The `eval` launch as plain data: bag player + depth node + evaluator.

One description drives launch/eval.launch.py (ros2 launch) and `run_eval_launch` (the process
runner of pip installs, behind `fusanet launch eval` and `fusanet bag-eval --live`), built on the
types of `launch_description`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fusanet_core.evaluation.pairing import DEFAULT_SLOP
from fusanet_ros.startup.launch_description import DEFAULT_NAMESPACE

PREDICTION_TOPIC = "depth/image"  # the depth node's output and the evaluator's input, in the namespace

log = logging.getLogger(__name__)


def eval_arguments() -> tuple[Any, ...]:
    """Return the launch arguments of the eval launch (LaunchArgument: name, default, description).

    The depth node's own arguments are those of the depth launch.
    """
    from fusanet_ros.startup.launch_description import DEPTH_ARGUMENTS, LaunchArgument

    depth = {a.name: a for a in DEPTH_ARGUMENTS}
    return (
        LaunchArgument("bag", "", "bag to play (ROS 1 .bag, ROS 2 folder or .mcap); empty = evaluate live topics"),
        depth["image_topic"],
        depth["camera_info_topic"],
        LaunchArgument("depth_topic", "/camera/depth/image_raw", "ground-truth depth topic"),
        LaunchArgument("depth_camera_info_topic", "", "ground-truth camera_info topic (only used to register)"),
        *(depth[name] for name in ("params_file", "namespace", "checkpoint", "device")),
        LaunchArgument("use_sim_time", "false",
                       "true: the player publishes the bag's /clock (--clock) and both nodes run on it"),
        LaunchArgument("output_dir", "eval_report", "report folder"),
        LaunchArgument("slop", str(DEFAULT_SLOP), "max |stamp difference| in s between prediction and ground truth"),
        LaunchArgument("max_depth", "10.0", "metres scored (the depth node publishes +Inf beyond its own max_depth)"),
        LaunchArgument("rate", "1.0", "bag playback rate (lower it when the model is slower than the bag)"),
        LaunchArgument("idle_timeout", "5.0", "s without messages before the evaluator writes the report and exits"),
        LaunchArgument("extrinsic", "",
                       "depth-to-colour 'tx ty tz qx qy qz qw' when the ground truth needs registration"),
    )


def eval_nodes(
    image_topic: str = "/camera/color/image_raw",
    camera_info_topic: str = "/camera/color/camera_info",
    depth_topic: str = "/camera/depth/image_raw",
    depth_camera_info_topic: str = "",
    params_file: str = "",
    namespace: str = DEFAULT_NAMESPACE,
    checkpoint: str = "",
    device: str = "",
    output_dir: str = "eval_report",
    slop: str | float = DEFAULT_SLOP,
    max_depth: str | float = 10.0,
    idle_timeout: str | float = 5.0,
    extrinsic: str = "",
    use_sim_time: str | bool = "false",
    depth_parameters: dict[str, Any] | None = None,
    evaluator_parameters: dict[str, Any] | None = None,
    **_: Any,
) -> list[Any]:
    """Build the NodeSpecs of the eval launch: the depth node (as `depth_nodes` builds it) and the evaluator.

    String arguments come straight from launch arguments ("" = default); `*_parameters` override.
    """
    from fusanet_ros.startup.launch_description import depth_nodes, NodeSpec, normalize_namespace, parse_flag

    camera_info_topic = camera_info_topic or "/camera/color/camera_info"  # "" would be an invalid remapping
    nodes = depth_nodes(params_file=params_file, namespace=namespace, image_topic=image_topic,
                        camera_info_topic=camera_info_topic, checkpoint=checkpoint, device=device,
                        use_sim_time=use_sim_time, extra_parameters=depth_parameters)
    params: dict[str, Any] = {"output_dir": str(Path(output_dir or "eval_report").expanduser().resolve()),
                              "slop": float(slop), "max_depth": float(max_depth), "idle_timeout": float(idle_timeout),
                              **({"extrinsic": str(extrinsic)} if extrinsic else {}),
                              **({"use_sim_time": True} if parse_flag(use_sim_time, "use_sim_time") else {})}
    params.update(evaluator_parameters or {})
    remaps = [("image", image_topic), ("ground_truth", depth_topic)]
    if depth_camera_info_topic:
        remaps.append(("ground_truth/camera_info", depth_camera_info_topic))
    evaluator = NodeSpec(package="fusanet", executable="evaluator_node", module="fusanet_ros.nodes.evaluator_node",
                         name="evaluator", namespace=normalize_namespace(namespace), parameters=tuple(params.items()),
                         remappings=tuple(remaps))
    return [*nodes, evaluator]


def eval_player(values: dict[str, Any], python: str | None = None) -> list[str]:
    """Command line of the bag player (`fusanet play`) for the eval launch of these launch arguments.

    It waits for a subscriber on each played topic: the depth node subscribes to camera_info only
    once its model is loaded, so no frame is played into a node that is not ready. With
    use_sim_time it publishes the bag's /clock, which the nodes then run on.
    """
    from fusanet_ros.startup.launch_description import parse_flag
    from fusanet_ros.startup.launch_description import player_process

    return player_process(values["bag"], eval_player_topics(values), values.get("rate", 1.0), wait_for_subscribers=120,
                          python=python, clock=parse_flag(values.get("use_sim_time", "false"), "use_sim_time"))


def eval_player_topics(values: dict[str, Any]) -> list[str]:
    """Topics the eval launch plays from the bag: colour image and camera_info, ground truth (+ its camera_info)."""
    defaults = {a.name: a.default for a in eval_arguments()}
    names = ("image_topic", "camera_info_topic", "depth_topic", "depth_camera_info_topic")
    return [t for t in (str(values.get(n) or defaults[n]) for n in names) if t]


def run_eval_launch(values: dict[str, Any], domain_id: int | None = None, log_dir: str | Path | None = None,
                    timeout: float | None = None) -> int:
    """Run the eval launch as processes (pip installs): depth node + evaluator, then the bag player.

    The player starts once the graph shows both nodes subscribed and the depth output matched
    (no frame is played into a node that is still loading its model); the run ends when the
    evaluator has written its report and exited (idle timeout, max_frames) or on SIGINT/SIGTERM
    (forwarded to the evaluator, which then writes the report), or when the player fails; the other
    processes are stopped afterwards. Returns the evaluator's exit status, or the failed player's.
    """
    import os
    import signal
    import time

    from fusanet_ros.startup.dds import dds_env

    from fusanet_ros.startup.runner import Runner

    env = dds_env(domain_id)
    runner = Runner(eval_nodes(**values), env, log_dir=log_dir)
    received: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, _f: received.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    deadline = time.monotonic() + (timeout if timeout is not None else 1e9)
    try:
        runner.start()
        evaluator = next(proc for name, proc in runner.procs if name == "evaluator")
        player_proc = None
        if values.get("bag"):
            domain = int(env.get("ROS_DOMAIN_ID") or os.environ.get("ROS_DOMAIN_ID") or 0)
            if not _wait_until_ready(runner, domain, values, lambda: bool(received) or time.monotonic() > deadline):
                log.error("the depth node and the evaluator did not come up: not playing the bag")
            else:
                player_proc = runner.start_process("player", eval_player(values))
        while evaluator.poll() is None and not received and time.monotonic() < deadline:
            if player_proc is not None and player_proc.poll():
                break  # the player failed (e.g. topics not in the bag): nothing more will come
            time.sleep(0.1)
        # Interrupted, timed out or the player failed: the evaluator writes its report on SIGINT.
        if evaluator.poll() is None:
            evaluator.send_signal(signal.SIGINT)
            evaluator.wait(30)
        if player_proc is not None and player_proc.poll():
            log.error("the bag player failed (exit %d): see its message above", player_proc.returncode)
            return int(player_proc.returncode)
        return int(evaluator.returncode or 0)
    finally:
        runner.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _wait_until_ready(runner: Any, domain: int, values: dict[str, Any], give_up: Any) -> bool:
    """Wait, with a probe node, until both nodes subscribe to the image and the depth output is matched."""
    from fusanet_ros.startup.launch_description import normalize_namespace
    from fusanet_ros.startup.probe import Probe

    namespace = normalize_namespace(str(values.get("namespace", DEFAULT_NAMESPACE)))
    image = str(values.get("image_topic") or "/camera/color/image_raw")
    image = image if image.startswith("/") else f"{namespace}/{image}"
    depth = f"{namespace}/{PREDICTION_TOPIC}"
    with Probe(domain, "fusanet_eval_launcher") as probe:
        node = probe.node

        def ready() -> bool:
            if give_up() or len(runner.running()) < len(runner.procs):
                raise _Abort
            return (node.count_subscribers(image) >= 2 and node.count_publishers(depth) >= 1
                    and node.count_subscribers(depth) >= 1)

        try:
            probe.spin_until(ready, 1e9)
        except _Abort:
            return False
        probe.spin_for(1.0)  # discovery is per pair: give the depth output time to match the evaluator
    return True


class _Abort(Exception):
    """Stop waiting (a node died, a signal arrived or the time is up)."""
