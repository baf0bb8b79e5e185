"""launch/depth.launch.py and the runner start the same nodes; parameters validate; DDS env (no DDS)."""

from __future__ import annotations

import fcntl
import importlib.util
import os
import re
import shlex
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import yaml

from fusanet_ros.startup import runner as runner_mod
from fusanet_ros.startup.launch_description import DEPTH_ARGUMENTS, NodeSpec, depth_nodes, format_param_value, parse_param

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_FILE = ROOT / "launch" / "depth.launch.py"
EVAL_LAUNCH_FILE = ROOT / "launch" / "eval.launch.py"
SAMPLE_BAG = ROOT / "sample" / "tum_rgbd_bag"


# ------------------------------------------------------------ a minimal stand-in for launch/launch_ros
def _fake_launch(recorded: list[dict[str, Any]]) -> dict[str, types.ModuleType]:
    """Just enough of `launch` and `launch_ros` to evaluate a launch file and record Node kwargs
    (and `{"process": kwargs}` of ExecuteProcess actions)."""

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

    class ExecuteProcess:
        def __init__(self, **kwargs: Any) -> None:
            recorded.append({"process": kwargs})

    class Inert:  # event handlers and events: nothing to start
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

    modules = {name: types.ModuleType(name) for name in ("launch", "launch.actions", "launch.event_handlers", "launch.events",
                                                         "launch.substitutions", "launch_ros", "launch_ros.actions")}
    modules["launch"].LaunchDescription = LaunchDescription
    modules["launch.actions"].DeclareLaunchArgument = DeclareLaunchArgument
    modules["launch.actions"].OpaqueFunction = OpaqueFunction
    modules["launch.actions"].ExecuteProcess = ExecuteProcess
    modules["launch.actions"].RegisterEventHandler = modules["launch.actions"].EmitEvent = Inert
    modules["launch.event_handlers"].OnProcessExit = modules["launch.events"].Shutdown = Inert
    modules["launch.substitutions"].LaunchConfiguration = LaunchConfiguration
    modules["launch_ros.actions"].Node = Node
    return modules


def _run_launch_file(monkeypatch: pytest.MonkeyPatch, launch_file: Path = LAUNCH_FILE, **launch_args: str) -> list[dict[str, Any]]:
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
            entity.function(context)
    return recorded


def _from_launch_ros(kwargs: dict[str, Any]) -> dict[str, Any]:
    """What launch_ros makes of Node(...): name, namespace, ordered parameter sources, remappings."""
    params: list[tuple] = []
    for item in kwargs["parameters"]:
        if isinstance(item, dict):  # launch_ros writes dicts to a temporary params file: same values
            params += [("param", key, value) for key, value in item.items()]
        else:
            params.append(("file", str(item)))
    ns = kwargs.get("namespace", "")
    return {"executable": kwargs["executable"], "name": kwargs["name"], "namespace": "/" + ns.strip("/") if ns.strip("/") else "",
            "params": params, "remappings": [tuple(r) for r in kwargs["remappings"]]}


def _from_command(cmd: list[str]) -> dict[str, Any]:
    """The same structure parsed back from a runner command line."""
    assert cmd[1] == "-m" and cmd[3] == "--ros-args", cmd
    out: dict[str, Any] = {"module": cmd[2], "name": None, "namespace": "", "params": [], "remappings": []}
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
]


@pytest.mark.parametrize("launch_args", CASES)
def test_launch_file_and_runner_start_the_same_nodes(monkeypatch: pytest.MonkeyPatch, launch_args: dict[str, str]) -> None:
    launched = [_from_launch_ros(kw) for kw in _run_launch_file(monkeypatch, **launch_args)]
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
def test_eval_launch_file_and_fusanet_launch_eval_start_the_same_processes(monkeypatch: pytest.MonkeyPatch,
                                                                         launch_args: dict[str, str]) -> None:
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
        assert players[0][2:5] == ["fusanet_ros.cli", "play", str(SAMPLE_BAG.resolve())]


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
    spec = depth_nodes(params_file="/p.yaml", namespace="/r1/", image_topic="/img", extra_parameters={"input_size": [64, 80]})[0]
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
    from fusanet_ros.nodes.depth_node import PARAMETERS, validate_settings

    data = yaml.safe_load((ROOT / "config" / "depth.yaml").read_text())
    assert list(data) == ["/**"], "the key must be /** so that namespaced nodes get the parameters"
    values = _flatten(data["/**"]["ros__parameters"])
    assert values == {name: default for name, (default, _, _) in PARAMETERS.items()}
    settings = validate_settings(values)
    assert settings.input_size is None and settings.output_size is None and settings.qos_reliability == "best_effort"


