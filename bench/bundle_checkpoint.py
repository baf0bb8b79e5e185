"""Re-save a training checkpoint as the bundled inference checkpoint (fp16 weights, no optimiser).

Usage: python bench/bundle_checkpoint.py runs/all/best.pt fusanet_core/weights/NAME.pt
(bench/calibrate_confidence.py does the same and adds the confidence calibration.)
"""

import sys
from typing import Any

from fusanet_core.checkpoint import load_model, read_checkpoint, save_checkpoint


def trained_info(payload: dict[str, Any]) -> dict[str, Any]:
    """Return the training facts to keep: from a training checkpoint, or a bundled one's own."""
    trainer = payload.get("trainer", {})
    keep = {k: trainer[k] for k in ("best_epoch", "best_rmse", "step") if k in trainer}
    return keep or dict(payload.get("trained", {}))


def main(src: str, dst: str) -> None:
    payload, _ = read_checkpoint(src)
    model, cfg = load_model(src)
    keep = trained_info(payload)
    path = save_checkpoint(dst, model, cfg, half=True, trained=keep)
    print(f"{src} -> {path} ({path.stat().st_size / 1e6:.1f} MB), {keep}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
