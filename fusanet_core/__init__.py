"""FuSaNet core: the network, losses, metrics, datasets, trainer and predictor. No ROS needed.

The package by layer: `model/` (the network), `datasets/`, `training/`, `inference/` (the
Predictor), `evaluation/`, `io/` (images, bags, messages), and beside them `config`, `checkpoint`,
`geometry`, `device`, `errors` and the `cli` (docs/architecture.md).

The names below load on first use, so that light modules (`fusanet_core.io.bags`,
`fusanet_core.io.messages`, used by the bag player and the ROS conversions) do not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any, TYPE_CHECKING

if TYPE_CHECKING:
    from .checkpoint import default_checkpoint
    from .config import Config, load_config, ModelConfig, preset_config
    from .inference.predictor import Predictor
    from .model import build_model, FuSaNet

_EXPORTS = {
    "Config": "config", "ModelConfig": "config", "load_config": "config", "preset_config": "config",
    "FuSaNet": "model", "build_model": "model",
    "Predictor": "inference.predictor", "default_checkpoint": "checkpoint",
}  # fmt: skip

# Spelled out (pyflakes reads only a literal __all__, and so sees the TYPE_CHECKING imports used);
# the same names as _EXPORTS, in sorted() order.
__all__ = [
    "Config", "FuSaNet", "ModelConfig", "Predictor",
    "build_model", "default_checkpoint", "load_config", "preset_config",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """`fusanet_core.build_model` and friends, and submodules (`fusanet_core.checkpoint`), on demand."""
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    try:
        return importlib.import_module(f".{name}", __name__)
    except ModuleNotFoundError as err:
        if err.name != f"{__name__}.{name}":
            raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
