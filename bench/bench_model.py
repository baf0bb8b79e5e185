"""Network benchmark: parameters, multiply-accumulates, CPU latency, FuSaNet presets vs FastDepth.

Usage: python bench/bench_model.py [--threads 1] [--rounds 10] [--json out.json] [--no-onnx]
       [--presets paper,paper_lite0,lite,small,unet,fast] [--saliency-ratio]

For every preset and FastDepth (bench/fastdepth.py): parameters, MACs (torch FlopCounterMode,
MACs = FLOPs / 2; random weights, no input points, so FuSaNet's second pass carries the 200
salient points) at 228x304, 240x320 and 480x640, and latency at 240x320 in PyTorch eager (NCHW),
channels_last and ONNX Runtime (CPU provider, the exported RGB-only graph: `export.export_model`
with 0 point rows; FastDepth through torch.onnx.export), plus FuSaNet end to end through
`Predictor.predict` on a real 640x480 frame (network input 240x320): the torch backend
(channels_last as configured) and the onnxruntime backend (RGB-only graph).

Every latency variant of every model runs in ONE round-robin loop (each round times each variant
once) so that load from other processes hits them alike; medians over the rounds are reported, and
ratios to FastDepth from the same rounds. Compare ratios, not absolute times across runs.
"""

from __future__ import annotations

import argparse
import copy
from dataclasses import replace
import json
import os
from pathlib import Path
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

from fastdepth import conv_weights, FastDepth  # noqa: E402, I100 (needs the sys.path insert above)

from fusanet_core import preset_config  # noqa: E402
from fusanet_core.model import build_model, FuSaNet  # noqa: E402

MAC_SIZES = {"228x304": (228, 304), "240x320": (240, 320), "480x640": (480, 640)}
LATENCY_SIZE = (240, 320)
PRESETS = ("paper", "paper_lite0", "lite", "lite_fast", "small", "unet", "fast")
FRAME = ROOT / "sample" / "tum_rgbd" / "00.color.jpg"
# The FastDepth variant an end-to-end Predictor time is compared with (FastDepth has no Predictor).
REFERENCE = {"predictor": "channels_last", "predictor_onnxruntime": "onnxruntime"}


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def parameter_table(model: FuSaNet) -> list[tuple[str, int]]:
    net = model.fusion_net
    rows = [("fusion_net.stem", count(net.stem))]
    for k, block in enumerate(net.blocks):
        for part, sub in block.named_children():
            rows.append((f"fusion_net.blocks.{k}.{part}", count(sub)))
        extra = count(block) - sum(count(s) for _, s in block.named_children())
        if extra:
            rows.append((f"fusion_net.blocks.{k}.(other)", extra))
    if model.saliency_net is not None:
        rows.append(("saliency_net", count(model.saliency_net)))
    rows.append(("total", count(model)))
    return rows


def macs(model: torch.nn.Module, size: tuple[int, int]) -> float:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.rand(1, 3, *size))
    return counter.get_total_flops() / 2  # FLOPs counted as 2 per multiply-accumulate


def build(name: str, saliency: bool | None = None) -> torch.nn.Module:
    """Build a preset's network (random init, ImageNet weights never loaded) or FastDepth, in eval mode."""
    if name == "fastdepth":
        return FastDepth().eval()
    cfg = preset_config(name).model
    if saliency is not None:
        cfg = replace(cfg, use_saliency=saliency)
    return build_model(cfg, pretrained=False).eval()


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or platform.machine()


def onnx_session(name: str, model: torch.nn.Module, directory: str, threads: int):
    """Return an onnxruntime CPU session of the model at LATENCY_SIZE and its feeds, or (None, reason)."""
    import numpy as np
    import onnxruntime as ort

    from fusanet_core.inference import export, onnx_graph

    path = os.path.join(directory, f"{name}.onnx")
    h, w = LATENCY_SIZE
    try:
        if name == "fastdepth":
            torch.onnx.export(copy.deepcopy(model), (torch.rand(1, 3, h, w),), path, input_names=["rgb"],
                              opset_version=onnx_graph.DEFAULT_OPSET, dynamo=False)
        else:  # the RGB-only graph (0 input point rows; the salient points are inside it)
            export.export_model(copy.deepcopy(model), path, LATENCY_SIZE, max_points=0)
    except Exception as err:  # report and go on: the other variants still run
        return None, f"export failed: {str(err).splitlines()[0][:160]}"
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    rgb = np.random.default_rng(0).random((1, 3, h, w), dtype=np.float32)
    given = {"rgb": rgb, "intrinsics": onnx_graph.default_intrinsics_array(h, w)}
    feeds = {i.name: given[i.name] for i in session.get_inputs()}
    return (session, feeds), None


def predictor_for(name: str, backend: str = "torch", cache_dir: str | None = None):
    """Build a Predictor around a random-weight preset network at 240x320 (the default inference size).

    The onnxruntime backend uses the RGB-only graph (max_points 0), exported into `cache_dir`.
    """
    from fusanet_core.inference.predictor import Predictor

    cfg = preset_config(name)
    cfg.inference.input_size = LATENCY_SIZE
    if backend == "torch":
        return Predictor(build(name), cfg, device="cpu")
    predictor = Predictor(build(name), cfg, device="cpu", backend=backend, max_points=0, cache_dir=cache_dir)
    predictor.onnx_sessions()  # export now, not inside the timing loop
    return predictor


