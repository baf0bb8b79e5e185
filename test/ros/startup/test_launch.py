"""launch/depth.launch.py and the runner start the same nodes; parameters validate; DDS env (no DDS)."""

from __future__ import annotations

import fcntl
import importlib.util
import os
from pathlib import Path
import re
import shlex
import subprocess
import sys
import types
from typing import Any

import pytest
import yaml

from fusanet_ros.startup import dds as dds_mod
from fusanet_ros.startup.launch_description import (
    DEPTH_ARGUMENTS,
    depth_nodes,
    format_param_value,
    NodeSpec,
    parse_param,
)

ROOT = Path(__file__).resolve().parents[3]
LAUNCH_FILE = ROOT / "launch" / "depth.launch.py"
EVAL_LAUNCH_FILE = ROOT / "launch" / "eval.launch.py"
SAMPLE_BAG = ROOT / "sample" / "tum_rgbd_bag"


# ------------------------------------------------------------ a minimal stand-in for launch/launch_ros
def _fake_launch(recorded: list[dict[str, Any]]) -> dict[str, types.ModuleType]:
    """Fake just enough of `launch` and `launch_ros` to evaluate a launch file.

    Node kwargs are recorded (and `{"process": kwargs}` of ExecuteProcess actions).
    """

    class LaunchDescription:
        def __init__(self, entities: list) -> None:
            self.entities = list(entities)

    class DeclareLaunchArgument:
        def __init__(self, name: str, default_value: str = "", description: str = "") -> None:
            self.name, self.default_value, self.description = name, default_value, description

    class OpaqueFunction:
        def __init__(self, function: Any) -> None:
            self.function = function

    class LaunchConfiguration:
        def __init__(self, name: str) -> None:
            self.name = name

        def perform(self, context: Any) -> str:
            return context.launch_configurations[self.name]

    class Node:
        def __init__(self, **kwargs: Any) -> None:
            recorded.append(kwargs)

    class LifecycleNode(Node):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs, lifecycle=True)

    class ChangeState:
        def __init__(self, lifecycle_node_matcher: Any, transition_id: int) -> None:
            self.transition_id = transition_id

    class EmitEvent:
        def __init__(self, event: Any) -> None:
            self.event = event

    class OnStateTransition:  # records which transitions follow which state
        def __init__(self, target_lifecycle_node: Any, goal_state: str, entities: list) -> None:
            recorded.append({"on_state": goal_state, "then": [e.event.transition_id for e in entities]})

    class ExecuteProcess:
        def __init__(self, **kwargs: Any) -> None:
            recorded.append({"process": kwargs})

    class Inert:  # event handlers and events: nothing to start
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

    names = ("launch", "launch.actions", "launch.event_handlers", "launch.events", "launch.substitutions",
             "launch_ros", "launch_ros.actions", "launch_ros.event_handlers", "launch_ros.events",
             "launch_ros.events.lifecycle")
    modules = {name: types.ModuleType(name) for name in names}
    modules["launch"].LaunchDescription = LaunchDescription
    modules["launch.actions"].DeclareLaunchArgument = DeclareLaunchArgument
    modules["launch.actions"].OpaqueFunction = OpaqueFunction
    modules["launch.actions"].ExecuteProcess = ExecuteProcess
    modules["launch.actions"].RegisterEventHandler = Inert
    modules["launch.actions"].EmitEvent = EmitEvent
    modules["launch.event_handlers"].OnProcessExit = modules["launch.events"].Shutdown = Inert
    modules["launch.substitutions"].LaunchConfiguration = LaunchConfiguration
    modules["launch.events"].matches_action = lambda action: action
    modules["launch_ros.actions"].Node = Node
    modules["launch_ros.actions"].LifecycleNode = LifecycleNode
    modules["launch_ros.event_handlers"].OnStateTransition = OnStateTransition
    modules["launch_ros.events.lifecycle"].ChangeState = ChangeState
    return modules


