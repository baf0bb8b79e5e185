"""The depth pipeline of `depth_node` and `depth_lifecycle_node`: message -> array -> Predictor -> message.

`DepthPipeline` holds the whole pipeline (parameters, model, worker thread, publishers,
subscriptions, diagnostics) for an rclpy node that owns it; the plain and the lifecycle node only
decide when its parts are set up and torn down. The camera maths it needs (projection,
back-projection, intrinsics) lives in `fusanet_core.geometry`; message conversions in
`conversions.py`.
"""

from __future__ import annotations

from pathlib import Path
import threading
import time
from typing import Any, Callable

import cv2
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped
import numpy as np
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

from fusanet_core.geometry import back_project_points, Intrinsics, project_points, scale_intrinsics, scale_pixel
from fusanet_ros.nodes import conversions as conv
from fusanet_ros.nodes.depth_settings import PARAMETERS, Settings, validate_settings
from fusanet_ros.nodes.poses import match_pose, pose_from_msg, PoseBuffer, StampedPose
from fusanet_ros.nodes.rectify import needs_rectification, Rectifier, topic_is_rectified
from fusanet_ros.nodes.ros_common import declare_parameters, qos_overrides, reliable_qos, sensor_qos, ThrottledLog
from fusanet_ros.nodes.worker import assess, Frame, LatestSlot, NodeStats, rate_window

MIN_IMAGE_SIDE = 16  # smaller frames are bad input, not a network failure
# key -> (relative topic, type). Each image has its camera_info as sibling: <ns>/image + <ns>/camera_info.
OUTPUTS: dict[str, tuple[str, type]] = {
    "depth": ("depth/image", Image),
    "depth_info": ("depth/camera_info", CameraInfo),
    "confidence": ("confidence/image", Image),
    "confidence_info": ("confidence/camera_info", CameraInfo),
    "points": ("points", PointCloud2),
    "salient_points": ("salient_points", PointCloud2),
}
LEVELS = {"OK": DiagnosticStatus.OK, "WARN": DiagnosticStatus.WARN, "ERROR": DiagnosticStatus.ERROR,
          "STALE": DiagnosticStatus.STALE}


