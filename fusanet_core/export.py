"""ONNX export of the deployed inference path: RGB in, depth and confidence out, no input points.

The graph has a fixed input size (the checkpoint's `inference.input_size` unless given) and
takes `rgb` (1, 3, H, W) float32 in [0, 1]; outputs `depth` (1, 1, H, W) metres and
`confidence` (1, 1, H, W). Intrinsics are the model's default guess (they only steer the point
branch's geometry, whose points here are the salient ones). The export is checked against
PyTorch with onnxruntime on a real-looking input and the difference is reported.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .checkpoint import load_model
from .errors import error_reason

log = logging.getLogger(__name__)


class DepthOnly(nn.Module):
    """RGB -> (depth, confidence) at full resolution, the shape an exported graph needs."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, rgb: Tensor) -> tuple[Tensor, Tensor]:
        out = self.model(rgb, None, None)
        depth = out["depth"][0]
        conf = out["confidence"][0]
        return depth, torch.ones_like(depth) if conf is None else conf


def require_onnx() -> tuple[Any, Any]:
    """Import onnx and onnxruntime or explain how to get them."""
    try:
        import onnx
        import onnxruntime
    except ImportError as err:
        raise ValueError(f"ONNX export needs the onnx and onnxruntime packages ({err.name} is missing): pip install onnx onnxruntime") from None
    return onnx, onnxruntime


def _register_symbolics(opset: int) -> None:
    """The TorchScript exporter lacks in-place boolean `&=` / `|=` (used for masks); they are
    plain And / Or. (The dynamo exporter cannot trace the model's data-dependent branches.)"""
    from torch.onnx import register_custom_op_symbolic

    register_custom_op_symbolic("aten::__iand_", lambda g, a, b: g.op("And", a, b), opset)
    register_custom_op_symbolic("aten::__ior_", lambda g, a, b: g.op("Or", a, b), opset)


def sample_input(height: int, width: int, seed: int = 0) -> Tensor:
    """A smooth, image-like test input (uniform noise exercises unrealistic paths)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([x / width, y / height, 0.5 + 0.3 * np.sin(x / 7.0) * np.cos(y / 5.0)])
    image = np.clip(base + 0.05 * rng.standard_normal(base.shape).astype(np.float32), 0, 1)
    return torch.from_numpy(image[None].astype(np.float32))


def export_onnx(
    checkpoint: str | Path,
    out: str | Path,
    input_size: tuple[int, int] | None = None,
    opset: int = 17,
) -> dict[str, Any]:
    """Export a checkpoint to ONNX and compare onnxruntime with PyTorch.

    Args:
        checkpoint: FuSaNet checkpoint.
        out: output `.onnx` path (a single file, weights embedded).
        input_size: (height, width); default the checkpoint's inference.input_size.
        opset: ONNX opset version.

    Returns:
        {"path", "height", "width", "max_abs_diff" (metres), "max_rel_diff", "conf_max_abs_diff"}.

    Raises:
        ValueError: onnx/onnxruntime missing, or the export fails or disagrees with PyTorch.
    """
    onnx, ort = require_onnx()
    _register_symbolics(opset)
    model, cfg = load_model(checkpoint, "cpu")
    height, width = input_size or cfg.inference.input_size
    wrapper = DepthOnly(model).eval()
    rgb = sample_input(height, width)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on constant shapes are expected
        try:
            torch.onnx.export(wrapper, (rgb,), str(out), input_names=["rgb"], output_names=["depth", "confidence"],
                              opset_version=opset, dynamo=False)
        except Exception as err:  # exporter errors are many types; report one line
            raise ValueError(f"ONNX export of {checkpoint} failed: {error_reason(err, limit=200)}") from None
    onnx.checker.check_model(str(out))
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    # Tracing froze the model's data-dependent branches: check an input other than the traced one.
    report = {"path": str(out), "height": int(height), "width": int(width), "max_abs_diff": 0.0, "max_rel_diff": 0.0,
              "conf_max_abs_diff": 0.0}
    for probe in (rgb, sample_input(height, width, seed=1).flip(-1), torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(2))):
        depth_ort, conf_ort = session.run(None, {"rgb": probe.numpy()})
        with torch.no_grad():
            depth_pt, conf_pt = (t.numpy() for t in wrapper(probe))
        diff = np.abs(depth_ort - depth_pt)
        report["max_abs_diff"] = max(report["max_abs_diff"], float(np.max(diff)))
        report["max_rel_diff"] = max(report["max_rel_diff"], float(np.max(diff / np.maximum(np.abs(depth_pt), 1e-6))))
        report["conf_max_abs_diff"] = max(report["conf_max_abs_diff"], float(np.max(np.abs(conf_ort - conf_pt))))
    abs_diff = report["max_abs_diff"]
    log.info("exported %s: max |depth diff| %.2e m", out, abs_diff)
    if not np.isfinite(abs_diff) or report["max_rel_diff"] > 1e-2:
        raise ValueError(f"ONNX model {out} disagrees with PyTorch: max rel depth diff {report['max_rel_diff']:.3g}")
    return report
