"""`depth_node`: monocular metric depth, confidence and point clouds from a colour camera.

Subscribes:
    image (sensor_msgs/Image rgb8|bgr8|rgba8|bgra8|mono8) or, with image_transport:=compressed,
        <resolved image topic>/compressed (sensor_msgs/CompressedImage)
    camera_info (sensor_msgs/CameraInfo)
    sparse_points (sensor_msgs/PointCloud2 in the camera optical frame, or with
        sparse.type:=depth_image a sparse 16UC1/32FC1 Image): optional known depths that prime
        the network (SLAM landmarks, LiDAR)
Publishes (all with the input header):
    depth (32FC1 metres, NaN invalid | 16UC1 mm, 0 invalid), depth/camera_info (K, P rescaled to the
    output size), confidence (32FC1 in [0, 1]), points (PointCloud2 xyz[rgb]), salient_points
    (PointCloud2 xyz of the network's salient points), /diagnostics (DiagnosticArray).

The node is thin: message -> array -> Predictor -> array -> message. Callbacks only store the latest
message; one worker thread takes the latest frame from a single-slot mailbox, so a slow model drops
stale frames (counted) instead of queueing them, and nothing grows without bound.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

from fusanet_core.geometry import scale_pixel
from fusanet_core.metrics import timing_summary

from fusanet_ros.nodes import conversions as conv
from fusanet_ros.nodes.node_main import run_node

NODE_NAME = "depth_node"

# name -> (default, description, changeable at runtime). Values that shape the model, the
# subscriptions or the QoS need a restart and are declared read-only.
PARAMETERS: dict[str, tuple[Any, str, bool]] = {
    "checkpoint": ("", "FuSaNet checkpoint file; empty = the bundled model", False),
    "device": ("auto", "auto | cpu | cuda | cuda:N", False),
    "fp16": (False, "half precision (CUDA only)", False),
    "input_size": ([0, 0], "network input [height, width]; [0, 0] = the checkpoint's", False),
    "num_threads": (0, "torch CPU threads; 0 = torch's default", False),
    "image_transport": ("raw", "raw: subscribe `image`; compressed: subscribe `<image>/compressed`", False),
    "qos.reliability": ("best_effort", "input QoS: best_effort (sensor data, matches any publisher) | reliable", False),
    "qos.depth": (2, "input and output queue depth (keep last)", False),
    "sparse.type": ("cloud", "sparse_points message type: cloud (PointCloud2) | depth_image (16UC1/32FC1 Image)", False),
    "diagnostics_period": (1.0, "seconds between /diagnostics messages", False),
    "output_size": ([0, 0], "published [height, width]; [0, 0] = the input image size", True),
    "output_encoding": ("32FC1", "depth encoding: 32FC1 (metres, NaN invalid) | 16UC1 (mm, 0 invalid)", True),
    "max_depth": (10.0, "metres; deeper predictions are published as invalid", True),
    "min_confidence": (0.0, "depth pixels with lower confidence are published as invalid", True),
    "require_camera_info": (False, "true: skip frames until a valid camera_info arrived; false: publish depth "
                                   "and confidence without intrinsics (no cloud, no depth/camera_info)", True),
    "skip_when_unsubscribed": (True, "skip inference while no output topic has a subscriber", True),
    "cloud.organized": (False, "true: image grid with NaN for invalid points; false: valid points only", True),
    "cloud.stride": (4, "use every n-th pixel in both directions for `points`", True),
    "cloud.min_confidence": (0.0, "pixels with lower confidence are left out of `points`", True),
    "cloud.color": (True, "add packed rgb (point_step 32) to `points`", True),
    "sparse.max_age": (0.5, "seconds between image and sparse-points stamps for the points to be used", True),
    "sparse.max_points": (500, "cap on sparse points passed to the network (random subset)", True),
}
OUTPUT_ENCODINGS = ("32FC1", "16UC1")
BAD_INPUT_KINDS = ("bad_image", "bad_camera_info", "bad_sparse", "inference_errors")
# Reported from the start (0 until something happens) so monitors see every key.
COUNTERS = ("frames_in", "frames_out", "dropped", "skipped_no_subscribers", *BAD_INPUT_KINDS, "frames_without_camera_info",
            "waiting_camera_info", "sparse_in", "sparse_points_used", "sparse_points_rejected", "sparse_stale")


@dataclass(frozen=True)
class Settings:
    """Validated parameter values (see PARAMETERS)."""

    checkpoint: str
    device: str
    fp16: bool
    input_size: tuple[int, int] | None
    num_threads: int
    image_transport: str
    qos_reliability: str
    qos_depth: int
    sparse_type: str
    diagnostics_period: float
    output_size: tuple[int, int] | None
    output_encoding: str
    max_depth: float
    min_confidence: float
    require_camera_info: bool
    skip_when_unsubscribed: bool
    cloud_organized: bool
    cloud_stride: int
    cloud_min_confidence: float
    cloud_color: bool
    sparse_max_age: float
    sparse_max_points: int


def _choice(values: dict[str, Any], name: str, options: tuple[str, ...]) -> str:
    value = str(values[name])
    if value not in options:
        raise ValueError(f"parameter {name} must be one of {', '.join(options)}, got {value!r}")
    return value


def _number(values: dict[str, Any], name: str, low: float, high: float = math.inf, low_open: bool = False) -> float:
    value = float(values[name])
    ok = math.isfinite(value) and (value > low if low_open else value >= low) and value <= high
    if not ok:
        bound = f"> {low}" if low_open else f">= {low}"
        raise ValueError(f"parameter {name} must be {bound}" + (f" and <= {high}" if high < math.inf else "") + f", got {value}")
    return value


def _size(values: dict[str, Any], name: str, minimum: int) -> tuple[int, int] | None:
    size = [int(v) for v in values[name]]
    if len(size) != 2 or any(v < 0 for v in size):
        raise ValueError(f"parameter {name} must be [height, width] (or [0, 0] for the default), got {size}")
    if size == [0, 0]:
        return None
    if min(size) < minimum:
        raise ValueError(f"parameter {name} must be [height, width] >= {minimum} (or [0, 0]), got {size}")
    return size[0], size[1]


def _device(value: str) -> str:
    if value in ("auto", "cpu", "cuda") or (value.startswith("cuda:") and value[5:].isdigit()):
        return value
    raise ValueError(f"parameter device must be auto, cpu, cuda or cuda:N, got {value!r}")


def validate_settings(values: dict[str, Any]) -> Settings:
    """Check every parameter; raises ValueError / FileNotFoundError naming the first bad one."""
    checkpoint = str(values["checkpoint"])
    if checkpoint and not Path(checkpoint).expanduser().is_file():
        raise FileNotFoundError(f"parameter checkpoint: file not found: {checkpoint}")
    return Settings(
        checkpoint=checkpoint,
        device=_device(str(values["device"])),
        fp16=bool(values["fp16"]),
        input_size=_size(values, "input_size", 32),
        num_threads=int(_number(values, "num_threads", 0)),
        image_transport=_choice(values, "image_transport", ("raw", "compressed")),
        qos_reliability=_choice(values, "qos.reliability", ("best_effort", "reliable")),
        qos_depth=int(_number(values, "qos.depth", 1, 100)),
        sparse_type=_choice(values, "sparse.type", ("cloud", "depth_image")),
        diagnostics_period=_number(values, "diagnostics_period", 0, 3600, low_open=True),
        output_size=_size(values, "output_size", 2),
        output_encoding=_choice(values, "output_encoding", OUTPUT_ENCODINGS),
        max_depth=_number(values, "max_depth", 0, low_open=True),
        min_confidence=_number(values, "min_confidence", 0, 1),
        require_camera_info=bool(values["require_camera_info"]),
        skip_when_unsubscribed=bool(values["skip_when_unsubscribed"]),
        cloud_organized=bool(values["cloud.organized"]),
        cloud_stride=int(_number(values, "cloud.stride", 1, 64)),
        cloud_min_confidence=_number(values, "cloud.min_confidence", 0, 1),
        cloud_color=bool(values["cloud.color"]),
        sparse_max_age=_number(values, "sparse.max_age", 0),
        sparse_max_points=int(_number(values, "sparse.max_points", 1, 100000)),
    )


class LatestSlot:
    """Single-slot mailbox: `put` replaces the waiting item (the caller counts it as dropped)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Any = None
        self._closed = False

    def put(self, item: Any) -> bool:
        """Store `item`; True when an unprocessed item was replaced (a dropped frame)."""
        with self._cond:
            replaced = self._item is not None
            self._item = item
            self._cond.notify()
            return replaced

    def take(self) -> Any:
        """Wait for an item; None once closed."""
        with self._cond:
            while self._item is None and not self._closed:
                self._cond.wait()
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._item = None
            self._cond.notify_all()


