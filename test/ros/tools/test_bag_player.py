"""`fusanet play`: bags of every storage kind replayed over DDS with their recorded headers."""

from __future__ import annotations

from pathlib import Path
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("rclpy")

from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

from fusanet_ros.cli import main as cli_main  # noqa: E402
from fusanet_ros.nodes import conversions as conv  # noqa: E402
from fusanet_ros.startup.dds import dds_env, pick_domain_id  # noqa: E402
from fusanet_ros.startup.probe import Probe  # noqa: E402
from fusanet_ros.tools import bag_player  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
SAMPLE_BAG = ROOT / "sample" / "tum_rgbd_bag"
D435 = Path(__file__).resolve().parents[4] / "shared" / "data" / "realsense_d435_bag"
if not D435.is_dir():
    D435 = Path("/work/shared/data/realsense_d435_bag")
needs_d435 = pytest.mark.skipif(not D435.is_dir(), reason="shared D435 bag not available")
COLOR = "/camera/color/image_raw"
D435_COLOR = "/device_0/sensor_1/Color_0/image/data"
D435_DEPTH = "/device_0/sensor_0/Depth_0/image/data"


def _play(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "fusanet_ros.tools.bag_player", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _finish(proc: subprocess.Popen, timeout: float = 60) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"player did not finish:\n{out}")
    return out


def test_sample_bag_is_small_and_complete() -> None:
    size = sum(p.stat().st_size for p in SAMPLE_BAG.rglob("*") if p.is_file())
    assert size < 3e6
    reader = bag_player.open_bag([SAMPLE_BAG])
    try:
        topics = bag_player.bag_topics(reader)
    finally:
        reader.close()
    assert topics == {COLOR: ("sensor_msgs/msg/Image", 10),
                      "/camera/color/camera_info": ("sensor_msgs/msg/CameraInfo", 10),
                      "/camera/depth/image_raw": ("sensor_msgs/msg/Image", 10)}


def test_missing_topic_lists_the_bags_topics(capsys: pytest.CaptureFixture) -> None:
    assert cli_main(["play", str(SAMPLE_BAG), "--topics", "/nope"]) == 2
    err = capsys.readouterr().err
    assert "'/nope' is not in the bag" in err and COLOR in err and "/camera/depth/image_raw" in err
    assert cli_main(["play", str(SAMPLE_BAG / "missing")]) == 2
    assert "bag not found" in capsys.readouterr().err


@needs_d435
def test_ros1_messages_become_rclpy_messages() -> None:
    reader = bag_player.open_bag([D435 / "single_depth_color_640x480.bag"])
    try:
        conns, skipped = bag_player.select_connections(reader, None)
        assert any("realsense_msgs" in reader.topics[t].msgtype for t in skipped)  # custom type: skipped, said
        infos, images = [], []
        for conn, _, raw in reader.messages(connections=[c for c in conns if c.msgtype.startswith("sensor_msgs")]):
            msg = bag_player.to_rclpy(reader.deserialize(raw, conn.msgtype), bag_player.message_class(conn.msgtype))
            (infos if isinstance(msg, CameraInfo) else images).append(msg)
    finally:
        reader.close()
    # ROS 1 `K`/`P` reached ROS 2 `k`/`p`
    assert sorted(round(conv.camera_info_intrinsics(i)[0], 3) for i in infos) == [390.431, 613.204]
    encodings = sorted(m.encoding for m in images)
    assert encodings == ["mono16", "mono16", "rgb8"]
    depth = conv.image_to_array(next(m for m in images if m.encoding == "mono16"))
    assert depth.shape == (480, 640) and depth.max() > 0


