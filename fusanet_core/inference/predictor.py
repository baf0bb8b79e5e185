"""Predictor: any-size uint8 RGB in, metric depth and confidence at the input size out."""

from __future__ import annotations

from dataclasses import replace
import logging
from pathlib import Path
import threading
from typing import Any

import cv2
import numpy as np
import torch

from . import onnx_graph
from .confidence import Calibration
from .ground import fit_ground, GroundFit
from .point_fit import check_mode, fit_to_points, PointFit
from ..checkpoint import apply_input_size, default_checkpoint, file_sha256, load_model
from ..config import Config
from ..device import resolve_device
from ..geometry import as_intrinsics, check_ground_plane, scale_intrinsics, scale_pixel, scale_points
from ..model.points import PointBatch

log = logging.getLogger(__name__)

BACKENDS = ("torch", "onnxruntime")


class Predictor:
    """Owns resize, normalisation and un-resize around a FuSaNet in eval mode.

    `backend` "torch" runs the model eagerly; "onnxruntime" runs its exported graph
    (`onnx_runtime.py`: exported and cached on first use, the execution providers follow the
    device rule there), which takes up to `max_points` input points (more are thinned evenly).

    `scale_from_points` ("none" | "scale" | "scale_local" | "scale_shift", see `point_fit.py`)
    fits the output to the input points after the network; with fewer than
    `scale_fit_min_points` usable points, or inconsistent ones, the network's own scale is kept.
    `prime_with_points` False keeps the input points out of the network (RGB only) and uses them
    for the fit alone: with the bundled model, RGB only + scale_local is the better depth
    (BENCHMARKS.md, the bundled model's section; primed, the network copies the points' depth at their pixels,
    which hides its errors from the fit). Change all three with `set_point_fit`.

    Confidence: with a calibration in the config (`inference.confidence_bound` > 0, written by
    bench/calibrate_confidence.py) it is the probability that the pixel's depth is within
    confidence_bound relative error (|d - gt| / gt), on the calibration data, given the raw
    confidence and (calibrations with weights) the distance to the points an applied scale_local
    fit went through (`confidence.py`); without one, the
    network's raw confidence (it orders pixels, its values mean nothing in themselves); all ones
    for a model without confidence predictor.
    """

    def __init__(self, model: torch.nn.Module, cfg: Config, device: str | torch.device = "auto",
                 fp16: bool | None = None, backend: str = "torch", max_points: int | None = None,
                 checkpoint: str | Path | None = None, cache_dir: str | Path | None = None,
                 scale_from_points: str = "none", scale_fit_min_points: int = 3, prime_with_points: bool = True):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        self.set_point_fit(scale_from_points, scale_fit_min_points, prime_with_points)
        self.backend = backend
        self.cfg = cfg
        self.calibration = Calibration.from_inference(cfg.inference)  # None: raw confidence
        self.input_size = cfg.inference.input_size
        wants_fp16 = cfg.inference.fp16 if fp16 is None else fp16
        self._graphs = None
        if backend == "onnxruntime":
            self._init_onnx(model, device, bool(wants_fp16), max_points, checkpoint, cache_dir)
            return
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.memory_format = torch.channels_last if cfg.inference.channels_last else torch.contiguous_format
        self.model.to(memory_format=self.memory_format)
        self.max_points = None
        self.fp16 = bool(wants_fp16) and self.device.type == "cuda"
        if wants_fp16 and not self.fp16:
            log.warning("fp16 requested but running on %s: using fp32", self.device)

    def _init_onnx(self, model: torch.nn.Module, device: str | torch.device, wants_fp16: bool, max_points: int | None,
                   checkpoint: str | Path | None, cache_dir: str | Path | None) -> None:
        from . import onnx_runtime

        ort = onnx_runtime.require_onnxruntime()
        self.max_points = onnx_graph.DEFAULT_MAX_POINTS if max_points is None else int(max_points)
        if self.max_points < 0:
            raise ValueError(f"max_points must be >= 0, got {max_points}")
        directory = Path(cache_dir) if cache_dir is not None else onnx_runtime.cache_dir()
        providers, self.device = onnx_runtime.choose_providers(device, ort.get_available_providers(), wants_fp16,
                                                               directory / "tensorrt")
        uses_trt = not isinstance(providers[0], str) and providers[0][0] == "TensorrtExecutionProvider"
        self.fp16 = wants_fp16 and uses_trt
        if wants_fp16 and not self.fp16:
            log.warning("fp16 requested: the onnxruntime backend has it with TensorRT only, using fp32 on %s",
                        self.device)
        # exported when first used
        self.model = model.to("cpu").float().eval().to(memory_format=torch.contiguous_format)
        self.memory_format = torch.contiguous_format
        sha = (file_sha256(checkpoint) if checkpoint is not None
               else onnx_runtime.state_sha256(self.model, self.cfg))
        self._graphs = onnx_runtime.OnnxGraphs(self.model, self.input_size, self.max_points, sha, providers, directory,
                                               str(checkpoint or "the model"))
        self._lock = threading.Lock()
        self._thinned_warned = False

    def set_point_fit(self, mode: str, min_points: int = 3, prime: bool = True) -> None:
        """Set the use of input points: the output fit (`mode`, `min_points` >= 1) and priming the network.

        Raises:
            ValueError: an unknown mode or min_points < 1 (the message names the value).
        """
        if int(min_points) < 1:
            raise ValueError(f"scale_fit_min_points must be >= 1, got {min_points!r}")
        self.scale_from_points = check_mode(mode)
        self.scale_fit_min_points = int(min_points)
        self.prime_with_points = bool(prime)
        # One reference swap: a predict() running in another thread sees the old or the new settings, never a mix.
        self._point_fit = (self.scale_from_points, self.scale_fit_min_points, self.prime_with_points)

    def onnx_sessions(self) -> dict[int, Any]:
        """Return the onnxruntime sessions {max points: session}, exported or loaded now if not yet.

        Call it to pay that at start-up rather than on the first image.
        """
        if self._graphs is None:
            raise ValueError("onnx_sessions() needs backend 'onnxruntime'")
        with self._lock:
            return self._graphs.sessions()

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path | None = None,
        device: str | torch.device = "auto",
        fp16: bool | None = None,
        input_size: tuple[int, int] | None = None,
        backend: str = "torch",
        max_points: int | None = None,
        cache_dir: str | Path | None = None,
        scale_from_points: str = "none",
        scale_fit_min_points: int = 3,
        prime_with_points: bool = True,
    ) -> Predictor:
        """Load a checkpoint (default: the bundled one).

        `input_size` overrides the network's (height, width); `backend`, `max_points`, `cache_dir`,
        `scale_from_points`, `scale_fit_min_points`, `prime_with_points`: see the class.
        """
        if backend not in BACKENDS:  # before the slow load
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        check_mode(scale_from_points)
        path = path or default_checkpoint()
        model, cfg = load_model(path, "cpu")
        return cls(model, apply_input_size(cfg, input_size), device, fp16, backend, max_points, path, cache_dir,
                   scale_from_points, scale_fit_min_points, prime_with_points)

    @torch.inference_mode()
    def predict(self, rgb: np.ndarray, intrinsics: Any = None, points: np.ndarray | None = None,
                output_size: tuple[int, int] | None = None, ground: Any = None) -> dict[str, Any]:
        """Depth for one image.

        Args:
            rgb: HxWx3 uint8 RGB, any size.
            intrinsics: (fx, fy, cx, cy) or 3x3 K at the input resolution; None = unknown.
            points: optional (N, 3) known points (u, v, depth in metres) in input pixels, e.g. SLAM
                landmarks or LiDAR; non-finite, non-positive and out-of-frame points are dropped
                (and with the onnxruntime backend, more than `max_points` are thinned evenly).
            output_size: (height, width) of the depth and confidence maps; None = the input's. The
                network output is resized once, straight to it, and the point fit works at that size.
            ground: optional floor plane (nx, ny, nz, h) in the camera optical frame (unit normal
                pointing up, camera height h > 0 m, floor points X: n . X + h = 0); needs
                `intrinsics`. Gives the metric scale where the floor is seen (`inference.ground`).

        Returns:
            dict: "depth" HxW float32 metres (output_size), "confidence" HxW float32 in [0, 1] (see the class;
            "confidence_calibrated" says whether it is the calibrated probability), "salient_points"
            (M, 3) float32 (u, v, depth) in input pixels, "salient_scores" (M,), and
            "points_used" (how many input points survived the checks and were used), "point_fit" (the
            `PointFit.as_dict()` of scale_from_points; always there, applied False when no fit was
            applied), "ground_fit" (the `GroundFit.as_dict()`; applied False without `ground`). An
            applied fit has changed "depth" and the salient points' depths.

        Raises:
            ValueError: a bad image, points, output size or ground plane (the message names it).
        """
        rgb = _check_rgb(rgb)
        plane = None if ground is None else check_ground_plane(ground)
        h, w = rgb.shape[:2]
        out_h, out_w = (h, w) if output_size is None else _check_size(output_size)
        nh, nw = self.input_size
        sx, sy = nw / w, nh / h
        small = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA if sx < 1 and sy < 1 else cv2.INTER_LINEAR)
        k = None
        if intrinsics is not None:
            k = scale_intrinsics(tuple(as_intrinsics(intrinsics)), sx, sy)
        kept = None if points is None else _check_points(points, h, w)
        fit_mode, fit_min_points, prime = self._point_fit
        primer = kept if prime else None
        if self._graphs is not None:
            depth, conf, salient, scores, used = self._forward_onnx(small, k, primer, sx, sy)
        else:
            depth, conf, salient, scores, used = self._forward_torch(small, k, primer, sx, sy)
        if primer is None and kept is not None:  # not primed: the points serve the fit alone
            used = len(kept)
        if conf is None:
            conf = np.ones_like(depth)
        # The one resize of the network output: to the output size (the input's unless asked otherwise);
        # an output smaller than the network's both ways is averaged (INTER_AREA), as the node once did.
        shrink = (out_h, out_w) != (h, w) and out_h < nh and out_w < nw
        interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        result = {
            "depth": cv2.resize(depth, (out_w, out_h), interpolation=interp).astype(np.float32),
            "confidence": np.clip(cv2.resize(conf, (out_w, out_h), interpolation=interp),
                                  0.0, 1.0).astype(np.float32),
            "points_used": used,
        }
        result.update(_salient_to_input(salient, scores, 1 / sx, 1 / sy))
        # The fit works on the output maps: points in their pixels (the salient points are returned in input pixels).
        to_out = (out_w / w, out_h / h)
        fit = self._fit_points(result["depth"], scale_points(kept, *to_out), fit_mode, fit_min_points)
        if self.calibration is not None:  # after the clip, on both backends' output; knows the fit's points
            result["confidence"] = self.calibration.apply(result["confidence"], fit.anchor_pixels())
        result["confidence_calibrated"] = self.calibration is not None
        network_depth, result["depth"] = result["depth"], fit.apply(result["depth"])
        # the same correction as the map, per pixel for scale_local
        result["salient_points"][:, 2] = fit.apply_at(scale_points(result["salient_points"], *to_out), network_depth,
                                                      result["depth"])
        result["point_fit"] = fit.as_dict()
        out_k = None if k is None else scale_intrinsics(k, out_w / nw, out_h / nh)
        ground_fit = self._fit_ground(network_depth, out_k, plane, fit.applied)
        if ground_fit.applied:  # a global scale: the map and the salient points alike
            result["depth"] = network_depth * np.float32(ground_fit.scale)
            result["salient_points"][:, 2] *= np.float32(ground_fit.scale)
        result["ground_fit"] = ground_fit.as_dict()
        return result

    @staticmethod
    def _fit_ground(depth: np.ndarray, k: tuple | None, plane: np.ndarray | None, points_fitted: bool) -> GroundFit:
        """Fit the network's depth to the floor, applied only where no point fit was.

        Known points, where they fit, beat the floor: adding the floor's virtual points to theirs
        made the depth worse on the unseen sets (docs/architecture.md, "The floor's scale").
        """
        if plane is None:
            return GroundFit(reason="no ground plane")
        ground_fit = fit_ground(depth, k, plane)
        if ground_fit.applied and points_fitted:
            return replace(ground_fit, applied=False, reason="the known points' fit is used instead")
        return ground_fit

    @staticmethod
    def _fit_points(depth: np.ndarray, kept: np.ndarray | None, mode: str, min_points: int) -> PointFit:
        """Fit the output depth to the user's points (not the salient ones: those are the network's)."""
        if kept is None and mode != "none":
            return PointFit(mode, reason="no points")
        return fit_to_points(depth, kept, mode, min_points)

    def _forward_torch(self, small: np.ndarray, k: tuple | None, kept: np.ndarray | None, sx: float,
                       sy: float) -> tuple:
        image = torch.from_numpy(small).to(self.device).permute(2, 0, 1).unsqueeze(0).float() / 255.0
        image = image.contiguous(memory_format=self.memory_format)
        kt = None if k is None else torch.tensor([k], dtype=torch.float32, device=self.device)
        batch, used = None, 0
        if kept is not None:
            used = len(kept)
            batch = PointBatch.from_arrays([kept], self.device).scaled(sx, sy)
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.fp16):
            out = self.model(image, batch, kt)
        depth = out["depth"][0][0, 0].float().cpu().numpy()
        conf = out["confidence"][0]
        conf = None if conf is None else conf[0, 0].float().cpu().numpy()
        sal = out["salient_points"]
        if sal is None:
            return depth, conf, None, None, used
        pts = torch.cat([sal.uv[0], sal.depth[0, :, None]], dim=1).float().cpu().numpy()
        return depth, conf, pts, sal.weight[0].float().cpu().numpy(), used

    def _forward_onnx(self, small: np.ndarray, k: tuple | None, kept: np.ndarray | None, sx: float, sy: float) -> tuple:
        from . import onnx_runtime

        nh, nw = self.input_size
        image = np.ascontiguousarray(small.transpose(2, 0, 1)[None]).astype(np.float32) / 255.0
        kt = onnx_graph.default_intrinsics_array(nh, nw) if k is None else np.array([k], np.float32)
        used = 0 if kept is None else len(kept)
        if used > self.max_points:
            if not self._thinned_warned:
                log.warning("%d input points, the onnxruntime graph takes %d: using an even subset (max_points)",
                            used, self.max_points)
                self._thinned_warned = True
            kept = kept[np.round(np.linspace(0, used - 1, self.max_points)).astype(np.int64)]
            used = len(kept)
        sessions = self.onnx_sessions()
        p = self.max_points if used else 0
        points = np.zeros((1, p, 3), np.float32)
        valid = np.zeros((1, p), bool)
        if used:
            uv = torch.from_numpy(np.ascontiguousarray(kept[:, :2]))  # the torch path's exact arithmetic
            scaled = torch.stack([scale_pixel(uv[:, 0], sx), scale_pixel(uv[:, 1], sy)], -1).numpy()
            points[0, :used, :2], points[0, :used, 2], valid[0, :used] = scaled, kept[:, 2], True
        depth, conf, sal, scores = onnx_runtime.run(sessions[p], image, points, valid, kt)
        salient = sal[0] if self.cfg.model.use_saliency and sal.shape[1] else None
        return depth[0, 0], None if not self.cfg.model.use_confidence else conf[0, 0], salient, scores[0], used


def _check_size(size: Any) -> tuple[int, int]:
    """(height, width) of an output size; both must be positive integers."""
    try:
        out_h, out_w = (int(v) for v in size)
    except (TypeError, ValueError):
        out_h = out_w = 0
    if out_h <= 0 or out_w <= 0:
        raise ValueError(f"output_size must be (height, width) > 0, got {size!r}")
    return out_h, out_w


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


def _salient_to_input(points: np.ndarray | None, scores: np.ndarray | None, sx: float,
                      sy: float) -> dict[str, np.ndarray]:
    """Salient points (M, 3) in network pixels -> input pixels (pixel-centre convention)."""
    if points is None:
        return {"salient_points": np.zeros((0, 3), np.float32), "salient_scores": np.zeros(0, np.float32)}
    back = np.stack([scale_pixel(points[:, 0], sx), scale_pixel(points[:, 1], sy), points[:, 2]], axis=1)
    return {"salient_points": back.astype(np.float32), "salient_scores": np.asarray(scores, np.float32)}
