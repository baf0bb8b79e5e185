"""Health checks of a training FuSaNet: whether the Saliency-Net's map is still informative.

The first trained checkpoint's saliency map was a constant (0.251020, std 3e-8 on a real frame):
both score heads had died and every "salient" point came from tie-breaking. These helpers measure
that and the trainer warns about it (docs/architecture.md, "Saliency-Net collapse").
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import Tensor

log = logging.getLogger("fusanet_core.training.trainer")

# A map whose per-image standard deviation is below this is flat: at 1e-4 no score differs from
# another by more than fp16 rounding of a 0.25 score, and top-k order is noise.
FLAT_STD = 1e-4


@torch.no_grad()
def saliency_stats(saliency: Tensor) -> dict[str, Tensor]:
    """Detached scalars of a (B, 1, H, W) saliency map.

    Its mean, and the per-image spatial standard deviation averaged over the batch (`saliency_std`).
    """
    s = saliency.detach().float()
    return {"saliency_mean": s.mean(), "saliency_std": s.flatten(1).std(dim=1).mean()}


def is_flat(saliency_std: float, threshold: float = FLAT_STD) -> bool:
    return not saliency_std >= threshold  # NaN counts as flat


def point_coverage(uv: Tensor, height: int, width: int, grid: int = 4) -> float:
    """Share of the cells of a grid x grid partition of the image that hold at least one of the points uv (N, 2).

    1 = points everywhere, 1 / grid^2 = all in one cell.
    """
    if uv.numel() == 0:
        return 0.0
    col = (uv[:, 0] * grid / width).long().clamp(0, grid - 1)
    row = (uv[:, 1] * grid / height).long().clamp(0, grid - 1)
    return float((row * grid + col).unique().numel()) / grid**2


class FlatSaliencyMonitor:
    """Warns once when logged training records show a flat saliency map.

    And again only after it recovered and went flat anew (no warning every log line).
    """

    def __init__(self, threshold: float = FLAT_STD):
        self.threshold = threshold
        self.flat = False

    def check(self, record: dict[str, Any]) -> bool:
        """Return whether the map is flat, from `record`, a training log record.

        The record holds means over the last log interval. Records without `saliency_std` (no
        Saliency-Net) are ignored.
        """
        std = record.get("saliency_std")
        if std is None:
            return False
        flat = is_flat(float(std), self.threshold)
        if flat and not self.flat:
            log.warning(
                "step %s: the saliency map is flat (spatial std %.2e < %.0e, mean %.4f): the Saliency-Net "
                "has collapsed and salient points are picked by tie-breaking only. Check loss.saliency_weight "
                "(> 0) and model.saliency_activation (leaky_relu); docs/architecture.md",
                record.get("step", "?"), float(std), self.threshold, float(record.get("saliency_mean", float("nan"))),
            )
        elif self.flat and not flat:
            log.info("step %s: the saliency map has spread again (std %.2e)", record.get("step", "?"), float(std))
        self.flat = flat
        return flat
