"""Benchmark the depth node over DDS: 640x480 rgb8 at 30 Hz in, what comes out.

Three processes on one host, as in a robot: a camera stand-in (this script with --publisher)
publishing a real 640x480 frame + camera_info at --rate Hz with the send time as stamp, the depth
node (started by the fusanet runner), and this process subscribing to depth, confidence,
depth/camera_info, points and /diagnostics.

Reported: input and output rate, end-to-end latency (stamp -> received here) and in-node latency
(callback -> publish) p50/p95, drop rate, the Predictor's own time (inside the node, and standalone
in this process before the run), and the node overhead = callback-to-publish time minus predict
time (conversion, postprocessing, message building, publishing, cloud), measured inside the node.

Usage:
    python bench/bench_node.py [--checkpoint FILE | --preset small] [--seconds 30] [--rate 30]
                               [--threads N] [--input-size H W]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
import platform
import sys
import tempfile
import time

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fusanet_core.evaluation.metrics import timing_summary  # noqa: E402
from fusanet_ros.nodes import conversions as conv  # noqa: E402

FRAME = ROOT / "sample" / "tum_rgbd" / "00.color.jpg"
K = (520.9, 521.0, 325.1, 249.7)
IMAGE, INFO = "/bench/color/image_raw", "/bench/color/camera_info"


def publisher(rate: float, seconds: float) -> int:
    """Camera stand-in: publish the frame at `rate` Hz, stamped with the wall-clock send time."""
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image

    rgb = cv2.cvtColor(cv2.imread(str(FRAME)), cv2.COLOR_BGR2RGB)
    rclpy.init()
    node = rclpy.create_node("bench_camera")
    pub_img = node.create_publisher(Image, IMAGE, qos_profile_sensor_data)  # like a camera driver
    pub_info = node.create_publisher(CameraInfo, INFO, qos_profile_sensor_data)
    image, info = conv.rgb_to_image(rgb, "rgb8"), conv.make_camera_info(K, 640, 480)
    image.header.frame_id = info.header.frame_id = "camera_color_optical_frame"
    period, start, sent = 1.0 / rate, time.monotonic(), 0
    while time.monotonic() - start < seconds and rclpy.ok():
        now = time.time_ns()
        for msg in (info, image):
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(now, 10**9)
        pub_info.publish(info)
        pub_img.publish(image)
        sent += 1
        time.sleep(max(start + sent * period - time.monotonic(), 0))
    node.get_logger().info(f"sent {sent} frames in {time.monotonic() - start:.1f} s")
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


def standalone_predict_ms(checkpoint: Path, input_size: list[int] | None, threads: int, runs: int = 5) -> float:
    """Median Predictor.predict time in this process (same image, same intrinsics, same threads)."""
    import torch

    from fusanet_core.inference.predictor import Predictor

    if threads:
        torch.set_num_threads(threads)
    predictor = Predictor.from_checkpoint(checkpoint, "cpu", None, input_size)
    rgb = cv2.cvtColor(cv2.imread(str(FRAME)), cv2.COLOR_BGR2RGB)
    predictor.predict(rgb, K)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        predictor.predict(rgb, K)
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def run(args: argparse.Namespace) -> dict[str, float | str]:
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2

    from fusanet_ros.startup.dds import dds_env, pick_domain_id
    from fusanet_ros.startup.launch_description import depth_nodes
    from fusanet_ros.startup.probe import Probe
    from fusanet_ros.startup.runner import Runner

    checkpoint, model_note = _checkpoint(args)
    standalone = standalone_predict_ms(checkpoint, args.input_size, args.threads)
    domain = pick_domain_id()
    env = dds_env(domain)
    params = {"diagnostics_period": 1.0, "num_threads": args.threads}
    if args.input_size:
        params["input_size"] = args.input_size
    specs = depth_nodes(namespace="bench", image_topic=IMAGE, camera_info_topic=INFO, checkpoint=str(checkpoint),
                        device="cpu", extra_parameters=params)
    log_dir = Path(tempfile.mkdtemp(prefix="bench_node_"))
    received: list[tuple[int, int]] = []  # (stamp ns, receive ns)
    with Runner(specs, env, log_dir=log_dir) as runner, Probe(domain, "bench_sink") as probe:
        probe.node.create_subscription(Image, "/bench/depth/image",
                                       lambda m: received.append((conv.stamp_ns(m.header), time.time_ns())), 10)
        for topic, kind in (("/bench/confidence/image", Image), ("/bench/depth/camera_info", CameraInfo),
                            ("/bench/points", PointCloud2)):
            probe.record(kind, topic, keep=2)
        diagnostics = probe.record(DiagnosticArray, "/diagnostics", keep=5)
        if not probe.wait_for_subscriber(IMAGE, 180):
            raise RuntimeError(f"depth node did not start; see {log_dir}")
        camera = [sys.executable, __file__, "--publisher", "--rate", str(args.rate), "--seconds", str(args.seconds)]
        cam = runner.start_process("bench_camera", camera)
        probe.spin_until(lambda: cam.poll() is not None, args.seconds + 60)
        probe.spin_for(max(3.0, 2 * node_counters(diagnostics).get("model_p95_ms", 0) / 1000))  # drain + a final report
        diag = node_counters(diagnostics)
    e2e = timing_summary([(r - s) / 1e6 for s, r in received])
    frames_in = diag.get("frames_in", 0)
    return {
        "model": model_note, "frames_in": frames_in, "frames_out": len(received),
        "input_hz": frames_in / args.seconds, "output_hz": len(received) / args.seconds,
        "drop_rate": diag.get("dropped", 0) / max(frames_in, 1),
        "e2e_p50_ms": e2e["p50"], "e2e_p95_ms": e2e["p95"],
        "node_latency_p50_ms": diag.get("latency_p50_ms", float("nan")),
        "node_latency_p95_ms": diag.get("latency_p95_ms", float("nan")),
        "model_p50_ms": diag.get("model_p50_ms", float("nan")), "standalone_predict_ms": standalone,
        "overhead_p50_ms": diag.get("overhead_p50_ms", float("nan")),
        "overhead_p95_ms": diag.get("overhead_p95_ms", float("nan")),
        "overhead_cpu_p50_ms": diag.get("overhead_cpu_p50_ms", float("nan")),
        "overhead_cpu_p95_ms": diag.get("overhead_cpu_p95_ms", float("nan")),
    }


def _checkpoint(args: argparse.Namespace) -> tuple[Path, str]:
    """Return the given or bundled checkpoint, else an untrained one of --preset (same compute cost)."""
    from fusanet_core.checkpoint import DEFAULT_CHECKPOINT

    if args.checkpoint:
        return Path(args.checkpoint).resolve(), Path(args.checkpoint).name
    if DEFAULT_CHECKPOINT.is_file() and not args.preset:
        return DEFAULT_CHECKPOINT, DEFAULT_CHECKPOINT.name
    import fusanet_core
    from fusanet_core.checkpoint import save_checkpoint

    preset = args.preset or "small"
    cfg = fusanet_core.preset_config(preset)
    path = Path(tempfile.mkdtemp(prefix="bench_ckpt_")) / f"untrained_{preset}.pt"
    save_checkpoint(path, fusanet_core.build_model(cfg), cfg)
    return path, f"'{preset}' preset (untrained weights, same compute)"


def node_counters(messages: list, node: str = "bench/depth_node") -> dict[str, float]:
    """Return the numeric key/values of the newest status of `node` on /diagnostics."""
    for msg in reversed(messages):
        for status in msg.status:
            if status.name.startswith(f"{node}:"):
                out = {}
                for kv in status.values:
                    try:
                        out[kv.key] = float(kv.value)
                    except ValueError:
                        pass
                return out
    return {}


def report(r: dict, args: argparse.Namespace) -> str:
    ratio = r["overhead_p50_ms"] / r["model_p50_ms"] if r["model_p50_ms"] else float("nan")
    cpu_ratio = r["overhead_cpu_p50_ms"] / r["model_p50_ms"] if r["model_p50_ms"] else float("nan")
    size = "x".join(map(str, args.input_size)) if args.input_size else "checkpoint default"
    size += f", {args.threads or 'default'} torch thread(s)"
    return "\n".join([
        f"depth node benchmark: 640x480 rgb8 at {args.rate:g} Hz for {args.seconds:g} s, {r['model']}, "
        f"network input {size}",
        f"  machine       {platform.node()} {os.cpu_count()} CPUs "
        f"({platform.processor() or platform.machine()}), no GPU",
        f"  rate          in {r['input_hz']:.1f} Hz, out {r['output_hz']:.2f} Hz "
        f"({r['frames_out']} of {r['frames_in']:.0f} frames), "
        f"dropped {100 * r['drop_rate']:.0f} % (stale frames replaced in the 1-slot mailbox)",
        f"  latency       end-to-end p50 {r['e2e_p50_ms']:.0f} ms / p95 {r['e2e_p95_ms']:.0f} ms; "
        f"in node (callback -> publish) "
        f"p50 {r['node_latency_p50_ms']:.0f} / p95 {r['node_latency_p95_ms']:.0f} ms",
        f"  model         predict p50 {r['model_p50_ms']:.0f} ms in the node, "
        f"{r['standalone_predict_ms']:.0f} ms standalone",
        f"  overhead      wall p50 {r['overhead_p50_ms']:.2f} ms / p95 {r['overhead_p95_ms']:.2f} ms per frame "
        f"= {100 * ratio:.1f} % of model time; "
        f"CPU p50 {r['overhead_cpu_p50_ms']:.2f} ms / p95 {r['overhead_cpu_p95_ms']:.2f} ms = {100 * cpu_ratio:.1f} % "
        f"(targets: <= 3 ms and <= 10 %)",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="checkpoint (default: bundled, else an untrained --preset model)")
    parser.add_argument("--preset", help="untrained preset to time instead of the bundled model (tiny/small/paper)")
    parser.add_argument("--input-size", nargs=2, type=int, metavar=("H", "W"), help="network input size")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads in the node (default 1: leaves a core for DDS on a shared 2-core CPU; "
                             "0 = torch default)")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--publisher", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.publisher:
        return publisher(args.rate, args.seconds)
    print(report(run(args), args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
