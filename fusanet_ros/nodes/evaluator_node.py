"""`evaluator_node`: live accuracy, latency and drops of a depth node against ground-truth depth.

Subscribes (all best effort, QoS overridable with qos_overrides./<topic>.subscription.<policy>):
    depth/image (sensor_msgs/Image 32FC1 metres, NaN invalid, +Inf beyond range | 16UC1 mm, 0
        invalid): the predictions, each carrying the header (stamp) of its input image
    ground_truth (16UC1/mono16 times `gt_depth_scale`, or 32FC1 metres): reference depth
    image (sensor_msgs/Image): the depth node's input, for latency (prediction arrival minus
        input arrival, both measured here on one clock) and drops (inputs that never got a
        prediction); optional
    depth/camera_info (the depth node publishes it beside `depth/image`: the colour camera at the
        prediction's size) and ground_truth/camera_info (sensor_msgs/CameraInfo): only with
        `register:=always` or an `extrinsic`, to register ground truth that comes from another
        camera; otherwise ground truth is taken as registered unless its frame_id differs from the
        prediction's. (Not the input camera_info: a bag player waiting for a subscriber on it must
        wait for the depth node, not for the evaluator.)

Each prediction is paired with the ground truth of the nearest stamp within `slop` (0 = exact),
scored with fusanet_core.evaluation.metrics (see fusanet_core.evaluation.scoring for the policies) and, at the end,
the report is written: on SIGINT / shutdown, after `idle_timeout` seconds without messages, or once
`max_frames` predictions arrived. Pending maps are capped by count and by stamp age, so memory
stays bounded on endless streams. Callbacks only record arrival times and pair stamps; scoring runs
in a worker thread so that a slow frame does not delay the next arrival time.

Exit status: 0 with a report, 3 when the report was written but no frame could be scored,
2 for invalid parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
import queue
import sys
import threading
import time
from typing import Any

import rclpy
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image

from fusanet_core.evaluation.bag_eval import REGISTER_MODES
from fusanet_core.evaluation.pairing import check_slop, Settled, StampPairing
from fusanet_core.evaluation.registration import camera_model, Registration, registration_reason
from fusanet_core.evaluation.report import write_report
from fusanet_core.evaluation.scoring import EvalSettings, Evaluation, parse_crop
from fusanet_core.geometry import parse_extrinsic
from fusanet_ros.nodes import conversions as conv
from fusanet_ros.nodes.node_main import run_node
from fusanet_ros.nodes.params import number, Param
from fusanet_ros.nodes.ros_common import declare_parameters, qos_overrides, sensor_qos, ThrottledLog

NODE_NAME = "evaluator"
EXIT_NOTHING_SCORED = 3
PREDICTION_TOPIC = "depth/image"  # the depth node's output, beside depth/camera_info
QUEUE_DEPTH = 30  # keep-last depth of the subscriptions: a burst of a bag player is not lost

# All read-only: the evaluation is set up once.
PARAMETERS: dict[str, Param] = {
    "output_dir": Param("eval_report", "folder for report.json, report.md and the plots"),
    "slop": Param(0.05, "max |stamp difference| in s between a prediction and its ground truth; 0 = exact stamps"),
    "gt_depth_scale": Param(0.001, "metres per unit of 16UC1/mono16 ground truth (0.001 = mm)"),
    "min_depth": Param(1e-3, "metres; ground truth below is not scored"),
    "max_depth": Param(10.0, "metres; ground truth above is not scored, predictions are clipped to it"),
    "crop": Param("", "'' | eigen_nyu | garg | eigen_kitti | 'top,bottom,left,right'"),
    "idle_timeout": Param(0.0, "s without any message (after the first) before the report is written and the node "
                               "exits; 0 = off", low=0.0, high=86400.0),
    "max_frames": Param(0, "write the report and exit once this many predictions arrived; 0 = off", low=0, high=2**31),
    "max_pending": Param(100, "cap on each map of frames waiting for a partner", low=1, high=100000),
    "pending_max_age": Param(5.0, "s: frames older than the newest stamp minus this are settled (dropped / unpaired)"),
    "register": Param("auto", "register ground truth into the colour camera: auto (camera_infos or frame_ids differ) | "
                              "always | never"),
    "extrinsic": Param("", "depth-to-colour 'tx ty tz qx qy qz qw' (p_colour = R p_depth + t), needed to register"),
    "max_panels": Param(4, "RGB | ground truth | prediction | error panels kept for the report", low=0, high=1000),
}


@dataclass(frozen=True)
class EvaluatorSettings:
    """Validated parameters (see PARAMETERS)."""

    output_dir: Path
    slop_ns: int
    gt_depth_scale: float
    eval: EvalSettings  # noqa: A003  (a dataclass field, read as settings.eval: shadows no builtin in any scope)
    idle_timeout: float
    max_frames: int
    max_pending: int
    max_age_ns: int
    register: str
    extrinsic: Any


def validate_settings(values: dict[str, Any]) -> EvaluatorSettings:
    """Check every parameter; ValueError names the first bad one."""
    def positive(name: str) -> float:
        value = float(values[name])
        if not value > 0 or value == float("inf"):
            raise ValueError(f"parameter {name} must be > 0, got {values[name]!r}")
        return value

    def num(name: str) -> Any:
        return number(PARAMETERS, values, name)

    register = str(values["register"])
    if register not in REGISTER_MODES:
        raise ValueError(f"parameter register must be one of {', '.join(REGISTER_MODES)}, got {register!r}")
    text = str(values["extrinsic"]).replace(",", " ").split()
    try:
        extrinsic = parse_extrinsic([float(v) for v in text]) if text else None
    except ValueError as err:
        raise ValueError(f"parameter extrinsic: {err}") from None
    return EvaluatorSettings(
        output_dir=Path(str(values["output_dir"]) or "eval_report").expanduser(),
        slop_ns=check_slop(float(values["slop"])),
        gt_depth_scale=positive("gt_depth_scale"),
        eval=EvalSettings(float(values["min_depth"]), float(values["max_depth"]), parse_crop(str(values["crop"])),
                          max_panels=num("max_panels")),
        idle_timeout=num("idle_timeout"),
        max_frames=num("max_frames"),
        max_pending=num("max_pending"),
        max_age_ns=int(positive("pending_max_age") * 1e9),
        register=register,
        extrinsic=extrinsic,
    )


class EvaluatorNode(Node):
    """The live evaluator (see the module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self.settings = validate_settings(declare_parameters(self, PARAMETERS))
        self.evaluation = Evaluation(self.settings.eval)
        self.pairing = StampPairing(self.settings.slop_ns, self.settings.max_pending, self.settings.max_age_ns)
        self.done = threading.Event()
        self._infos: dict[str, Any] = {"color": None, "gt": None}
        self._registrations: dict[tuple[Any, Any], Registration] = {}
        self._queue: queue.Queue[Settled | None] = queue.Queue(maxsize=self.settings.max_pending)
        self._index = 0
        self._queue_full = 0
        self._log = ThrottledLog(self)
        self._last_message: float | None = None
        self._started = time.monotonic()
        self._worker = threading.Thread(target=self._work, name="fusanet_eval", daemon=True)
        self._worker.start()
        self._subscribe()
        # Steady time: under use_sim_time a ROS-time timer stops with the bag's /clock, and the
        # idle check that ends the evaluation would never run once the bag is over.
        self.create_timer(0.25, self._check_idle, clock=Clock(clock_type=ClockType.STEADY_TIME))
        s = self.settings
        self.get_logger().info(
            f"evaluating {self.resolve_topic_name(PREDICTION_TOPIC)} against {self.resolve_topic_name('ground_truth')} "
            f"(slop {s.slop_ns / 1e9:g} s, {s.eval.min_depth:g}-{s.eval.max_depth:g} m); report -> {s.output_dir}")

    def _subscribe(self) -> None:
        s = self.settings
        topics: list[tuple[type, str, Any]] = [(Image, "image", self._on_image),
                                               (Image, PREDICTION_TOPIC, self._on_prediction),
                                               (Image, "ground_truth", self._on_ground_truth)]
        if s.register == "always" or (s.register == "auto" and s.extrinsic is not None):
            topics += [(CameraInfo, "depth/camera_info", self._on_color_info),
                       (CameraInfo, "ground_truth/camera_info", self._on_gt_info)]
        for msg_type, topic, callback in topics:
            # A profile per subscription: rclpy writes a topic's qos_overrides into the profile object.
            self.create_subscription(msg_type, topic, callback, sensor_qos(QUEUE_DEPTH),
                                     qos_overriding_options=qos_overrides())

    # ------------------------------------------------------------------------- callbacks
    def _on_image(self, msg: Image) -> None:
        now = self._touch()
        self._dispatch(self.pairing.on_input(conv.stamp_ns(msg.header), now, msg))

    def _on_prediction(self, msg: Image) -> None:
        now = self._touch()
        self._dispatch(self.pairing.on_prediction(conv.stamp_ns(msg.header), now, msg))
        if self.settings.max_frames and self.pairing.counts["predictions"] >= self.settings.max_frames:
            self.done.set()

    def _on_ground_truth(self, msg: Image) -> None:
        self._touch()
        self._dispatch(self.pairing.on_ground_truth(conv.stamp_ns(msg.header), msg))

    def _on_color_info(self, msg: CameraInfo) -> None:
        self._infos["color"] = msg  # one reference swap: the worker reads a consistent message

    def _on_gt_info(self, msg: CameraInfo) -> None:
        self._infos["gt"] = msg

    def _touch(self) -> float:
        self._last_message = time.monotonic()
        return self._last_message

    def _check_idle(self) -> None:
        timeout = self.settings.idle_timeout
        if timeout and self._last_message is not None and time.monotonic() - self._last_message > timeout:
            self.get_logger().info(f"no message for {timeout:g} s: writing the report")
            self.done.set()

    def _dispatch(self, settled: list[Settled]) -> None:
        for item in settled:
            if self._queue.full():
                # Blocking keeps every frame; the wait delays later arrival times, so say so.
                self._queue_full += 1
            self._queue.put(item)

    # ---------------------------------------------------------------------------- worker
    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            index, self._index = self._index, self._index + 1
            try:
                self._score(item, index)
            except ValueError as err:  # bad message, registration impossible: the text says why
                self._error(item, index, str(err))
            except Exception as err:  # noqa: BLE001 - one bad frame must not end the evaluation
                self._error(item, index, f"{type(err).__name__}: {err}")

    def _error(self, item: Settled, index: int, message: str) -> None:
        self.evaluation.add_missing(item.stamp_ns, "error", message, index=index, latency_ms=item.latency_ms)
        self._log.warning("not_scored", f"frame {item.stamp_ns * 1e-9:.3f} s not scored: {message}")

    def _score(self, item: Settled, index: int) -> None:
        if item.status == "dropped":
            self.evaluation.add_missing(item.stamp_ns, "dropped", "input image never got a prediction", index=index)
            return
        if item.status == "unpaired":
            self.evaluation.add_missing(item.stamp_ns, "unpaired",
                                        f"no ground truth within {self.settings.slop_ns / 1e9:g} s",
                                        index=index, latency_ms=item.latency_ms)
            return
        pred = conv.image_to_depth(item.pred)
        gt = self._ground_truth(item.gt, str(item.pred.header.frame_id))
        rgb = None
        if item.image is not None:
            try:
                rgb = conv.image_to_rgb(item.image)
            except ValueError:
                rgb = None  # panels only: a non-colour input does not stop scoring
        self.evaluation.add(item.stamp_ns, pred, gt, rgb, gt_stamp_ns=item.gt_stamp_ns, latency_ms=item.latency_ms,
                            index=index)

    def _ground_truth(self, msg: Image, color_frame: str) -> Any:
        depth = conv.image_to_depth(msg, self.settings.gt_depth_scale)
        registration = self._registration(color_frame, str(msg.header.frame_id))
        return registration.apply(depth) if registration is not None else depth

    def _registration(self, color_frame: str, gt_frame: str) -> Registration | None:
        """Registration for the current camera_infos, or None when the ground truth is in the colour camera."""
        mode, infos = self.settings.register, dict(self._infos)
        if mode == "never":
            return None
        color = camera_model(infos["color"]) if infos["color"] is not None else None
        depth = camera_model(infos["gt"]) if infos["gt"] is not None else None
        reason = registration_reason(color, depth, color_frame, gt_frame)
        if reason is None and mode == "auto":
            return None
        reason = reason or "register:=always"
        if self.settings.extrinsic is None:
            raise ValueError(f"ground truth must be registered ({reason}): set the extrinsic parameter "
                             "('tx ty tz qx qy qz qw', depth to colour; the node then reads both camera_infos)")
        if color is None or depth is None:
            missing = "depth/camera_info" if color is None else "ground_truth/camera_info"
            raise ValueError(f"ground truth must be registered ({reason}) but no camera_info arrived on "
                             f"{self.resolve_topic_name(missing)}")
        key = (color, depth)
        if key not in self._registrations:
            self._registrations[key] = Registration(depth, color, self.settings.extrinsic,
                                                    f"extrinsic parameter ({reason})")
            self.evaluation.note(f"ground truth registered into the colour camera: {reason}")
        return self._registrations[key]

    # ---------------------------------------------------------------------------- report
    def finish(self) -> int:
        """Settle what is pending, stop the worker, write the report; returns the exit status."""
        self._dispatch(self.pairing.flush())
        self._queue.put(None)
        self._worker.join()
        for name, value in self.pairing.counts.items():
            self.evaluation.count(f"{name}_received", value)
        if not self.pairing.counts["inputs"]:
            self.evaluation.note(f"no input image arrived on {self.resolve_topic_name('image')}: "
                                 "latency and drops not measured")
        if self._queue_full:
            self.evaluation.count("scoring_queue_full", self._queue_full)
            self.evaluation.note("the scoring queue was full at times: latency figures include that wait")
        paths = write_report(self.evaluation, self.settings.output_dir, self._meta())
        summary = self.evaluation.summary()
        if summary is None:
            self._say("ERROR", f"no frame could be scored; report: {paths['markdown']}")
            return EXIT_NOTHING_SCORED
        latency = self.evaluation.latency()
        lat = f", latency p50 {latency['p50']:.0f} ms" if latency else ""
        self._say("INFO", f"{summary['n_images']} frames scored: rmse {summary['rmse']:.3f} m, "
                          f"abs_rel {summary['abs_rel']:.3f}, "
                          f"delta1 {summary['delta1']:.3f}{lat}; report: {paths['markdown']}")
        return 0

    def _say(self, level: str, text: str) -> None:
        """Log through the node while its context lives, else write the line to stderr directly.

        After Ctrl-C (context shut down) the node logger cannot reach /rosout any more.
        """
        if self.context.ok():
            (self.get_logger().error if level == "ERROR" else self.get_logger().info)(text)
        else:
            print(f"[{level}] [{NODE_NAME}]: {text}", file=sys.stderr, flush=True)

    def _meta(self) -> dict[str, Any]:
        s = self.settings
        return {
            "mode": "live (evaluator_node)",
            "prediction_topic": self.resolve_topic_name(PREDICTION_TOPIC),
            "ground_truth_topic": self.resolve_topic_name("ground_truth"),
            "input_topic": self.resolve_topic_name("image"),
            "pairing": f"nearest ground-truth header stamp within {s.slop_ns / 1e9:g} s of the prediction's stamp",
            "latency": "prediction arrival minus input image arrival, both at this node (same clock)",
            "drops": "input images with no prediction by the end (or older than pending_max_age)",
            "registration": f"{s.register}" + (f", extrinsic {s.extrinsic.as_list()}" if s.extrinsic else ""),
            "gt_depth_scale": f"{s.gt_depth_scale:g} m per unit of 16UC1/mono16 ground truth",
            "duration_s": round(time.monotonic() - self._started, 3),
        }


def main(args: list[str] | None = None) -> int:
    """Console script `evaluator_node`; the report is written however the node ends."""
    return run_node(NODE_NAME, EvaluatorNode, _spin_until_done, _finish, args)


def _spin_until_done(node: EvaluatorNode) -> None:
    while rclpy.ok() and not node.done.is_set():
        rclpy.spin_once(node, timeout_sec=0.1)


def _finish(node: EvaluatorNode) -> int:
    try:
        return node.finish()
    except (OSError, ValueError) as err:  # e.g. an unwritable output_dir: say so in one line
        node._say("ERROR", f"cannot write the report: {err}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
