"""Soak test of the depth node: a 30 Hz VGA camera into the node for N minutes.

Three processes, as in bench_node.py: the camera stand-in (bench_node.py --publisher, 640x480
rgb8 + camera_info stamped with the send time), the depth node (started by the fusanet runner)
and this process, subscribed to the node's depth image and /diagnostics.

Every --sample seconds it records the node's resident memory (VmRSS of its process), the output
rate, the end-to-end latency (stamp -> received here) of the frames of that interval and the
node's own drop counter. At the end: start/end RSS, the RSS slope (least squares, MB per minute),
and per block of --block seconds the output rate and latency p50/p95, so that a leak or a drift
shows up as a slope or as blocks that get worse. Results go to stdout and, with --json, a file.

Usage:
    python bench/soak.py [--minutes 10] [--rate 30] [--sample 10] [--block 120] [--threads 1]
                         [--checkpoint FILE] [--json out/soak.json]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import platform
import sys
import tempfile
import time

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

# E402, I100: bench_node is importable only after the sys.path insert above
from bench_node import IMAGE, INFO, node_counters  # noqa: E402, I100  (the camera stand-in's topics)

from fusanet_core.evaluation.metrics import timing_summary  # noqa: E402

NAMESPACE = "soak"
DEPTH = f"/{NAMESPACE}/depth/image"


def rss_mb(pid: int) -> float:
    """Resident set size of a process in MB (VmRSS), NaN once it has exited."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def soak(args: argparse.Namespace) -> dict:
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import Image

    from fusanet_ros.nodes import conversions as conv
    from fusanet_ros.startup.dds import dds_env, pick_domain_id
    from fusanet_ros.startup.launch_description import depth_nodes
    from fusanet_ros.startup.probe import Probe
    from fusanet_ros.startup.runner import Runner

    domain = pick_domain_id()
    params = {"diagnostics_period": 1.0, "num_threads": args.threads}
    specs = depth_nodes(namespace=NAMESPACE, image_topic=IMAGE, camera_info_topic=INFO,
                        checkpoint=args.checkpoint or "", device="cpu", extra_parameters=params)
    log_dir = Path(tempfile.mkdtemp(prefix="soak_"))
    received: list[tuple[int, int]] = []  # (stamp ns, receive ns)
    samples: list[dict] = []
    seconds = 60.0 * args.minutes
    with Runner(specs, dds_env(domain), log_dir=log_dir) as runner, Probe(domain, "soak_sink") as probe:
        node_pid = runner.procs[0][1].pid
        probe.node.create_subscription(Image, DEPTH,
                                       lambda m: received.append((conv.stamp_ns(m.header), time.time_ns())), 10)
        diagnostics = probe.record(DiagnosticArray, "/diagnostics", keep=5)
        if not probe.wait_for_subscriber(IMAGE, 180):
            raise RuntimeError(f"depth node did not start; see {log_dir}")
        probe.spin_for(2.0)
        camera = [sys.executable, str(ROOT / "bench" / "bench_node.py"), "--publisher", "--rate", str(args.rate),
                  "--seconds", str(seconds)]
        start = time.monotonic()
        cam = runner.start_process("soak_camera", camera)
        last_count, last_t = 0, start
        while cam.poll() is None:
            probe.spin_for(max(0.0, last_t + args.sample - time.monotonic()))
            now = time.monotonic()
            batch = received[last_count:]
            lat = timing_summary([(r - s) / 1e6 for s, r in batch])
            counters = node_counters(diagnostics, f"{NAMESPACE}/depth_node")
            samples.append({"t_s": round(now - start, 1), "rss_mb": rss_mb(node_pid),
                            "out_hz": len(batch) / (now - last_t),
                            "latency_p50_ms": lat["p50"], "latency_p95_ms": lat["p95"],
                            "frames_in": counters.get("frames_in", float("nan")),
                            "dropped": counters.get("dropped", float("nan"))})
            print(json.dumps(samples[-1]), flush=True)
            last_count, last_t = len(received), now
    return {"samples": samples, "e2e": [(r - s) / 1e6 for s, r in received], "seconds": seconds}


def summarise(result: dict, block_s: float) -> dict:
    """Start/end RSS, RSS slope and per-block rate/latency from the samples."""
    samples = [s for s in result["samples"] if np.isfinite(s["rss_mb"])]
    t = np.array([s["t_s"] for s in samples])
    rss = np.array([s["rss_mb"] for s in samples])
    slope = float(np.polyfit(t / 60.0, rss, 1)[0]) if len(t) >= 2 else float("nan")
    blocks = []
    for lo in np.arange(0.0, result["seconds"], block_s):
        inside = [s for s in result["samples"] if lo < s["t_s"] <= lo + block_s]
        if not inside:
            continue
        blocks.append({"block": f"{lo / 60:.0f}-{(lo + block_s) / 60:.0f} min",
                       "out_hz": float(np.mean([s["out_hz"] for s in inside])),
                       "latency_p50_ms": float(np.nanmedian([s["latency_p50_ms"] for s in inside])),
                       "latency_p95_ms": float(np.nanmax([s["latency_p95_ms"] for s in inside])),
                       "rss_end_mb": inside[-1]["rss_mb"]})
    last = result["samples"][-1] if result["samples"] else {}
    return {"rss_start_mb": float(rss[0]) if len(rss) else float("nan"),
            "rss_end_mb": float(rss[-1]) if len(rss) else float("nan"),
            "rss_max_mb": float(rss.max()) if len(rss) else float("nan"), "rss_slope_mb_per_min": slope,
            "e2e": timing_summary(result["e2e"]), "frames_out": len(result["e2e"]),
            "frames_in": last.get("frames_in"), "dropped": last.get("dropped"), "blocks": blocks}


def report(summary: dict, args: argparse.Namespace) -> str:
    lines = [f"soak: 640x480 rgb8 at {args.rate:g} Hz for {args.minutes:g} min, {args.threads} torch thread(s), "
             f"{args.checkpoint or 'bundled checkpoint'}; {platform.node()} {os.cpu_count()} CPUs",
             f"  RSS           start {summary['rss_start_mb']:.0f} MB, end {summary['rss_end_mb']:.0f} MB, max "
             f"{summary['rss_max_mb']:.0f} MB, slope {summary['rss_slope_mb_per_min']:+.2f} MB/min",
             f"  frames        in {summary['frames_in']}, out {summary['frames_out']}, dropped {summary['dropped']}",
             f"  latency       end-to-end p50 {summary['e2e']['p50']:.0f} ms / p95 {summary['e2e']['p95']:.0f} ms",
             "  | block | out Hz | latency p50 ms | latency p95 ms | RSS at end MB |",
             "  |---|---|---|---|---|"]
    for b in summary["blocks"]:
        lines.append(f"  | {b['block']} | {b['out_hz']:.2f} | {b['latency_p50_ms']:.0f} | {b['latency_p95_ms']:.0f} | "
                     f"{b['rss_end_mb']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between samples (default 10)")
    parser.add_argument("--block", type=float, default=120.0, help="seconds per summary block (default 120)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the node (default 1)")
    parser.add_argument("--checkpoint", help="checkpoint (default: the bundled one)")
    parser.add_argument("--json", help="also write samples and summary to this JSON file")
    args = parser.parse_args(argv)
    result = soak(args)
    summary = summarise(result, args.block)
    print(report(summary, args))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"summary": summary, "samples": result["samples"]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