def test_play_publishes_recorded_headers_and_data_at_the_recorded_rate() -> None:
    domain = pick_domain_id()
    with Probe(domain) as probe:
        color = probe.record(Image, COLOR, keep=100)
        infos = probe.record(CameraInfo, "/camera/color/camera_info", keep=100)
        depth = probe.record(Image, "/renamed/depth", keep=100)
        start = time.monotonic()
        proc = _play([str(SAMPLE_BAG), "--rate", "4", "--wait-for-subscribers", "20", "--remap",
                      "/camera/depth/image_raw:=/renamed/depth"], dds_env(domain))
        probe.spin_until(lambda: proc.poll() is not None and len(color) == len(infos) == len(depth) == 10, 60)
        out = _finish(proc)
        elapsed = time.monotonic() - start
    assert proc.returncode == 0, out
    assert len(color) == len(infos) == len(depth) == 10, out
    stamps = [conv.stamp_ns(m.header) for m in color]
    assert stamps == [1_700_000_000 * 10**9 + i * 500_000_000 for i in range(10)]
    assert [conv.stamp_ns(m.header) for m in depth] == stamps
    assert {m.header.frame_id for m in color} == {"camera_color_optical_frame"}
    assert elapsed > 4.5 / 4  # 4.5 s of bag at 4x
    reader = bag_player.open_bag([SAMPLE_BAG])
    try:
        conn = next(c for c in reader.connections if c.topic == COLOR)
        first = reader.deserialize(next(reader.messages(connections=[conn]))[2], conn.msgtype)
    finally:
        reader.close()
    np.testing.assert_array_equal(conv.image_to_rgb(color[0]), conv.image_to_rgb(first))


def test_clock_publishes_bag_time_for_use_sim_time_nodes() -> None:
    from rosgraph_msgs.msg import Clock

    domain = pick_domain_id()
    with Probe(domain) as probe:
        clock = probe.record(Clock, "/clock", keep=100)
        color = probe.record(Image, COLOR, keep=100)
        proc = _play([str(SAMPLE_BAG), "--rate", "10", "--clock", "--topics", COLOR, "--wait-for-subscribers", "20"],
                     dds_env(domain))
        probe.spin_until(lambda: proc.poll() is not None and len(color) == 10 and len(clock) == 10, 60)
        out = _finish(proc)
    assert proc.returncode == 0, out
    ticks = [m.clock.sec * 10**9 + m.clock.nanosec for m in clock]
    assert len(ticks) == 10, out  # one tick before each published message, at its bag time
    assert ticks == sorted(ticks) and ticks == [conv.stamp_ns(m.header) for m in color]  # this bag: bag time = stamp


def test_loop_runs_until_interrupted() -> None:
    domain = pick_domain_id()
    with Probe(domain) as probe:
        color = probe.record(Image, COLOR, keep=100)
        proc = _play([str(SAMPLE_BAG), "--rate", "20", "--loop", "--topics", COLOR, "--wait-for-subscribers", "20"],
                     dds_env(domain))
        probe.spin_until(lambda: len(color) > 12 or proc.poll() is not None, 60)
        proc.send_signal(signal.SIGINT)
        out = _finish(proc, 20)
    assert len(color) > 12, out
    assert proc.returncode == 0, out


@needs_d435
@pytest.mark.parametrize("bag", ["rs_d435_ros2_sqlite3", "single_depth_color_640x480.bag"])  # MCAP: the sample bag
def test_real_d435_bags_play(bag: str) -> None:
    domain = pick_domain_id()
    with Probe(domain) as probe:
        color = probe.record(Image, D435_COLOR)
        depth = probe.record(Image, D435_DEPTH)
        proc = _play([str(D435 / bag), "--topics", D435_COLOR, D435_DEPTH, "--rate", "5",
                      "--wait-for-subscribers", "20"], dds_env(domain))
        probe.spin_until(lambda: len(color) == 1 and len(depth) == 2, 60)
        out = _finish(proc)
    assert proc.returncode == 0, out
    assert (len(color), len(depth)) == (1, 2), out
    assert conv.image_to_rgb(color[0]).shape == (480, 640, 3)
    assert depth[0].encoding == "mono16" and conv.image_to_array(depth[0]).max() > 0
