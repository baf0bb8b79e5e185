"""The depth node over real DDS between processes.

Outputs, runtime parameters, bad input, priming, known geometry (map points placed by camera_pose,
the floor plane), ROS conventions (camera-pair topics, REP 117, rectification, QoS overrides,
diagnostics), clean shutdown. Two node processes (tiny untrained model) serve the whole module;
the tests run in file order and the last one shuts them down.
"""

from __future__ import annotations

from dataclasses import replace
import math
from pathlib import Path
import signal
import time
from typing import Any

import cv2
import numpy as np
import pytest

pytest.importorskip("rclpy")

# E402, I100: the ROS imports must follow pytest.importorskip, which skips this module without rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402, I100
from geometry_msgs.msg import PoseStamped  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from fusanet_core.geometry import parse_extrinsic, RigidTransform  # noqa: E402
from fusanet_ros.nodes import conversions as conv  # noqa: E402
from fusanet_ros.startup.dds import dds_env, pick_domain_id, shm_files  # noqa: E402
from fusanet_ros.startup.launch_description import depth_nodes  # noqa: E402
from fusanet_ros.startup.probe import Probe  # noqa: E402
from fusanet_ros.startup.runner import Runner  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
SAMPLE = ROOT / "sample" / "tum_rgbd"
K = (520.9, 521.0, 325.1, 249.7)  # sample/tum_rgbd/manifest.csv, frames 00 and 01
NODE = "/test_ns/depth_node"
STATUS_NAME = "test_ns/depth_node: depth inference"  # diagnostic_updater style: no leading "/"
TOPICS = {"image": "/cam/color/image_raw", "info": "/cam/color/camera_info", "sparse": "/cam/sparse_points"}
POSE_TOPIC = "/test_ns/camera_pose"  # the launch default: camera_pose in the node's namespace
# Output key -> topic under the node's namespace: camera pairs <ns>/image + <ns>/camera_info (REP 118).
OUTPUTS = {"depth": "depth/image", "confidence": "confidence/image", "depth/camera_info": "depth/camera_info",
           "confidence/camera_info": "confidence/camera_info", "points": "points"}
QOS_OVERRIDE = f"qos_overrides.{TOPICS['image']}.subscription.reliability"
MIN_DEPTH, MAX_DEPTH = 0.1, 10.0  # the tiny preset's depth head range
TIMEOUT = 30.0


