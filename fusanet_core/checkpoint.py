"""Checkpoints: the state dict plus the resolved config, written atomically, loaded safely.

A checkpoint is a dict {"format": FORMAT, "config": Config.to_dict(), "model": state_dict, ...}
loaded with `torch.load(weights_only=True)`: no pickled code ever runs. Also here: the bundled
checkpoint (`default_checkpoint`), file hashes and `atomic_write`, the one temp-file-and-rename
write of the project (checkpoints, ONNX graphs, reports, the metrics log). torch is imported by the
functions that need it, so that `atomic_write` and the paths stay cheap to import.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
import hashlib
import os
from pathlib import Path
import re
import tempfile
from typing import Any, TYPE_CHECKING
import warnings

from .config import Config, config_from_dict
from .errors import error_reason

if TYPE_CHECKING:
    import torch
    from torch import nn

FORMAT = "fusanet-checkpoint-v1"
# atomic_write's temp file: "<final name><mkstemp's 8 random characters>.tmp", in the same folder.
TEMP_SUFFIX = ".tmp"
_TEMP_RANDOM = "[a-z0-9_]{8}"  # tempfile's random name part (_RandomNameSequence)

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_CHECKPOINT = WEIGHTS_DIR / "fusanet_lite_fast_indoor.pt"  # the bundled model (BENCHMARKS.md)
FIRST_CHECKPOINT = WEIGHTS_DIR / "fusanet_small_indoor.pt"  # the v1 model it replaced: loadable, the eval baseline


def default_checkpoint() -> Path:
    """Return the bundled checkpoint (trained on real indoor RGB-D data, see BENCHMARKS.md)."""
    if not DEFAULT_CHECKPOINT.is_file():
        raise FileNotFoundError(f"bundled checkpoint missing: {DEFAULT_CHECKPOINT} (reinstall the package)")
    return DEFAULT_CHECKPOINT


@contextmanager
def atomic_write(path: str | Path) -> Iterator[Path]:
    """Yield a temp file beside `path` to write; it replaces `path` only when the block ends without error.

    A crash or a kill never leaves a truncated file under the final name: the temp file
    ("<name><8 random characters>.tmp") is renamed over `path` (atomic on POSIX) or deleted.
    A kill between its creation and the rename leaves it behind (`remove_temp_files`).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=TEMP_SUFFIX, dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide checkpoints and reports from other users (a node's)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; the message names the file and the problem."""


def save_checkpoint(path: str | Path, model: nn.Module, cfg: Config, half: bool = False, **extra: Any) -> Path:
    """Write model weights and config atomically (temp file + rename).

    A crash never leaves a truncated checkpoint under the final name. `half` stores floating
    weights as fp16. `extra` holds plain data (optimiser state, epoch, ...) for resuming.
    """
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in _unwrap(model).state_dict().items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    payload = {"format": FORMAT, "config": cfg.to_dict(), "model": state, **extra}
    with atomic_write(path) as tmp:
        torch.save(payload, tmp)
    return path


def remove_temp_files(folder: str | Path, names: Iterable[str]) -> list[Path]:
    """Delete the temp files that killed `atomic_write`s of `names` left in `folder`.

    A kill between mkstemp and the rename leaves the temp file behind (the final name stays whole).
    Only atomic_write's exact pattern matches: checkpoints and other files are never touched.

    Returns:
        The removed files.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    pattern = re.compile(f"({'|'.join(map(re.escape, names))}){_TEMP_RANDOM}{re.escape(TEMP_SUFFIX)}")
    stale = sorted(p for p in folder.iterdir() if pattern.fullmatch(p.name) and p.is_file())
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[dict[str, Any], Config]:
    """Load and validate a checkpoint file -> (payload, config).

    Raises CheckpointError or FileNotFoundError with one clear line.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        with warnings.catch_warnings():
            # torch warns on stderr about the pickle protocol of a foreign file before refusing it:
            # the refusal below is the one line a user should see.
            warnings.simplefilter("ignore", UserWarning)
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated zip, foreign pickle, random bytes: all end here
        reason = error_reason(err, limit=160)
        raise CheckpointError(f"checkpoint {path} is corrupt, truncated or not a safe torch file ({reason})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"checkpoint {path} is not a FuSaNet checkpoint (format {found!r}, expected {FORMAT!r})")
    try:
        cfg = config_from_dict(payload["config"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path} has an invalid config: {err}") from None
    if not isinstance(payload.get("model"), dict):
        raise CheckpointError(f"checkpoint {path} has no model weights")
    check_finite(payload["model"], path)
    return payload, cfg


def check_finite(state: dict[str, Any], source: str | Path = "checkpoint") -> None:
    """Check that every entry is a tensor and every floating one finite.

    NaN / inf weights give NaN depth everywhere (an all-invalid depth map), so they are refused
    at load, not discovered per image.

    Raises:
        CheckpointError: naming the first offending tensor and how many of its values are bad.
    """
    import torch

    for name, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"checkpoint {source} weight {name!r} is a {type(value).__name__}, not a tensor")
        if value.is_floating_point() or value.is_complex():
            finite = torch.isfinite(value)
            if not bool(finite.all()):
                bad = int((~finite).sum())
                raise CheckpointError(f"checkpoint {source} has non-finite weights: {name} holds {bad} NaN/inf of "
                                      f"{value.numel()} values (a diverged or damaged run)")


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], source: str | Path = "checkpoint") -> None:
    """Strict load that names missing, unexpected and mis-shaped keys instead of a long trace."""
    target = _unwrap(model).state_dict()
    missing = sorted(set(target) - set(state))
    unexpected = sorted(set(state) - set(target))
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in target.items()
              if k in state and state[k].shape != v.shape]
    if missing or unexpected or shapes:
        parts = [f"missing keys {_few(missing)}" if missing else "",
                 f"unexpected keys {_few(unexpected)}" if unexpected else ""]
        parts.append(f"shape mismatch {_few(shapes)}" if shapes else "")
        raise CheckpointError(f"{source} does not match the model: " + "; ".join(p for p in parts if p))
    dtype_state = {k: v.to(target[k].dtype) for k, v in state.items()}
    _unwrap(model).load_state_dict(dtype_state, strict=True)


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, Config]:
    """Rebuild the model a checkpoint describes and load its weights (eval mode)."""
    from .model import build_model  # late: model imports config only, keep this module light

    payload, cfg = read_checkpoint(path)
    model = build_model(cfg)
    load_weights(model, payload["model"], path)
    return model.to(device).eval(), cfg


def apply_input_size(cfg: Config, input_size: tuple[int, int] | None) -> Config:
    """Set the network input (height, width) on `cfg` (in place; None keeps the checkpoint's).

    The size follows the config's own rule (`InferenceConfig`: two sizes >= 32). The one place every
    user of a size override goes through: the Predictor, `fusanet export`.

    Raises:
        ValueError: the size breaks the rule (the message names it).
    """
    if input_size is not None:
        cfg.inference.input_size = tuple(int(v) for v in input_size)
        cfg.inference.__post_init__()
    return cfg


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model  # DistributedDataParallel


def _few(items: list[str], limit: int = 3) -> str:
    more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more
