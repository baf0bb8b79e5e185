"""The depth node over real DDS between processes: outputs, runtime parameters, bad input, priming,
clean shutdown. One node process (tiny untrained model) serves the whole module; the tests run in
file order and the last one shuts it down."""

from __future__ import annotations

import math
import signal
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

pytest.importorskip("rclpy")

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from fusanet_ros.nodes import conversions as conv  # noqa: E402
from fusanet_ros.startup.probe import Probe  # noqa: E402
from fusanet_ros.startup.launch_description import depth_nodes  # noqa: E402
from fusanet_ros.startup.runner import Runner, dds_env, pick_domain_id, shm_files  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample" / "tum_rgbd"
K = (520.9, 521.0, 325.1, 249.7)  # sample/tum_rgbd/manifest.csv, frames 00 and 01
NODE = "/test_ns/depth_node"
TOPICS = {"image": "/cam/color/image_raw", "info": "/cam/color/camera_info", "sparse": "/cam/sparse_points"}
MIN_DEPTH, MAX_DEPTH = 0.1, 10.0  # the tiny preset's depth head range
TIMEOUT = 30.0


def _tiny_checkpoint(path: Path) -> Path:
    import fusanet_core
    from fusanet_core.checkpoint import save_checkpoint

    cfg = fusanet_core.preset_config("tiny")
    return save_checkpoint(path, fusanet_core.build_model(cfg), cfg)


class Harness:
    """The node process, a probe node in this process, and helpers to send frames."""

    def __init__(self, tmp: Path) -> None:
        self.rgb = [cv2.cvtColor(cv2.imread(str(SAMPLE / f"0{i}.color.jpg")), cv2.COLOR_BGR2RGB) for i in range(2)]
        domain = pick_domain_id()
        self.shm_before = shm_files()
        params = {"input_size": [48, 64], "num_threads": 1, "cloud.organized": True, "cloud.stride": 1, "diagnostics_period": 0.3,
                  "max_depth": MAX_DEPTH}
        common = {"image_topic": TOPICS["image"], "camera_info_topic": TOPICS["info"], "sparse_points_topic": TOPICS["sparse"],
                  "checkpoint": str(_tiny_checkpoint(tmp / "tiny.pt")), "device": "cpu"}
        specs = depth_nodes(namespace="test_ns", extra_parameters=params, **common)
        # A second node on the compressed transport of the same camera (<image>/compressed).
        specs += [replace(spec, name="depth_node_c") for spec in
                  depth_nodes(namespace="test_cmp", extra_parameters={**params, "image_transport": "compressed"}, **common)]
        self.runner = Runner(specs, dds_env(domain), log_dir=tmp / "logs").start()
        self.log = tmp / "logs" / "depth_node.log"
        self.probe = Probe(domain)
        p = self.probe
        self.pub_image = p.publisher(Image, TOPICS["image"])
        self.pub_compressed = p.publisher(CompressedImage, TOPICS["image"] + "/compressed")
        self.pub_info = p.publisher(CameraInfo, TOPICS["info"])
        self.pub_sparse = p.publisher(PointCloud2, TOPICS["sparse"])
        self.out = {name: p.record(t, f"/test_ns/{name}") for name, t in
                    (("depth", Image), ("confidence", Image), ("depth/camera_info", CameraInfo), ("points", PointCloud2))}
        self.diagnostics = p.record(DiagnosticArray, "/diagnostics", keep=100_000)  # small; a run is seconds
        self.compressed_depth = p.record(Image, "/test_cmp/depth")
        if not (p.wait_for_subscriber(TOPICS["image"], 90) and p.wait_for_subscriber(TOPICS["image"] + "/compressed", 90)):
            self.close()
            pytest.fail(f"depth node did not come up:\n{self.logs()}")
        self.stamp = 1000

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.is_file() else "(no log)"

    def header(self) -> Header:
        self.stamp += 1
        header = Header(frame_id="cam_color_optical_frame")
        header.stamp.sec, header.stamp.nanosec = self.stamp, 250_000_000
        return header

    def send(self, image: Any, info: Any = "default", sparse: Any = None, header: Header | None = None,
             wait: tuple[str, ...] = ("depth",)) -> dict[str, Any]:
        """Publish camera_info (+ sparse points), then the image; wait for outputs with its stamp."""
        header = header or self.header()
        if info is not None:
            info = conv.make_camera_info(K, 640, 480) if info == "default" else info
            info.header = header
            self.pub_info.publish(info)
        if sparse is not None:
            sparse.header = header
            self.pub_sparse.publish(sparse)
        self.probe.spin_for(0.05)  # camera_info / sparse first, as a driver would
        image.header = header
        self.pub_image.publish(image)
        return self.wait_for(header, wait)

    def wait_for(self, header: Header, topics: tuple[str, ...]) -> dict[str, Any]:
        stamp = conv.stamp_ns(header)

        def found() -> dict[str, Any]:
            return {t: m for t in topics for m in self.out[t] if conv.stamp_ns(m.header) == stamp}

        if not self.probe.spin_until(lambda: len(found()) == len(topics), TIMEOUT):
            pytest.fail(f"no {set(topics) - set(found())} for stamp {stamp} within {TIMEOUT} s; node log:\n{self.logs()}")
        return found()

    def counters(self, after: float | None = None) -> dict[str, str]:
        """Key values of the node's newest diagnostics (received after `after`, monotonic)."""
        def ours() -> list[Any]:
            return [s for msg in self.diagnostics for s in msg.status if s.name.startswith(f"{NODE}:")]

        marker = len(ours())
        # Two new reports after `after`: the first may have been assembled before it.
        wanted = marker + 2 if after is not None else 1
        assert self.probe.spin_until(lambda: len(ours()) >= wanted, TIMEOUT), "no /diagnostics from the node"
        return {kv.key: kv.value for kv in ours()[-1].values}

    def close(self) -> None:
        self.probe.close()
        self.runner.stop()


