"""The live evaluator node.

Stamp pairing, parameters, scoring in-process, the eval launch description, and live (real DDS
between processes) against offline metrics on the same frames.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
import subprocess
import sys
import types
from typing import Any

import numpy as np
import pytest

pytest.importorskip("rclpy")

from std_msgs.msg import Header  # noqa: E402

from fusanet_core.evaluation.bag_eval import BagEvalOptions, evaluate_bag  # noqa: E402
from fusanet_core.evaluation.metrics import compute_metrics  # noqa: E402
from fusanet_core.evaluation.pairing import StampPairing  # noqa: E402
from fusanet_core.evaluation.registration import register_depth  # noqa: E402
from fusanet_core.geometry import RigidTransform  # noqa: E402
from fusanet_ros.nodes import conversions as conv  # noqa: E402
from fusanet_ros.nodes.evaluator_node import EvaluatorNode, PARAMETERS, validate_settings  # noqa: E402
from fusanet_ros.nodes.params import defaults  # noqa: E402
from fusanet_ros.startup.eval_launch import eval_arguments, eval_nodes, run_eval_launch  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
SAMPLE_BAG = ROOT / "sample" / "tum_rgbd_bag"
MS = 1_000_000


# ------------------------------------------------------------------------------------ pairing
def test_exact_stamps_pair_at_once_and_measure_latency() -> None:
    p = StampPairing(slop_ns=0)
    assert p.on_input(100, arrival=1.0) == []
    assert p.on_ground_truth(100, "gt") == []
    [done] = p.on_prediction(100, arrival=1.25, msg="pred")
    assert (done.status, done.gt, done.gt_stamp_ns, done.latency_ms) == ("pair", "gt", 100, pytest.approx(250.0))
    assert p.flush() == []


def test_slop_waits_for_a_closer_ground_truth() -> None:
    p = StampPairing(slop_ns=50 * MS)
    p.on_ground_truth(1000 * MS, "far")
    assert p.on_prediction(1030 * MS, 0.0, "pred") == []  # a closer one may still come
    assert p.on_ground_truth(1040 * MS, "near") == []  # and still: 1040 < 1030 + 50
    [done] = p.on_ground_truth(1090 * MS, "later")  # nothing closer than 10 ms can follow now
    assert (done.status, done.gt, done.gt_stamp_ns) == ("pair", "near", 1040 * MS)
    q = StampPairing(slop_ns=50 * MS)
    q.on_ground_truth(1000 * MS, "a")
    q.on_prediction(1020 * MS, 0.0, "pred")
    assert q.on_ground_truth(1060 * MS, "b") == []  # 1060 < 1020 + 50: still waiting
    [done] = q.on_ground_truth(1100 * MS, "c")
    assert (done.gt, done.gt_stamp_ns) == ("a", 1000 * MS)  # 20 ms beats 40 ms


def test_drops_unpaired_and_early_predictions() -> None:
    p = StampPairing(slop_ns=0)
    p.on_input(1, 0.0)
    p.on_input(2, 0.0)
    p.on_prediction(3, 0.5, "early")  # before its input: no latency, and the input is not a drop
    p.on_input(3, 0.6)
    settled = p.flush()
    by_stamp = {s.stamp_ns: s for s in settled}
    assert by_stamp[3].status == "unpaired" and by_stamp[3].latency_ms is None
    assert sorted(s.stamp_ns for s in settled if s.status == "dropped") == [1, 2]


def test_pending_maps_are_bounded_by_age_and_count() -> None:
    p = StampPairing(slop_ns=0, max_pending=5, max_age_ns=10 * MS)
    settled = []
    for i in range(100):
        settled += p.on_input(i * MS, 0.0)
        settled += p.on_ground_truth(10_000 * MS + i, "gt")  # never matching
    assert len(p.inputs) <= 5 and len(p.gts) <= 5
    assert sum(s.status == "dropped" for s in settled) >= 95
    for i in range(20):
        settled += p.on_prediction(20_000 * MS + i * 20 * MS, 0.0, "pred")
    assert len(p.preds) <= 5


@pytest.mark.parametrize("name, value, match", [
    ("slop", -1.0, "slop must be >= 0"), ("register", "maybe", "register must be one of"),
    ("extrinsic", "1 2 3", "parameter extrinsic"), ("max_depth", 0.0, "min_depth < max_depth"),
    ("crop", "diagonal", "'diagonal'"), ("gt_depth_scale", 0.0, "gt_depth_scale must be > 0"),
    ("max_pending", 0, r"max_pending must be in \[1, 100000\], got 0$"), ("idle_timeout", -1.0, "idle_timeout"),
])
def test_invalid_parameters_are_named(name: str, value: Any, match: str) -> None:
    values = defaults(PARAMETERS)
    values[name] = value
    with pytest.raises(ValueError, match=match):
        validate_settings(values)


def test_bad_parameters_exit_2_with_one_line(tmp_path: Path) -> None:
    from fusanet_ros.startup.dds import dds_env, pick_domain_id

    result = subprocess.run([sys.executable, "-m", "fusanet_ros.nodes.evaluator_node", "--ros-args", "-p", "slop:=-1.0",
                             "-p", f"output_dir:={tmp_path}"], env=dds_env(pick_domain_id()), capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert "cannot start: slop must be >= 0" in result.stderr + result.stdout
    assert not (tmp_path / "report.json").exists()


def test_removed_qos_parameters_are_refused_by_name(make_node: Any) -> None:
    """qos.reliability / qos.depth were replaced by qos_overrides: setting one is an error, not ignored."""
    from rclpy.qos import ReliabilityPolicy

    with pytest.raises(ValueError, match="qos.depth was removed.*qos_overrides"):
        make_node(**{"qos.depth": 5})
    node = make_node(**{"qos_overrides./depth/image.subscription.reliability": "reliable"})
    [sub] = [s for s in node.subscriptions if s.topic_name == "/depth/image"]
    assert sub.qos_profile.reliability == ReliabilityPolicy.RELIABLE
    [gt] = [s for s in node.subscriptions if s.topic_name == "/ground_truth"]
    assert gt.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT


def test_sigint_writes_the_report(tmp_path: Path) -> None:
    import signal
    import time

    from fusanet_ros.startup.dds import dds_env, pick_domain_id

    log = tmp_path / "evaluator.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "fusanet_ros.nodes.evaluator_node", "--ros-args", "-p",
                                 f"output_dir:={tmp_path / 'report'}"], env=dds_env(pick_domain_id()), stdout=out,
                                stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while "evaluating" not in log.read_text() and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.1)
            proc.send_signal(signal.SIGINT)
            assert proc.wait(30) == 3, log.read_text()  # report written, nothing to score
        finally:
            if proc.poll() is None:
                proc.kill()
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    assert data["summary"] is None and data["counts"]["frames"] == 0
    assert "no input image arrived" in " ".join(data["notes"])


# ------------------------------------------------------------------------- in-process scoring
@pytest.fixture
def make_node(tmp_path: Path) -> Any:
    """Provide an EvaluatorNode factory in a private rclpy context; callbacks are called directly (no DDS)."""
    import rclpy
    from rclpy.context import Context
    from rclpy.parameter import Parameter
    from rclpy.signals import SignalHandlerOptions

    from fusanet_ros.startup.dds import pick_domain_id
    from fusanet_ros.startup.probe import prepare_process_env

    domain = pick_domain_id()
    prepare_process_env(domain)
    context = Context()
    rclpy.init(context=context, domain_id=domain, signal_handler_options=SignalHandlerOptions.NO)
    nodes: list[EvaluatorNode] = []

    def make(**params: Any) -> EvaluatorNode:
        overrides = [Parameter(k, value=v) for k, v in {"output_dir": str(tmp_path / "report"), **params}.items()]
        nodes.append(EvaluatorNode(context=context, parameter_overrides=overrides))
        return nodes[-1]

    yield make
    for node in nodes:
        node.destroy_node()
    context.try_shutdown()


def _header(stamp_ns: int, frame_id: str = "cam") -> Header:
    header = Header(frame_id=frame_id)
    header.stamp.sec, header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    return header


def test_node_scores_frames_and_writes_the_report_on_max_frames(make_node: Any, tmp_path: Path) -> None:
    node = make_node(max_frames=3, max_panels=1)
    rng = np.random.default_rng(0)
    gt_m = rng.uniform(0.5, 4.0, (24, 32)).astype(np.float32)
    gt_m[:4] = 0.0  # invalid rows
    preds = []
    for i in range(4):
        stamp = 10**18 + i * 100 * MS
        rgb = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
        pred = gt_m * (1.0 + 0.1 * i) + 0.05
        preds.append(pred)
        node._on_image(conv.rgb_to_image(rgb, "rgb8", _header(stamp)))
        node._on_ground_truth(conv.depth_to_image(gt_m, "16UC1", _header(stamp)))
        if i == 2:
            continue  # the depth node dropped this input
        node._on_prediction(conv.depth_to_image(np.where(gt_m > 0, pred, np.nan), "32FC1", _header(stamp)))
    assert node.done.is_set()  # third prediction reached max_frames
    assert node.finish() == 0
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    assert data["counts"]["ok"] == 3 and data["counts"]["dropped"] == 1
    assert data["counts"]["inputs_received"] == 4 and data["counts"]["predictions_received"] == 3
    gt_mm = np.round(gt_m * 1000) / 1000  # the 16UC1 ground truth carries millimetres
    scored = [f for f in data["frames"] if f["status"] == "ok"]
    for frame, pred in zip(scored, [preds[0], preds[1], preds[3]]):
        assert frame["metrics"] == pytest.approx(compute_metrics(np.where(gt_m > 0, pred, 1.0), gt_mm), rel=1e-5)
        assert frame["latency_ms"] is not None and frame["latency_ms"] >= 0
    assert data["latency_ms"]["n"] == 3
    assert len(list((tmp_path / "report").glob("panel_*.png"))) == 1


def test_idle_timeout_ends_the_evaluation_under_sim_time_without_clock(make_node: Any) -> None:
    """After the bag, /clock stops: the idle check must still run (steady time), or the eval never ends."""
    import time

    from rclpy.executors import SingleThreadedExecutor

    node = make_node(idle_timeout=0.3, use_sim_time=True)
    assert node.get_clock().ros_time_is_active  # sim time, and no /clock is published here
    node._on_image(conv.rgb_to_image(np.zeros((4, 4, 3), np.uint8), "rgb8", _header(10**18)))
    executor = SingleThreadedExecutor(context=node.context)
    executor.add_node(node)
    deadline = time.monotonic() + 5.0
    while not node.done.is_set() and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
    executor.remove_node(node)
    assert node.done.is_set()


def test_node_registers_ground_truth_with_the_extrinsic_parameter(make_node: Any, tmp_path: Path) -> None:
    k_color, k_depth = (40.0, 40.0, 15.5, 11.5), (30.0, 30.0, 16.0, 12.0)
    node = make_node(extrinsic="0.01 0 0 0 0 0 1", max_frames=1)
    gt_m = np.full((24, 32), 2.0, np.float32)
    stamp = 10**18
    node._on_color_info(conv.make_camera_info(k_color, 32, 24, _header(stamp)))
    node._on_gt_info(conv.make_camera_info(k_depth, 32, 24, _header(stamp, "depth")))
    node._on_ground_truth(conv.depth_to_image(gt_m, "32FC1", _header(stamp, "depth")))
    pred = np.full((24, 32), 2.5, np.float32)
    node._on_prediction(conv.depth_to_image(pred, "32FC1", _header(stamp)))
    assert node.finish() == 0
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    registered = register_depth(gt_m, k_depth, k_color, (32, 24), RigidTransform(np.eye(3), np.array([0.01, 0, 0])))
    [frame] = data["frames"]
    assert frame["status"] == "ok"
    assert frame["coverage"] == pytest.approx(1.0) and frame["metrics"]["n_valid"] == int(np.isfinite(registered).sum())
    assert any("registered" in n for n in data["notes"])


def test_node_without_extrinsic_reports_why_it_cannot_register(make_node: Any, tmp_path: Path) -> None:
    node = make_node(max_frames=1)
    gt = conv.depth_to_image(np.full((24, 32), 2.0, np.float32), "32FC1", _header(5, "depth_optical"))
    node._on_ground_truth(gt)
    node._on_prediction(conv.depth_to_image(np.full((24, 32), 2.0, np.float32), "32FC1", _header(5, "color_optical")))
    assert node.finish() == 3  # report written, nothing scored
    [frame] = json.loads((tmp_path / "report" / "report.json").read_text())["frames"]
    assert frame["status"] == "error" and "set the extrinsic parameter" in frame["message"]


# --------------------------------------------------------------------------- the eval launch
def _fake_launch(recorded: dict[str, list]) -> dict[str, types.ModuleType]:
    """Just enough of `launch` / `launch_ros` to evaluate eval.launch.py and record its actions."""

    class Entity:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.args, self.kwargs = args, kwargs

    class DeclareLaunchArgument(Entity):
        def __init__(self, name: str, default_value: str = "", description: str = "") -> None:
            super().__init__()
            self.name, self.default_value = name, default_value

    class LaunchConfiguration:
        def __init__(self, name: str) -> None:
            self.name = name

        def perform(self, context: Any) -> str:
            return context.launch_configurations[self.name]

    def recorder(kind: str) -> type:
        class Recorded(Entity):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                recorded.setdefault(kind, []).append(kwargs or args)
        return Recorded

    names = ("launch", "launch.actions", "launch.event_handlers", "launch.events", "launch.substitutions", "launch_ros",
             "launch_ros.actions")
    modules = {name: types.ModuleType(name) for name in names}
    modules["launch"].LaunchDescription = Entity
    actions = modules["launch.actions"]
    actions.DeclareLaunchArgument = DeclareLaunchArgument
    actions.OpaqueFunction = Entity
    actions.ExecuteProcess, actions.RegisterEventHandler, actions.EmitEvent = (
        recorder(k) for k in ("process", "handler", "emit"))
    modules["launch.event_handlers"].OnProcessExit = recorder("on_exit")
    modules["launch.events"].Shutdown = recorder("shutdown")
    modules["launch.substitutions"].LaunchConfiguration = LaunchConfiguration
    modules["launch_ros.actions"].Node = recorder("node")
    return modules


def _load_eval_launch(monkeypatch: pytest.MonkeyPatch) -> tuple[types.ModuleType, dict[str, list]]:
    """Import launch/eval.launch.py against the fake `launch`; return it and what its actions record."""
    recorded: dict[str, list] = {}
    for name, module in _fake_launch(recorded).items():
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location("eval_launch", ROOT / "launch" / "eval.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, recorded


def test_eval_launch_file_starts_what_the_runner_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    module, recorded = _load_eval_launch(monkeypatch)
    description = module.generate_launch_description()
    entities = description.args[0]
    declared = {e.name: e.default_value for e in entities if hasattr(e, "default_value")}
    assert declared == {a.name: a.default for a in eval_arguments()}
    args = {**declared, "bag": str(SAMPLE_BAG), "checkpoint": "/tmp/model.pt", "namespace": "ev"}
    [opaque] = [e for e in entities if "function" in e.kwargs]
    opaque.kwargs["function"](types.SimpleNamespace(launch_configurations=args))
    expected = [s.launch_ros_kwargs() for s in eval_nodes(**args)]
    assert recorded["node"] == expected
    assert [k["name"] for k in recorded["node"]] == ["depth_node", "evaluator"]
    assert dict(expected[1]["remappings"])["ground_truth"] == "/camera/depth/image_raw"
    [player] = recorded["process"]
    assert player["cmd"][2:4] == ["fusanet_ros.tools.bag_player", str(SAMPLE_BAG.resolve())]
    assert len(recorded["handler"]) == 2 and len(recorded["shutdown"]) == 1  # the evaluator's exit ends the launch
    failed = module._end_if_failed(types.SimpleNamespace(returncode=2), None)  # as does a failed player's
    assert len(failed) == 1 and "exit 2" in recorded["shutdown"][-1]["reason"]
    assert module._end_if_failed(types.SimpleNamespace(returncode=0), None) == []
    assert "--clock" not in player["cmd"]
    assert all("use_sim_time" not in k["parameters"][-1] for k in recorded["node"])


def test_eval_launch_use_sim_time_plays_the_clock_and_sets_both_nodes(monkeypatch: pytest.MonkeyPatch) -> None:
    module, recorded = _load_eval_launch(monkeypatch)
    args = {a.name: a.default for a in eval_arguments()}
    args.update(bag=str(SAMPLE_BAG), use_sim_time="true")
    [opaque] = [e for e in module.generate_launch_description().args[0] if "function" in e.kwargs]
    opaque.kwargs["function"](types.SimpleNamespace(launch_configurations=args))
    assert [k["parameters"][-1].get("use_sim_time") for k in recorded["node"]] == [True, True]
    [player] = recorded["process"]
    assert player["cmd"][-1] == "--clock"


# ------------------------------------------------------------------------- live against offline
@pytest.mark.slow
def test_eval_launch_ends_when_the_player_fails(tmp_path: Path, tiny_checkpoint: Path) -> None:
    """A ground-truth topic the bag lacks: the player refuses, and the launch ends with its code (no hang)."""
    import time

    from fusanet_ros.startup.dds import pick_domain_id

    values = {"bag": str(SAMPLE_BAG), "checkpoint": str(tiny_checkpoint), "device": "cpu",
              "depth_topic": "/not/in/the/bag", "output_dir": str(tmp_path / "live"), "idle_timeout": 3.0,
              "depth_parameters": {"input_size": [48, 64], "num_threads": 1}}
    start = time.monotonic()
    code = run_eval_launch(values, domain_id=pick_domain_id(), log_dir=tmp_path / "logs", timeout=120)
    assert code == 2
    assert time.monotonic() - start < 60
    assert "/not/in/the/bag" in (tmp_path / "logs" / "player.log").read_text()


@pytest.mark.slow
def test_live_and_offline_give_the_same_metrics(tmp_path: Path, tiny_checkpoint: Path) -> None:
    """Bag player -> depth node -> evaluator over real DDS (three processes), against bag-eval."""
    from fusanet_ros.startup.dds import pick_domain_id

    if not (SAMPLE_BAG / "metadata.yaml").is_file():
        pytest.skip("sample/tum_rgbd_bag is not in this checkout")
    checkpoint = tiny_checkpoint
    values = {"bag": str(SAMPLE_BAG), "checkpoint": str(checkpoint), "device": "cpu",
              "output_dir": str(tmp_path / "live"), "rate": 1.0, "idle_timeout": 3.0,
              "depth_parameters": {"input_size": [48, 64], "num_threads": 1},
              "evaluator_parameters": {"max_frames": 10}}
    code = run_eval_launch(values, domain_id=pick_domain_id(), log_dir=tmp_path / "logs", timeout=90)
    logs = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}"
                     for p in sorted((tmp_path / "logs").glob("*.log")))
    assert code == 0, logs
    live = json.loads((tmp_path / "live" / "report.json").read_text())
    offline_eval, _ = evaluate_bag(BagEvalOptions(bag=str(SAMPLE_BAG), image_topic="/camera/color/image_raw",
                                                  depth_topic="/camera/depth/image_raw", checkpoint=str(checkpoint),
                                                  device="cpu", input_size=(48, 64), out=str(tmp_path / "offline")))
    offline = {f.stamp_ns: f for f in offline_eval.frames if f.status == "ok"}
    scored = {f["stamp_ns"]: f for f in live["frames"] if f["status"] == "ok"}
    common = sorted(set(scored) & set(offline))
    assert len(common) >= 7, f"only {len(common)} frames in common; counts {live['counts']}\n{logs}"
    for stamp in common:
        assert scored[stamp]["metrics"] == pytest.approx(offline[stamp].metrics, rel=1e-4), stamp
    counts = live["counts"]
    assert counts["inputs_received"] == 10
    assert counts["dropped"] == counts["inputs_received"] - counts["predictions_received"]
    assert live["latency_ms"]["n"] == counts["ok"] and live["latency_ms"]["p50"] > 0
