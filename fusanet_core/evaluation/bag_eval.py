"""Offline bag evaluation (`fusanet bag-eval BAG`): score the depth model on a recorded bag, offline and deterministic.

Reads the bag directly with rosbags' AnyReader (ROS 1 .bag, ROS 2 sqlite3 or MCAP), runs every
colour frame through the Predictor (no DDS, no drops), pairs it with the ground-truth depth of the
nearest stamp within `--slop`, registers the ground truth into the colour camera when it comes
from another camera, and writes the report of `evaluation.report` (JSON, Markdown, plots).

Two passes keep memory bounded on long bags: the first reads stamps, camera_infos and transforms
and decides the pairing; the second decodes images in bag order and holds a frame only until its
partner arrives.

Bad input: the image and depth topics must differ; colour images above
`DEFAULT_MAX_INPUT_PIXELS` are refused before decoding (per frame). A message that cannot be
deserialized is skipped and counted (`counts["corrupt"]`), the reading goes on; when the bag's
storage itself fails (a broken chunk: rosbags cannot read past it) the evaluation stops there,
scores the frames read so far and says so in the report's notes. When no frame can be scored,
no report is written (a report without metrics would look like a result): the error names the
most common reason.

The command line (`fusanet bag-eval`, and its `--live` mode through the eval launch) lives in
`fusanet_ros.tools.bag_eval_command`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
import logging
from pathlib import Path
import sys
from typing import Any, Iterator, Sequence

import numpy as np

from fusanet_core.errors import error_reason
from fusanet_core.evaluation.pairing import check_slop, DEFAULT_SLOP, pair_nearest
from fusanet_core.evaluation.registration import (
    camera_model,
    CameraModel,
    realsense_extrinsic,
    Registration,
    registration_reason,
    tf_edges,
    tf_static_extrinsic,
)
from fusanet_core.evaluation.report import write_report
from fusanet_core.evaluation.scoring import EvalSettings, Evaluation, parse_crop
from fusanet_core.geometry import parse_extrinsic, RigidTransform
from fusanet_core.io.bags import bag_topics, closest_topic, open_bag, require_topics
from fusanet_core.io.messages import check_pixel_count, DEFAULT_MAX_INPUT_PIXELS, image_to_depth, image_to_rgb, stamp_ns

log = logging.getLogger(__name__)

IMAGE_TYPES = ("sensor_msgs/msg/Image",)
INFO_TYPE = "sensor_msgs/msg/CameraInfo"
REGISTER_MODES = ("auto", "always", "never")


# ---------------------------------------------------------------------------------- bag reading
class _Messages:
    """(topic, bag time ns, deserialized message) of `topics` in bag order.

    A message whose bytes do not deserialize is skipped and counted per topic in `corrupt`
    (rosbags reads on past it); an error of the storage itself (a chunk whose size lies, a bad
    compressed stream) ends the iteration, and `stopped` says where and why: rosbags cannot
    continue past it. Both passes skip the same messages, so their per-topic indices agree.
    """

    def __init__(self, reader: Any, topics: Sequence[str]) -> None:
        self.reader, self.topics = reader, set(topics)
        self.corrupt: dict[str, int] = defaultdict(int)
        self.first_corrupt: str | None = None
        self.stopped: str | None = None

    def __iter__(self) -> Iterator[tuple[str, int, Any]]:
        conns = [c for c in self.reader.connections if c.topic in self.topics]
        if not conns:
            return
        iterator = self.reader.messages(connections=conns)
        read = 0
        while True:
            try:
                conn, bag_ns, raw = next(iterator)
            except StopIteration:
                return
            except Exception as err:  # noqa: BLE001 - damaged chunk / record: the reader cannot go on
                self.stopped = (f"cannot read bag {self.reader.paths[0]} after {read} messages: truncated or corrupt "
                                f"({error_reason(err, limit=200)})")
                return
            read += 1
            try:
                msg = self.reader.deserialize(raw, conn.msgtype)
            except Exception as err:  # noqa: BLE001 - one corrupt message: skip it, read on
                self.corrupt[conn.topic] += 1
                where = f"{conn.topic} at bag time {int(bag_ns) * 1e-9:.3f} s"
                self.first_corrupt = self.first_corrupt or f"{where}: {error_reason(err, limit=160)}"
                continue
            yield conn.topic, int(bag_ns), msg


class NothingScoredError(ValueError):
    """No frame of the bag could be scored; `evaluation` holds the per-frame reasons (no report was written)."""

    def __init__(self, message: str, evaluation: Evaluation) -> None:
        super().__init__(message)
        self.evaluation = evaluation


# ---------------------------------------------------------------------------------- the command
@dataclass
class BagEvalOptions:
    """Options of `fusanet bag-eval` (see `add_bag_eval_command` for their meaning)."""

    bag: str
    image_topic: str
    depth_topic: str
    camera_info_topic: str | None = None
    depth_camera_info_topic: str | None = None
    register: str = "auto"
    extrinsic: Sequence[float] | None = None
    checkpoint: str | None = None
    device: str = "auto"
    input_size: tuple[int, int] | None = None
    out: str = "out/bag_eval"
    min_depth: float = 1e-3
    max_depth: float = 10.0
    crop: str | None = None
    slop: float = DEFAULT_SLOP
    depth_scale: float = 0.001
    max_frames: int = 0
    panels: int = 4


@dataclass
class _Scan:
    """What the first pass learns: stamps, frame ids, camera models and transforms."""

    image_stamps: list[int]
    gt_stamps: list[int]
    image_frame: str
    gt_frame: str
    color: CameraModel | None
    depth: CameraModel | None
    color_infos: list[tuple[int, int, CameraModel | None]]  # (stamp, bag time, model) in bag order
    realsense_tf: dict[str, Any]
    tf_edges: list[tuple[str, str, RigidTransform]]
    stamp_source: str
    corrupt: dict[str, int]  # topic -> messages skipped because they do not deserialize
    first_corrupt: str | None
    stopped: str | None  # why the bag could not be read to its end, None when it was


def plan_registration(opts: BagEvalOptions) -> tuple[str | None, str | None, Registration | None]:
    """Return the colour and depth camera_info topics and the registration the offline run would use.

    The live mode passes them to the evaluator node.
    """
    check_topics(opts)
    reader = open_bag(opts.bag)
    try:
        color_info, depth_info = info_topics(bag_topics(reader), opts)
        return color_info, depth_info, _registration(opts, _scan(reader, opts, (color_info, depth_info)))
    finally:
        reader.close()


def check_topics(opts: BagEvalOptions) -> None:
    """Check that the colour and ground-truth topics differ (else the model is scored against its input).

    Raises:
        ValueError: naming the topic.
    """
    if opts.image_topic == opts.depth_topic:
        raise ValueError(f"--image-topic and --depth-topic are both {opts.image_topic!r}: the ground truth must be "
                         "the depth topic, not the colour images")


def evaluate_bag(opts: BagEvalOptions) -> tuple[Evaluation, dict[str, Path]]:
    """Run the offline evaluation and write the report; returns it and the written paths.

    Raises:
        NothingScoredError: no frame could be scored (nothing is written; the message names the
            most common reason).
        ValueError, FileNotFoundError: bad options, topics or bag.
    """
    check_topics(opts)
    if opts.register not in REGISTER_MODES:
        raise ValueError(f"register must be one of {', '.join(REGISTER_MODES)}, got {opts.register!r}")
    settings = EvalSettings(opts.min_depth, opts.max_depth, parse_crop(opts.crop), max_panels=opts.panels)
    slop_ns = check_slop(opts.slop)
    if not opts.depth_scale > 0:
        raise ValueError(f"depth scale must be > 0 metres per unit, got {opts.depth_scale}")
    reader = open_bag(opts.bag)
    try:
        topics = bag_topics(reader)
        scan = _scan(reader, opts, info_topics(topics, opts))
        registration = _registration(opts, scan)
        from fusanet_core.inference.predictor import Predictor  # torch: only once the bag is known to be usable

        predictor = Predictor.from_checkpoint(opts.checkpoint, opts.device, None, opts.input_size)
        evaluation = Evaluation(settings)
        pairs = pair_nearest(scan.image_stamps, scan.gt_stamps, slop_ns)
        _explain_pairing(evaluation, scan, pairs, opts)
        _explain_damage(evaluation, scan)
        _evaluate(reader, opts, scan, pairs, registration, predictor, evaluation)
    finally:
        reader.close()
    if evaluation.summary() is None:
        raise NothingScoredError(_nothing_scored(evaluation, scan), evaluation)
    meta = _meta(opts, scan, registration, predictor, pairs, topics)
    paths = write_report(evaluation, opts.out, meta)
    return evaluation, paths


def _explain_damage(evaluation: Evaluation, scan: _Scan) -> None:
    """Corrupt messages (skipped, counted) and a bag that could not be read to its end, in the report."""
    skipped = sum(scan.corrupt.values())
    if skipped:
        evaluation.count("corrupt", skipped)
        per_topic = ", ".join(f"{n} on {t}" for t, n in sorted(scan.corrupt.items()))
        evaluation.note(f"{skipped} corrupt messages skipped ({per_topic}); first: {scan.first_corrupt}")
    if scan.stopped:
        evaluation.note(f"{scan.stopped}: only the frames before that point are evaluated")


def _nothing_scored(evaluation: Evaluation, scan: _Scan) -> str:
    """Return the error line when no frame was scored: the most common reason, and where it helps, the hint."""
    main = evaluation.main_skip()
    if main is None:
        reason = scan.stopped or "no colour frame was read"
    else:
        status, reason = main
        hint = next((n for n in evaluation.notes if n.startswith("unpaired colour frames are")), None)
        reason += f" ({hint})" if status == "unpaired" and hint else ""
    return f"no frame could be scored: {reason}; no report written"


def info_topics(topics: dict[str, tuple[str, int]], opts: BagEvalOptions) -> tuple[str | None, str | None]:
    """(colour, depth) CameraInfo topics: given ones are checked, missing ones guessed."""
    require_topics(topics, opts.image_topic, IMAGE_TYPES, "image")
    require_topics(topics, opts.depth_topic, IMAGE_TYPES, "depth")
    for topic, what in ((opts.camera_info_topic, "camera_info"), (opts.depth_camera_info_topic, "depth camera_info")):
        if topic:
            require_topics(topics, topic, (INFO_TYPE,), what)
    candidates = [t for t, (m, _) in topics.items() if m == INFO_TYPE]
    color = opts.camera_info_topic or closest_topic(opts.image_topic, candidates)
    depth = opts.depth_camera_info_topic or closest_topic(opts.depth_topic, candidates)
    if depth == color and not opts.depth_camera_info_topic:
        depth = None  # one camera_info for both streams: the depth is taken as registered
    return color, depth


def _scan(reader: Any, opts: BagEvalOptions, info_topics: tuple[str | None, str | None]) -> _Scan:
    """First pass: stamps, frame ids, the first valid camera_info per stream, transforms."""
    color_info, depth_info = info_topics
    tf_topics = [c.topic for c in reader.connections
                 if (c.msgtype == "geometry_msgs/msg/Transform" and "/tf/" in c.topic) or c.topic == "/tf_static"]
    stamps: dict[str, list[tuple[int, int]]] = defaultdict(list)
    frames: dict[str, str] = {}
    infos: dict[str, Any] = {}
    color_infos: list[tuple[int, int, CameraModel | None]] = []
    realsense_tf: dict[str, Any] = {}
    edges: list[tuple[str, str, RigidTransform]] = []
    wanted = [opts.image_topic, opts.depth_topic, *(t for t in (color_info, depth_info) if t), *tf_topics]
    messages = _Messages(reader, wanted)
    for topic, bag_ns, msg in messages:
        if topic in (opts.image_topic, opts.depth_topic):
            stamps[topic].append((stamp_ns(msg.header), bag_ns))
            frames.setdefault(topic, str(msg.header.frame_id))
        elif topic in (color_info, depth_info):
            model = _model(msg, topic)
            if topic == color_info:
                color_infos.append((stamp_ns(msg.header), bag_ns, model))
            if topic not in infos and model is not None:
                infos[topic] = msg  # the first valid one describes the stream for registration
        elif topic == "/tf_static":
            edges += tf_edges(msg)
        else:
            realsense_tf[topic] = msg
    if messages.stopped and not (stamps[opts.image_topic] and stamps[opts.depth_topic]):
        raise ValueError(messages.stopped)  # not "no messages": the bag broke before they came
    image_stamps, gt_stamps, source = _choose_stamps(stamps[opts.image_topic], stamps[opts.depth_topic])
    return _Scan(image_stamps, gt_stamps, frames.get(opts.image_topic, ""), frames.get(opts.depth_topic, ""),
                 _model(infos.get(color_info or ""), color_info), _model(infos.get(depth_info or ""), depth_info),
                 color_infos, realsense_tf, edges, source, dict(messages.corrupt), messages.first_corrupt,
                 messages.stopped)


def _choose_stamps(images: list[tuple[int, int]], gts: list[tuple[int, int]]) -> tuple[list[int], list[int], str]:
    """Header stamps, unless a stream has none set (all zero): then bag receive times for both."""
    if not images:
        raise ValueError("the image topic has no messages")
    if not gts:
        raise ValueError("the depth topic has no messages")
    if all(h for h, _ in images) and all(h for h, _ in gts):
        return [h for h, _ in images], [h for h, _ in gts], "header"
    return [b for _, b in images], [b for _, b in gts], "bag receive (header stamps are zero)"


def _model(info: Any, topic: str | None) -> CameraModel | None:
    """Return the CameraModel of a CameraInfo, or None (missing or without a valid focal length)."""
    if info is None:
        return None
    try:
        return camera_model(info)
    except ValueError as err:
        log.warning("camera_info on %s ignored: %s", topic, err)
        return None


def _registration(opts: BagEvalOptions, scan: _Scan) -> Registration | None:
    """Registration to apply to the ground truth, or None when it is already in the colour camera."""
    reason = registration_reason(scan.color, scan.depth, scan.image_frame, scan.gt_frame)
    if opts.register == "never" or (opts.register == "auto" and reason is None):
        return None
    reason = reason or "--register always"
    if scan.color is None or scan.depth is None:
        missing = "colour" if scan.color is None else "depth"
        raise ValueError(f"ground truth must be registered ({reason}) but the bag has no valid {missing} camera_info: "
                         f"pass --{'depth-' if missing == 'depth' else ''}camera-info-topic, "
                         "or --register never if it is registered")
    extrinsic, source = _extrinsic(opts, scan)
    log.info("registering ground truth into the colour camera (%s); extrinsic from %s", reason, source)
    return Registration(scan.depth, scan.color, extrinsic, f"{source} ({reason})")


def _extrinsic(opts: BagEvalOptions, scan: _Scan) -> tuple[RigidTransform, str]:
    if opts.extrinsic:
        return parse_extrinsic(opts.extrinsic), "--extrinsic"
    found = realsense_extrinsic(scan.realsense_tf, opts.depth_topic, opts.image_topic)
    if found is not None:
        return found
    if scan.tf_edges and scan.image_frame and scan.gt_frame:
        extrinsic = tf_static_extrinsic(scan.tf_edges, scan.gt_frame, scan.image_frame)
        if extrinsic is not None:
            return extrinsic, f"/tf_static {scan.gt_frame} -> {scan.image_frame}"
    raise ValueError("ground truth is not registered to the colour camera and the bag has no depth-to-colour "
                     "transform (librealsense <stream>/tf/N or /tf_static): pass --extrinsic TX TY TZ QX QY QZ QW, "
                     "or --register never")


def _explain_pairing(evaluation: Evaluation, scan: _Scan, pairs: list[int | None], opts: BagEvalOptions) -> None:
    paired = sum(p is not None for p in pairs)
    evaluation.note(f"paired {paired} of {len(pairs)} colour frames with ground truth "
                    f"(nearest {scan.stamp_source} stamp within {opts.slop:g} s; {len(scan.gt_stamps)} depth frames "
                    "in the bag)")
    if paired < len(pairs) and scan.gt_stamps:
        gt = np.asarray(scan.gt_stamps, dtype=np.int64)
        gaps = [int(np.min(np.abs(gt - s))) for s, p in zip(scan.image_stamps, pairs) if p is None]
        span = f"{min(gaps) / 1e6:.1f}" + (f"-{max(gaps) / 1e6:.1f}" if max(gaps) != min(gaps) else "")
        evaluation.note(f"unpaired colour frames are {span} ms from the nearest ground truth: "
                        "raise --slop if the streams are not hardware-synchronised")


def _evaluate(reader: Any, opts: BagEvalOptions, scan: _Scan, pairs: list[int | None],
              registration: Registration | None, predictor: Any, evaluation: Evaluation) -> None:
    """Second pass: decode in bag order, predict each colour frame, score it when its partner is in."""
    from tqdm import tqdm

    limit = opts.max_frames if opts.max_frames > 0 else len(pairs)
    last_use: dict[int, int] = {}
    for i, j in enumerate(pairs[:limit]):
        if j is not None:
            last_use[j] = i
    gt_ready: dict[int, Any] = {}  # gt index -> registered depth (or the error text)
    waiting: dict[int, list[tuple[int, Any]]] = defaultdict(list)  # gt index -> [(image index, prediction)]
    counters = {opts.image_topic: -1, opts.depth_topic: -1}
    color_infos = _ColorInfos(scan.color_infos)
    progress = tqdm(total=limit, desc="bag-eval", unit="frame", disable=None, file=sys.stderr)
    for topic, bag_ns, msg in _Messages(reader, [opts.image_topic, opts.depth_topic]):
        counters[topic] += 1
        index = counters[topic]
        if topic == opts.image_topic:
            if index >= limit:
                if not waiting:
                    break
                continue
            progress.update(1)
            j = pairs[index]
            if j is None:
                evaluation.add_missing(scan.image_stamps[index], "unpaired", f"no ground truth within {opts.slop:g} s",
                                       index=index)
                continue
            color = color_infos.at(scan.image_stamps[index], bag_ns)
            frame = (index, _predict(predictor, msg, color, evaluation))
            if j in gt_ready:
                _score(evaluation, scan, frame, j, gt_ready)
                _release(gt_ready, j, index, last_use)
            else:
                waiting[j].append(frame)
        elif index in last_use:
            gt_ready[index] = _prepare_gt(msg, opts.depth_scale, registration)
            for frame in waiting.pop(index, []):
                _score(evaluation, scan, frame, index, gt_ready)
                _release(gt_ready, index, frame[0], last_use)
    progress.close()


class _ColorInfos:
    """The colour camera_info the depth node would hold for each image.

    That is the one with the image's stamp, else the latest one recorded before the image, else
    the first one.
    """

    def __init__(self, infos: list[tuple[int, int, CameraModel | None]]) -> None:
        self.by_stamp = {stamp: model for stamp, _, model in infos}
        self.bag_times = [bag_ns for _, bag_ns, _ in infos]
        self.models = [model for _, _, model in infos]

    def at(self, stamp: int, bag_ns: int) -> CameraModel | None:
        if stamp in self.by_stamp:
            return self.by_stamp[stamp]
        if not self.models:
            return None
        pos = int(np.searchsorted(self.bag_times, bag_ns, side="right")) - 1
        return self.models[max(pos, 0)]


def _predict(predictor: Any, msg: Any, color: CameraModel | None, evaluation: Evaluation) -> dict[str, Any]:
    """{'pred', 'rgb'} or {'error'} for one colour message."""
    try:
        rgb = image_to_rgb(msg, max_pixels=DEFAULT_MAX_INPUT_PIXELS)
    except ValueError as err:
        return {"error": f"bad colour image: {err}"}
    height, width = rgb.shape[:2]
    k = None
    if color is None:
        evaluation.note("some colour frames had no valid camera_info: the model ran without intrinsics for them "
                        "(as the depth node does)")
    elif (color.width, color.height) not in ((width, height), (0, 0)):
        # The depth node rejects such a camera_info too (bad_camera_info) and predicts without it.
        evaluation.note(f"colour camera_info is {color.width}x{color.height} but the images are {width}x{height}: "
                        "the model ran without intrinsics")
    else:
        k = color.intrinsics
    try:
        return {"pred": predictor.predict(rgb, k)["depth"], "rgb": rgb}
    except ValueError as err:  # e.g. an image too small for the network: this frame only
        return {"error": f"prediction failed: {err}"}


def _prepare_gt(msg: Any, scale: float, registration: Registration | None) -> Any:
    """Return the registered ground truth in metres, or the error text of a bad message."""
    try:
        # The same bound as the colour images: a lying width x height must not size an allocation.
        limit = DEFAULT_MAX_INPUT_PIXELS
        check_pixel_count(int(msg.width), int(msg.height), limit, "depth image")
        depth = image_to_depth(msg, scale)
        return registration.apply(depth) if registration is not None else depth
    except ValueError as err:
        return f"bad ground-truth depth: {err}"


def _score(evaluation: Evaluation, scan: _Scan, frame: tuple[int, dict[str, Any]], j: int,
           gt_ready: dict[int, Any]) -> None:
    index, result = frame
    stamp, gt = scan.image_stamps[index], gt_ready[j]
    error = result.get("error") or (gt if isinstance(gt, str) else None)
    if error:
        evaluation.add_missing(stamp, "error", error, index=index)
        return
    evaluation.add(stamp, result["pred"], gt, result["rgb"], gt_stamp_ns=scan.gt_stamps[j], index=index)


def _release(gt_ready: dict[int, Any], j: int, index: int, last_use: dict[int, int]) -> None:
    if last_use.get(j) == index:
        gt_ready.pop(j, None)


def _meta(opts: BagEvalOptions, scan: _Scan, registration: Registration | None, predictor: Any,
          pairs: list[int | None], topics: dict[str, tuple[str, int]]) -> dict[str, Any]:
    return {
        "mode": "offline (fusanet bag-eval)",
        "bag": str(Path(opts.bag).resolve()),
        "image_topic": f"{opts.image_topic} ({len(scan.image_stamps)} frames)",
        "depth_topic": f"{opts.depth_topic} ({len(scan.gt_stamps)} frames)",
        "checkpoint": str(opts.checkpoint or "bundled default"),
        "model": f"{predictor.cfg.preset} preset, network input {predictor.input_size[0]}x{predictor.input_size[1]}, "
                 f"{predictor.device}",
        "pairing": f"nearest {scan.stamp_source} stamp within {opts.slop:g} s: "
                   f"{sum(p is not None for p in pairs)} of {len(pairs)} paired",
        "registration": registration.describe() if registration else "none (ground truth already in the colour camera)",
        "depth_scale": f"{opts.depth_scale:g} m per unit of 16UC1/mono16 ground truth",
    }