class Harness:
    """The node process, a probe node in this process, and helpers to send frames."""

    def __init__(self, tmp: Path, checkpoint: Path) -> None:
        self.rgb = [cv2.cvtColor(cv2.imread(str(SAMPLE / f"0{i}.color.jpg")), cv2.COLOR_BGR2RGB) for i in range(2)]
        domain = pick_domain_id()
        self.shm_before = shm_files()
        params = {"input_size": [48, 64], "num_threads": 1, "cloud.organized": True, "cloud.stride": 1,
                  "diagnostics_period": 0.3, "max_depth": MAX_DEPTH}
        common = {"image_topic": TOPICS["image"], "camera_info_topic": TOPICS["info"],
                  "sparse_points_topic": TOPICS["sparse"], "checkpoint": str(checkpoint),
                  "device": "cpu"}
        # QoS by parameter (qos_overriding_options): the main node's image subscription is reliable.
        specs = depth_nodes(namespace="test_ns", extra_parameters={**params, QOS_OVERRIDE: "reliable"}, **common)
        # A second node on the compressed transport of the same camera (<image>/compressed).
        specs += [replace(spec, name="depth_node_c") for spec in
                  depth_nodes(namespace="test_cmp", extra_parameters={**params, "image_transport": "compressed"},
                              **common)]
        self.runner = Runner(specs, dds_env(domain), log_dir=tmp / "logs").start()
        self.log = tmp / "logs" / "depth_node.log"
        self.probe = Probe(domain)
        p = self.probe
        self.pub_image = p.publisher(Image, TOPICS["image"])
        self.pub_compressed = p.publisher(CompressedImage, TOPICS["image"] + "/compressed")
        self.pub_info = p.publisher(CameraInfo, TOPICS["info"])
        self.pub_sparse = p.publisher(PointCloud2, TOPICS["sparse"])
        self.pub_pose = p.publisher(PoseStamped, POSE_TOPIC)
        types = {"depth": Image, "confidence": Image, "depth/camera_info": CameraInfo,
                 "confidence/camera_info": CameraInfo, "points": PointCloud2}
        self.out = {name: p.record(types[name], f"/test_ns/{topic}") for name, topic in OUTPUTS.items()}
        self.diagnostics = p.record(DiagnosticArray, "/diagnostics", keep=100_000)  # small; a run is seconds
        self.compressed_depth: list[Image] = []
        self.compressed_sub = p.node.create_subscription(Image, "/test_cmp/depth/image", self.compressed_depth.append,
                                                         10)
        if not (p.wait_for_subscriber(TOPICS["image"], 90)
                and p.wait_for_subscriber(TOPICS["image"] + "/compressed", 90)):
            self.close()
            pytest.fail(f"depth node did not come up:\n{self.logs()}")
        # Graph-level counts come before endpoint matching: wait until the camera_info and image
        # writers reach both nodes' readers (a frame without its camera_info has no intrinsics, so
        # no camera_info or cloud out) and the node's outputs reach the probe. Flaky in CI without.
        inputs = ((self.pub_info, 2), (self.pub_image, 1), (self.pub_compressed, 1), (self.pub_sparse, 2),
                  (self.pub_pose, 1))
        if not (p.spin_until(lambda: all(pub.get_subscription_count() >= n for pub, n in inputs), TIMEOUT)
                and p.wait_until_recorders_matched(TIMEOUT)):
            self.close()
            pytest.fail(f"the depth nodes' endpoints did not match the probe's:\n{self.logs()}")
        self.stamp = 1000

    def warm_up(self, tries: int = 5) -> None:
        """Serve frames until one comes out with its camera_info.

        The node's first callbacks may take an image before the camera_info published just before
        it (seen in the full CI suite, never alone): that frame has no intrinsics, hence no
        camera_info or cloud, which is right, but not what the first test checks.
        """
        for _ in range(tries):
            header = self.header()
            info = conv.make_camera_info(K, 640, 480)
            info.header = header
            self.pub_info.publish(info)
            self.probe.spin_for(0.05)
            image = conv.rgb_to_image(self.rgb[0], "rgb8")
            image.header = header
            self.pub_image.publish(image)
            stamp = conv.stamp_ns(header)
            if self.probe.spin_until(
                    lambda: any(conv.stamp_ns(m.header) == stamp for m in self.out["depth/camera_info"]), 10.0):
                return
        pytest.fail(f"no depth/camera_info after {tries} frames; node log:\n{self.logs()}")

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.is_file() else "(no log)"

    def header(self) -> Header:
        self.stamp += 1
        header = Header(frame_id="cam_color_optical_frame")
        header.stamp.sec, header.stamp.nanosec = self.stamp, 250_000_000
        return header

    def send(self, image: Any, info: Any = "default", sparse: Any = None, header: Header | None = None,
             wait: tuple[str, ...] = ("depth",), sparse_frame: str | None = None) -> dict[str, Any]:
        """Publish camera_info (+ sparse points, in `sparse_frame` if given), then the image.

        Then wait for the outputs with the image's stamp.
        """
        header = header or self.header()
        if info is not None:
            info = conv.make_camera_info(K, 640, 480) if info == "default" else info
            info.header = header
            self.pub_info.publish(info)
        if sparse is not None:
            sparse.header = Header(stamp=header.stamp, frame_id=sparse_frame or header.frame_id)
            self.pub_sparse.publish(sparse)
        self.probe.spin_for(0.05)  # camera_info / sparse first, as a driver would
        image.header = header
        self.pub_image.publish(image)
        return self.wait_for(header, wait)

    def send_pose(self, pose: RigidTransform, header: Header, frame_id: str = "map", dt: float = 0.0,
                  quaternion: Any = None) -> None:
        """Publish the camera's pose in `frame_id`, stamped `dt` s after `header` (quaternion: as given)."""
        values = pose.as_list()
        msg = PoseStamped()
        msg.header = _shifted(header, dt, frame_id)
        msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = values[:3]
        q = msg.pose.orientation
        q.x, q.y, q.z, q.w = values[3:] if quaternion is None else quaternion
        self.pub_pose.publish(msg)

    def send_map_cloud(self, xyz: np.ndarray, header: Header, frame_id: str = "map", dt: float = -30.0) -> None:
        """Publish a cloud in `frame_id`, stamped `dt` s from `header` (a map republished long ago)."""
        cloud = conv.points_to_cloud(xyz)
        cloud.header = _shifted(header, dt, frame_id)
        self.pub_sparse.publish(cloud)

    def wait_for(self, header: Header, topics: tuple[str, ...]) -> dict[str, Any]:
        stamp = conv.stamp_ns(header)

        def found() -> dict[str, Any]:
            return {t: m for t in topics for m in self.out[t] if conv.stamp_ns(m.header) == stamp}

        if not self.probe.spin_until(lambda: len(found()) == len(topics), TIMEOUT):
            pytest.fail(f"no {set(topics) - set(found())} for stamp {stamp} within {TIMEOUT} s; "
                        f"node log:\n{self.logs()}")
        return found()

    def status(self, after: float | None = None, name: str = STATUS_NAME) -> Any:
        """Return the node's newest DiagnosticStatus (assembled after `after`, monotonic, when given)."""
        def ours() -> list[Any]:
            return [s for msg in self.diagnostics for s in msg.status if s.name == name]

        marker = len(ours())
        # Two new reports after `after`: the first may have been assembled before it.
        wanted = marker + 2 if after is not None else 1
        assert self.probe.spin_until(lambda: len(ours()) >= wanted, TIMEOUT), f"no /diagnostics named {name!r}"
        return ours()[-1]

    def counters(self, after: float | None = None, name: str = STATUS_NAME) -> dict[str, str]:
        """Key values of the node's newest diagnostics (received after `after`, monotonic)."""
        return {kv.key: kv.value for kv in self.status(after, name).values}

    def count(self, key: str, after: float | None = None) -> int:
        return int(self.counters(after).get(key, 0))

    def wait_count(self, key: str, target: int, name: str = STATUS_NAME) -> int:
        """Wait until counter `key` of the node's diagnostics reaches `target`; returns it."""
        deadline = time.monotonic() + TIMEOUT
        while (value := int(self.counters(after=time.monotonic(), name=name).get(key, 0))) < target:
            assert time.monotonic() < deadline, f"{key} stayed at {value} < {target}; node log:\n{self.logs()}"
        return value

    def set(self, **values: Any) -> None:  # noqa: A003  (a method, called as node.set(...): shadows no builtin)
        """Set runtime parameters of the main node (names with '.' as '__'); all must succeed."""
        results = self.probe.set_parameters(NODE, {k.replace("__", "."): v for k, v in values.items()})
        assert all(r.successful for r in results), [r.reason for r in results]

    def close(self) -> None:
        self.probe.close()
        self.runner.stop()


