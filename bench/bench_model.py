"""Network benchmark: parameters per module, multiply-accumulates, CPU latency.

Usage: python bench/bench_model.py [--threads N] [--repeats R] [--json out.json]

Latency variants run interleaved (round-robin) so that machine noise hits them alike; report
ratios between variants measured in the same run, not absolute times across runs.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from dataclasses import replace

import torch
from torch.utils.flop_counter import FlopCounterMode

from fusanet_core import preset_config
from fusanet_core.model import FuSaNet

SIZES = {"480x640": (480, 640), "default 240x320": (240, 320)}


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


def macs(model: FuSaNet, size: tuple[int, int]) -> float:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.rand(1, 3, *size))
    return counter.get_total_flops() / 2  # FLOPs counted as 2 per multiply-accumulate


def build(preset: str, saliency: bool) -> FuSaNet:
    cfg = preset_config(preset).model
    return FuSaNet(replace(cfg, use_saliency=saliency)).eval()


def latency(variants: dict[str, tuple[FuSaNet, tuple[int, int], bool]], repeats: int) -> dict[str, float]:
    """Median seconds per forward pass, variants interleaved."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    inputs = {}
    for name, (model, size, channels_last) in variants.items():
        x = torch.rand(1, 3, *size)
        if channels_last:
            model.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        inputs[name] = x
        with torch.inference_mode():
            model(x)  # warm-up
    for _ in range(repeats):
        for name, (model, _, _) in variants.items():
            with torch.inference_mode():
                start = time.perf_counter()
                model(inputs[name])
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    report: dict = {"machine": f"{platform.machine()} {platform.processor() or ''} {torch.get_num_threads()} threads, torch {torch.__version__}"}

    paper = build("paper", True)
    report["parameters_paper"] = parameter_table(paper)
    print("Parameters per module (paper preset):")
    for name, n in report["parameters_paper"]:
        print(f"  {name:40s} {n / 1e6:8.3f} M")
    report["parameters_small"] = count(build("small", True))
    print(f"small preset total: {report['parameters_small'] / 1e6:.3f} M")

    report["gmacs"] = {}
    print("\nMultiply-accumulates per image (G):")
    for preset in ("paper", "small"):
        for sal in (True, False):
            for size_name, size in SIZES.items():
                key = f"{preset} {'with' if sal else 'without'} Saliency-Net @ {size_name}"
                report["gmacs"][key] = macs(build(preset, sal), size) / 1e9
                print(f"  {key:55s} {report['gmacs'][key]:7.2f}")

    variants = {}
    for preset in ("paper", "small"):
        for sal in (True, False):
            for size_name, size in SIZES.items():
                for cl in (False, True):
                    name = f"{preset} {'+sal' if sal else '-sal'} @ {size_name} {'channels_last' if cl else 'eager'}"
                    variants[name] = (build(preset, sal), size, cl)
    report["latency_ms"] = {k: v * 1000 for k, v in latency(variants, args.repeats).items()}
    print(f"\nCPU latency, median of {args.repeats} interleaved runs ({report['machine']}):")
    for name, ms in report["latency_ms"].items():
        print(f"  {name:60s} {ms:8.1f} ms")
    print("\nSaliency-Net cost ratio (with / without, eager):")
    for preset in ("paper", "small"):
        for size_name in SIZES:
            a = report["latency_ms"][f"{preset} +sal @ {size_name} eager"]
            b = report["latency_ms"][f"{preset} -sal @ {size_name} eager"]
            print(f"  {preset} @ {size_name}: {a / b:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
