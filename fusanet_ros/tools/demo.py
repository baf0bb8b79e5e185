"""`fusanet demo`: replay the bundled RGB-D bag into the depth node and save what it publishes.

Three processes talk over real DDS: the depth node and the bag player (started by the runner with
the DDS environment described in docs/ros.md), and a recorder node in this process. Saved under
--out: per frame a 16-bit depth PNG (mm), a confidence PNG and a preview (colour | predicted depth |
bag depth | colour bar in metres), the last point cloud as PLY, the node logs and summary.txt (also printed).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
import os
from pathlib import Path
import sys
import time
from typing import Any

import numpy as np

from fusanet_ros.startup.dds import dds_env, pick_domain_id
from fusanet_ros.startup.launch_description import depth_nodes, player_process, share_path
from fusanet_ros.startup.runner import Runner


IMAGE_TOPIC = "/camera/color/image_raw"
INFO_TOPIC = "/camera/color/camera_info"
DEPTH_TOPIC = "/camera/depth/image_raw"
NAMESPACE = "fusanet"
MAX_DOMAIN_ID = 232  # the largest ROS_DOMAIN_ID whose RTPS ports fit in 16 bits
# Demo parameters: a denser cloud than the default for a nicer PLY; everything else from depth.yaml.
DEMO_PARAMETERS = {"cloud.stride": 2, "cloud.color": True, "skip_when_unsubscribed": False}


def default_bag() -> Path:
    """Return the bundled sample bag: share/fusanet/sample/tum_rgbd_bag when installed, else the source tree's."""
    return share_path("sample", "tum_rgbd_bag")


def add_demo_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="replay the bundled RGB-D bag into the depth node over DDS and save its outputs")
    p.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    p.add_argument("--checkpoint", help="checkpoint file (default: the bundled one)")
    p.add_argument("--device", default="", help="auto | cpu | cuda[:N] (default: depth.yaml's)")
    p.add_argument("--bag", help="ROS 2 / ROS 1 bag with colour, camera_info and optionally registered depth "
                                 "(default: the bundled sample)")
    p.add_argument("--rate", type=float, default=1.0, help="playback rate factor (default: 1.0)")
    p.add_argument("--param", action="append", default=[], metavar="NAME:=VALUE", help="extra node parameter")
    p.add_argument("--timeout", type=float, default=300.0, help="give up after this many seconds (default: 300)")
    p.add_argument("--domain-id", type=int, help="ROS_DOMAIN_ID of the demo's processes (default: the environment's "
                                                 "ROS_DOMAIN_ID; when unset, a free one is picked)")
    p.set_defaults(run=run_demo)


@dataclass
class Recorded:
    """What the recorder node received, keyed by header stamp (ns)."""

    depth: dict[int, np.ndarray] = field(default_factory=dict)
    confidence: dict[int, np.ndarray] = field(default_factory=dict)
    frame_ids: dict[int, str] = field(default_factory=dict)
    cloud: Any = None
    diagnostics: dict[str, str] = field(default_factory=dict)


def run_demo(args: argparse.Namespace) -> int:
    from fusanet_ros.startup.launch_description import parse_param

    bag = Path(args.bag) if args.bag else default_bag()
    checkpoint = _checkpoint(args.checkpoint)
    truth = load_bag_frames(bag)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    extra = {**DEMO_PARAMETERS, **dict(parse_param(p) for p in args.param)}
    specs = depth_nodes(namespace=NAMESPACE, image_topic=IMAGE_TOPIC, camera_info_topic=INFO_TOPIC,
                        checkpoint=str(checkpoint), device=args.device, extra_parameters=extra)
    domain, domain_source = choose_domain_id(args.domain_id)
    env = dds_env(domain)
    player = player_process(bag, (IMAGE_TOPIC, INFO_TOPIC), args.rate, wait_for_subscribers=30)
    runner = Runner(specs, env, log_dir=out / "logs")
    started = time.monotonic()
    try:
        with runner:
            recorded, published = _record(runner, player, env, args.timeout)
    except RuntimeError as err:  # a child died: say which and where its log is
        print(f"fusanet demo: error: {err} (logs: {out / 'logs'})", file=sys.stderr)
        return 1
    summary = write_outputs(out, recorded, truth, bag, published, time.monotonic() - started,
                            domain=f"{domain} ({domain_source})")
    print(summary)
    return 0 if recorded.depth else 1


