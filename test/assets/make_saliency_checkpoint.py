"""Writes test/assets/tiny_saliency_300.pt: the `tiny` preset trained 300 steps on real RGB-D data.

test/core/model/test_saliency.py checks on it that a trained Saliency-Net gives a map with real spread and
points over the whole image (the first network's map collapsed to a constant). Needs
../shared/data (7-Scenes redkitchen, RealSense office); ~3 min on one CPU thread:

    OMP_NUM_THREADS=1 python test/assets/make_saliency_checkpoint.py
"""

from __future__ import annotations

from pathlib import Path
import sys

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from fusanet_core.checkpoint import save_checkpoint  # noqa: E402
from fusanet_core.config import load_config  # noqa: E402
from fusanet_core.training.trainer import Trainer  # noqa: E402

STEPS = 300


def main() -> None:
    torch.set_num_threads(1)
    overrides = ["preset=tiny", "data.image_size=[60,80]", "inference.input_size=[60,80]", "train.batch_size=4",
                 f"train.max_steps={STEPS}", "train.out_dir=/tmp/fusanet_saliency_asset", "train.threads=1",
                 "train.checkpoint_every_min=0", "data.cache_mb=256", "train.log_every=50"]
    cfg = load_config(ROOT / "config" / "train_indoor.yaml", overrides)
    trainer = Trainer(cfg, base_dir=ROOT / "config", force=True)
    epoch = 1
    while trainer.state.step < STEPS:
        for batch in trainer._loader(epoch):
            trainer._step(batch, epoch)
            trainer.state.step += 1
            if trainer.state.step >= STEPS:
                break
        epoch += 1
    out = save_checkpoint(ROOT / "test" / "assets" / "tiny_saliency_300.pt", trainer.model.eval(), cfg, half=True,
                          steps=STEPS)
    print(f"wrote {out} ({out.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