def _run_launch_file(monkeypatch: pytest.MonkeyPatch, launch_file: Path = LAUNCH_FILE,
                     **launch_args: str) -> list[dict[str, Any]]:
    """Evaluate a launch file (default depth.launch.py) as `ros2 launch` would with `name:=value` arguments."""
    recorded: list[dict[str, Any]] = []
    for name, module in _fake_launch(recorded).items():
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location(launch_file.name.split(".")[0] + "_launch", launch_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    declared = {e.name: e.default_value for e in description.entities if hasattr(e, "default_value")}
    unknown = set(launch_args) - set(declared)
    assert not unknown, f"launch file does not declare {unknown}"
    context = types.SimpleNamespace(launch_configurations={**declared, **launch_args})
    for entity in description.entities:
        if hasattr(entity, "function"):
            for action in entity.function(context) or []:  # events emitted at launch start
                if hasattr(action, "event") and hasattr(action.event, "transition_id"):
                    recorded.append({"emit": action.event.transition_id})
    return recorded


def _from_launch_ros(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Return what launch_ros makes of Node(...).

    Name, namespace, ordered parameter sources, remappings, log level (ros_arguments).
    """
    params: list[tuple] = []
    for item in kwargs["parameters"]:
        if isinstance(item, dict):  # launch_ros writes dicts to a temporary params file: same values
            params += [("param", key, value) for key, value in item.items()]
        else:
            params.append(("file", str(item)))
    ns = kwargs.get("namespace", "")
    ros_arguments = kwargs.get("ros_arguments", [])
    return {"executable": kwargs["executable"], "name": kwargs["name"],
            "namespace": "/" + ns.strip("/") if ns.strip("/") else "",
            "params": params, "remappings": [tuple(r) for r in kwargs["remappings"]],
            "log_level": ros_arguments[1] if ros_arguments[:1] == ["--log-level"] else None}


def _from_command(cmd: list[str]) -> dict[str, Any]:
    """Parse the same structure back from a runner command line."""
    assert cmd[1] == "-m" and cmd[3] == "--ros-args", cmd
    out: dict[str, Any] = {"module": cmd[2], "name": None, "namespace": "", "params": [], "remappings": [],
                           "log_level": None}
    args = iter(cmd[4:])
    for flag in args:
        value = next(args)
        if flag == "--params-file":
            out["params"].append(("file", value))
        elif flag == "-p":
            out["params"].append(("param", *parse_param(value)))
        elif flag == "-r" and value.startswith("__node:="):
            out["name"] = value.split(":=", 1)[1]
        elif flag == "-r" and value.startswith("__ns:="):
            out["namespace"] = value.split(":=", 1)[1]
        elif flag == "-r":
            out["remappings"].append(tuple(value.split(":=", 1)))
        elif flag == "--log-level":
            out["log_level"] = value
        else:
            raise AssertionError(f"unexpected {flag} {value}")
    return out


def _console_scripts() -> dict[str, str]:
    text = (ROOT / "setup.py").read_text()
    return {m.group(1): m.group(2) for m in re.finditer(r'"(\w+)\s*=\s*([\w.]+):main"', text)}


CASES = [
    {},
    {"namespace": "robot1", "image_topic": "/cam/rgb", "camera_info_topic": "/cam/info", "device": "cpu",
     "checkpoint": str(ROOT / "setup.py"), "params_file": str(ROOT / "config" / "depth.yaml")},
    {"lifecycle": "true", "use_sim_time": "true", "log_level": "debug"},
    {"lifecycle": "true", "autostart": "false"},
]


@pytest.mark.parametrize("launch_args", CASES)
def test_launch_file_and_runner_start_the_same_nodes(monkeypatch: pytest.MonkeyPatch,
                                                     launch_args: dict[str, str]) -> None:
    recorded = _run_launch_file(monkeypatch, **launch_args)
    events = [kw for kw in recorded if "executable" not in kw]
    managed = [kw.pop("lifecycle", False) for kw in recorded if "executable" in kw]
    launched = [_from_launch_ros(kw) for kw in recorded if "executable" in kw]
    # The runner path, through the real CLI (`fusanet launch depth --dry-run` prints the commands).
    cli = ["launch", "depth", "--dry-run"] + [f"--{k.replace('_', '-')}={v}" for k, v in launch_args.items()]
    result = subprocess.run([sys.executable, "-m", "fusanet_ros.cli", *cli], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    commands = [shlex.split(line) for line in result.stdout.splitlines() if " -m " in line]
    ran = [_from_command(cmd) for cmd in commands]
    assert len(launched) == len(ran) == 1
    for node, proc in zip(launched, ran):
        assert _console_scripts()[node.pop("executable")] == f"{proc.pop('module')}"
        assert node == proc
    assert ran[0]["params"][0] == ("file", launch_args.get("params_file", str(ROOT / "config" / "depth.yaml")))
    assert ("image", launch_args.get("image_topic", "/camera/color/image_raw")) in ran[0]["remappings"]
    assert ran[0]["namespace"] == "/" + launch_args.get("namespace", "fusanet")  # outputs at <ns>/depth/image ...
    lifecycle = launch_args.get("lifecycle") == "true"
    assert managed == [lifecycle]
    assert _console_scripts()["depth_lifecycle_node" if lifecycle else "depth_node"] == commands[0][2]
    # launch_ros configures the managed node, then activates it once inactive (what the runner's autostart does).
    autostart = lifecycle and launch_args.get("autostart", "true") == "true"
    from lifecycle_msgs.msg import Transition

    expected = [{"on_state": "inactive", "then": [Transition.TRANSITION_ACTIVATE]},
                {"emit": Transition.TRANSITION_CONFIGURE}]
    assert events == (expected if autostart else [])
    assert ran[0]["log_level"] == launch_args.get("log_level")
    assert (("param", "use_sim_time", True) in ran[0]["params"]) == (launch_args.get("use_sim_time") == "true")
    env = dict(line.split("=", 1) for line in result.stdout.splitlines() if line.startswith(("ROS_", "FASTDDS_")))
    assert env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST" or "ROS_AUTOMATIC_DISCOVERY_RANGE" in os.environ
    assert Path(env["FASTDDS_DEFAULT_PROFILES_FILE"]).is_file()


EVAL_CASES = [
    {"bag": str(SAMPLE_BAG)},
    {"bag": str(SAMPLE_BAG), "namespace": "ev", "image_topic": "/cam/rgb", "camera_info_topic": "/cam/info",
     "depth_topic": "/cam/depth", "depth_camera_info_topic": "/cam/depth/info", "checkpoint": str(ROOT / "setup.py"),
     "device": "cpu", "output_dir": "out/ev", "slop": "0.1", "max_depth": "8", "rate": "0.5", "idle_timeout": "3",
     "extrinsic": "0.015 0 0 0 0 0 1"},
    {"image_topic": "/live/rgb"},  # no bag: evaluate live topics, no player
]


@pytest.mark.parametrize("launch_args", EVAL_CASES)
def test_eval_launch_file_and_fusanet_launch_eval_start_the_same_processes(
        monkeypatch: pytest.MonkeyPatch, launch_args: dict[str, str]) -> None:
    recorded = _run_launch_file(monkeypatch, EVAL_LAUNCH_FILE, **launch_args)
    launched = [_from_launch_ros(kw) for kw in recorded if "process" not in kw]
    players = [kw["process"]["cmd"] for kw in recorded if "process" in kw]
    cli = ["launch", "eval", "--dry-run"] + [f"--{k.replace('_', '-')}={v}" for k, v in launch_args.items()]
    result = subprocess.run([sys.executable, "-m", "fusanet_ros.cli", *cli], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    commands = [shlex.split(line) for line in result.stdout.splitlines() if " -m " in line]
    ran = [_from_command(cmd) for cmd in commands if "--ros-args" in cmd]
    assert [n["name"] for n in launched] == [n["name"] for n in ran] == ["depth_node", "evaluator"]
    for node, proc in zip(launched, ran):
        assert _console_scripts()[node.pop("executable")] == f"{proc.pop('module')}"
        assert node == proc
    assert [cmd[1:] for cmd in commands if "--ros-args" not in cmd] == [cmd[1:] for cmd in players]
    assert len(players) == (1 if launch_args.get("bag") else 0)
    if players:
        assert players[0][2:4] == ["fusanet_ros.tools.bag_player", str(SAMPLE_BAG.resolve())]


def test_launch_arguments_cover_the_cli_options() -> None:
    names = {a.name for a in DEPTH_ARGUMENTS}
    assert {"params_file", "namespace", "image_topic", "camera_info_topic", "checkpoint", "device"} <= names


def test_cli_imports_without_rclpy() -> None:
    code = ("import sys; sys.modules['rclpy'] = None\n"
            "from fusanet_ros.cli import main\n"
            "sys.exit(main(['launch', 'depth', '--dry-run', '--param', 'cloud.stride:=3']))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "-p cloud.stride:=3" in result.stdout


def test_param_values_survive_the_command_line() -> None:
    for value in ["", "abc", "123", "true", "/a b/c.pt", [240, 320], 1.5, True, "x:y", "#x"]:
        assert parse_param(f"k:={format_param_value(value)}") == ("k", value)
    with pytest.raises(ValueError, match="name:=value"):
        parse_param("no-separator")


def test_namespaced_spec_command_line() -> None:
    spec = depth_nodes(params_file="/p.yaml", namespace="/r1/", image_topic="/img",
                       extra_parameters={"input_size": [64, 80]})[0]
    assert isinstance(spec, NodeSpec)
    args = spec.ros_args()
    assert args[:5] == ["--ros-args", "-r", "__node:=depth_node", "-r", "__ns:=/r1"]
    assert ["--params-file", "/p.yaml", "-p", "input_size:=[64, 80]"] == args[5:9]
    assert "image:=/img" in args


# ----------------------------------------------------------------------------- parameters
def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(_flatten(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


def test_params_file_matches_node_defaults() -> None:
    from fusanet_ros.nodes.depth_settings import PARAMETERS, validate_settings
    from fusanet_ros.nodes.params import defaults

    data = yaml.safe_load((ROOT / "config" / "depth.yaml").read_text())
    assert list(data) == ["/**"], "the key must be /** so that namespaced nodes get the parameters"
    values = _flatten(data["/**"]["ros__parameters"])
    assert values == defaults(PARAMETERS)
    settings = validate_settings(values)
    assert settings.input_size is None and settings.output_size is None and settings.rectify == "auto"
    assert settings.skip_when_unsubscribed and settings.max_input_pixels == 4096 * 4096
    assert not {"qos.reliability", "qos.depth"} & set(values), "QoS comes from qos_overrides parameters"


@pytest.mark.parametrize(
    "name,value,match",
    [
        ("device", "gpu", "device must be"),
        ("backend", "tensorrt", "backend must be one of torch, onnxruntime"),
        ("input_size", [16, 16], "input_size"),
        ("input_size", [240], "input_size"),
        ("output_size", [-1, 5], "output_size"),
        ("output_encoding", "8UC1", "output_encoding"),
        ("max_depth", 0.0, "max_depth"),
        ("max_depth", float("nan"), "max_depth"),
        ("min_confidence", 1.5, "min_confidence"),
        ("cloud.stride", 0, r"cloud.stride must be in \[1, 64\], got 0$"),  # an int stays an int in the text
        ("cloud.stride", 2.5, "cloud.stride must be an integer"),
        ("max_input_pixels", 0, "max_input_pixels"),
        ("expected_rate", -1.0, "expected_rate"),
        ("rectify", "always", "rectify must be one of auto, off"),
        ("sparse.extrinsic", "1 2 3", "sparse.extrinsic: extrinsic needs 7"),
        ("image_transport", "theora", "image_transport"),
        ("sparse.type", "laser", "sparse.type"),
        ("sparse.max_age", -1.0, "sparse.max_age"),
        ("scale_from_points", "median", "must be one of none, scale, scale_local, scale_shift, got 'median'"),
        ("scale_fit_min_points", 0, r"scale_fit_min_points must be in \[1, 100000\], got 0$"),
        ("checkpoint", "/no/such/file.pt", "file not found"),
    ],
)
def test_invalid_parameters_are_named(name: str, value: Any, match: str) -> None:
    from fusanet_ros.nodes.depth_settings import PARAMETERS, validate_settings
    from fusanet_ros.nodes.params import defaults

    values = defaults(PARAMETERS)
    values[name] = value
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        validate_settings(values)


def test_scale_fit_parameters_are_runtime_with_descriptors() -> None:
    from fusanet_ros.nodes.depth_settings import PARAMETERS, validate_settings
    from fusanet_ros.nodes.params import defaults
    from fusanet_ros.nodes.ros_common import descriptor

    mode, count = descriptor(PARAMETERS["scale_from_points"]), descriptor(PARAMETERS["scale_fit_min_points"])
    assert "none | scale" in mode.description and "scale_shift" in mode.description and not mode.read_only
    assert (count.integer_range[0].from_value, count.integer_range[0].to_value) == (1, 100000) and not count.read_only
    settings = validate_settings({**defaults(PARAMETERS), "scale_from_points": "scale_shift"})
    assert (settings.scale_from_points, settings.scale_fit_min_points) == ("scale_shift", 3)
    # the defaults are the measured best with the bundled model: RGB-only network + scale_local fit
    default = validate_settings(defaults(PARAMETERS))
    assert (default.scale_from_points, default.prime_with_points) == ("scale_local", False)
    assert not descriptor(PARAMETERS["prime_with_points"]).read_only


@pytest.mark.parametrize("override,match", [("max_depth:=-1.0", "max_depth"), ("max_depth:=abc", "max_depth"),
                                            ("checkpoint:=/no/such.pt", "not found"),
                                            ("qos.reliability:=reliable",
                                             "qos.reliability was removed.*qos_overrides"),
                                            ("ground.plane:=[0.0, -1.0, 0.0, -0.5]",
                                             r"parameter ground\.plane: .*height h must be > 0"),
                                            ("ground.extrinsic:=0 0 0.5 0 0 0 2",
                                             r"parameter ground\.extrinsic: .*unit length, got length 2")])
def test_node_exits_with_one_line_on_bad_parameters(override: str, match: str, tmp_path: Path) -> None:
    env = dds_mod.dds_env(dds_mod.pick_domain_id())
    cmd = [sys.executable, "-m", "fusanet_ros.nodes.depth_node", "--ros-args", "-p", override]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 2
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and "cannot start" in lines[0] and re.search(match, lines[0]), lines


# ----------------------------------------------------------------------------- DDS environment
def test_dds_env_defaults_and_respects_the_caller() -> None:
    env = dds_mod.dds_env(123, base={"PATH": "/bin"})
    assert env["ROS_DOMAIN_ID"] == "123" and env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert Path(env["FASTDDS_DEFAULT_PROFILES_FILE"]).name == "fastdds_shm.xml"
    own = dds_mod.dds_env(None, base={"ROS_DOMAIN_ID": "7", "ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET",
                                      "FASTDDS_DEFAULT_PROFILES_FILE": "/mine.xml"})
    assert (own["ROS_DOMAIN_ID"], own["ROS_AUTOMATIC_DISCOVERY_RANGE"], own["FASTDDS_DEFAULT_PROFILES_FILE"]) == (
        "7", "SUBNET", "/mine.xml")
    assert 1 <= dds_mod.pick_domain_id() <= 101  # ROS 2 safe ids on Linux


def test_fastdds_profile_raises_the_shm_segment() -> None:
    text = (ROOT / "config" / "fastdds_shm.xml").read_text()
    size = int(re.search(r"<segment_size>(\d+)</segment_size>", text).group(1))
    assert size >= 8 * 2**20 and 'is_default_profile="true"' in text


def test_stale_shm_cleanup_spares_live_segments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dds_mod, "SHM_DIR", tmp_path)
    for name in ("fastdds_dead", "fastdds_dead_el", "fastdds_live", "fastdds_live_el", "fastdds_port7777",
                 "fastdds_port7777_el", "sem.fastdds_port7777_mutex", "unrelated"):
        (tmp_path / name).write_bytes(b"")
    fd = os.open(tmp_path / "fastdds_live_el", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a live participant holds its lock file
    try:
        removed = dds_mod.remove_stale_shm(dds_mod.shm_files())
    finally:
        os.close(fd)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fastdds_live", "fastdds_live_el", "unrelated"]
    assert "fastdds_dead" in removed and "sem.fastdds_port7777_mutex" in removed


def test_fusanet_launch_forwards_sigterm_and_cleans_up(tmp_path: Path, tiny_checkpoint: Path) -> None:
    """`fusanet launch depth` in the foreground: the node starts, SIGTERM to the runner stops it."""
    import signal
    import time

    ckpt = tiny_checkpoint
    cmd = [sys.executable, "-m", "fusanet_ros.cli", "launch", "depth", "--checkpoint", str(ckpt), "--device", "cpu",
           "--param", "input_size:=[48, 64]", "--param", "num_threads:=1",
           "--domain-id", str(dds_mod.pick_domain_id())]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            line = proc.stdout.readline()
            lines.append(line)
            if "ready:" in line:
                break
        assert any("ready:" in line for line in lines), "".join(lines)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, "".join(lines) + out
    alive = [p for p in Path("/proc").glob("[0-9]*/cmdline") if str(ckpt).encode() in _read(p)]
    assert not alive, "the node outlived the runner"


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""
