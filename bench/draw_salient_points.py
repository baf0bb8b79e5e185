"""Draw the Saliency-Net's points on real frames (the paper's Fig. 6 c_s / d_s), one row per frame.

Each row: the input image with the selected salient points (coloured by their depth) | the
saliency map | the predicted depth, for every checkpoint given (so a dead map and a working one
can be seen side by side). Frames come from manifest specs (`set/manifest.csv[i]`) under
../shared/data or from image files with --intrinsics.

Usage:
    python bench/draw_salient_points.py --out docs/img/salient_points.jpg \
        --checkpoint runs/ablate_c/lite_log_silog/last.pt --checkpoint fusanet_core/weights/fusanet_small_indoor.pt \
        "7scenes_redkitchen/manifest.csv[450]" "rs_d435_office/manifest.csv[220]"
"""

from __future__ import annotations

import argparse
from pathlib import Path
import sys

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"

from fusanet_core import load_config, Predictor  # noqa: E402, I100 (needs the sys.path insert above)
from fusanet_core.datasets import build_source  # noqa: E402
from fusanet_core.io.images import colorize_depth  # noqa: E402

TILE_WIDTH = 320


def load_frame(spec: str) -> tuple[np.ndarray, np.ndarray]:
    """Return (rgb, intrinsics) of one manifest row `set/manifest.csv[i]`."""
    path, _, index = spec.rpartition("[")
    cfg = load_config(ROOT / "config" / "train_indoor.yaml")
    source = build_source(f"{DATA / path}[{index.rstrip(']')}:{int(index.rstrip(']')) + 1}]", cfg)
    frame = source.load(0)
    return frame.rgb, np.asarray(frame.intrinsics, np.float64)


def saliency_map(predictor: Predictor, rgb: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Return the model's saliency map at the network input size (HxW in [0, 1])."""
    h, w = predictor.input_size
    small = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
    x = torch.from_numpy(small).permute(2, 0, 1)[None].float() / 255.0
    scale = np.array([w / rgb.shape[1], h / rgb.shape[0]] * 2)
    with torch.no_grad():
        out = predictor.model(x, None, torch.tensor(k * scale, dtype=torch.float32)[None])
    if out.get("saliency") is None:
        return np.zeros((h, w), np.float32)
    return out["saliency"][0, 0].numpy()


def tile(image: np.ndarray) -> np.ndarray:
    """Resize an image to the tile width, keeping its aspect ratio."""
    h, w = image.shape[:2]
    return cv2.resize(image, (TILE_WIDTH, round(h * TILE_WIDTH / w)), interpolation=cv2.INTER_NEAREST)


def row(predictor: Predictor, rgb: np.ndarray, k: np.ndarray, label: str) -> np.ndarray:
    """Return image + points | saliency map | depth for one frame and one model."""
    out = predictor.predict(rgb, tuple(k))
    points = out["salient_points"]
    top = float(np.nanpercentile(out["depth"], 98))
    view = tile(rgb).copy()
    sx = TILE_WIDTH / rgb.shape[1]
    colours = colorize_depth(points[:, 2:3].T, top)[0] if len(points) else []
    for (u, v, _), colour in zip(points, colours):
        cv2.circle(view, (int(u * sx), int(v * sx)), 3, tuple(int(c) for c in colour), -1)
        cv2.circle(view, (int(u * sx), int(v * sx)), 3, (255, 255, 255), 1)
    sal = saliency_map(predictor, rgb, k)
    spread = f"std {sal.std():.3f}"
    sal_view = tile(cv2.applyColorMap((255 * np.clip(sal, 0, 1)).astype(np.uint8), cv2.COLORMAP_VIRIDIS)[..., ::-1])
    depth_view = tile(colorize_depth(out["depth"], top))
    for image, text in ((view, f"{label}: {len(points)} points"), (sal_view, f"saliency ({spread})"),
                        (depth_view, "depth")):
        cv2.putText(image, text, (5, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([view, sal_view, depth_view], axis=1)


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and write the figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("frames", nargs="+", help="manifest rows under ../shared/data, e.g. set/manifest.csv[12]")
    parser.add_argument("--checkpoint", action="append", required=True, help="checkpoint (repeatable)")
    parser.add_argument("--out", default="docs/img/salient_points.jpg")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    names = [Path(c).parent.name if Path(c).name == "last.pt" else Path(c).stem for c in args.checkpoint]
    predictors = [(name, Predictor.from_checkpoint(c, "cpu")) for name, c in zip(names, args.checkpoint)]
    rows = []
    for spec in args.frames:
        rgb, k = load_frame(spec)
        rows += [row(predictor, rgb, k, name) for name, predictor in predictors]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), np.concatenate(rows, axis=0)[..., ::-1])
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
