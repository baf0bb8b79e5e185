"""The contract of the exported ONNX graph: its inputs, outputs, wrapper module and metadata.

The graph has a fixed input size (the checkpoint's `inference.input_size` unless given) and a
fixed maximum number of input points `P` (`max_points`). Inputs:

- `rgb` (1, 3, H, W) float32 in [0, 1];
- `points` (1, P, 3) float32 (u, v, depth in metres) in pixels of the H x W network input;
- `points_valid` (1, P) bool: which rows of `points` are real (any order; all False = no points);
- `intrinsics` (1, 4) float32 fx, fy, cx, cy in network pixels (`model.fusanet.default_intrinsics`
  when the camera is unknown: fx = fy = W, principal point at the centre).

Outputs: `depth` (1, 1, H, W) metres, `confidence` (1, 1, H, W) in [0, 1], `salient_points`
(1, M, 3) (u, v, depth) in network pixels and `salient_scores` (1, M), M = min(max_salient_points,
H * W) (M = 0 without the Saliency-Net). Tracing freezes the model's data-dependent branches: the
point branch is traced *on*, and with padding rows (weight 0) it adds exactly zero, so zero valid
points give the eager model's point-free result. Metadata (`graph_metadata`) names the checkpoint's
SHA-256, the code version and the sizes, so a cached graph is only used for what it was made from.

Shared by `export` (writes and checks a graph) and `onnx_runtime` / the Predictor (run one).
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import numpy as np
import torch
from torch import nn, Tensor

from ..model.points import PointBatch

GRAPH_FORMAT = "fusanet-onnx-v2"  # v1: rgb -> depth, confidence (no points inputs)
INPUT_NAMES = ("rgb", "points", "points_valid", "intrinsics")
OUTPUT_NAMES = ("depth", "confidence", "salient_points", "salient_scores")
DEFAULT_MAX_POINTS = 512  # covers the depth node's sparse.max_points default (500)
DEFAULT_OPSET = 17
# The sources whose change changes the graph: a cached graph made by other code is rebuilt.
_CODE_FILES = ("model/*.py", "inference/onnx_graph.py", "config.py")


class InferenceGraph(nn.Module):
    """(rgb, points, points_valid, intrinsics) -> (depth, confidence, salient_points, salient_scores).

    At the network resolution, the shape an exported graph needs.
    """

    def __init__(self, model: nn.Module, max_points: int = DEFAULT_MAX_POINTS) -> None:
        super().__init__()
        if int(max_points) < 0:
            raise ValueError(f"max_points must be >= 0, got {max_points}")
        self.model = model
        self.max_points = int(max_points)

    def forward(self, rgb: Tensor, points: Tensor, points_valid: Tensor, intrinsics: Tensor) -> tuple[Tensor, ...]:
        n = points.shape[1]
        if n:
            # Padding rows first, real ones after in their given order: the rasteriser keeps the
            # last point of a pixel, which must never be a padding row (distinct keys: a total order).
            key = points_valid.to(torch.float32) * n + torch.arange(n, dtype=torch.float32, device=rgb.device)
            order = torch.topk(key, n, dim=1, largest=False).indices
            points = points.gather(1, order.unsqueeze(-1).expand(-1, -1, 3))
            points_valid = points_valid.gather(1, order)
        batch = PointBatch(points[..., :2], points[..., 2], points_valid.to(rgb.dtype))
        out = self.model(rgb, batch, intrinsics)
        depth = out["depth"][0]
        conf = out["confidence"][0]
        salient = out.get("salient_points")
        if salient is None:
            sal_points, sal_scores = rgb.new_zeros(1, 0, 3), rgb.new_zeros(1, 0)
        else:
            sal_points, sal_scores = torch.cat([salient.uv, salient.depth.unsqueeze(-1)], -1), salient.weight
        return depth, torch.ones_like(depth) if conf is None else conf, sal_points, sal_scores


def default_intrinsics_array(height: int, width: int) -> np.ndarray:
    """(1, 4) float32: the model's guess for an unknown camera (model.fusanet.default_intrinsics)."""
    return np.array([[width, width, (width - 1) / 2, (height - 1) / 2]], np.float32)


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """SHA-256 (16 hex digits) of the sources that shape the graph (_CODE_FILES)."""
    root = Path(__file__).resolve().parents[1]  # fusanet_core
    digest = hashlib.sha256()
    for pattern in _CODE_FILES:
        for path in sorted(root.glob(pattern)):
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def graph_metadata(checkpoint_sha256: str, height: int, width: int, max_points: int,
                   opset: int = DEFAULT_OPSET) -> dict[str, str]:
    """Return what a graph was made from, stored in its ONNX metadata and checked before a cached one is used."""
    return {
        "fusanet.format": GRAPH_FORMAT,
        "fusanet.checkpoint_sha256": checkpoint_sha256,
        "fusanet.code": code_digest(),
        "fusanet.torch": torch.__version__,
        "fusanet.input_size": f"{int(height)}x{int(width)}",
        "fusanet.max_points": str(int(max_points)),
        "fusanet.opset": str(int(opset)),
    }
