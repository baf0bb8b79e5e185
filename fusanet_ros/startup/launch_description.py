"""One plain-data launch description for the depth node, used by both start-up paths.

`launch/depth.launch.py` turns each `NodeSpec` into a `launch_ros.actions.Node` (ROS 2 installs),
and `fusanet launch depth` (`fusanet_ros.startup.runner`) turns the same specs into process command lines
with `--ros-args` (pip installs, where `launch`/`launch_ros` do not exist). Keeping the nodes,
parameters and remappings here means the two cannot drift apart; a test checks they agree.

No ROS import here: this module must load under `ros2 launch` and in the plain runner alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
import site
import sys
from typing import Any

import yaml

PACKAGE = "fusanet"
DEFAULT_NAMESPACE = "fusanet"  # outputs at /fusanet/depth/image, /fusanet/points ...
LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")
_SOURCE_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class LaunchArgument:
    """A launch argument: `name:=value` for ros2 launch, `--name` for the runner."""

    name: str
    default: str
    description: str


@dataclass(frozen=True)
class NodeSpec:
    """Everything needed to start one node, in either launch system."""

    package: str
    executable: str  # console script (ROS 2 installs)
    module: str  # python -m target (runner)
    name: str
    namespace: str = ""
    params_files: tuple[str, ...] = ()
    parameters: tuple[tuple[str, Any], ...] = ()  # applied after the files, in order
    remappings: tuple[tuple[str, str], ...] = ()
    log_level: str = ""  # "" = the node's default (info)
    lifecycle: bool = False  # a managed node: launch_ros.actions.LifecycleNode
    autostart: bool = True  # managed nodes only: drive configure + activate once it is up

    def launch_ros_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of launch_ros.actions.Node (and LifecycleNode, which takes the same)."""
        params: list[Any] = list(self.params_files)
        if self.parameters:
            params.append(dict(self.parameters))
        kwargs = {
            "package": self.package,
            "executable": self.executable,
            "name": self.name,
            "namespace": self.namespace,
            "parameters": params,
            "remappings": list(self.remappings),
            "output": "screen",
        }
        if self.log_level:
            kwargs["ros_arguments"] = ["--log-level", self.log_level]
        return kwargs

    @property
    def fully_qualified_name(self) -> str:
        return f"{normalize_namespace(self.namespace)}/{self.name}"

    def ros_args(self) -> list[str]:
        """Return the `--ros-args ...` that launch_ros would pass.

        In its order: name, namespace, params files, then parameter overrides, then remappings.
        """
        args = ["--ros-args"]
        if self.log_level:
            args += ["--log-level", self.log_level]
        args += ["-r", f"__node:={self.name}"]
        if self.namespace:
            args += ["-r", f"__ns:={normalize_namespace(self.namespace)}"]
        for path in self.params_files:
            args += ["--params-file", path]
        for key, value in self.parameters:
            args += ["-p", f"{key}:={format_param_value(value)}"]
        for src, dst in self.remappings:
            args += ["-r", f"{src}:={dst}"]
        return args

    def command(self, python: str | None = None) -> list[str]:
        """Command line of the node as a process of this Python (the ROS wheels re-exec it)."""
        return [python or sys.executable, "-m", self.module, *self.ros_args()]


def normalize_namespace(namespace: str) -> str:
    """'' stays ''; 'robot1' and '/robot1/' become '/robot1' (what launch_ros does)."""
    namespace = namespace.strip().strip("/")
    return f"/{namespace}" if namespace else ""


def format_param_value(value: Any) -> str:
    """Format a value as YAML flow text, the syntax `-p name:=value` parses (strings quoted when needed)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    return text[: -len("...")].strip() if text.endswith("...") else text


def parse_flag(value: str | bool, name: str) -> bool:
    """Parse a boolean launch argument: true/false (also 1/0, yes/no, on/off), as `ros2 launch` passes strings."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off", ""):
        return False
    raise ValueError(f"launch argument {name} must be true or false, got {value!r}")


def parse_param(text: str) -> tuple[str, Any]:
    """'name:=value' -> (name, typed value), the same parsing as `ros2 run ... -p`."""
    name, sep, value = text.partition(":=")
    if not sep or not name.strip():
        raise ValueError(f"parameter must look like name:=value, got {text!r}")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    return name.strip(), parsed


def _share_candidates() -> list[Path]:
    """List where the package's data files can be, in order of preference.

    The ament index (ROS 2 install), pip data_files (`share/fusanet` under the environment, or
    under the user base for `pip install --user`), then the source tree (checkout or editable
    install).
    """
    candidates = []
    try:
        from ament_index_python.packages import get_package_share_directory, PackageNotFoundError

        try:
            candidates.append(Path(get_package_share_directory(PACKAGE)))
        except (PackageNotFoundError, OSError):  # OSError: no AMENT_PREFIX_PATH (pip install)
            pass
    except ImportError:
        pass
    prefixes = [sys.prefix] + ([site.USER_BASE] if site.USER_BASE else [])
    return candidates + [Path(prefix) / "share" / PACKAGE for prefix in prefixes] + [_SOURCE_ROOT]


