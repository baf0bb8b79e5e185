"""The Predictor's onnxruntime backend: cached ONNX graphs of a checkpoint, execution providers.

Graphs are exported on first use (`export.export_model`, checked against PyTorch) into the cache
folder (`cache_dir()`: $FUSANET_CACHE_DIR, else $XDG_CACHE_HOME/fusanet, else ~/.cache/fusanet)
as `<checkpoint sha256>-<h>x<w>-<max points>.onnx`, written atomically and re-used when present. A
cached file is only used when its metadata (`onnx_graph.graph_metadata`: checkpoint SHA-256, code
version, sizes, format) matches what is asked for; otherwise, or when it does not load, it is
rebuilt in place.

Two graphs per checkpoint and size: one with `max_points` point rows and a point-free one (P = 0)
for frames without valid points. Both give the eager model's results; the point-free one skips
the point branch, which with padding rows costs as much as it does with real points.

Execution providers follow the device rule (`choose_providers`): "cpu" -> CPU; "cuda[:N]" -> the
TensorRT (when installed) and CUDA providers of onnxruntime-gpu on GPU N, CPU as fallback; "auto"
-> CUDA when onnxruntime has the CUDA provider and a GPU is visible (torch.cuda.is_available()),
else CPU. The CPU provider runs with torch.get_num_threads() intra-op threads, so the one knob
(`torch.set_num_threads`, the node's num_threads) governs both backends.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from . import export, onnx_graph
from ..device import check_device_name

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install onnxruntime (CPU) or pip install onnxruntime-gpu (CUDA / TensorRT)"


def require_onnxruntime() -> Any:
    """Return the onnxruntime module, or raise a ValueError that says how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise ValueError("backend 'onnxruntime' needs the onnxruntime package, which is not installed: "
                         f"{INSTALL_HINT}") from None
    return onnxruntime