class BadInput(Exception):
    """A frame refused for a reason counted under its own key (too_large, too_small)."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind


class DepthPipeline:
    """The depth pipeline of one node, plain or lifecycle: parameters, model, worker thread, inputs, outputs.

    The node holds one and decides when its parts are set up and torn down. Set-up in this order,
    tear-down in reverse: `configure` (parameters, model, worker, diagnostics), `open_outputs`,
    `open_inputs`. Callbacks only store the latest message; the worker thread takes the latest
    frame from a single-slot mailbox and runs message -> array -> (rectify) -> Predictor -> message.
    """

    settings: Settings  # set by configure()

    def __init__(self, node: Node) -> None:
        self.node = node
        self.predictor: Any = None
        self.model_name = ""
        self._stats = NodeStats()
        self._log = ThrottledLog(node)
        self._pub: dict[str, Any] = {}
        self._subs: list[Any] = []
        self._camera_info: Any = None
        self._sparse: Any = None
        self._poses = PoseBuffer()
        self._last_stamp: int | None = None
        self._rng = np.random.default_rng(0)
        self._rectifier = Rectifier()
        self._slot = LatestSlot()
        self._worker: threading.Thread | None = None
        self._diag_pub: Any = None
        self._diag_timer: Any = None
        self._param_callback: Any = None
        self._image_topic = ""
        self._serving = False  # inputs open: frames are processed and outputs published

    @property
    def has_inputs(self) -> bool:
        """Tell whether the input subscriptions are open."""
        return bool(self._subs)

    # ------------------------------------------------------------------------- set-up
    def configure(self) -> None:
        """Parameters, model (with warm-up), worker thread and diagnostics."""
        self.settings = validate_settings(declare_parameters(self.node, PARAMETERS))
        self.predictor, self.model_name = load_predictor(self.settings)
        self._apply_point_fit(self.settings)
        self._slot = LatestSlot()
        self._worker = threading.Thread(target=self._work, name="fusanet_inference", daemon=True)
        self._worker.start()
        if self._param_callback is None:
            self._param_callback = self.node.add_on_set_parameters_callback(self._on_set_parameters)
        self._diag_pub = self.node.create_publisher(DiagnosticArray, "/diagnostics", 10,
                                                    qos_overriding_options=qos_overrides())
        self._diag_timer = self.node.create_timer(self.settings.diagnostics_period, self._publish_diagnostics)

    def open_outputs(self, create: Callable[..., Any]) -> None:
        """Create the publishers with `create` (create_publisher, or create_lifecycle_publisher)."""
        self._pub = {key: create(msg_type, topic, reliable_qos(), qos_overriding_options=qos_overrides())
                     for key, (topic, msg_type) in OUTPUTS.items()}

    def open_inputs(self) -> None:
        """Subscriptions: last, since a matched subscriber means frames will be served."""
        s = self.settings
        if s.image_transport == "compressed":
            # image_transport's naming: the compressed stream of `image` lives at <image>/compressed,
            # so resolve (and remap) `image` first.
            self._image_topic = self.node.resolve_topic_name("image") + "/compressed"
            image = (CompressedImage, self._image_topic, lambda m: self._on_image(m, True))
        else:
            self._image_topic = self.node.resolve_topic_name("image")
            image = (Image, "image", lambda m: self._on_image(m, False))
        inputs = [image, (CameraInfo, "camera_info", self._on_camera_info),
                  (PointCloud2 if s.sparse_type == "cloud" else Image, "sparse_points", self._on_sparse),
                  (PoseStamped, "camera_pose", self._on_pose)]
        # A profile per subscription: rclpy writes a topic's qos_overrides into the profile object.
        self._subs = [self.node.create_subscription(msg_type, topic, callback, sensor_qos(),
                                                    qos_overriding_options=qos_overrides())
                      for msg_type, topic, callback in inputs]
        self._serving = True

    def close_inputs(self) -> None:
        """Stop serving: no new frame is taken, the waiting one is forgotten."""
        self._serving = False
        for sub in self._subs:
            self.node.destroy_subscription(sub)
        self._subs = []
        self._slot.clear()

    def close_outputs(self, destroy: Callable[[Any], Any]) -> None:
        for pub in self._pub.values():
            destroy(pub)
        self._pub = {}

    def stop_worker(self) -> None:
        """Stop the worker thread (the frame in progress finishes)."""
        self._serving = False
        self._slot.close()
        if self._worker is not None:
            self._worker.join(timeout=10.0)
        self._worker = None

    def unconfigure(self) -> None:
        """Stop the worker, drop the model and the diagnostics."""
        self.stop_worker()
        if self._diag_timer is not None:
            self.node.destroy_timer(self._diag_timer)
            self.node.destroy_publisher(self._diag_pub)
        self._diag_timer = self._diag_pub = None
        self.predictor = None

    def ready_text(self) -> str:
        p = self.predictor
        return (f"ready: {self.model_name} on {p.device}, network input {p.input_size[0]}x{p.input_size[1]}, "
                f"image {self._image_topic} ({self.settings.image_transport})")

    # ------------------------------------------------------------------------- callbacks
    def _on_image(self, msg: Any, compressed: bool) -> None:
        """Store the frame for the worker; never blocks on inference."""
        self._stats.frame_in()
        self._check_stamp(msg.header)
        if self._idle():
            self._stats.count("skipped_no_subscribers")
            return
        if self._slot.put(Frame(msg, compressed, time.perf_counter())):
            self._stats.count("dropped")

    def _idle(self) -> bool:
        """Tell (and report) whether skip_when_unsubscribed applies: no output has a subscriber."""
        idle = self.settings.skip_when_unsubscribed and not any(p.get_subscription_count() for p in self._pub.values())
        self._stats.idle = idle
        return idle

    def _check_stamp(self, header: Any) -> None:
        """Flag a zero stamp or one older than the previous image's.

        The frame is still served: a driver without time sync still gives useful depth, but
        pairing by stamp downstream will fail, so it is counted and warned about.
        """
        stamp = conv.stamp_ns(header)
        if stamp == 0:
            self._bad("stamp_zero", "image stamp is 0 (driver not stamping?); outputs carry it too")
        elif self._last_stamp is not None and stamp < self._last_stamp:
            self._bad("stamp_backwards", f"image stamp {stamp * 1e-9:.3f} s is before the previous one "
                                         f"({self._last_stamp * 1e-9:.3f} s): bag loop or clock jump?")
        self._last_stamp = stamp

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._camera_info = msg

    def _on_sparse(self, msg: Any) -> None:
        self._stats.count("sparse_in")
        self._sparse = msg

    def _on_pose(self, msg: Any) -> None:
        """Buffer a camera pose; a broken one is refused (counted bad_pose), never normalised into use."""
        self._stats.count("poses_in")
        try:
            self._poses.add(pose_from_msg(msg))
        except conv.ConversionError as err:
            self._bad("bad_pose", str(err))

    def _on_set_parameters(self, params: list[Any]) -> SetParametersResult:
        """Validate runtime changes as a whole; apply them only when all are valid."""
        ours = {p.name: p.value for p in params if p.name in PARAMETERS}
        if not ours:  # e.g. qos_overrides declared while creating a publisher
            return SetParametersResult(successful=True)
        values = {name: self.node.get_parameter(name).value for name in PARAMETERS}
        try:
            new = validate_settings({**values, **ours})
        except (ValueError, FileNotFoundError) as err:
            return SetParametersResult(successful=False, reason=str(err))
        self.settings = new  # one reference swap: the worker reads settings once per frame
        self._apply_point_fit(new)
        return SetParametersResult(successful=True)

    def _apply_point_fit(self, s: Settings) -> None:
        """Hand the point-fit settings to the Predictor (at configure and when they change, not per frame)."""
        if self.predictor is not None:
            self.predictor.set_point_fit(s.scale_from_points, s.scale_fit_min_points, s.prime_with_points)

    # ---------------------------------------------------------------------------- worker
    def _work(self) -> None:
        while (frame := self._slot.take()) is not None:
            if not self._serving:
                continue
            try:
                self._process(frame)
            except BadInput as err:
                self._bad(err.kind, str(err))
            except conv.TooLargeError as err:
                self._bad("too_large", str(err))
            except conv.ConversionError as err:
                self._bad("bad_image", str(err))
            except Exception as err:  # noqa: BLE001 - one broken frame must not stop the node
                if not self.node.context.ok():
                    return  # shutting down: publishers are gone, nothing to report
                reason = f"{type(err).__name__}: {err}"
                self._stats.failed(reason)
                in_a_row = self._stats.consecutive_failures
                self._log.warning("inference_errors", f"inference failed ({in_a_row} in a row): {reason}")

    def _process(self, frame: Frame) -> None:
        s = self.settings
        start, start_cpu = time.perf_counter(), time.thread_time()
        rgb = decode(frame, s.max_input_pixels)
        height, width = rgb.shape[:2]
        info, k = self._intrinsics(width, height)
        if k is None and s.require_camera_info:
            self._stats.count("waiting_camera_info")
            self._log.warning("waiting_camera_info",
                              "no valid camera_info yet: frame skipped (require_camera_info is true)")
            return
        rgb, rectified_from = self._rectify(rgb, info, s)
        points = self._sparse_points(frame.msg.header, k, rectified_from, width, height, s)
        plane = ground_in_camera(s.ground_plane, rectified_from)
        t_model, t_model_cpu = time.perf_counter(), time.thread_time()
        result = self.predictor.predict(rgb, k, points, s.output_size, ground=plane)
        model_time, model_cpu = time.perf_counter() - t_model, time.thread_time() - t_model_cpu
        self._count_fit(result.get("point_fit"), points is not None)
        self._count_ground(result.get("ground_fit") if plane is not None else None)
        self._publish(frame.msg.header, rgb, info, k, result, s)
        done, done_cpu = time.perf_counter(), time.thread_time()
        # Overhead = everything but predict, as wall time (what a robot waits) and as this thread's
        # CPU time (what the node costs, without time lost to other processes on a shared CPU).
        self._stats.timing(done - frame.received, model_time, (done - start) - model_time,
                           (done_cpu - start_cpu) - model_cpu)

    def _count_fit(self, fit: dict[str, Any] | None, had_points: bool) -> None:
        """Count and keep a scale_from_points fit tried on this frame's sparse points.

        Frames without usable sparse points (none received, stale, rejected) are counted under
        their own keys and tried no fit.
        """
        if not fit or fit["mode"] == "none" or not had_points:
            return
        self._stats.scale_fit(fit)
        if not fit["applied"]:
            self._log.warning("scale_fit_rejected", f"scale_from_points {fit['mode']} not applied "
                                                    f"({fit['inliers']}/{fit['points']} inliers): {fit['reason']}; "
                                                    "the network's own scale is used")

    def _count_ground(self, fit: dict[str, Any] | None) -> None:
        """Count and keep this frame's floor-plane fit (None: no plane set); warn when it fell back."""
        self._stats.ground_fit(fit)
        if fit is not None and not fit["found"]:
            self._log.warning("ground_fallback", f"floor plane not used on this frame: {fit['reason']}")

    def _intrinsics(self, width: int, height: int) -> tuple[Any, Intrinsics | None]:
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

    def _rectify(self, rgb: np.ndarray, info: Any, s: Settings) -> tuple[np.ndarray, Any]:
        """Remap the image into the rectified camera P; returns it and the camera_info it was remapped with (or None).

        rectify:=auto remaps a raw image (topic name without 'rect') whose camera_info has
        distortion, a rotation or P != K; the depth then matches the published camera_info.
        """
        if info is None or s.rectify == "off" or topic_is_rectified(self._image_topic) or not needs_rectification(info):
            return rgb, None
        try:
            rectified = self._rectifier.rectify(rgb, info)
        except conv.ConversionError as err:
            self._bad("bad_camera_info", f"{err}; frame used unrectified")
            return rgb, None
        self._stats.count("frames_rectified")
        return rectified, info

    def _sparse_points(self, header: Any, k: Intrinsics | None, rectified_from: Any,
                       width: int, height: int, s: Settings) -> np.ndarray | None:
        """(u, v, z) of the latest sparse message for this image, or None (none, stale, none usable).

        A cloud in the frame of camera_pose (a world frame, e.g. map) holds for any image while a
        pose within sparse.max_age of the image places the camera in it: SLAM maps are republished
        rarely, and some SLAM nodes stamp their clouds with the wall clock. Every other sparse
        message must itself be within sparse.max_age of the image.
        """
        msg = self._sparse
        if msg is None:
            return None
        pose = None
        if s.sparse_type == "cloud" and self._in_pose_frame(msg, header, s):
            pose = self._pose_for(header, str(msg.header.frame_id), s)
            if pose is None:
                return None
        elif abs(conv.stamp_ns(header) - conv.stamp_ns(msg.header)) > s.sparse_max_age * 1e9:
            self._stats.count("sparse_stale")
            return None
        try:
            uvz, dropped = sparse_to_uvz(msg, header, k, rectified_from, width, height, s, pose, self._poses.frames())
        except BadInput as err:
            self._bad(err.kind, str(err))
            return None
        except conv.ConversionError as err:
            self._bad("bad_sparse", str(err))
            return None
        if not self._count_dropped(len(uvz), dropped, pose is not None):
            return None
        if pose is not None:
            self._stats.count("sparse_posed")
        if len(uvz) > s.sparse_max_points:
            uvz = uvz[self._rng.choice(len(uvz), s.sparse_max_points, replace=False)]
        self._stats.count("sparse_points_used", len(uvz))
        return uvz

    def _in_pose_frame(self, msg: Any, header: Any, s: Settings) -> bool:
        """Tell whether camera_pose places a cloud: its frame is a pose frame, not the camera's or sparse.frame_id."""
        frame = str(msg.header.frame_id)
        if frame == str(header.frame_id) or (s.sparse_extrinsic is not None and frame == s.sparse_frame_id):
            return False
        return self._poses.has_frame(frame)

    def _pose_for(self, header: Any, frame: str, s: Settings) -> StampedPose | None:
        """Return the camera pose in `frame` for this image, or None (counted, warned: no points for the frame)."""
        pose, gap = match_pose(self._poses, conv.stamp_ns(header), frame, s.sparse_max_age)
        if pose is not None:
            return pose
        if gap is None:
            reason = f"no camera_pose in {frame!r} is buffered"
        else:
            self._stats.count("pose_stale")
            reason = (f"the nearest camera_pose in {frame!r} is {gap:.3f} s from the image "
                      f"(sparse.max_age {s.sparse_max_age:g} s)")
        self._stats.count("sparse_no_pose")
        self._log.warning("pose_stale" if gap is not None else "sparse_no_pose",
                          f"sparse cloud in {frame!r} not used: {reason}; frame published without points")
        return None

    def _count_dropped(self, kept: int, dropped: int, posed: bool) -> bool:
        """Count the sparse points dropped from a frame and warn; False when none is left.

        A cloud placed by camera_pose (a map) has points out of view by nature: only losing all
        of them is worth a warning.
        """
        if dropped:
            self._stats.count("sparse_points_rejected", dropped)
        if not kept:
            if dropped:
                self._stats.count("sparse_all_rejected")
                self._log.warning("sparse_all_rejected", f"all {dropped} sparse points dropped (NaN, behind the "
                                                         "camera or out of frame): frame published without points")
            return False
        if dropped and not posed:
            self._log.warning("sparse_rejected",
                              f"{dropped} sparse points dropped (NaN, behind the camera or out of frame)")
        return True

    # --------------------------------------------------------------------------- outputs
    def _publish(self, header: Any, rgb: np.ndarray, info: Any, k: Intrinsics | None,
                 result: dict[str, Any], s: Settings) -> None:
        height, width = rgb.shape[:2]
        depth, conf = result["depth"], result["confidence"]  # already at the output size (Predictor.predict)
        out_h, out_w = depth.shape
        if (out_h, out_w) != (height, width):
            interp = cv2.INTER_AREA if out_h < height and out_w < width else cv2.INTER_LINEAR
            rgb = cv2.resize(rgb, (out_w, out_h), interpolation=interp)  # the cloud's colours
        mark_invalid(depth, conf, s.max_depth, s.min_confidence)
        wanted = {name for name, pub in self._pub.items() if pub.get_subscription_count()}  # build only what is read
        if "depth" in wanted:
            self._pub["depth"].publish(conv.depth_to_image(depth, s.output_encoding, header))
        if "confidence" in wanted:
            self._pub["confidence"].publish(conv.array_to_image(conf.astype(np.float32, copy=False), "32FC1", header))
        if k is None:
            return
        k_out = scale_intrinsics(k, out_w / width, out_h / height)
        if wanted & {"depth_info", "confidence_info"}:
            camera = conv.output_camera_info(info, k, out_w, out_h, (width, height), header)
            for key in wanted & {"depth_info", "confidence_info"}:
                self._pub[key].publish(camera)
        if "points" in wanted:
            cloud = conv.depth_to_cloud(depth, k_out, header, rgb if s.cloud_color else None, conf,
                                        s.cloud_min_confidence, s.cloud_stride, s.cloud_organized)
            self._pub["points"].publish(cloud)
        if "salient_points" in wanted:
            salient = back_project_points(result["salient_points"], k)
            self._pub["salient_points"].publish(conv.points_to_cloud(salient, header))

    def _publish_diagnostics(self) -> None:
        s = self.settings
        if self._serving:
            self._idle()  # refresh: subscribers may have come or gone without a frame arriving
        snap = self._stats.snapshot(rate_window(s.expected_rate))
        inactive = ("OK", "inactive: not subscribed to images")
        level, message = assess(snap, s.expected_rate) if self._serving else inactive
        device = str(self.predictor.device)
        status = DiagnosticStatus(name=diagnostic_name(self.node.get_fully_qualified_name()),
                                  hardware_id=hardware_id(device), level=LEVELS[level], message=message)
        plane = "" if s.ground_plane is None else " ".join(f"{v:.4f}" for v in s.ground_plane)
        values = {"device": device, "model": self.model_name,
                  "network_input": "x".join(map(str, self.predictor.input_size)),
                  "expected_rate_hz": s.expected_rate, "ground_plane": plane, **snap}
        status.values = [KeyValue(key=key, value=_format(value)) for key, value in values.items()]
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.node.get_clock().now().to_msg()
        self._diag_pub.publish(msg)

    # --------------------------------------------------------------------------- helpers
    def _bad(self, kind: str, reason: str) -> None:
        """Count a bad input and log it, at most every few seconds per kind."""
        count = self._stats.bad(kind, reason)
        self._log.warning(kind, f"{kind.replace('_', ' ')} ({count} so far): {reason}")