def choose_domain_id(requested: int | None, environ: Mapping[str, str] | None = None,
                     pick: Callable[[], int] = pick_domain_id) -> tuple[int, str]:
    """Return the demo's ROS_DOMAIN_ID and where it came from.

    `--domain-id` first, then a non-empty ROS_DOMAIN_ID in `environ` (default os.environ); only
    when neither is set is a free one picked (`pick`, no live Fast DDS participant on its ports).
    """
    environ = os.environ if environ is None else environ
    if requested is not None:
        value, source = requested, "--domain-id"
    elif environ.get("ROS_DOMAIN_ID", "").strip():
        text = environ["ROS_DOMAIN_ID"].strip()
        try:
            value, source = int(text), "ROS_DOMAIN_ID"
        except ValueError:
            raise ValueError(f"ROS_DOMAIN_ID must be an integer, got {text!r}") from None
    else:
        return pick(), "picked: no ROS_DOMAIN_ID set"
    if not 0 <= value <= MAX_DOMAIN_ID:
        raise ValueError(f"{source} must be in 0-{MAX_DOMAIN_ID} (0-101 is safe on Linux), got {value}")
    return value, f"from {source}"


def _checkpoint(path: str | None) -> Path:
    if path:
        if not Path(path).is_file():
            raise FileNotFoundError(f"checkpoint not found: {path}")
        return Path(path).resolve()
    from fusanet_core.checkpoint import DEFAULT_CHECKPOINT

    if not DEFAULT_CHECKPOINT.is_file():
        raise FileNotFoundError(f"bundled checkpoint missing ({DEFAULT_CHECKPOINT}); pass --checkpoint FILE")
    return DEFAULT_CHECKPOINT


def load_bag_frames(bag: Path) -> dict[int, dict[str, np.ndarray]]:
    """Stamp (ns) -> {"rgb": HxWx3, "depth": HxW metres (NaN invalid)} of the bag's colour and depth."""
    from fusanet_core.io.bags import bag_topics, open_bag, require_topics
    from fusanet_ros.nodes import conversions as conv

    frames: dict[int, dict[str, np.ndarray]] = {}
    reader = open_bag(bag)
    try:
        require_topics(bag_topics(reader), IMAGE_TOPIC, ("sensor_msgs/msg/Image",), "colour", bag)
        conns = [c for c in reader.connections if c.topic in (IMAGE_TOPIC, DEPTH_TOPIC)]
        for conn, _, raw in reader.messages(connections=conns):
            msg = reader.deserialize(raw, conn.msgtype)
            key = "rgb" if conn.topic == IMAGE_TOPIC else "depth"
            array = conv.image_to_rgb(msg) if key == "rgb" else conv.image_to_depth(msg)
            frames.setdefault(conv.stamp_ns(msg.header), {})[key] = array
    finally:
        reader.close()
    return frames


def _record(runner: Runner, player_cmd: list[str], env: dict[str, str], timeout: float) -> tuple[Recorded, int]:
    """Spin a recorder node until the player is done and the depth node has caught up."""
    import rclpy

    for key in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "FASTDDS_DEFAULT_PROFILES_FILE"):
        os.environ[key] = env[key]  # this process is a DDS participant too
    rclpy.init(domain_id=int(env["ROS_DOMAIN_ID"]))
    recorded = Recorded()
    node = rclpy.create_node("fusanet_demo_recorder")
    try:
        _subscribe(node, recorded)
        deadline = time.monotonic() + timeout
        _spin_until(node, lambda: node.count_subscribers(IMAGE_TOPIC) > 0, deadline, runner, "the depth node to start")
        player = runner.start_process("bag_player", player_cmd)
        _spin_until(node, lambda: player.poll() is not None, deadline, runner, "the bag to finish")
        published = _count_published(runner)
        _spin_until(node, lambda: _caught_up(recorded, published), deadline, runner, "the last frame",
                    allow_timeout=True)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return recorded, published