@pytest.fixture(scope="module")
def h(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> Harness:
    harness = Harness(tmp_path_factory.mktemp("depth_node"), tiny_checkpoint)
    harness.warm_up()
    yield harness
    harness.close()


def _shifted(header: Header, dt: float, frame_id: str) -> Header:
    """Return a header in `frame_id` stamped `dt` s after `header`."""
    ns = conv.stamp_ns(header) + int(round(dt * 1e9))
    out = Header(frame_id=frame_id)
    out.stamp.sec, out.stamp.nanosec = ns // 1_000_000_000, ns % 1_000_000_000
    return out


def _backproject(depth: np.ndarray, info: CameraInfo) -> np.ndarray:
    """Independent reference: intrinsics from the published P, X = (u - cx) Z / fx."""
    fx, fy, cx, cy = info.p[0], info.p[5], info.p[2], info.p[6]
    v, u = np.mgrid[0:depth.shape[0], 0:depth.shape[1]].astype(np.float64)
    z = depth.astype(np.float64)
    return np.stack([(u - cx) * z / fx, (v - cy) * z / fy, z], axis=-1)


def _cloud_xyz(cloud: PointCloud2) -> np.ndarray:
    fields = conv.read_cloud_fields(cloud, ("x", "y", "z"))
    return np.stack([fields[n] for n in ("x", "y", "z")], axis=-1).astype(np.float64)


def test_frame_in_depth_confidence_info_and_cloud_out(h: Harness) -> None:
    header = h.header()
    out = h.send(conv.rgb_to_image(h.rgb[0], "rgb8"), header=header,
                 wait=("depth", "confidence", "depth/camera_info", "confidence/camera_info", "points"))
    for msg in out.values():
        assert msg.header.frame_id == header.frame_id and conv.stamp_ns(msg.header) == conv.stamp_ns(header)
    depth_msg, conf_msg, info = out["depth"], out["confidence"], out["depth/camera_info"]
    assert (depth_msg.encoding, depth_msg.width, depth_msg.height) == ("32FC1", 640, 480)
    depth = conv.image_to_depth(depth_msg)
    finite = np.isfinite(depth)
    assert finite.mean() > 0.99  # untrained: check range and finiteness, not accuracy
    assert np.all((depth[finite] > MIN_DEPTH) & (depth[finite] <= MAX_DEPTH))
    conf = conv.image_to_array(conf_msg)
    assert conf.shape == (480, 640) and np.all((conf >= 0) & (conf <= 1))
    assert (info.width, info.height) == (640, 480)
    np.testing.assert_allclose([info.k[0], info.k[4], info.k[2], info.k[5]], K)
    conf_info = out["confidence/camera_info"]  # the sibling of confidence/image describes the same camera
    assert (list(conf_info.k), list(conf_info.p), conf_info.width) == (list(info.k), list(info.p), info.width)
    cloud = out["points"]
    assert (cloud.height, cloud.width, cloud.point_step) == (480, 640, 32)
    xyz, ref = _cloud_xyz(cloud), _backproject(depth, info)
    assert np.array_equal(np.isnan(xyz[..., 2]), ~finite)
    np.testing.assert_allclose(xyz[finite], ref[finite], atol=1e-4)
    rgb = conv.unpack_rgb(conv.read_cloud_fields(cloud, ("rgb",))["rgb"])
    np.testing.assert_array_equal(rgb, h.rgb[0])


def test_outputs_are_camera_pairs_and_qos_comes_from_parameters(h: Harness) -> None:
    from rclpy.qos import ReliabilityPolicy

    topics = dict(h.probe.node.get_topic_names_and_types())
    for topic in (*OUTPUTS.values(), "salient_points"):
        assert f"/test_ns/{topic}" in topics, topic
    assert "/test_ns/depth" not in topics and "/test_ns/confidence" not in topics  # no flat image topics

    def reliability(topic: str, node: str) -> Any:
        [info] = [i for i in h.probe.node.get_subscriptions_info_by_topic(topic) if i.node_name == node]
        return info.qos_profile.reliability

    # qos_overrides./cam/color/image_raw.subscription.reliability:=reliable reached the subscription;
    # the other node keeps the sensor-data default.
    assert reliability(TOPICS["image"], "depth_node") == ReliabilityPolicy.RELIABLE
    assert reliability(TOPICS["info"], "depth_node") == ReliabilityPolicy.BEST_EFFORT  # the override is per topic
    assert reliability(TOPICS["image"] + "/compressed", "depth_node_c") == ReliabilityPolicy.BEST_EFFORT


def test_beyond_max_depth_is_plus_inf_and_invalid_is_nan(h: Harness) -> None:
    """REP 117: +Inf = beyond range (costmaps clear free space), NaN = invalid, in 32FC1; 16UC1 0."""
    image = conv.rgb_to_image(h.rgb[0], "rgb8")
    out = h.send(image, wait=("depth", "confidence"))
    raw, conf = conv.image_to_array(out["depth"]), conv.image_to_array(out["confidence"])
    assert np.isfinite(raw).all()
    limit, low = float(np.median(raw)), float(np.quantile(conf, 0.2))
    h.set(max_depth=limit, min_confidence=low)
    try:
        clipped = h.send(image, wait=("depth", "points"))
        depth = conv.image_to_array(clipped["depth"])
        far, unsure = raw > limit, conf < low
        assert (far & ~unsure).any() and unsure.any()
        assert np.all(np.isposinf(depth[far & ~unsure]))
        assert np.all(np.isnan(depth[unsure]))  # low confidence: unknown, even when far
        np.testing.assert_array_equal(depth[~far & ~unsure], raw[~far & ~unsure])
        z = _cloud_xyz(clipped["points"])[..., 2]
        assert np.array_equal(np.isnan(z), far | unsure)  # neither +Inf nor NaN becomes a point
        h.set(output_encoding="16UC1")
        mm = conv.image_to_array(h.send(image)["depth"])
        assert np.all(mm[far | unsure] == 0) and np.all(mm[~far & ~unsure] > 0)
    finally:
        h.set(max_depth=MAX_DEPTH, min_confidence=0.0, output_encoding="32FC1")


def test_a_distorted_raw_image_is_rectified_and_its_camera_info_matches(h: Harness) -> None:
    image = conv.rgb_to_image(h.rgb[1], "rgb8")
    plain = conv.image_to_array(h.send(image)["depth"])
    distorted = conv.make_camera_info(K, 640, 480)
    distorted.d = [-0.28, 0.07, 0.001, -0.002, 0.0]
    before = h.count("frames_rectified")
    out = h.send(image, info=distorted, wait=("depth", "depth/camera_info"))
    info = out["depth/camera_info"]
    # The published camera_info describes the published (rectified) image: no distortion, K = P.
    assert list(info.d) == [0.0] * 5 and np.allclose(np.reshape(info.r, (3, 3)), np.eye(3))
    np.testing.assert_allclose(np.reshape(info.k, (3, 3)), np.reshape(info.p, (3, 4))[:, :3])
    np.testing.assert_allclose([info.p[0], info.p[5], info.p[2], info.p[6]], K)
    assert h.wait_count("frames_rectified", before + 1) == before + 1
    assert np.nanmax(np.abs(conv.image_to_array(out["depth"]) - plain)) > 0  # the network saw another image
    h.set(rectify="off")
    try:
        unrectified = conv.image_to_array(h.send(image, info=distorted)["depth"])
        np.testing.assert_array_equal(unrectified, plain)
    finally:
        h.set(rectify="auto")


@pytest.mark.parametrize("encoding", ["bgr8", "rgba8", "bgra8", "mono8"])
def test_other_colour_encodings_are_served(h: Harness, encoding: str) -> None:
    out = h.send(conv.rgb_to_image(h.rgb[1], encoding))
    assert out["depth"].width == 640


def test_compressed_transport(h: Harness) -> None:
    header = h.header()
    info = conv.make_camera_info(K, 640, 480, header)
    h.pub_info.publish(info)
    h.probe.spin_for(0.05)
    h.pub_compressed.publish(conv.rgb_to_compressed(h.rgb[0], "jpeg", header))
    stamp = conv.stamp_ns(header)
    assert h.probe.spin_until(lambda: any(conv.stamp_ns(m.header) == stamp for m in h.compressed_depth), TIMEOUT)
    depth = next(m for m in h.compressed_depth if conv.stamp_ns(m.header) == stamp)
    assert (depth.width, depth.height, depth.header.frame_id) == (640, 480, header.frame_id)


def test_runtime_parameters_change_output_and_reject_bad_values(h: Harness) -> None:
    results = h.probe.set_parameters(NODE, {"cloud.organized": False, "cloud.stride": 4, "cloud.color": False,
                                            "output_encoding": "16UC1", "output_size": [240, 320]})
    assert all(r.successful for r in results), [r.reason for r in results]
    out = h.send(conv.rgb_to_image(h.rgb[0], "rgb8"), wait=("depth", "depth/camera_info", "points"))
    depth_msg, info, cloud = out["depth"], out["depth/camera_info"], out["points"]
    assert (depth_msg.encoding, depth_msg.width, depth_msg.height) == ("16UC1", 320, 240)
    np.testing.assert_allclose([info.k[0], info.k[4]], [K[0] / 2, K[1] / 2])
    np.testing.assert_allclose([info.p[2], info.p[6]], [(K[2] + 0.5) / 2 - 0.5, (K[3] + 0.5) / 2 - 0.5])
    depth = conv.image_to_depth(depth_msg)  # mm -> m: the cloud was built from metres before rounding
    assert cloud.height == 1 and cloud.point_step == 16
    ref = _backproject(depth, info)[::4, ::4][np.isfinite(depth[::4, ::4])]
    xyz = _cloud_xyz(cloud)[0]
    assert xyz.shape == ref.shape
    np.testing.assert_allclose(xyz, ref, atol=6e-4)  # 0.5 mm rounding of the 16UC1 image, scaled by X/Z

    rejected = h.probe.set_parameters(NODE, {"max_depth": -1.0})
    assert not rejected[0].successful and "max_depth" in rejected[0].reason
    read_only = h.probe.set_parameters(NODE, {"device": "cuda"})
    assert not read_only[0].successful and "read-only" in read_only[0].reason
    restored = h.probe.set_parameters(NODE, {"cloud.organized": True, "cloud.stride": 1, "cloud.color": True,
                                             "output_encoding": "32FC1", "output_size": [0, 0]})
    assert all(r.successful for r in restored)


def _bad_images(rgb: np.ndarray) -> dict[str, Image]:
    good = conv.rgb_to_image(rgb, "rgb8")
    cases = {}
    for name, change in {"unsupported encoding": {"encoding": "yuv422"}, "short data": {"data": bytes(1000)},
                         "zero size": {"height": 0, "width": 0, "step": 0, "data": b""},
                         "step too small": {"step": 100}, "wrong height": {"height": 479}}.items():
        msg = conv.rgb_to_image(rgb, "rgb8")
        for key, value in change.items():
            setattr(msg, key, value)
        cases[name] = msg
    assert good.data != cases["short data"].data
    return cases


def test_bad_images_are_counted_and_the_next_good_frame_is_served(h: Harness) -> None:
    before = int(h.counters().get("bad_image", 0))
    for i, (name, bad) in enumerate(_bad_images(h.rgb[0]).items()):
        bad.header = h.header()
        h.pub_image.publish(bad)
        # Counted before the next frame goes out: a frame still in the node's 1-slot mailbox
        # would otherwise be replaced by the good one (counted as dropped, not as bad).
        h.wait_count("bad_image", before + i + 1)
        out = h.send(conv.rgb_to_image(h.rgb[0], "rgb8"))  # the node is still up and serves the next one
        assert out["depth"].width == 640, name
    counters = h.counters(after=time.monotonic())
    assert int(counters["bad_image"]) - before == 5, counters
    assert counters["last_bad_input"] and "depth_node" in h.runner.running()
    assert "bad image" in h.logs()  # throttled warning names the problem


def test_bad_camera_info_still_gives_depth_but_no_cloud(h: Harness) -> None:
    before = int(h.counters().get("bad_camera_info", 0))
    bad_info = conv.make_camera_info(K, 640, 480)
    bad_info.k, bad_info.p = np.zeros(9), np.zeros(12)
    header = h.header()
    out = h.send(conv.rgb_to_image(h.rgb[0], "rgb8"), info=bad_info, header=header)
    assert out["depth"].width == 640
    h.probe.spin_for(0.3)
    assert not [m for m in h.out["depth/camera_info"] if conv.stamp_ns(m.header) == conv.stamp_ns(header)]
    assert int(h.counters(after=time.monotonic())["bad_camera_info"]) > before
    h.send(conv.rgb_to_image(h.rgb[0], "rgb8"), wait=("depth", "points"))  # a good camera_info: cloud again


def test_tiny_huge_and_badly_stamped_frames_are_counted(h: Harness) -> None:
    before = h.counters()
    tiny = conv.rgb_to_image(h.rgb[0][:8, :8].copy(), "rgb8")
    tiny.header = h.header()
    h.pub_image.publish(tiny)
    h.wait_count("too_small", int(before["too_small"]) + 1)
    h.set(max_input_pixels=640 * 480 - 1)
    try:
        huge = conv.rgb_to_image(h.rgb[0], "rgb8")
        huge.header = h.header()
        h.pub_image.publish(huge)
        h.wait_count("too_large", int(before["too_large"]) + 1)
    finally:
        h.set(max_input_pixels=4096 * 4096)
    # Stamps going backwards, then a zero stamp: flagged, and still served.
    backwards = h.header()
    backwards.stamp.sec -= 5
    assert h.send(conv.rgb_to_image(h.rgb[0], "rgb8"), header=backwards)["depth"].width == 640
    zero = Header(frame_id="cam_color_optical_frame")
    assert h.send(conv.rgb_to_image(h.rgb[0], "rgb8"), header=zero)["depth"].width == 640
    after = h.counters(after=time.monotonic())
    assert int(after["stamp_backwards"]) == int(before["stamp_backwards"]) + 1
    assert int(after["stamp_zero"]) == int(before["stamp_zero"]) + 1
    for key in ("bad_image", "inference_errors"):  # sizes are their own kind, not a broken image or model
        assert after[key] == before[key], key
    assert "too small" in h.logs() and "exceeds max_input_pixels" in h.logs()


def test_sparse_points_prime_the_network(h: Harness) -> None:
    image = conv.rgb_to_image(h.rgb[1], "rgb8")
    plain = conv.image_to_depth(h.send(image)["depth"])
    before = h.counters()
    fx, fy, cx, cy = K
    uv = np.array([[100, 100], [320, 240], [500, 400], [200, 350]], np.float64)
    z = np.array([1.0, 1.5, 2.0, 1.2])
    xyz = np.stack([(uv[:, 0] - cx) * z / fx, (uv[:, 1] - cy) * z / fy, z], axis=1)
    bad = np.array([[np.nan, 0, 1], [0, 0, -1.0], [50.0, 0, 1.0]])  # NaN, behind, out of frame
    cloud = conv.points_to_cloud(np.concatenate([xyz, bad]))
    # By default the points serve the fit alone: without a fit, nothing changes.
    h.set(scale_from_points="none")
    try:
        unprimed = conv.image_to_depth(h.send(image, sparse=cloud)["depth"])
        assert np.array_equal(unprimed, plain, equal_nan=True)
        h.set(prime_with_points=True)
        primed = conv.image_to_depth(h.send(image, sparse=cloud)["depth"])
    finally:
        h.set(prime_with_points=False, scale_from_points="scale_local")
    after = h.counters(after=time.monotonic())
    assert int(after["sparse_points_used"]) - int(before.get("sparse_points_used", 0)) == 2 * 4
    assert int(after["sparse_points_rejected"]) - int(before.get("sparse_points_rejected", 0)) == 2 * 3
    assert np.nanmax(np.abs(primed - plain)) > 0  # the points reached the network
    # A stale sparse message (older than sparse.max_age) is not used.
    stale = conv.points_to_cloud(xyz)
    h.send(image, sparse=stale)  # fresh, same stamp as the frame
    h.send(image)  # next frame: the stored sparse message is now 1 s old
    assert int(h.counters(after=time.monotonic())["sparse_stale"]) > int(before.get("sparse_stale", 0))


def test_sparse_clouds_of_another_frame_need_a_configured_extrinsic(h: Harness) -> None:
    image = conv.rgb_to_image(h.rgb[1], "rgb8")
    fx, fy, cx, cy = K
    uv = np.array([[100, 100], [320, 240], [500, 400]], np.float64)
    z = np.array([1.0, 1.5, 2.0])
    in_camera = np.stack([(uv[:, 0] - cx) * z / fx, (uv[:, 1] - cy) * z / fy, z], axis=1)
    in_lidar = in_camera - [0.0, 0.0, 0.5]  # p_camera = p_lidar + (0, 0, 0.5)
    before = h.counters()
    h.send(image, sparse=conv.points_to_cloud(in_lidar), sparse_frame="lidar")
    after = h.counters(after=time.monotonic())
    assert int(after["sparse_wrong_frame"]) == int(before["sparse_wrong_frame"]) + 1
    assert after["sparse_points_used"] == before["sparse_points_used"]
    assert "sparse.frame_id" in after["last_bad_input"]
    h.set(sparse__extrinsic="0 0 0.5 0 0 0 1", sparse__frame_id="lidar")
    try:
        h.send(image, sparse=conv.points_to_cloud(in_lidar), sparse_frame="lidar")
        used = h.counters(after=time.monotonic())
        assert int(used["sparse_points_used"]) == int(before["sparse_points_used"]) + 3
        assert used["sparse_points_rejected"] == before["sparse_points_rejected"]  # all in front, in frame
    finally:
        h.set(sparse__extrinsic="", sparse__frame_id="")


def test_scale_from_points_falls_back_on_too_few_points_and_fits_otherwise(h: Harness) -> None:
    image = conv.rgb_to_image(h.rgb[1], "rgb8")
    fx, fy, cx, cy = K
    uv = np.array([[100, 100], [320, 240], [500, 400], [200, 350]], np.float64)
    z = np.array([1.0, 1.5, 2.0, 1.2])
    cloud = conv.points_to_cloud(np.stack([(uv[:, 0] - cx) * z / fx, (uv[:, 1] - cy) * z / fy, z], axis=1))
    before = h.counters()
    h.set(scale_from_points="scale", scale_fit_min_points=8)  # the 4 points are too few
    try:
        h.send(image, sparse=cloud)
        rejected = h.counters(after=time.monotonic())
        assert int(rejected["scale_fit_rejected"]) == int(before["scale_fit_rejected"]) + 1
        assert rejected["last_scale_fit_reason"] == "too few points (4 < 8)"
        assert rejected["last_scale_fit_inliers"] == "0/4" and rejected["last_scale_fit_applied"] == "False"
        h.set(scale_fit_min_points=3)  # the default
        depth = conv.image_to_depth(h.send(image, sparse=cloud)["depth"])
        applied = h.counters(after=time.monotonic())
        reason = applied["last_scale_fit_reason"]
        assert int(applied["scale_fit_applied"]) == int(before["scale_fit_applied"]) + 1, reason
        assert applied["last_scale_fit_mode"] == "scale" and applied["last_scale_fit_applied"] == "True"
        at_points = depth[uv[:, 1].astype(int), uv[:, 0].astype(int)]
        assert np.median(z / at_points) == pytest.approx(1.0, abs=0.05)
    finally:
        h.set(scale_from_points="scale_local", scale_fit_min_points=3)


# ------------------------------------------------------------------------------- known geometry
# The camera's pose in the map (p_map = R p_camera + t): turned about all three axes, and moved.
MAP_POSE = parse_extrinsic([1.2, -0.7, 0.4, 0.3, -0.5, 0.6, 0.5477225575051661])


def _plane_points(n: int = 60, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Return pixels (u, v) and their camera-frame points on a tilted wall 1.9-3.5 m away.

    The plane 0.3 X + 0.25 Y + Z = 2.5 m: a scene a depth map can follow, and far from the
    untrained network's flat output, so the depth matches the points only where they are used.
    """
    rng = np.random.default_rng(seed)
    uv = np.stack([rng.uniform(20, 620, n), rng.uniform(20, 460, n)], axis=1)
    fx, fy, cx, cy = K
    xn, yn = (uv[:, 0] - cx) / fx, (uv[:, 1] - cy) / fy
    z = 2.5 / (1 + 0.3 * xn + 0.25 * yn)
    return uv, np.stack([xn * z, yn * z, z], axis=1)


def _relative_errors(depth: np.ndarray, uv: np.ndarray, z: np.ndarray) -> np.ndarray:
    at = depth[np.round(uv[:, 1]).astype(int), np.round(uv[:, 0]).astype(int)]
    return np.abs(at - z) / z


def test_map_points_placed_by_camera_pose_give_depth_within_5_percent_at_the_points(h: Harness) -> None:
    """A SLAM-style map cloud (frame map, stamped 30 s ago) and the camera's pose in the map.

    With scale_from_points at its default (scale_local) the depth at the points' pixels is within
    5 % of their depth in the camera; with a pose 0.4 m off along the optical axis it is not.
    """
    image = conv.rgb_to_image(h.rgb[1], "rgb8")
    uv, camera = _plane_points()
    before = h.counters()
    header = h.header()
    h.send_pose(MAP_POSE, header, dt=0.1)  # the nearest pose, 0.1 s after the image
    h.send_pose(RigidTransform.identity(), header, dt=-0.45)  # an older one, further away
    h.send_map_cloud(MAP_POSE.apply(camera), header)
    depth = conv.image_to_depth(h.send(image, header=header)["depth"])
    after = h.counters(after=time.monotonic())
    rel = _relative_errors(depth, uv, camera[:, 2])
    assert np.median(rel) < 0.05 and np.percentile(rel, 90) < 0.05, (np.median(rel), np.percentile(rel, 90))
    assert int(after["sparse_posed"]) == int(before["sparse_posed"]) + 1
    assert int(after["sparse_points_used"]) == int(before["sparse_points_used"]) + len(camera)
    assert after["sparse_stale"] == before["sparse_stale"]  # the map's old stamp does not matter
    assert after["last_scale_fit_mode"] == "scale_local" and after["last_scale_fit_applied"] == "True"
    # The same map with the camera placed 0.4 m too far forward: the points land at other depths.
    wrong = RigidTransform.from_quaternion(MAP_POSE.translation + MAP_POSE.rotation @ [0.0, 0.0, 0.4],
                                           MAP_POSE.as_list()[3:])
    header = h.header()
    h.send_pose(wrong, header)
    depth = conv.image_to_depth(h.send(image, header=header)["depth"])
    assert np.median(_relative_errors(depth, uv, camera[:, 2])) > 0.1
    h.send(image, sparse=conv.points_to_cloud(np.zeros((0, 3))))  # forget the map: later frames go without it


def test_broken_camera_poses_are_counted_and_depth_keeps_flowing(h: Harness) -> None:
    image = conv.rgb_to_image(h.rgb[1], "rgb8")
    before = int(h.counters()["bad_pose"])
    for quaternion in ((float("nan"), 0.0, 0.0, 1.0), (0.0, 0.0, 0.0, 2.0)):  # NaN; length 2
        header = h.header()
        h.send_pose(MAP_POSE, header, quaternion=quaternion)
        assert h.send(image, header=header)["depth"].width == 640
    h.wait_count("bad_pose", before + 2)
    assert "unit length, got length 2" in h.counters()["last_bad_input"]
    assert "bad pose" in h.logs()


def test_a_map_cloud_without_a_fresh_pose_or_in_view_leaves_the_frame_without_points(h: Harness) -> None:
    image = conv.rgb_to_image(h.rgb[1], "rgb8")
    uv, camera = _plane_points(20)
    cases = [  # (what, pose stamp offset s, pose frame, cloud frame, camera-frame points) -> counters moved
        ("stale pose", -1.0, "map", "map", camera, {"pose_stale": 1, "sparse_no_pose": 1}),
        ("pose of another frame", 0.0, "odom", "slam_map", camera, {"sparse_wrong_frame": 1}),
        ("all behind the camera", 0.0, "map", "map", camera * [1.0, 1.0, -1.0],
         {"sparse_all_rejected": 1, "sparse_points_rejected": len(camera)}),
    ]
    keys = ("pose_stale", "sparse_no_pose", "sparse_wrong_frame", "sparse_all_rejected", "sparse_points_rejected",
            "sparse_posed", "sparse_points_used")
    for what, dt, pose_frame, cloud_frame, points, moved in cases:
        before = h.counters(after=time.monotonic())
        header = h.header()
        h.send_pose(MAP_POSE, header, pose_frame, dt)
        # A cloud of an unknown frame is judged by its own stamp first: this one is fresh.
        h.send_map_cloud(MAP_POSE.apply(points), header, cloud_frame, dt=0.0 if cloud_frame != "map" else -30.0)
        assert h.send(image, header=header)["depth"].width == 640, what
        after = h.counters(after=time.monotonic())
        changes = {key: int(after[key]) - int(before[key]) for key in keys}
        assert changes == {key: moved.get(key, 0) for key in keys}, (what, changes)
        if what == "pose of another frame":
            assert "camera_pose arrived in" in after["last_bad_input"] and "'odom'" in after["last_bad_input"]
    h.send(image, sparse=conv.points_to_cloud(np.zeros((0, 3))))
    assert "depth_node" in h.runner.running()


def test_bad_floor_planes_are_refused_and_a_floor_out_of_view_is_reported(h: Harness) -> None:
    for values, reason in [({"ground.plane": [0.0, -1.0, 0.0, 0.0]}, "height h must be > 0"),
                           ({"ground.plane": [0.0, -1.0, 0.0, -0.4]}, "height h must be > 0"),
                           ({"ground.plane": [0.0, -2.0, 0.0, 0.5]}, "unit vector"),
                           ({"ground.extrinsic": "0 0 0.5 0 0 0 2"}, "unit length")]:
        [result] = h.probe.set_parameters(NODE, values)
        assert not result.successful and reason in result.reason and "ground." in result.reason, result.reason
    image = conv.rgb_to_image(h.rgb[1], "rgb8")
    assert h.counters(after=time.monotonic())["ground_plane"] == ""  # nothing was applied
    h.set(ground__extrinsic="0 0 0.5 0.5 -0.5 0.5 -0.5")  # a level camera 0.5 m up: valid alone ...
    try:
        [both] = h.probe.set_parameters(NODE, {"ground.plane": [0.0, -1.0, 0.0, 0.5]})  # ... not with a plane
        assert not both.successful and "both set" in both.reason
        plane = [float(v) for v in h.counters(after=time.monotonic())["ground_plane"].split()]
        np.testing.assert_allclose(plane, [0.0, -1.0, 0.0, 0.5], atol=1e-4)  # the design notes' level camera
    finally:
        h.set(ground__extrinsic="")
    # A camera 0.5 m up, pitched 40 deg up: every pixel's ray points above the horizon (the image's
    # half field of view is 25 deg), so no fit can use the floor on any frame.
    a = math.radians(40)
    h.set(ground__plane=[0.0, -math.cos(a), math.sin(a), 0.5])
    try:
        before = h.counters()
        for _ in range(2):
            assert h.send(image)["depth"].width == 640
        status = h.status(after=time.monotonic())
        after = {kv.key: kv.value for kv in status.values}
        assert int(after["ground_fallback"]) - int(before["ground_fallback"]) == 2
        assert after["ground_fit_applied"] == before["ground_fit_applied"]
        assert after["last_ground_fit_applied"] == "False" and after["last_ground_fit_reason"]
        assert {"last_ground_fit_scale", "last_ground_fit_floor_pixels", "last_ground_fit_floor_share"} <= set(after)
        assert after["ground_plane"].endswith(" 0.5000")
        assert status.level == DiagnosticStatus.WARN and "floor plane not used" in status.message, status.message
        assert "floor plane not used on this frame" in h.logs()
    finally:
        h.set(ground__plane=[])
    h.send(image)
    status = h.status(after=time.monotonic())
    assert status.level == DiagnosticStatus.OK, status.message


def test_parameters_carry_ranges_and_reject_bad_values_with_their_own_text(h: Harness) -> None:
    from rcl_interfaces.srv import DescribeParameters

    client = h.probe.node.create_client(DescribeParameters, f"{NODE}/describe_parameters")
    assert h.probe.spin_until(client.service_is_ready, TIMEOUT)
    future = client.call_async(DescribeParameters.Request(names=["max_depth", "cloud.stride", "device"]))
    assert h.probe.spin_until(future.done, TIMEOUT)
    max_depth, stride, device = future.result().descriptors
    assert (max_depth.floating_point_range[0].from_value, max_depth.floating_point_range[0].to_value) == (0.01, 1000.0)
    assert (stride.integer_range[0].from_value, stride.integer_range[0].to_value) == (1, 64)
    assert device.read_only and not max_depth.read_only
    [stride_result] = h.probe.set_parameters(NODE, {"cloud.stride": 0})
    assert not stride_result.successful and "cloud.stride" in stride_result.reason and "0.0" not in stride_result.reason
    [extrinsic] = h.probe.set_parameters(NODE, {"sparse.extrinsic": "1 2 3"})
    assert not extrinsic.successful and "sparse.extrinsic" in extrinsic.reason


def test_diagnostics_report_rates_latency_device_and_model(h: Harness) -> None:
    h.send(conv.rgb_to_image(h.rgb[0], "rgb8"))
    status = h.status(after=time.monotonic())
    counters = {kv.key: kv.value for kv in status.values}
    assert status.hardware_id == "cpu" and not status.name.startswith("/")
    assert status.level == DiagnosticStatus.OK, status.message
    for key in ("input_rate_hz", "output_rate_hz", "latency_p50_ms", "latency_p95_ms", "model_p50_ms",
                "overhead_p50_ms", "dropped", "frames_in", "frames_out", "device", "model"):
        assert key in counters, key
    assert counters["device"] == "cpu" and "tiny" in counters["model"]
    assert float(counters["latency_p95_ms"]) >= float(counters["latency_p50_ms"]) > 0
    assert int(counters["frames_out"]) >= 10


def test_diagnostics_go_stale_when_images_stop(h: Harness) -> None:
    h.send(conv.rgb_to_image(h.rgb[0], "rgb8"))
    h.set(expected_rate=10.0)  # STALE after 3 periods (0.3 s) without an image
    try:
        h.probe.spin_for(1.0)
        status = h.status(after=time.monotonic())
        assert status.level == DiagnosticStatus.STALE and "no image" in status.message, status.message
    finally:
        h.set(expected_rate=0.0)


def test_no_inference_while_nobody_subscribes(h: Harness) -> None:
    """The compressed node's only output subscriber leaves: frames are counted as skipped, idle is reported."""
    name = "test_cmp/depth_node_c: depth inference"
    h.probe.node.destroy_subscription(h.compressed_sub)
    assert h.probe.spin_until(lambda: h.probe.node.count_subscribers("/test_cmp/depth/image") == 0, TIMEOUT)
    h.probe.spin_for(0.5)  # the node's view of the graph follows the probe's
    before = h.counters(after=time.monotonic(), name=name)
    for _ in range(3):
        h.pub_compressed.publish(conv.rgb_to_compressed(h.rgb[0], "jpeg", h.header()))
        h.probe.spin_for(0.2)
    h.wait_count("skipped_no_subscribers", int(before["skipped_no_subscribers"]) + 3, name=name)
    status = h.status(after=time.monotonic(), name=name)
    after = {kv.key: kv.value for kv in status.values}
    assert after["frames_out"] == before["frames_out"] and after["idle"] == "no subscribers"
    assert status.message.startswith("idle") and status.level == DiagnosticStatus.OK


def test_clean_shutdown_leaves_no_processes_or_shared_memory(h: Harness) -> None:
    h.probe.close()
    pids = [proc.pid for _, proc in h.runner.procs]
    h.runner.signal_all(signal.SIGINT)  # what Ctrl-C / the runner does first
    deadline = time.monotonic() + 20
    while h.runner.running() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not h.runner.running(), "depth node ignored SIGINT"
    assert [proc.returncode for _, proc in h.runner.procs] == [0, 0], h.logs()
    assert not _processes_in_sessions(pids)
    leaked = {name for name in shm_files() - h.shm_before if not _held_by_live_process(name)}
    assert not leaked, f"shared memory left behind: {sorted(leaked)}"
    h.probe.close = lambda: None  # already closed


def _processes_in_sessions(sids: list[int]) -> list[int]:
    """Live processes whose session id is one of `sids` (children start their own sessions)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) in sids and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def _held_by_live_process(name: str) -> bool:
    from fusanet_ros.startup.dds import segment_held

    return name.startswith("sem.") or segment_held(name)


@pytest.mark.skipif(not any((ROOT / "fusanet_core" / "weights").glob("*.pt")),
                    reason="needs the bundled trained checkpoint (untrained models ignore sparse points)")
def test_priming_moves_depth_toward_the_points_with_the_bundled_model(tmp_path: Path) -> None:
    """With the trained model, depth near sparse points moves toward their depths.

    In-process: the node passes points to Predictor.predict; the DDS path is covered above.
    """
    from fusanet_core.inference.predictor import Predictor

    predictor = Predictor.from_checkpoint(None, "cpu")
    rgb = cv2.cvtColor(cv2.imread(str(SAMPLE / "00.color.jpg")), cv2.COLOR_BGR2RGB)
    gt = cv2.imread(str(SAMPLE / "00.depth.png"), cv2.IMREAD_UNCHANGED).astype(np.float32) * 0.0002
    v, u = np.nonzero(gt > 0)
    pick = np.random.default_rng(0).choice(len(u), 200, replace=False)
    points = np.stack([u[pick], v[pick], gt[v[pick], u[pick]]], axis=1).astype(np.float32)
    plain = predictor.predict(rgb, K)["depth"]
    primed = predictor.predict(rgb, K, points)["depth"]
    at = (points[:, 1].astype(int), points[:, 0].astype(int))
    assert np.mean(np.abs(primed[at] - points[:, 2])) < np.mean(np.abs(plain[at] - points[:, 2]))
    assert math.isfinite(float(primed.mean()))