def load_predictor(s: Settings) -> tuple[Any, str]:
    """Load and warm up the Predictor of the settings; returns it and a "file (preset)" name for logs."""
    import torch  # imported here so that parameter errors are reported before the slow import

    from fusanet_core.checkpoint import default_checkpoint
    from fusanet_core.inference.predictor import Predictor

    if s.num_threads:
        torch.set_num_threads(s.num_threads)
    path = Path(s.checkpoint).expanduser() if s.checkpoint else default_checkpoint()
    predictor = Predictor.from_checkpoint(path, s.device, s.fp16 or None, s.input_size, backend=s.backend)
    if s.backend == "onnxruntime":
        predictor.onnx_sessions()  # both graphs (with and without points): export and check take ~20 s once
    # Warm-up: the first forward pass allocates and picks kernels (seconds on CPU); pay it
    # before subscribing so that the first real frame is served at normal speed.
    height, width = predictor.input_size
    predictor.predict(np.zeros((height, width, 3), np.uint8), (width, width, width / 2, height / 2),
                      np.array([[width / 2, height / 2, 1.0]], np.float32))
    return predictor, f"{path.name} ({predictor.cfg.preset})"


def decode(frame: Frame, max_pixels: int) -> np.ndarray:
    """HxWx3 RGB of a received frame; sizes are checked before the pixels are touched.

    Raises:
        conv.ConversionError: malformed or undecodable (conv.TooLargeError: above max_input_pixels).
        BadInput: too_small, a side below MIN_IMAGE_SIDE.
    """
    msg = frame.msg
    to_rgb = conv.compressed_to_rgb if frame.compressed else conv.image_to_rgb
    rgb = to_rgb(msg, max_pixels=max_pixels)
    height, width = rgb.shape[:2]
    if min(height, width) < MIN_IMAGE_SIDE:
        raise BadInput("too_small", f"{width}x{height} image is below the minimum side of {MIN_IMAGE_SIDE} px")
    return rgb


