"""FuSaNet core: the network, losses, metrics, datasets, trainer and predictor. No ROS needed.

The names below load on first use, so that light modules (`fusanet_core.bags`,
`fusanet_core.msg_arrays`, used by the bag player and the ROS conversions) do not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Config": "config", "ModelConfig": "config", "load_config": "config", "preset_config": "config",
    "FuSaNet": "model", "build_model": "model",
    "Predictor": "predictor", "default_checkpoint": "predictor",
}  # fmt: skip

__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"

if TYPE_CHECKING:
    from .config import Config, ModelConfig, load_config, preset_config
    from .model import FuSaNet, build_model
    from .predictor import Predictor, default_checkpoint


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
