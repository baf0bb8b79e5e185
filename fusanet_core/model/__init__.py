"""The FuSaNet network (nn.Modules only) and its builder."""

from __future__ import annotations

import torch

from ..config import Config, ModelConfig, preset_config
from .fusanet import FuSaNet

__all__ = ["FuSaNet", "build_model"]


def build_model(preset_or_config: str | Config | ModelConfig = "paper", device: str | torch.device = "cpu") -> FuSaNet:
    """Build a FuSaNet from a preset name ("paper", "small", "tiny") or a config, on `device`."""
    if isinstance(preset_or_config, str):
        preset_or_config = preset_config(preset_or_config)
    cfg = preset_or_config.model if isinstance(preset_or_config, Config) else preset_or_config
    if not isinstance(cfg, ModelConfig):
        raise ValueError(f"build_model needs a preset name or a Config, got {type(preset_or_config).__name__}")
    return FuSaNet(cfg).to(device)