def mark_invalid(depth: np.ndarray, conf: np.ndarray, max_depth: float, min_confidence: float) -> None:
    """Mark depth in place as REP 117 asks.

    +Inf beyond `max_depth` (lets costmaps clear free space); NaN for non-positive, NaN or
    low-confidence depth (unknown, even when beyond range).
    """
    invalid = ~(depth > 0)  # NaN too; computed before +Inf is written
    if min_confidence > 0:
        invalid |= conf < min_confidence
    far = depth > max_depth
    if far.any():  # usually none: skip the masked writes
        depth[far] = np.inf
    if invalid.any():
        depth[invalid] = np.nan


def sparse_cloud_in_camera(msg: Any, camera_frame: str, s: Settings, pose: StampedPose | None = None,
                           pose_frames: list[str] | None = None) -> np.ndarray:
    """(N, 3) points of a sparse cloud in the camera optical frame.

    Without tf2 (not installable from pip) the node takes points already in the image's frame, in
    `sparse.frame_id` through the static `sparse.extrinsic`, or in the frame of `pose` (the
    camera_pose matched to the image). In a pose's (world) frame an exact (0, 0, 0) is taken as
    padding, not a point: ORB-SLAM3 wrappers write it for keypoints without a map point. It
    becomes NaN, dropped and counted with the other rejected points.

    Raises:
        BadInput: sparse_wrong_frame, the cloud's frame is none of these (`pose_frames`, the
            frames camera_pose arrived in, go into the message).
    """
    frame = str(msg.header.frame_id)
    xyz = conv.cloud_to_xyz(msg, skip_nans=False)
    if frame == camera_frame:
        return xyz
    if s.sparse_extrinsic is not None and frame == s.sparse_frame_id:
        return s.sparse_extrinsic.apply(xyz).astype(np.float32)
    if pose is not None and frame == pose.frame_id:
        xyz = xyz.astype(np.float64)
        xyz[np.all(xyz == 0, axis=1)] = np.nan
        return pose.camera_to_frame.inverse().apply(xyz).astype(np.float32)
    raise BadInput("sparse_wrong_frame", f"sparse cloud in frame {frame!r}, image in {camera_frame!r}: "
                                         f"{_frame_hint(frame, s, pose_frames or [])}")


