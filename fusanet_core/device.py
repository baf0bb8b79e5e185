"""The one device rule: what a device name ("auto", "cpu", "cuda", "cuda:N") stands for.

Used by the trainer (`train.device`), the Predictor (`--device`) and the depth node (parameter
`device`, checked when it is set, resolved when the model loads). torch is imported on first
resolve only: the node's parameter checks and launch files must not load it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

DEVICE_NAMES = "auto, cpu, cuda or cuda:N"


def check_device_name(name: str | torch.device, what: str = "device") -> str:
    """Return the name when it is well formed (its GPU may still be missing); `what` names it in the error."""
    text = str(name)
    if re.fullmatch(r"auto|cpu|cuda(:[0-9]+)?", text):
        return text
    raise ValueError(f"{what} must be {DEVICE_NAMES}, got {text!r}")


def resolve_device(name: str | torch.device = "auto", local_rank: int = 0, what: str = "device") -> torch.device:
    """Return the torch device a name stands for.

    "auto" is this process's GPU when CUDA is available, else the CPU; "cuda" is this process's
    GPU (`local_rank`, torchrun's LOCAL_RANK: one GPU per process); "cuda:N" is GPU N.

    Raises:
        ValueError: a malformed name, or a GPU that is not there (`what` names the setting).
    """
    import torch

    text = check_device_name(name, what)
    if text == "cpu" or (text == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError(f"{what} {text!r} requested but CUDA is not available (use 'auto' or 'cpu')")
    device = torch.device(text if ":" in text else f"cuda:{local_rank}")
    if device.index >= torch.cuda.device_count():
        raise ValueError(f"{what} {text!r} requested but only {torch.cuda.device_count()} CUDA device(s) are visible")
    return device
