"""The training task: batch + model -> {"loss", parts}. The trainer never sees loss internals.

Objective: the final pass's multi-scale loss (Eq. 5) plus `loss.pass1_weight` times the first
pass's (the paper trains both passes; the weight is not published), plus `loss.saliency_weight`
times the auxiliary Saliency-Net loss (losses.saliency_loss). The sparse term L_S is evaluated at
the input guiding points of the batch in both passes. The plain U-Net baseline (model.arch: unet,
no confidence, no saliency) is trained with losses.unet_loss instead.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn, Tensor

from .losses import multiscale_loss, saliency_loss, sparse_loss, unet_loss
from .model_health import FlatSaliencyMonitor, saliency_stats
from ..config import Config
from ..model.points import PointBatch


def batch_to(batch: dict[str, Any], device: torch.device | str) -> dict[str, Any]:
    """Move the tensors (and the PointBatch) of a collated batch to `device`."""
    moved: dict[str, Any] = {}
    for key, value in batch.items():
        if isinstance(value, (Tensor, PointBatch)):
            moved[key] = value.to(device)
        else:
            moved[key] = value
    return moved


def _conf_list(conf: list[Tensor | None] | None) -> list[Tensor] | None:
    """None when the model has no confidence predictor (entries are None)."""
    if conf is None or any(c is None for c in conf):
        return None
    return list(conf)


class DepthTask:
    """FuSaNet's supervised depth objective.

    Args:
        cfg: the run's config (loss weights are read from `cfg.loss`).
    """

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.monitor = FlatSaliencyMonitor()

    def check_health(self, record: dict[str, Any]) -> None:
        """Warn (log) when a logged training record says the saliency map has gone flat."""
        self.monitor.check(record)

    def sparse_mask(self, batch: dict[str, Any]) -> Tensor:
        """(B, 1, H, W) bool: pixels holding an input guiding point."""
        height, width = batch["depth"].shape[-2:]
        _, conf = batch["points"].rasterize(height, width)
        return conf > 0

    def __call__(self, model: nn.Module, batch: dict[str, Any], epoch: int) -> dict[str, Tensor]:
        """Forward pass and loss.

        Args:
            model: FuSaNet (possibly wrapped in DistributedDataParallel).
            batch: a collated batch already on the model's device.
            epoch: 1-based epoch (the confidence term decays as 1/epoch).

        Returns:
            {"loss": differentiable total, "final": ..., "pass1": ..., and the final pass's
            detached parts l_log, l_grad, l_norm, l_conf, l_sparse, l_hessian, l_sparse_full (L_S of
            the full-resolution depth alone)}.
        """
        points = batch["points"]
        out = model(batch["rgb"], points if points.num_points else None, batch["intrinsics"])
        target, mask = batch["depth"], batch["mask"]
        if self.cfg.model.arch == "unet":
            parts = unet_loss(out["depth"], target, mask, self.cfg.loss)
            result = {k: v.detach() for k, v in parts.items() if k != "loss"}
            result["final"] = parts["loss"].detach()
            result["loss"] = parts["loss"]
            return result
        sparse = self.sparse_mask(batch)
        final = multiscale_loss(out["depth"], _conf_list(out.get("confidence")), target, mask, sparse, epoch,
                                self.cfg.loss)
        result = {k: v.detach() for k, v in final.items() if k != "loss"}
        # l_sparse sums the scales; at coarse scales a block holding a point is scored against the
        # block's mean depth, so only the full-resolution ratio says how well the points are followed.
        result["l_sparse_full"] = sparse_loss(out["depth"][0].detach(), target, sparse, mask)
        result["final"] = final["loss"].detach()
        loss = final["loss"]
        first = out.get("pass1")
        if first is not None and self.cfg.loss.pass1_weight > 0:
            p1 = multiscale_loss(first["depth"], _conf_list(first["confidence"]), target, mask, sparse, epoch,
                                 self.cfg.loss)
            loss = loss + self.cfg.loss.pass1_weight * p1["loss"]
            result["pass1"] = p1["loss"].detach()
        saliency = out.get("saliency")
        if saliency is not None and first is not None:
            result.update(saliency_stats(saliency))
            if self.cfg.loss.saliency_weight > 0:
                aux = saliency_loss(saliency, first["depth"][0].detach(), target, mask)
                loss = loss + self.cfg.loss.saliency_weight * aux
                result["l_saliency"] = aux.detach()
        result["loss"] = loss
        return result

    @staticmethod
    @torch.no_grad()
    def predict(model: nn.Module, batch: dict[str, Any]) -> Tensor:
        """Full-resolution depth (B, 1, H, W) from RGB only: the deployed inference path."""
        out = model(batch["rgb"], None, batch["intrinsics"])
        return out["depth"][0]
