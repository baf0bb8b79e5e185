"""Offline evaluation (`fusanet eval`): a checkpoint's depth metrics on a data set, through the Predictor.

Unlike the trainer's validation (network resolution, batched), this scores what a user of the
Predictor gets: full ground-truth resolution, any evaluation crop.
"""

from __future__ import annotations

from pathlib import Path

from .metrics import MetricAccumulator
from ..datasets import build_source
from ..inference.predictor import Predictor


def evaluate(
    checkpoint: str | Path,
    data: str,
    device: str = "auto",
    crop: str | None = None,
    max_depth: float | None = None,
    kind: str | None = None,
    input_size: tuple[int, int] | None = None,
    data_root: str | None = None,
    gt_root: str | None = None,
) -> dict[str, float]:
    """Compute the metrics of a checkpoint on a data set at the ground truth's full resolution.

    The Predictor resizes to the network's input size and back; RGB only, no median scaling.

    Args:
        checkpoint: checkpoint file.
        data: manifest.csv, a folder with one, a list file or a bag (optionally "[a:b]").
        device: auto | cpu | cuda[:N].
        crop: None, "eigen_nyu", "garg" or "eigen_kitti".
        max_depth: cap (default: the checkpoint's data.max_depth).
        kind: list-file units "nyu" or "kitti" (default: the checkpoint's data.kind).
        input_size: network input (height, width) (default: the checkpoint's inference size).
        data_root: list files: folder of the RGB paths (default: the checkpoint's data.data_root,
            a folder of the machine it was trained on).
        gt_root: list files: folder of the depth paths (default: the checkpoint's data.gt_root).
    """
    predictor = Predictor.from_checkpoint(checkpoint, device, None, input_size)
    cfg = predictor.cfg
    if kind is not None:
        cfg.data.kind = kind
    if data_root is not None:
        cfg.data.data_root = data_root
    if gt_root is not None:
        cfg.data.gt_root = gt_root
    source = build_source(data, cfg, None)
    cap = cfg.data.max_depth if max_depth is None else max_depth
    acc = MetricAccumulator(min_depth=cfg.data.min_depth, max_depth=cap, crop=crop)
    for index in range(len(source)):
        frame = source.load(index)
        result = predictor.predict(frame.rgb, frame.intrinsics)
        acc.add(result["depth"], frame.depth)
    return acc.summary()