def _frame_hint(frame: str, s: Settings, pose_frames: list[str]) -> str:
    """Say which frames the node could have used instead of `frame`."""
    if frame == s.sparse_frame_id:
        return "sparse.extrinsic is empty"
    hints = [f"sparse.frame_id is {s.sparse_frame_id!r}" if s.sparse_frame_id
             else "set sparse.frame_id and sparse.extrinsic to use it"]
    if pose_frames:
        hints.append(f"camera_pose arrived in {', '.join(map(repr, pose_frames))}")
    else:
        hints.append(f"or publish camera_pose in {frame!r}")
    return "; ".join(hints)


def ground_in_camera(plane: tuple[float, float, float, float] | None,
                     rectified_from: Any) -> tuple[float, float, float, float] | None:
    """Return the floor plane in the camera the network sees: rotated by R when the image was rectified.

    A point of the raw camera is R p in the rectified one, so the plane's normal becomes R n.
    """
    if plane is None or rectified_from is None:
        return plane
    nx, ny, nz = (float(v) for v in Rectifier.rotation(rectified_from) @ np.asarray(plane[:3]))
    return nx, ny, nz, plane[3]


def diagnostic_name(fully_qualified_name: str) -> str:
    """Name a DiagnosticStatus as diagnostic_updater does: '<node>: <task>', no leading '/'."""
    return f"{fully_qualified_name.lstrip('/')}: depth inference"