class NodeStats:
    """Thread-safe counters and bounded timing windows for /diagnostics."""

    WINDOW = 300  # frames kept for percentiles

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self.timings: dict[str, deque[float]] = {k: deque(maxlen=self.WINDOW) for k in ("latency", "model", "overhead", "overhead_cpu")}
        self.last_bad = ""
        self._last_counts = (0, 0, 0)
        self._last_time = time.monotonic()

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counters[name] = self.counters.get(name, 0) + n

    def bad(self, kind: str, reason: str) -> None:
        with self._lock:
            self.counters[kind] = self.counters.get(kind, 0) + 1
            self.last_bad = f"{kind}: {reason}"

    def timing(self, latency: float, model: float, overhead: float, overhead_cpu: float) -> None:
        """Seconds of one served frame: receive -> publish, predict, everything else (wall, CPU)."""
        with self._lock:
            self.counters["frames_out"] = self.counters.get("frames_out", 0) + 1
            for name, value in (("latency", latency), ("model", model), ("overhead", overhead), ("overhead_cpu", overhead_cpu)):
                self.timings[name].append(value)

    def snapshot(self) -> dict[str, Any]:
        """Counters, rates since the previous snapshot and p50/p95 of the timing windows (ms)."""
        with self._lock:
            now = time.monotonic()
            counts = dict(self.counters)
            span = max(now - self._last_time, 1e-6)
            bad_total = sum(counts.get(k, 0) for k in BAD_INPUT_KINDS)
            frames_in, frames_out = counts.get("frames_in", 0), counts.get("frames_out", 0)
            rates = {"input_rate_hz": (frames_in - self._last_counts[0]) / span,
                     "output_rate_hz": (frames_out - self._last_counts[1]) / span,
                     "bad_inputs_in_period": bad_total - self._last_counts[2]}
            self._last_counts, self._last_time = (frames_in, frames_out, bad_total), now
            for name, values in self.timings.items():
                stats = timing_summary(np.asarray(values, dtype=np.float64) * 1000.0)
                rates[f"{name}_p50_ms"], rates[f"{name}_p95_ms"] = stats["p50"], stats["p95"]
            return {**counts, **rates, "last_bad_input": self.last_bad}