@pytest.fixture(scope="module")
def h(tmp_path_factory: pytest.TempPathFactory) -> Harness:
    harness = Harness(tmp_path_factory.mktemp("depth_node"))
    yield harness
    harness.close()


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
    out = h.send(conv.rgb_to_image(h.rgb[0], "rgb8"), header=header, wait=("depth", "confidence", "depth/camera_info", "points"))
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
    cloud = out["points"]
    assert (cloud.height, cloud.width, cloud.point_step) == (480, 640, 32)
    xyz, ref = _cloud_xyz(cloud), _backproject(depth, info)
    assert np.array_equal(np.isnan(xyz[..., 2]), ~finite)
    np.testing.assert_allclose(xyz[finite], ref[finite], atol=1e-4)
    rgb = conv.unpack_rgb(conv.read_cloud_fields(cloud, ("rgb",))["rgb"])
    np.testing.assert_array_equal(rgb, h.rgb[0])


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
    for name, bad in _bad_images(h.rgb[0]).items():
        bad.header = h.header()
        h.pub_image.publish(bad)
        h.probe.spin_for(0.1)
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


def test_sparse_points_prime_the_network(h: Harness) -> None:
    image = conv.rgb_to_image(h.rgb[1], "rgb8")
    plain = conv.image_to_depth(h.send(image)["depth"])
    before = h.counters()
    fx, fy, cx, cy = K
    uv = np.array([[100, 100], [320, 240], [500, 400], [200, 350]], np.float64)
    z = np.array([1.0, 1.5, 2.0, 1.2])
    xyz = np.stack([(uv[:, 0] - cx) * z / fx, (uv[:, 1] - cy) * z / fy, z], axis=1)
    bad = np.array([[np.nan, 0, 1], [0, 0, -1.0], [50.0, 0, 1.0]])  # NaN, behind, out of frame
    primed = conv.image_to_depth(h.send(image, sparse=conv.points_to_cloud(np.concatenate([xyz, bad])))["depth"])
    after = h.counters(after=time.monotonic())
    assert int(after["sparse_points_used"]) - int(before.get("sparse_points_used", 0)) == 4
    assert int(after["sparse_points_rejected"]) - int(before.get("sparse_points_rejected", 0)) == 3
    assert np.nanmax(np.abs(primed - plain)) > 0  # the points reached the network
    # A stale sparse message (older than sparse.max_age) is not used.
    stale = conv.points_to_cloud(xyz)
    h.send(image, sparse=stale)  # fresh, same stamp as the frame
    h.send(image)  # next frame: the stored sparse message is now 1 s old
    assert int(h.counters(after=time.monotonic())["sparse_stale"]) > int(before.get("sparse_stale", 0))


def test_diagnostics_report_rates_latency_device_and_model(h: Harness) -> None:
    counters = h.counters(after=time.monotonic())
    for key in ("input_rate_hz", "output_rate_hz", "latency_p50_ms", "latency_p95_ms", "model_p50_ms",
                "overhead_p50_ms", "dropped", "frames_in", "frames_out", "device", "model"):
        assert key in counters, key
    assert counters["device"] == "cpu" and "tiny" in counters["model"]
    assert float(counters["latency_p95_ms"]) >= float(counters["latency_p50_ms"]) > 0
    assert int(counters["frames_out"]) >= 10


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
    from fusanet_ros.startup.runner import _held

    return name.startswith("sem.") or _held(name)


@pytest.mark.skipif(not (ROOT / "fusanet_core" / "weights" / "fusanet_small_indoor.pt").is_file(),
                    reason="needs the bundled trained checkpoint (untrained models ignore sparse points)")
def test_priming_moves_depth_toward_the_points_with_the_bundled_model(tmp_path: Path) -> None:
    """With the trained model, depth near sparse points moves toward their depths (in-process:
    the node passes points to Predictor.predict; the DDS path is covered above)."""
    from fusanet_core.predictor import Predictor

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