def hardware_id(device: str) -> str:
    """'cpu', or 'cuda:0 NVIDIA ...' with the GPU's name."""
    if device.startswith("cuda"):
        try:
            import torch

            return f"{device} {torch.cuda.get_device_name(torch.device(device))}"
        except Exception:  # noqa: BLE001 - a name is nice to have, not worth a failure
            return device
    return device


def _format(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def sparse_to_uvz(msg: Any, header: Any, k: Intrinsics | None, rectified_from: Any, width: int, height: int,
                  s: Settings, pose: StampedPose | None = None,
                  pose_frames: list[str] | None = None) -> tuple[np.ndarray, int]:
    """(u, v, z) on the image the network sees, and how many points fell out of it.

    `rectified_from`: the camera_info the image was rectified with (None: not rectified). `pose`:
    the camera_pose matched to the image, for a cloud in its frame (`sparse_cloud_in_camera`).
    """
    if s.sparse_type == "cloud":
        if k is None:
            raise conv.ConversionError("sparse point cloud needs a valid camera_info to be projected")
        xyz = sparse_cloud_in_camera(msg, str(header.frame_id), s, pose, pose_frames)
        if rectified_from is not None:
            xyz = xyz @ Rectifier.rotation(rectified_from).T  # the raw camera's points, seen from the rectified one
        return project_points(xyz, k, width, height)
    uvz = conv.sparse_depth_to_points(msg)
    sx, sy = width / int(msg.width), height / int(msg.height)
    uvz[:, 0] = scale_pixel(uvz[:, 0], sx)  # sparse image at another size: same field of view
    uvz[:, 1] = scale_pixel(uvz[:, 1], sy)
    if rectified_from is None:
        return uvz, 0
    # aligned with the raw image: its pixels move with the image's rectification
    return project_points(Rectifier.raw_pixels_to_points(uvz, rectified_from), k, width, height)