def _subscribe(node: Any, recorded: Recorded) -> None:
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import Image, PointCloud2

    from fusanet_ros.nodes import conversions as conv

    def on_depth(msg: Any) -> None:
        recorded.depth[conv.stamp_ns(msg.header)] = conv.image_to_depth(msg)
        recorded.frame_ids[conv.stamp_ns(msg.header)] = msg.header.frame_id

    def on_conf(msg: Any) -> None:
        recorded.confidence[conv.stamp_ns(msg.header)] = conv.image_to_array(msg)

    def on_diag(msg: Any) -> None:
        for status in msg.status:
            if status.name.startswith(f"{NAMESPACE}/depth_node:"):
                recorded.diagnostics = {kv.key: kv.value for kv in status.values}

    ns = f"/{NAMESPACE}"
    node.create_subscription(Image, f"{ns}/depth/image", on_depth, 10)
    node.create_subscription(Image, f"{ns}/confidence/image", on_conf, 10)
    node.create_subscription(PointCloud2, f"{ns}/points", lambda m: setattr(recorded, "cloud", m), 10)
    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)


def _spin_until(node: Any, done: Any, deadline: float, runner: Runner, what: str, allow_timeout: bool = False) -> None:
    import rclpy

    while not done():
        if "depth_node" not in runner.running():
            log = runner.log_dir / "depth_node.log" if runner.log_dir else None
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log and log.is_file() else []
            raise RuntimeError(f"the depth node exited while waiting for {what}" + (f": {tail[0]}" if tail else ""))
        if time.monotonic() > deadline:
            if allow_timeout:
                return
            raise TimeoutError(f"timed out waiting for {what}")
        rclpy.spin_once(node, timeout_sec=0.1)


def _count_published(runner: Runner) -> int:
    """Colour frames the player sent: from its log line, else unknown (-1)."""
    log = runner.log_dir / "bag_player.log" if runner.log_dir else None
    text = log.read_text(errors="replace") if log and log.is_file() else ""
    for line in text.splitlines():
        if "published" in line and "messages" in line:
            words = line.split()
            return int(words[words.index("published") + 1]) // 2  # colour + camera_info per frame
    return -1


def _caught_up(recorded: Recorded, published: int) -> bool:
    """Return True once the node has accounted for every frame it received (served, dropped or rejected)."""
    diag = recorded.diagnostics
    if not diag:
        return False
    outcomes = ("frames_out", "dropped", "skipped_no_subscribers", "bad_image", "waiting_camera_info",
                "inference_errors")
    handled = sum(int(diag.get(k, 0)) for k in outcomes)
    frames_in = int(diag.get("frames_in", 0))
    return (frames_in >= max(published, 1) and handled >= frames_in
            and len(recorded.depth) >= int(diag.get("frames_out", 0)))


def write_outputs(out: Path, rec: Recorded, truth: dict[int, dict[str, np.ndarray]], bag: Path, published: int,
                  seconds: float, domain: str = "") -> str:
    """Write PNGs, the PLY and summary.txt; return the summary text."""
    from fusanet_core.evaluation.scoring import Evaluation
    from fusanet_core.io.images import write_confidence_png, write_depth_png, write_rgb
    from fusanet_core.io.preview import depth_preview

    frames = out / "frames"
    evaluation = Evaluation()  # the bag-eval scoring rules: caps, validity, coverage
    for i, stamp in enumerate(sorted(rec.depth)):
        depth = rec.depth[stamp]
        name = f"{i:03d}_{stamp // 10**9}.{stamp % 10**9 // 10**6:03d}"
        write_depth_png(frames / f"{name}_depth.png", depth)
        if stamp in rec.confidence:
            write_confidence_png(frames / f"{name}_confidence.png", rec.confidence[stamp])
        gt = truth.get(stamp, {})
        top = float(np.nanpercentile(depth, 98)) if np.isfinite(depth).any() else 1.0
        if "depth" in gt:
            evaluation.add(stamp, depth, gt["depth"])
        # colour | predicted depth | bag depth (same scale) | colour bar in metres
        sensor = [gt["depth"]] if "depth" in gt else []
        write_rgb(frames / f"{name}_preview.png", depth_preview(gt.get("rgb"), depth, top, sensor))
    ply_points = write_ply(out / "cloud.ply", rec.cloud) if rec.cloud is not None else 0
    summary = _summary(out, rec, bag, published, evaluation, ply_points, seconds, domain)
    (out / "summary.txt").write_text(summary + "\n")
    return summary