@dataclass
class Frame:
    """One received image waiting for the worker."""

    msg: Any
    compressed: bool
    received: float  # time.perf_counter() in the callback


class DepthNode(Node):
    """The FuSaNet depth node (see the module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self._declare_parameters()
        self._settings = validate_settings(self._parameter_values())
        self._stats = NodeStats()
        self._log_times: dict[str, float] = {}
        self._camera_info: Any = None
        self._sparse: Any = None
        self._rng = np.random.default_rng(0)
        self._predictor, self._model_name = self._load_predictor(self._settings)
        self._create_publishers()
        self._slot = LatestSlot()
        self._worker = threading.Thread(target=self._work, name="fusanet_inference", daemon=True)
        self._worker.start()
        self.add_on_set_parameters_callback(self._on_set_parameters)
        # Subscriptions last: a matched subscriber means the model is loaded and frames will be served.
        self._create_subscriptions()
        self._diag_timer = self.create_timer(self._settings.diagnostics_period, self._publish_diagnostics)
        s = self._settings
        self.get_logger().info(
            f"ready: {self._model_name} on {self._predictor.device}, network input {self._predictor.input_size[0]}x"
            f"{self._predictor.input_size[1]}, image {self._image_topic} ({s.image_transport}, {s.qos_reliability})")

    # ---------------------------------------------------------------------------- set-up
    def _declare_parameters(self) -> None:
        for name, (default, description, runtime) in PARAMETERS.items():
            self.declare_parameter(name, default, ParameterDescriptor(description=description, read_only=not runtime))

    def _parameter_values(self, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        values = {name: self.get_parameter(name).value for name in PARAMETERS}
        values.update(overrides or {})
        return values

    def _load_predictor(self, s: Settings) -> tuple[Any, str]:
        import torch  # imported here so that parameter errors are reported before the slow import

        from fusanet_core.predictor import Predictor, default_checkpoint

        if s.num_threads:
            torch.set_num_threads(s.num_threads)
        path = Path(s.checkpoint).expanduser() if s.checkpoint else default_checkpoint()
        predictor = Predictor.from_checkpoint(path, s.device, s.fp16 or None, s.input_size)
        # Warm-up: the first forward pass allocates and picks kernels (seconds on CPU); pay it
        # before subscribing so that the first real frame is served at normal speed.
        height, width = predictor.input_size
        predictor.predict(np.zeros((height, width, 3), np.uint8), (width, width, width / 2, height / 2),
                          np.array([[width / 2, height / 2, 1.0]], np.float32))
        return predictor, f"{path.name} ({predictor.cfg.preset})"

    def _create_publishers(self) -> None:
        qos = QoSProfile(depth=self._settings.qos_depth, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
        self._pub = {
            "depth": self.create_publisher(Image, "depth", qos),
            "confidence": self.create_publisher(Image, "confidence", qos),
            "camera_info": self.create_publisher(CameraInfo, "depth/camera_info", qos),
            "points": self.create_publisher(PointCloud2, "points", qos),
            "salient_points": self.create_publisher(PointCloud2, "salient_points", qos),
        }
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)

    def _create_subscriptions(self) -> None:
        s = self._settings
        reliability = ReliabilityPolicy.RELIABLE if s.qos_reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT
        qos = QoSProfile(depth=s.qos_depth, history=HistoryPolicy.KEEP_LAST, reliability=reliability)
        if s.image_transport == "compressed":
            # image_transport's naming: the compressed stream of `image` lives at <image>/compressed,
            # so resolve (and remap) `image` first.
            self._image_topic = self.resolve_topic_name("image") + "/compressed"
            self.create_subscription(CompressedImage, self._image_topic, lambda m: self._on_image(m, True), qos)
        else:
            self._image_topic = self.resolve_topic_name("image")
            self.create_subscription(Image, "image", lambda m: self._on_image(m, False), qos)
        self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, qos)
        sparse_type = PointCloud2 if s.sparse_type == "cloud" else Image
        self.create_subscription(sparse_type, "sparse_points", self._on_sparse, qos)

    # ------------------------------------------------------------------------- callbacks
    def _on_image(self, msg: Any, compressed: bool) -> None:
        """Store the frame for the worker; never blocks on inference."""
        self._stats.count("frames_in")
        if self._settings.skip_when_unsubscribed and not any(p.get_subscription_count() for p in self._pub.values()):
            self._stats.count("skipped_no_subscribers")
            return
        if self._slot.put(Frame(msg, compressed, time.perf_counter())):
            self._stats.count("dropped")

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._camera_info = msg

    def _on_sparse(self, msg: Any) -> None:
        self._stats.count("sparse_in")
        self._sparse = msg

    def _on_set_parameters(self, params: list[Any]) -> SetParametersResult:
        """Validate runtime changes as a whole; apply them only when all are valid."""
        try:
            new = validate_settings(self._parameter_values({p.name: p.value for p in params}))
        except (ValueError, FileNotFoundError) as err:
            return SetParametersResult(successful=False, reason=str(err))
        self._settings = new  # one reference swap: the worker reads settings once per frame
        return SetParametersResult(successful=True)

    # ---------------------------------------------------------------------------- worker
    def _work(self) -> None:
        while (frame := self._slot.take()) is not None:
            try:
                self._process(frame)
            except conv.ConversionError as err:
                self._bad("bad_image", str(err))
            except Exception as err:  # noqa: BLE001 - one broken frame must not stop the node
                if not self.context.ok():
                    return  # shutting down: publishers are gone, nothing to report
                self._bad("inference_errors", f"{type(err).__name__}: {err}")

    def _process(self, frame: Frame) -> None:
        s = self._settings
        start, start_cpu = time.perf_counter(), time.thread_time()
        rgb = conv.compressed_to_rgb(frame.msg) if frame.compressed else conv.image_to_rgb(frame.msg)
        height, width = rgb.shape[:2]
        info, k = self._intrinsics(width, height)
        if k is None and s.require_camera_info:
            self._stats.count("waiting_camera_info")
            self._log_throttled("waiting_camera_info", "no valid camera_info yet: frame skipped (require_camera_info is true)")
            return
        points = self._sparse_points(frame.msg.header, k, width, height, s)
        t_model, t_model_cpu = time.perf_counter(), time.thread_time()
        result = self._predictor.predict(rgb, k, points)
        model_time, model_cpu = time.perf_counter() - t_model, time.thread_time() - t_model_cpu
        self._publish(frame.msg.header, rgb, info, k, result, s)
        done, done_cpu = time.perf_counter(), time.thread_time()
        # Overhead = everything but predict, as wall time (what a robot waits) and as this thread's
        # CPU time (what the node costs, without time lost to other processes on a shared CPU).
        self._stats.timing(done - frame.received, model_time, (done - start) - model_time, (done_cpu - start_cpu) - model_cpu)

    def _intrinsics(self, width: int, height: int) -> tuple[Any, conv.Intrinsics | None]:
        """Latest camera_info and its (fx, fy, cx, cy), or (None, None) when missing or bad."""
        info = self._camera_info
        if info is None:
            self._stats.count("frames_without_camera_info")
            return None, None
        try:
            conv.check_camera_info_size(info, width, height)
            return info, conv.camera_info_intrinsics(info)
        except conv.ConversionError as err:
            self._bad("bad_camera_info", str(err))
            return None, None

    def _sparse_points(self, header: Any, k: conv.Intrinsics | None, width: int, height: int, s: Settings) -> np.ndarray | None:
        """(u, v, z) of the latest sparse message within max_age of the image, or None."""
        msg = self._sparse
        if msg is None:
            return None
        if abs(conv.stamp_ns(header) - conv.stamp_ns(msg.header)) > s.sparse_max_age * 1e9:
            self._stats.count("sparse_stale")
            return None
        try:
            uvz, dropped = self._sparse_to_uvz(msg, k, width, height, s)
        except conv.ConversionError as err:
            self._bad("bad_sparse", str(err))
            return None
        if dropped:
            self._stats.count("sparse_points_rejected", dropped)
            self._log_throttled("sparse_rejected", f"{dropped} sparse points dropped (NaN, behind the camera or out of frame)")
        if len(uvz) > s.sparse_max_points:
            uvz = uvz[self._rng.choice(len(uvz), s.sparse_max_points, replace=False)]
        self._stats.count("sparse_points_used", len(uvz))
        return uvz

    @staticmethod
    def _sparse_to_uvz(msg: Any, k: conv.Intrinsics | None, width: int, height: int, s: Settings) -> tuple[np.ndarray, int]:
        if s.sparse_type == "cloud":
            if k is None:
                raise conv.ConversionError("sparse point cloud needs a valid camera_info to be projected")
            return conv.project_points(conv.cloud_to_xyz(msg, skip_nans=False), k, width, height)
        uvz = conv.sparse_depth_to_points(msg)
        sx, sy = width / int(msg.width), height / int(msg.height)
        uvz[:, 0] = scale_pixel(uvz[:, 0], sx)  # sparse image at another size: same field of view
        uvz[:, 1] = scale_pixel(uvz[:, 1], sy)
        return uvz, 0

    # --------------------------------------------------------------------------- outputs
    def _publish(self, header: Any, rgb: np.ndarray, info: Any, k: conv.Intrinsics | None, result: dict[str, Any], s: Settings) -> None:
        height, width = rgb.shape[:2]
        depth, conf = result["depth"], result["confidence"]
        out_h, out_w = s.output_size or (height, width)
        if (out_h, out_w) != (height, width):
            interp = cv2.INTER_AREA if out_h < height and out_w < width else cv2.INTER_LINEAR
            depth, conf = (cv2.resize(a, (out_w, out_h), interpolation=interp) for a in (depth, conf))
            rgb = cv2.resize(rgb, (out_w, out_h), interpolation=interp)
        invalid = ~(depth > 0)  # also NaN; the predictor's arrays are ours to modify in place
        invalid |= depth > s.max_depth
        if s.min_confidence > 0:
            invalid |= conf < s.min_confidence
        if invalid.any():  # usually none: skip the masked write
            depth[invalid] = np.nan
        wanted = {name for name, pub in self._pub.items() if pub.get_subscription_count()}  # build only what is read
        if "depth" in wanted:
            self._pub["depth"].publish(conv.depth_to_image(depth, s.output_encoding, header))
        if "confidence" in wanted:
            self._pub["confidence"].publish(conv.array_to_image(conf.astype(np.float32, copy=False), "32FC1", header))
        if k is None:
            return
        k_out = conv.scale_intrinsics(k, out_w / width, out_h / height)
        if "camera_info" in wanted:
            self._pub["camera_info"].publish(conv.scaled_camera_info(info, out_w, out_h, (width, height), header))
        if "points" in wanted:
            cloud = conv.depth_to_cloud(depth, k_out, header, rgb if s.cloud_color else None, conf,
                                        s.cloud_min_confidence, s.cloud_stride, s.cloud_organized)
            self._pub["points"].publish(cloud)
        if "salient_points" in wanted:
            self._pub["salient_points"].publish(conv.points_to_cloud(_back_project(result["salient_points"], k), header))

    def _publish_diagnostics(self) -> None:
        snap = self._stats.snapshot()
        status = DiagnosticStatus(name=f"{self.get_fully_qualified_name()}: depth inference", hardware_id=str(self._predictor.device))
        status.level, status.message = _diagnostic_level(snap)
        values = {"device": str(self._predictor.device), "model": self._model_name,
                  "network_input": "x".join(map(str, self._predictor.input_size)), **snap}
        status.values = [KeyValue(key=key, value=_format(value)) for key, value in values.items()]
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(msg)

    # --------------------------------------------------------------------------- helpers
    def _bad(self, kind: str, reason: str) -> None:
        """Count a bad input and log it, at most every few seconds per kind."""
        self._stats.bad(kind, reason)
        self._log_throttled(kind, f"{kind.replace('_', ' ')} ({self._stats.counters.get(kind, 0)} so far): {reason}")

    def _log_throttled(self, key: str, text: str, period: float = 5.0) -> None:
        now = time.monotonic()
        if now - self._log_times.get(key, -math.inf) >= period:
            self._log_times[key] = now
            self.get_logger().warning(text)

    def stop(self) -> None:
        """Stop the worker (the frame in progress finishes)."""
        self._slot.close()
        self._worker.join(timeout=10.0)


def _back_project(uvz: np.ndarray, k: conv.Intrinsics) -> np.ndarray:
    fx, fy, cx, cy = k
    uvz = np.asarray(uvz, dtype=np.float32).reshape(-1, 3)
    z = uvz[:, 2]
    return np.stack([(uvz[:, 0] - cx) * z / fx, (uvz[:, 1] - cy) * z / fy, z], axis=1)


def _diagnostic_level(snap: dict[str, Any]) -> tuple[bytes, str]:
    if snap["bad_inputs_in_period"]:
        return DiagnosticStatus.WARN, f"{snap['bad_inputs_in_period']} bad input(s) in the last period; last: {snap['last_bad_input']}"
    if not snap.get("frames_in"):
        return DiagnosticStatus.OK, "waiting for images"
    return DiagnosticStatus.OK, f"{snap['output_rate_hz']:.1f} Hz out, latency p50 {snap['latency_p50_ms']:.0f} ms"


def _format(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def main(args: list[str] | None = None) -> int:
    """Console script `depth_node`: exits 2 with one line on invalid parameters or checkpoint."""
    return run_node(NODE_NAME, DepthNode, rclpy.spin, _stop, args)


def _stop(node: DepthNode) -> int:
    node.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