@pytest.mark.parametrize(
    "name,value,match",
    [
        ("device", "gpu", "device must be"),
        ("input_size", [16, 16], "input_size"),
        ("input_size", [240], "input_size"),
        ("output_size", [-1, 5], "output_size"),
        ("output_encoding", "8UC1", "output_encoding"),
        ("max_depth", 0.0, "max_depth"),
        ("max_depth", float("nan"), "max_depth"),
        ("min_confidence", 1.5, "min_confidence"),
        ("cloud.stride", 0, "cloud.stride"),
        ("qos.reliability", "fast", "qos.reliability"),
        ("image_transport", "theora", "image_transport"),
        ("sparse.type", "laser", "sparse.type"),
        ("sparse.max_age", -1.0, "sparse.max_age"),
        ("checkpoint", "/no/such/file.pt", "file not found"),
    ],
)
def test_invalid_parameters_are_named(name: str, value: Any, match: str) -> None:
    from fusanet_ros.nodes.depth_node import PARAMETERS, validate_settings

    values = {k: default for k, (default, _, _) in PARAMETERS.items()}
    values[name] = value
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        validate_settings(values)


@pytest.mark.parametrize("override,match", [("max_depth:=-1.0", "max_depth"), ("max_depth:=abc", "max_depth"),
                                            ("checkpoint:=/no/such.pt", "not found")])
def test_node_exits_with_one_line_on_bad_parameters(override: str, match: str, tmp_path: Path) -> None:
    env = runner_mod.dds_env(runner_mod.pick_domain_id())
    cmd = [sys.executable, "-m", "fusanet_ros.nodes.depth_node", "--ros-args", "-p", override]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 2
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and "cannot start" in lines[0] and re.search(match, lines[0]), lines


# ----------------------------------------------------------------------------- DDS environment
def test_dds_env_defaults_and_respects_the_caller() -> None:
    env = runner_mod.dds_env(123, base={"PATH": "/bin"})
    assert env["ROS_DOMAIN_ID"] == "123" and env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert Path(env["FASTDDS_DEFAULT_PROFILES_FILE"]).name == "fastdds_shm.xml"
    own = runner_mod.dds_env(None, base={"ROS_DOMAIN_ID": "7", "ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET",
                                         "FASTDDS_DEFAULT_PROFILES_FILE": "/mine.xml"})
    assert (own["ROS_DOMAIN_ID"], own["ROS_AUTOMATIC_DISCOVERY_RANGE"], own["FASTDDS_DEFAULT_PROFILES_FILE"]) == ("7", "SUBNET", "/mine.xml")
    assert 100 <= runner_mod.pick_domain_id() <= 200


def test_fastdds_profile_raises_the_shm_segment() -> None:
    text = (ROOT / "config" / "fastdds_shm.xml").read_text()
    size = int(re.search(r"<segment_size>(\d+)</segment_size>", text).group(1))
    assert size >= 8 * 2**20 and 'is_default_profile="true"' in text


def test_stale_shm_cleanup_spares_live_segments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner_mod, "SHM_DIR", tmp_path)
    for name in ("fastdds_dead", "fastdds_dead_el", "fastdds_live", "fastdds_live_el", "fastdds_port7777",
                 "fastdds_port7777_el", "sem.fastdds_port7777_mutex", "unrelated"):
        (tmp_path / name).write_bytes(b"")
    fd = os.open(tmp_path / "fastdds_live_el", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a live participant holds its lock file
    try:
        removed = runner_mod.remove_stale_shm(runner_mod.shm_files())
    finally:
        os.close(fd)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fastdds_live", "fastdds_live_el", "unrelated"]
    assert "fastdds_dead" in removed and "sem.fastdds_port7777_mutex" in removed


def test_fusanet_launch_forwards_sigterm_and_cleans_up(tmp_path: Path) -> None:
    """`fusanet launch depth` in the foreground: the node starts, SIGTERM to the runner stops it."""
    import signal
    import time

    import fusanet_core
    from fusanet_core.checkpoint import save_checkpoint

    cfg = fusanet_core.preset_config("tiny")
    ckpt = save_checkpoint(tmp_path / "tiny.pt", fusanet_core.build_model(cfg), cfg)
    cmd = [sys.executable, "-m", "fusanet_ros.cli", "launch", "depth", "--checkpoint", str(ckpt), "--device", "cpu",
           "--param", "input_size:=[48, 64]", "--param", "num_threads:=1", "--domain-id", str(runner_mod.pick_domain_id())]
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