def _summary(out: Path, rec: Recorded, bag: Path, published: int, evaluation: Any, ply_points: int, seconds: float,
             domain: str = "") -> str:
    d = rec.diagnostics
    depths = [v[np.isfinite(v)] for v in rec.depth.values()]
    all_depth = np.concatenate(depths) if depths else np.zeros(0)
    conf = np.concatenate([c.reshape(-1) for c in rec.confidence.values()]) if rec.confidence else np.zeros(0)
    lines = [f"FuSaNet demo: {bag} -> {out}  ({seconds:.0f} s)",
             f"  model      {d.get('model', '?')} on {d.get('device', '?')}, "
             f"network input {d.get('network_input', '?')}",
             f"  frames     {published if published >= 0 else '?'} sent by the bag player, "
             f"{d.get('frames_in', '?')} received by the node, "
             f"{len(rec.depth)} depth maps out, {d.get('dropped', '0')} dropped while busy",
             f"  latency    p50 {_ms(d.get('latency_p50_ms'))}, p95 {_ms(d.get('latency_p95_ms'))} "
             f"(receive -> publish); "
             f"model p50 {_ms(d.get('model_p50_ms'))}, node overhead p50 {_ms(d.get('overhead_p50_ms'))}"]
    if all_depth.size:
        confidence = f", confidence mean {conf.mean():.2f}" if conf.size else ""
        lines.append(f"  depth      {all_depth.min():.2f} - {all_depth.max():.2f} m "
                     f"(median {np.median(all_depth):.2f} m){confidence}")
    scored = evaluation.summary()
    if scored is not None:
        lines.append(f"  vs bag depth  abs_rel {scored['abs_rel']:.3f}, rmse {scored['rmse']:.3f} m "
                     f"({scored['n_images']} frames, {100 * scored['coverage']:.0f} % of pixels scored)")
    elif evaluation.frames:
        lines.append(f"  vs bag depth  nothing scored ({evaluation.main_skip()[1]})")
    else:
        lines.append("  vs bag depth  (the bag has no depth registered to colour)")
    lines.append(f"  cloud      {out / 'cloud.ply'} ({ply_points:,} points)" if ply_points
                 else "  cloud      none received")
    if domain:
        lines.append(f"  dds        ROS_DOMAIN_ID {domain}")
    lines.append(f"  files      {out / 'frames'}/*_depth.png (16-bit mm), *_confidence.png, *_preview.png; "
                 f"logs in {out / 'logs'}")
    return "\n".join(line for line in lines if line)


def _ms(value: str | None) -> str:
    try:
        return f"{float(value):.0f} ms"
    except (TypeError, ValueError):
        return "?"


def write_ply(path: Path, cloud: Any) -> int:
    """Binary little-endian PLY of the finite points of a PointCloud2 (with colour if present)."""
    from fusanet_ros.nodes import conversions as conv

    names = [f.name for f in cloud.fields]
    fields = conv.read_cloud_fields(cloud, ("x", "y", "z", "rgb") if "rgb" in names else ("x", "y", "z"))
    xyz = np.stack([fields[n].reshape(-1) for n in ("x", "y", "z")], axis=1).astype("<f4")
    keep = np.all(np.isfinite(xyz), axis=1)
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {int(keep.sum())}",
              "property float x", "property float y", "property float z"]
    if "rgb" in fields:
        rgb = conv.unpack_rgb(fields["rgb"].reshape(-1))[keep]
        header += ["property uchar red", "property uchar green", "property uchar blue"]
        rows = np.zeros(int(keep.sum()), dtype=[("xyz", "<f4", 3), ("rgb", "u1", 3)])
        rows["xyz"], rows["rgb"] = xyz[keep], rgb
    else:
        rows = xyz[keep]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(("\n".join(header + ["end_header"]) + "\n").encode())
        handle.write(rows.tobytes())
    return int(keep.sum())
