"""The managed depth node over real DDS, driven through its lifecycle services.

This process calls `<node>/change_state` and `<node>/get_state` and checks that outputs flow only
while the node is active; the runner's autostart brings a second one to `active` the same way.
"""

from __future__ import annotations

from pathlib import Path
import signal
import time

import cv2
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("lifecycle_msgs")

from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from fusanet_ros.nodes import conversions as conv  # noqa: E402
from fusanet_ros.startup.dds import dds_env, pick_domain_id  # noqa: E402
from fusanet_ros.startup.launch_description import depth_nodes  # noqa: E402
from fusanet_ros.startup.probe import Probe  # noqa: E402
from fusanet_ros.startup.runner import LifecycleClient, Runner  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
IMAGE, INFO = "/lc_cam/image_raw", "/lc_cam/camera_info"
K = (520.9, 521.0, 325.1, 249.7)


class Camera:
    """Publishes frames with increasing stamps into both managed nodes' input."""

    def __init__(self, probe: Probe) -> None:
        rgb = cv2.cvtColor(cv2.imread(str(ROOT / "sample" / "tum_rgbd" / "00.color.jpg")), cv2.COLOR_BGR2RGB)
        self.image, self.info = conv.rgb_to_image(rgb, "rgb8"), conv.make_camera_info(K, 640, 480)
        self.probe = probe
        self.pub_image, self.pub_info = probe.publisher(Image, IMAGE), probe.publisher(CameraInfo, INFO)
        self.stamp = 100

    def stream(self, seconds: float, until: object = None) -> bool:
        """Publish a frame every 0.2 s for `seconds` (or until `until()` holds); True if it held."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.stamp += 1
            header = Header(frame_id="lc_optical")
            header.stamp.sec = self.stamp
            self.info.header = self.image.header = header
            self.pub_info.publish(self.info)
            self.pub_image.publish(self.image)
            if self.probe.spin_until(until or (lambda: False), 0.2):
                return True
        return False


def test_outputs_flow_only_while_active(tmp_path: Path, tiny_checkpoint: Path) -> None:
    domain = pick_domain_id()
    checkpoint = str(tiny_checkpoint)
    common = {"image_topic": IMAGE, "camera_info_topic": INFO, "checkpoint": checkpoint, "device": "cpu",
              "lifecycle": "true",
              "extra_parameters": {"input_size": [48, 64], "num_threads": 1, "cloud.stride": 8}}
    specs = depth_nodes(namespace="lc", autostart="false", **common) + depth_nodes(namespace="lc_auto", **common)
    runner = Runner(specs, dds_env(domain), log_dir=tmp_path / "logs")
    probe = None
    try:
        runner.start()  # returns once the autostart node is active (configure + activate through its services)
        probe = Probe(domain)

        def logs() -> str:
            return "\n".join(p.read_text(errors="replace") for p in sorted((tmp_path / "logs").glob("*.log")))

        assert LifecycleClient(probe, "/lc_auto/depth_node").state() == "active", logs()
        auto_depth = probe.record(Image, "/lc_auto/depth/image")
        depth, points = probe.record(Image, "/lc/depth/image"), probe.record(PointCloud2, "/lc/points")
        camera = Camera(probe)
        node = LifecycleClient(probe, "/lc/depth_node")
        graph = probe.node

        assert node.state(60) == "unconfigured"
        node.change("configure", timeout=120)
        assert node.state() == "inactive"
        # Configured: the outputs exist (as lifecycle publishers) but nothing subscribes to the camera.
        assert probe.spin_until(lambda: graph.count_publishers("/lc/depth/image") == 1, 10)
        assert camera.stream(1.0, lambda: bool(auto_depth)), "the autostarted node serves frames"
        assert not depth and not points, "an inactive node published"
        assert graph.count_subscribers(IMAGE) == 1  # only the autostarted node

        node.change("activate")
        assert node.state() == "active"
        assert probe.spin_until(lambda: graph.count_subscribers(IMAGE) == 2, 10)
        assert camera.stream(60.0, lambda: bool(depth) and bool(points)), logs()

        node.change("deactivate")
        assert node.state() == "inactive"
        assert probe.spin_until(lambda: graph.count_subscribers(IMAGE) == 1, 10)
        probe.spin_for(0.5)  # a frame in flight at deactivation may still arrive... then nothing
        served = len(depth)
        camera.stream(1.5)
        assert len(depth) == served, "a deactivated node published"

        node.change("activate")  # a second activation serves again
        n = len(depth)
        assert camera.stream(60.0, lambda: len(depth) > n), logs()

        node.change("deactivate")
        node.change("cleanup")
        assert node.state() == "unconfigured"
        assert probe.spin_until(lambda: graph.count_publishers("/lc/depth/image") == 0, 10), "cleanup keeps publishers"
    finally:
        if probe is not None:
            probe.close()
        runner.signal_all(signal.SIGINT)
        code = runner.stop()
    assert code == 0, "the managed nodes did not exit cleanly on SIGINT"