def cache_dir() -> Path:
    """Where exported graphs are cached: $FUSANET_CACHE_DIR, $XDG_CACHE_HOME/fusanet or ~/.cache/fusanet."""
    if os.environ.get("FUSANET_CACHE_DIR"):
        return Path(os.environ["FUSANET_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "fusanet"


def graph_path(directory: str | Path, checkpoint_sha256: str, input_size: tuple[int, int], max_points: int) -> Path:
    height, width = input_size
    return Path(directory) / f"{checkpoint_sha256}-{int(height)}x{int(width)}-{int(max_points)}.onnx"


def state_sha256(model: nn.Module, cfg: Any) -> str:
    """SHA-256 of a model's weights and model config: the cache key of a model that came from no file."""
    import hashlib
    import json

    digest = hashlib.sha256(json.dumps(cfg.to_dict().get("model", {}), sort_keys=True, default=str).encode())
    for name, value in sorted(model.state_dict().items()):
        data = value.detach().cpu().contiguous()
        digest.update(f"{name}:{data.dtype}:{tuple(data.shape)}".encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()


def choose_providers(device: str | torch.device, available: Sequence[str], fp16: bool = False,
                     trt_cache: str | Path | None = None,
                     cuda_visible: bool | None = None) -> tuple[list[Any], torch.device]:
    """Return onnxruntime execution providers for a device name and the torch device they stand for.

    The providers follow the rule in the module docstring.

    Raises:
        ValueError: a bad device name, or "cuda" without the CUDA provider (names onnxruntime-gpu).
    """
    name = check_device_name(device)
    has_cuda = "CUDAExecutionProvider" in available
    if name == "auto":
        visible = torch.cuda.is_available() if cuda_visible is None else cuda_visible
        name = "cuda" if has_cuda and visible else "cpu"
    if name == "cpu":
        return ["CPUExecutionProvider"], torch.device("cpu")
    if not has_cuda:
        raise ValueError(f"device {name!r} with backend 'onnxruntime' needs onnxruntime's CUDA execution provider "
                         f"(available: {', '.join(available)}): pip install onnxruntime-gpu")
    index = torch.device(name).index or 0
    providers: list[Any] = []
    if "TensorrtExecutionProvider" in available:
        trt: dict[str, Any] = {"device_id": index, "trt_fp16_enable": bool(fp16)}
        if trt_cache is not None:  # engines take minutes to build: keep them next to the graphs
            trt.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(trt_cache))
        providers.append(("TensorrtExecutionProvider", trt))
    providers += [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    return providers, torch.device("cuda", index)


class OnnxGraphs:
    """The graphs of one model at one input size, built or loaded on first use (`sessions()`)."""

    def __init__(self, model: nn.Module, input_size: tuple[int, int], max_points: int, checkpoint_sha256: str,
                 providers: list[Any], directory: str | Path | None = None, source: str = "the model",
                 opset: int = onnx_graph.DEFAULT_OPSET) -> None:
        self.ort = require_onnxruntime()
        self.model = model
        self.input_size = tuple(int(v) for v in input_size)
        self.max_points = int(max_points)
        self.sha256 = checkpoint_sha256
        self.providers = providers
        self.directory = Path(directory) if directory is not None else cache_dir()
        self.source = source
        self.opset = opset
        self._sessions: dict[int, Any] = {}

    def sessions(self) -> dict[int, Any]:
        """{max points: InferenceSession} for P = max_points and P = 0 (one entry when max_points is 0)."""
        if not self._sessions:
            self._sessions = {p: self._session(p) for p in sorted({0, self.max_points})}
        return self._sessions

    def path(self, max_points: int) -> Path:
        return graph_path(self.directory, self.sha256, self.input_size, max_points)

    def _session(self, max_points: int) -> Any:
        path = self.path(max_points)
        expected = onnx_graph.graph_metadata(self.sha256, *self.input_size, max_points, self.opset)
        if path.is_file():
            problem = self._mismatch(path, expected)
            if problem is None:
                log.debug("onnxruntime: using cached %s", path)
                return self._open(path)
            log.warning("ignoring cached ONNX graph %s (%s): exporting it again", path, problem)
        log.info("exporting %s at %dx%d (max %d points) to %s (once; cached)", self.source, *self.input_size,
                 max_points, path)
        export.export_model(self.model, path, self.input_size, max_points, self.opset, self.source, expected)
        problem = self._mismatch(path, expected)
        if problem is not None:  # another process replaced it between our write and now
            raise ValueError(f"ONNX graph {path} changed while being built ({problem})")
        return self._open(path)

    def _mismatch(self, path: Path, expected: dict[str, str]) -> str | None:
        """None when `path` loads and its metadata is `expected`, else what is wrong."""
        options = self.ort.SessionOptions()
        options.graph_optimization_level = self.ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        try:
            meta = self.ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]).get_modelmeta()
        except Exception as err:  # truncated, foreign or damaged file: onnxruntime raises its own types
            return f"unreadable: {str(err).strip().splitlines()[0][:120] if str(err).strip() else type(err).__name__}"
        found = meta.custom_metadata_map
        for key, value in expected.items():
            if found.get(key) != value:
                return f"{key} is {found.get(key)!r}, expected {value!r}"
        return None

    def _open(self, path: Path) -> Any:
        options = self.ort.SessionOptions()
        options.intra_op_num_threads = max(1, torch.get_num_threads())
        options.inter_op_num_threads = 1
        session = self.ort.InferenceSession(str(path), options, providers=self.providers)
        wanted = self.providers[0] if isinstance(self.providers[0], str) else self.providers[0][0]
        if wanted not in session.get_providers():
            log.warning("onnxruntime could not use %s; running on %s", wanted, session.get_providers()[0])
        return session


def run(session: Any, rgb: np.ndarray, points: np.ndarray, valid: np.ndarray,
        intrinsics: np.ndarray) -> list[np.ndarray]:
    """One forward pass: feeds the inputs the graph has (a P = 0 graph has no points inputs)."""
    feeds = {"rgb": rgb, "points": points, "points_valid": valid, "intrinsics": intrinsics}
    names = {i.name for i in session.get_inputs()}
    return session.run(list(onnx_graph.OUTPUT_NAMES), {k: v for k, v in feeds.items() if k in names})