def share_path(*parts: str) -> Path:
    """Return the first existing `share/fusanet/<parts>` among the candidate share folders, else the source tree's.

    Each candidate is checked for the file itself: an older install may lack a file that the source tree has.
    """
    for candidate in _share_candidates():
        if candidate.joinpath(*parts).exists():
            return candidate.joinpath(*parts)
    return _SOURCE_ROOT.joinpath(*parts)


def default_params_file() -> str:
    return str(share_path("config", "depth.yaml"))


def fastdds_profile() -> str:
    return str(share_path("config", "fastdds_shm.xml"))


DEPTH_ARGUMENTS: tuple[LaunchArgument, ...] = (
    LaunchArgument("params_file", "", "node parameter YAML; empty = the package's config/depth.yaml"),
    LaunchArgument("namespace", DEFAULT_NAMESPACE,
                   "namespace of the node and its outputs (<ns>/depth/image, <ns>/points ...)"),
    LaunchArgument("image_topic", "/camera/color/image_raw", "input colour image topic"),
    LaunchArgument("camera_info_topic", "/camera/color/camera_info", "input camera_info topic"),
    LaunchArgument("sparse_points_topic", "sparse_points", "optional sparse points (PointCloud2 or depth Image)"),
    LaunchArgument("camera_pose_topic", "camera_pose",
                   "optional camera optical frame pose (PoseStamped) that places sparse clouds of its frame (map)"),
    LaunchArgument("checkpoint", "", "checkpoint file; empty = the params file's value (default: bundled)"),
    LaunchArgument("device", "", "auto | cpu | cuda[:N]; empty = the params file's value"),
    LaunchArgument("lifecycle", "false",
                   "true: start the managed node depth_lifecycle_node (configure/activate transitions)"),
    LaunchArgument("autostart", "true", "with lifecycle: configure and activate the node once it is up"),
    LaunchArgument("use_sim_time", "false", "true: stamps and timers follow /clock (bag replay with --clock)"),
    LaunchArgument("log_level", "info", f"node log level: {' | '.join(LOG_LEVELS)}"),
)


def depth_nodes(
    params_file: str = "",
    namespace: str = DEFAULT_NAMESPACE,
    image_topic: str = "/camera/color/image_raw",
    camera_info_topic: str = "/camera/color/camera_info",
    sparse_points_topic: str = "sparse_points",
    camera_pose_topic: str = "camera_pose",
    checkpoint: str = "",
    device: str = "",
    lifecycle: str | bool = "false",
    autostart: str | bool = "true",
    use_sim_time: str | bool = "false",
    log_level: str = "info",
    extra_parameters: dict[str, Any] | None = None,
) -> list[NodeSpec]:
    """Build the depth launch: one depth_node (or depth_lifecycle_node) with its parameters and remappings.

    String arguments come straight from launch arguments ("" = not given). `extra_parameters`
    (the runner's --param) are applied last. The outputs are relative names, so they land in
    the namespace: <ns>/depth/image, <ns>/depth/camera_info, <ns>/confidence/image ...; remap
    `depth/image:=...` etc. to move them.

    Raises:
        ValueError: a boolean argument that is not true/false, or an unknown log level.
    """
    params: dict[str, Any] = {}
    if checkpoint:
        params["checkpoint"] = str(Path(checkpoint).expanduser().resolve())
    if device:
        params["device"] = device
    if parse_flag(use_sim_time, "use_sim_time"):
        params["use_sim_time"] = True
    params.update(extra_parameters or {})
    level = (log_level or "info").strip().lower()
    if level not in LOG_LEVELS:
        raise ValueError(f"launch argument log_level must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}")
    managed = parse_flag(lifecycle, "lifecycle")
    executable = "depth_lifecycle_node" if managed else "depth_node"
    node = NodeSpec(
        package=PACKAGE,
        executable=executable,
        module=f"fusanet_ros.nodes.{executable}",
        name="depth_node",
        namespace=normalize_namespace(namespace),
        params_files=(params_file or default_params_file(),),
        parameters=tuple(params.items()),
        remappings=(("image", image_topic), ("camera_info", camera_info_topic), ("sparse_points", sparse_points_topic),
                    ("camera_pose", camera_pose_topic or "camera_pose")),
        log_level="" if level == "info" else level,
        lifecycle=managed,
        autostart=parse_flag(autostart, "autostart"),
    )
    return [node]


def player_process(bag: str | Path, topics: Sequence[str] = (), rate: float = 1.0, wait_for_subscribers: float = 0.0,
                   python: str | None = None, clock: bool = False) -> list[str]:
    """Build the command line that runs the bag player (tools/bag_player.py) as a process.

    The demo's and the eval launch's player.

    `python -m fusanet_ros.tools.bag_player` starts without the core CLI (and torch).
    """
    if not float(rate) > 0:
        raise ValueError(f"rate must be > 0, got {rate}")
    cmd = [python or sys.executable, "-m", "fusanet_ros.tools.bag_player", str(Path(bag).expanduser().resolve()),
           "--rate", str(float(rate))]
    if [t for t in topics if t]:
        cmd += ["--topics", *[t for t in topics if t]]
    if wait_for_subscribers > 0:
        cmd += ["--wait-for-subscribers", f"{wait_for_subscribers:g}"]
    if clock:
        cmd.append("--clock")
    return cmd