def interleaved(calls: dict[str, callable], rounds: int) -> dict[str, list[float]]:
    """Seconds per call, round-robin: each round runs every call once, in a fixed order."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for fn in calls.values():  # warm-up (allocator, oneDNN primitives, ORT arenas)
        fn()
        fn()
    for _ in range(rounds):
        for name, fn in calls.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def saliency_ratio(rounds: int) -> dict[str, float]:
    """Time the former report: paper / small with and without the Saliency-Net, eager and channels_last."""
    calls = {}
    for preset in ("paper", "small"):
        for sal in (True, False):
            for size_name, size in (("480x640", (480, 640)), ("240x320", LATENCY_SIZE)):
                for cl in (False, True):
                    model, x = build(preset, sal), torch.rand(1, 3, *size)
                    if cl:
                        model.to(memory_format=torch.channels_last)
                        x = x.contiguous(memory_format=torch.channels_last)
                    name = f"{preset} {'+sal' if sal else '-sal'} @ {size_name} {'channels_last' if cl else 'eager'}"
                    calls[name] = _forward(model, x)
    return {k: statistics.median(v) * 1000 for k, v in interleaved(calls, rounds).items()}


def _forward(model: torch.nn.Module, x: torch.Tensor):
    def run():
        with torch.inference_mode():
            model(x)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--presets", default=",".join(PRESETS))
    parser.add_argument("--no-onnx", action="store_true", help="skip the ONNX Runtime variant")
    parser.add_argument("--saliency-ratio", action="store_true", help="also the with / without Saliency-Net loop")
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    presets = [p for p in args.presets.split(",") if p]
    names = [*presets, "fastdepth"]
    report: dict = {
        "cpu": cpu_name(), "threads": torch.get_num_threads(), "torch": torch.__version__,
        "rounds": args.rounds, "load_average": os.getloadavg(),
    }
    try:
        import onnxruntime

        report["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        args.no_onnx = True
    print(f"CPU: {report['cpu']}, {report['threads']} thread(s), torch {torch.__version__}, "
          f"onnxruntime {report.get('onnxruntime', '-')}, load average at start {report['load_average']}")

    if "paper" in presets:
        report["parameters_paper"] = parameter_table(build("paper"))

    models = {name: build(name) for name in names}
    report["models"] = {}
    for name, model in models.items():
        row = {"parameters": count(model)}
        if name == "fastdepth":
            row["conv_weights"] = conv_weights(model)
        row["gmac"] = {s: macs(model, size) / 1e9 for s, size in MAC_SIZES.items()}
        report["models"][name] = row
        gmac = "  ".join(f"{s}: {g:6.2f} GMAC" for s, g in row["gmac"].items())
        print(f"  {name:12s} {row['parameters'] / 1e6:6.3f} M  {gmac}")

    x = torch.rand(1, 3, *LATENCY_SIZE)
    calls, skipped = {}, {}
    with tempfile.TemporaryDirectory(prefix="bench_model_") as tmp:
        for name, model in models.items():
            calls[f"{name}|eager"] = _forward(model, x)
            cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
            calls[f"{name}|channels_last"] = _forward(cl, x.contiguous(memory_format=torch.channels_last))
            if not args.no_onnx:
                made, why = onnx_session(name, model, tmp, args.threads)
                if made is None:
                    skipped[f"{name}|onnxruntime"] = why
                    print(f"  {name}: ONNX Runtime skipped ({why})")
                else:
                    session, feeds = made
                    calls[f"{name}|onnxruntime"] = lambda s=session, f=feeds: s.run(None, f)
        if FRAME.is_file():
            from fusanet_core.io.images import read_rgb

            frame = read_rgb(FRAME)
            report["frame"] = f"{FRAME.relative_to(ROOT)} ({frame.shape[1]}x{frame.shape[0]})"
            for name in presets:
                if preset_config(name).model.arch == "fusanet":
                    predictor = predictor_for(name)
                    calls[f"{name}|predictor"] = lambda p=predictor: p.predict(frame)
                    if not args.no_onnx:
                        try:
                            ort_predictor = predictor_for(name, "onnxruntime", os.path.join(tmp, "cache"))
                        except Exception as err:  # report and go on
                            skipped[f"{name}|predictor_onnxruntime"] = str(err).splitlines()[0][:160]
                        else:
                            calls[f"{name}|predictor_onnxruntime"] = lambda p=ort_predictor: p.predict(frame)
        print(f"\n{len(calls)} variants, {args.rounds} interleaved rounds ...", flush=True)
        times = interleaved(calls, args.rounds)
    report["load_average_end"] = os.getloadavg()
    median_ms = {k: statistics.median(v) * 1000 for k, v in times.items()}
    report["latency_ms"] = median_ms
    report["latency_spread_ms"] = {k: [min(v) * 1000, max(v) * 1000] for k, v in times.items()}
    report["skipped"] = skipped
    # Ratio to FastDepth per round (same round, same load), then the median of those ratios.
    ratios = {}
    for key, t in times.items():
        name, variant = key.split("|")
        ref = times.get(f"fastdepth|{REFERENCE.get(variant, variant)}")
        if ref:
            ratios[key] = statistics.median(a / b for a, b in zip(t, ref))
    report["ratio_to_fastdepth"] = ratios

    print(f"\nLatency at {LATENCY_SIZE[0]}x{LATENCY_SIZE[1]}, median of {args.rounds} interleaved rounds "
          f"(ratio to FastDepth's same variant; predictor: to FastDepth channels_last, "
          f"predictor_onnxruntime: to FastDepth onnxruntime):")
    for key, ms in median_ms.items():
        extra = f"  fps {1000 / ms:5.1f}" if "predictor" in key else ""
        print(f"  {key:28s} {ms:8.1f} ms  x{ratios.get(key, float('nan')):5.2f}{extra}")
    print(f"load average at end {report['load_average_end']}")

    if args.saliency_ratio:
        report["saliency_ratio_ms"] = saliency_ratio(args.rounds)
        for name, ms in report["saliency_ratio_ms"].items():
            print(f"  {name:60s} {ms:8.1f} ms")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
