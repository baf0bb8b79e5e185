"""The FuSaNet network (nn.Modules only) and its builder."""

from __future__ import annotations

import dataclasses

import torch

from .fusanet import FuSaNet
from .unet import UNet
from ..config import Config, ModelConfig, preset_config

__all__ = ["FuSaNet", "UNet", "build_model"]


def build_model(
    preset_or_config: str | Config | ModelConfig = "paper",
    device: str | torch.device = "cpu",
    pretrained: bool | None = None,
) -> FuSaNet | UNet:
    """Build the network of a preset name (config.PRESETS) or a config, on `device`.

    `pretrained`: True loads the backbone's ImageNet weights now, False never (random init), None
    (default) on the model's first `.train()` when `model.backbone_pretrained` (so loading a
    checkpoint never needs the weights package).
    """
    if isinstance(preset_or_config, str):
        preset_or_config = preset_config(preset_or_config)
    cfg = preset_or_config.model if isinstance(preset_or_config, Config) else preset_or_config
    if not isinstance(cfg, ModelConfig):
        raise ValueError(f"build_model needs a preset name or a Config, got {type(preset_or_config).__name__}")
    if pretrained is False:
        cfg = dataclasses.replace(cfg, backbone_pretrained=False)
    model = UNet(cfg) if cfg.arch == "unet" else FuSaNet(cfg)
    if pretrained:
        model.load_pretrained()
    return model.to(device)
