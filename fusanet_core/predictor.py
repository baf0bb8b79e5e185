"""Predictor: any-size uint8 RGB in, metric depth and confidence at the input size out."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from .checkpoint import load_model
from .config import Config
from .geometry import scale_intrinsics
from .points import PointBatch

log = logging.getLogger(__name__)

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_CHECKPOINT = WEIGHTS_DIR / "fusanet_small_indoor.pt"


def default_checkpoint() -> Path:
    """The bundled checkpoint (trained on real indoor RGB-D data, see BENCHMARKS.md)."""
    if not DEFAULT_CHECKPOINT.is_file():
        raise FileNotFoundError(f"bundled checkpoint missing: {DEFAULT_CHECKPOINT} (reinstall the package)")
    return DEFAULT_CHECKPOINT


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """"auto" -> CUDA when available, else CPU; "cuda" without a GPU is an error."""
    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available (use 'auto' or 'cpu')")
    if name != "cpu" and not name.startswith("cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {name!r}")
    return torch.device(name)


def as_intrinsics(intrinsics: Any) -> np.ndarray:
    """(fx, fy, cx, cy) from a 4-vector or a 3x3 K; focal lengths must be positive and finite."""
    k = np.asarray(intrinsics, dtype=np.float64)
    if k.shape == (3, 3):
        k = np.array([k[0, 0], k[1, 1], k[0, 2], k[1, 2]])
    if k.shape != (4,) or not np.all(np.isfinite(k)) or k[0] <= 0 or k[1] <= 0:
        raise ValueError(f"intrinsics must be (fx, fy, cx, cy) or a 3x3 K with fx, fy > 0, got {intrinsics!r}")
    return k


class Predictor:
    """Owns resize, normalisation and un-resize around a FuSaNet in eval mode."""

    def __init__(self, model: torch.nn.Module, cfg: Config, device: str | torch.device = "auto", fp16: bool | None = None):
        self.device = resolve_device(device)
        self.cfg = cfg
        self.model = model.to(self.device).eval()
        self.memory_format = torch.channels_last if cfg.inference.channels_last else torch.contiguous_format
        self.model.to(memory_format=self.memory_format)
        self.input_size = cfg.inference.input_size
        wants_fp16 = cfg.inference.fp16 if fp16 is None else fp16
        self.fp16 = bool(wants_fp16) and self.device.type == "cuda"
        if wants_fp16 and not self.fp16:
            log.warning("fp16 requested but running on %s: using fp32", self.device)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path | None = None,
        device: str | torch.device = "auto",
        fp16: bool | None = None,
        input_size: tuple[int, int] | None = None,
    ) -> Predictor:
        """Load a checkpoint (default: the bundled one); `input_size` overrides the network's
        (height, width)."""
        model, cfg = load_model(path or default_checkpoint(), "cpu")
        if input_size is not None:
            cfg.inference.input_size = tuple(int(v) for v in input_size)
            cfg.inference.__post_init__()
        return cls(model, cfg, device, fp16)

    @torch.inference_mode()
    def predict(self, rgb: np.ndarray, intrinsics: Any = None, points: np.ndarray | None = None) -> dict[str, Any]:
        """Depth for one image.

        Args:
            rgb: HxWx3 uint8 RGB, any size.
            intrinsics: (fx, fy, cx, cy) or 3x3 K at the input resolution; None = unknown.
            points: optional (N, 3) known points (u, v, depth in metres) in input pixels, e.g. SLAM
                landmarks or LiDAR; non-finite, non-positive and out-of-frame points are dropped.

        Returns:
            dict: "depth" HxW float32 metres, "confidence" HxW float32 in [0, 1], "salient_points"
            (M, 3) float32 (u, v, depth) in input pixels, "salient_scores" (M,), and
            "points_used" (how many input points survived the checks).
        """
        rgb = _check_rgb(rgb)
        h, w = rgb.shape[:2]
        nh, nw = self.input_size
        sx, sy = nw / w, nh / h
        small = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA if sx < 1 and sy < 1 else cv2.INTER_LINEAR)
        image = torch.from_numpy(small).to(self.device).permute(2, 0, 1).unsqueeze(0).float() / 255.0
        image = image.contiguous(memory_format=self.memory_format)

        k = None
        if intrinsics is not None:
            fx, fy, cx, cy = as_intrinsics(intrinsics)
            k = torch.tensor([scale_intrinsics((fx, fy, cx, cy), sx, sy)], dtype=torch.float32, device=self.device)
        batch, used = None, 0
        if points is not None:
            kept = _check_points(points, h, w)
            used = len(kept)
            batch = PointBatch.from_arrays([kept], self.device).scaled(sx, sy)

        with torch.autocast("cuda", dtype=torch.float16, enabled=self.fp16):
            out = self.model(image, batch, k)
        depth = out["depth"][0][0, 0].float().cpu().numpy()
        conf = out["confidence"][0]
        conf = np.ones_like(depth) if conf is None else conf[0, 0].float().cpu().numpy()
        result = {
            "depth": cv2.resize(depth, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32),
            "confidence": np.clip(cv2.resize(conf, (w, h), interpolation=cv2.INTER_LINEAR), 0.0, 1.0).astype(np.float32),
            "points_used": used,
        }
        result.update(_salient_to_input(out["salient_points"], 1 / sx, 1 / sy))
        return result


def _check_rgb(rgb: Any) -> np.ndarray:
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be a uint8 numpy array, got {getattr(rgb, 'dtype', type(rgb).__name__)}")
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] < 2 or rgb.shape[1] < 2:
        raise ValueError(f"rgb must be HxWx3 with H, W >= 2, got shape {rgb.shape}")
    return np.ascontiguousarray(rgb)


def _check_points(points: Any, height: int, width: int) -> np.ndarray:
    arr = np.asarray(points, dtype=np.float32)
    if arr.size == 0:
        return np.zeros((0, 3), np.float32)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ValueError(f"points must have shape (N, 3) = (u, v, depth), got {arr.shape}")
    ok = np.all(np.isfinite(arr), axis=1) & (arr[:, 2] > 0)
    ok &= (arr[:, 0] > -0.5) & (arr[:, 0] < width - 0.5) & (arr[:, 1] > -0.5) & (arr[:, 1] < height - 0.5)
    return arr[ok]


def _salient_to_input(salient: PointBatch | None, sx: float, sy: float) -> dict[str, np.ndarray]:
    if salient is None:
        return {"salient_points": np.zeros((0, 3), np.float32), "salient_scores": np.zeros(0, np.float32)}
    back = salient.scaled(sx, sy)
    pts = torch.cat([back.uv[0], back.depth[0, :, None]], dim=1).float().cpu().numpy()
    return {"salient_points": pts.astype(np.float32), "salient_scores": back.weight[0].float().cpu().numpy()}
