"""ONNX export of the deployed inference path.

RGB and optional known points in; depth, confidence and the salient points out. The same graph
serves `fusanet export` and the Predictor's onnxruntime backend (`onnx_runtime.py`).

The graph's inputs, outputs and metadata are its contract (`onnx_graph.py`).

The export is checked against PyTorch with onnxruntime on real-looking inputs, with and without
points, and the differences are reported; the graph is written under a temporary name and only
renamed to `out` once that check passed, so a failed export never leaves a valid-looking `.onnx`
behind.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any
import warnings

import numpy as np
import torch
from torch import nn, Tensor

from .onnx_graph import (default_intrinsics_array, DEFAULT_MAX_POINTS, DEFAULT_OPSET, graph_metadata, InferenceGraph,
                         INPUT_NAMES, OUTPUT_NAMES)
from ..checkpoint import apply_input_size, atomic_write, default_checkpoint, file_sha256, load_model
from ..errors import error_reason

log = logging.getLogger(__name__)

MAX_REL_DIFF = 1e-2  # the export check: onnxruntime vs PyTorch depth, worst pixel of the probes
MEAN_REL_DIFF = 1e-3  # ... and the mean over the image


def require_onnx() -> tuple[Any, Any]:
    """Import onnx and onnxruntime or explain how to get them."""
    try:
        import onnx
        import onnxruntime
    except ImportError as err:
        raise ValueError(f"ONNX export needs the onnx and onnxruntime packages ({err.name} is missing): "
                         "pip install onnx onnxruntime") from None
    return onnx, onnxruntime


def _register_symbolics(opset: int) -> None:
    """Register in-place boolean `&=` / `|=` (used for masks) as plain And / Or.

    The TorchScript exporter lacks them. (The dynamo exporter cannot trace the model's data-dependent branches.)
    """
    from torch.onnx import register_custom_op_symbolic

    register_custom_op_symbolic("aten::__iand_", lambda g, a, b: g.op("And", a, b), opset)
    register_custom_op_symbolic("aten::__ior_", lambda g, a, b: g.op("Or", a, b), opset)


def sample_input(height: int, width: int, seed: int = 0) -> Tensor:
    """Return a smooth, image-like test input (uniform noise exercises unrealistic paths)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([x / width, y / height, 0.5 + 0.3 * np.sin(x / 7.0) * np.cos(y / 5.0)])
    image = np.clip(base + 0.05 * rng.standard_normal(base.shape).astype(np.float32), 0, 1)
    return torch.from_numpy(image[None].astype(np.float32))


def sample_points(height: int, width: int, max_points: int, valid: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Return (1, P, 3) points (u, v, depth) and a (1, P) validity mask with `valid` real rows.

    The real rows are spread among padding rows (zeros), as a caller might pass them.
    """
    rng = np.random.default_rng(seed)
    points = np.zeros((1, max_points, 3), np.float32)
    mask = np.zeros((1, max_points), bool)
    rows = np.sort(rng.choice(max_points, min(valid, max_points), replace=False)) if max_points else []
    for i in rows:
        points[0, i] = (rng.uniform(0, width - 1), rng.uniform(0, height - 1), rng.uniform(0.5, 4.0))
        mask[0, i] = True
    return torch.from_numpy(points), torch.from_numpy(mask)


def _worst(current: float, value: float) -> float:
    """max() that keeps NaN: max(0.0, nan) is 0.0, which once reported NaN outputs as a perfect match."""
    return value if math.isnan(value) or value > current else current


def export_onnx(
    checkpoint: str | Path | None,
    out: str | Path,
    input_size: tuple[int, int] | None = None,
    opset: int = DEFAULT_OPSET,
    max_points: int = DEFAULT_MAX_POINTS,
) -> dict[str, Any]:
    """Export a checkpoint to ONNX and compare onnxruntime with PyTorch.

    Args:
        checkpoint: FuSaNet checkpoint; None = the bundled one (as `fusanet predict`).
        out: output `.onnx` path (a single file, weights embedded).
        input_size: (height, width); default the checkpoint's inference.input_size; the
            Predictor's rule applies (`checkpoint.apply_input_size`).
        opset: ONNX opset version.
        max_points: the graph's fixed number of input point rows P (0 = RGB only).

    Returns:
        {"path", "height", "width", "max_points", "max_abs_diff" (metres), "max_rel_diff", "mean_rel_diff",
        "conf_max_abs_diff", "salient_max_abs_diff"} (worst over the check inputs).

    Raises:
        ValueError: onnx/onnxruntime missing, a bad input size, or the export fails, gives
            non-finite depth or disagrees with PyTorch (nothing is written then).
    """
    checkpoint = checkpoint or default_checkpoint()
    model, cfg = load_model(checkpoint, "cpu")
    size = apply_input_size(cfg, input_size).inference.input_size
    metadata = graph_metadata(file_sha256(checkpoint), *size, max_points, opset)
    return export_model(model, out, size, max_points, opset, checkpoint, metadata)


def export_model(model: nn.Module, out: str | Path, input_size: tuple[int, int], max_points: int = DEFAULT_MAX_POINTS,
                 opset: int = DEFAULT_OPSET, source: str | Path = "the model",
                 metadata: dict[str, str] | None = None) -> dict[str, Any]:
    """Export a model (on the CPU, fp32) at `input_size` to `out`, atomically, checked as `export_onnx` says.

    `source` names it in errors, `metadata` goes into the graph.
    """
    onnx, ort = require_onnx()
    _register_symbolics(opset)
    height, width = input_size
    wrapper = InferenceGraph(model, max_points).eval()
    rgb = sample_input(height, width)
    final = Path(out)
    final.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(final) as tmp:
        report = _export_and_check(wrapper, rgb, tmp, final, source, opset, onnx, ort, metadata)
    log.info("exported %s: max |depth diff| %.2e m", final, report["max_abs_diff"])
    return report


def _feeds(rgb: Tensor, points: Tensor, valid: Tensor) -> dict[str, np.ndarray]:
    height, width = rgb.shape[-2:]
    return {"rgb": rgb.numpy(), "points": points.numpy(), "points_valid": valid.numpy(),
            "intrinsics": default_intrinsics_array(height, width)}


PROBE_TRIES = 3  # inputs drawn per check probe until torch and onnxruntime pick the same salient points


def _probes(rgb: Tensor, p: int) -> list[Any]:
    """Return the check's three probes, each a function of the attempt (0 = the first input, then redrawn)."""
    height, width = rgb.shape[-2:]

    def first(attempt: int) -> tuple[Tensor, ...]:
        image = rgb if attempt == 0 else sample_input(height, width, seed=10 * attempt)
        return (image, *sample_points(height, width, p, 0))

    def some(attempt: int) -> tuple[Tensor, ...]:
        seed = 1 + 10 * attempt
        return (sample_input(height, width, seed=seed).flip(-1), *sample_points(height, width, p, p // 2, seed=seed))

    def full(attempt: int) -> tuple[Tensor, ...]:
        seed = 2 + 10 * attempt
        noise = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(seed))
        return (noise, *sample_points(height, width, p, p, seed=seed))

    return [first, some, full]


def _selection_differs(outs: list[np.ndarray], ref: list[np.ndarray]) -> bool:
    """Tell whether the two runtimes chose other salient pixels (a near-tie that float order broke).

    Then pass 2 differs by a few % around those points, however right the graph: that input says
    nothing about the export and is drawn again (up to PROBE_TRIES). A graph that always chooses
    otherwise still fails the check.
    """
    if len(outs) < 4 or outs[2].shape != ref[2].shape:
        return False  # no salient outputs, or a count mismatch: reported by the check itself
    return bool(np.abs(outs[2][..., :2] - ref[2][..., :2]).max(initial=0.0) > 0.5)


def _export_and_check(wrapper: nn.Module, rgb: Tensor, out: Path, final: Path, checkpoint: str | Path, opset: int,
                      onnx: Any, ort: Any, metadata: dict[str, str] | None = None) -> dict[str, Any]:
    """Export to `out` and compare onnxruntime with PyTorch; the report names `final`."""
    height, width = rgb.shape[-2:]
    p = getattr(wrapper, "max_points", DEFAULT_MAX_POINTS)
    # Traced with real points: the point branch is data-dependent and must be in the graph.
    traced = (rgb, *sample_points(height, width, p, max(1, (3 * p) // 4), seed=3))
    traced += (torch.from_numpy(default_intrinsics_array(height, width)),)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on constant shapes are expected
        try:
            torch.onnx.export(wrapper, traced, str(out), input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES),
                              opset_version=opset, dynamo=False)
        except Exception as err:  # exporter errors are many types; report one line
            raise ValueError(f"ONNX export of {checkpoint} failed: {error_reason(err, limit=200)}") from None
    onnx.checker.check_model(str(out))
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    inputs = {i.name for i in session.get_inputs()} if hasattr(session, "get_inputs") else set(INPUT_NAMES)
    # Tracing froze the model's data-dependent branches: check inputs other than the traced one,
    # with no valid point (the eager model skips its point branch then), some, and all rows used.
    report = {"path": str(final), "height": int(height), "width": int(width), "max_points": int(p),
              "max_abs_diff": 0.0, "max_rel_diff": 0.0, "mean_rel_diff": 0.0, "conf_max_abs_diff": 0.0,
              "salient_max_abs_diff": 0.0, "probes_redrawn": 0}
    for probe_at in _probes(rgb, p):
        for attempt in range(PROBE_TRIES):
            probe, points, valid = probe_at(attempt)
            feeds = {k: v for k, v in _feeds(probe, points, valid).items() if k in inputs}
            outs = session.run(None, feeds)
            with torch.no_grad():
                ref = [t.numpy() for t in wrapper(probe, points, valid,
                                                  torch.from_numpy(_feeds(probe, points, valid)["intrinsics"]))]
            if not _selection_differs(outs, ref) or attempt == PROBE_TRIES - 1:
                break
            report["probes_redrawn"] += 1
        depth_ort, conf_ort = outs[0], outs[1]
        depth_pt, conf_pt = ref[0], ref[1]
        if not (np.all(np.isfinite(depth_pt)) and np.all(np.isfinite(depth_ort))):
            raise ValueError(f"export of {checkpoint} refused: the model gives non-finite depth (NaN/inf) on the check "
                             f"input ({'PyTorch' if not np.all(np.isfinite(depth_pt)) else 'onnxruntime'})")
        diff = np.abs(depth_ort - depth_pt)
        report["max_abs_diff"] = _worst(report["max_abs_diff"], float(np.max(diff)))
        rel = float(np.max(diff / np.maximum(np.abs(depth_pt), 1e-6)))
        report["max_rel_diff"] = _worst(report["max_rel_diff"], rel)
        mean_rel = float(np.mean(diff / np.maximum(np.abs(depth_pt), 1e-6)))
        report["mean_rel_diff"] = _worst(report["mean_rel_diff"], mean_rel)
        report["conf_max_abs_diff"] = _worst(report["conf_max_abs_diff"], float(np.max(np.abs(conf_ort - conf_pt))))
        if len(outs) >= 4:
            if outs[2].shape != ref[2].shape:
                raise ValueError(f"ONNX model of {checkpoint} disagrees with PyTorch: {outs[2].shape[1]} salient "
                                 f"points instead of {ref[2].shape[1]}")
            sal = np.abs(outs[2] - ref[2]).max(initial=0.0)
            report["salient_max_abs_diff"] = _worst(report["salient_max_abs_diff"], float(sal))
    # The graph must agree everywhere (mean) and nowhere be far off (max): a salient point chosen
    # differently would move the depth near it by a few % (saliency_net.SCORE_STEP prevents it).
    if not (report["max_rel_diff"] <= MAX_REL_DIFF and report["mean_rel_diff"] <= MEAN_REL_DIFF
            and math.isfinite(report["max_abs_diff"])):  # NaN fails this too
        raise ValueError(f"ONNX model of {checkpoint} disagrees with PyTorch: max rel depth diff "
                         f"{report['max_rel_diff']:.3g} (limit {MAX_REL_DIFF:g}), mean {report['mean_rel_diff']:.3g} "
                         f"(limit {MEAN_REL_DIFF:g})")
    if metadata:
        graph = onnx.load(str(out))
        for key, value in metadata.items():
            graph.metadata_props.add(key=key, value=str(value))
        onnx.save(graph, str(out))
    return report
