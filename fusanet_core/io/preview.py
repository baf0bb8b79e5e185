"""Preview images: colour | coloured depth | a colour bar with its scale in metres.

`fusanet predict` writes one per image (`<name>_preview.png`) and `fusanet demo` one per frame.
Drawn with OpenCV only (cv2.putText), so no plotting library is needed.
"""

from __future__ import annotations

from collections.abc import Sequence
import math

import cv2
import numpy as np

from .images import colorize_depth

BACKGROUND = (32, 32, 32)
TEXT = (255, 255, 255)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def depth_preview(rgb: np.ndarray | None, depth: np.ndarray, max_depth: float | None = None,
                  extra_depths: Sequence[np.ndarray] = ()) -> np.ndarray:
    """Return an HxWx3 uint8 RGB strip: `rgb` | coloured `depth` | coloured `extra_depths` | colour bar.

    Args:
        rgb: HxWx3 uint8 RGB image, or None for depth panels only.
        depth: HxW depth in metres; NaN, inf and values <= 0 are invalid (drawn black).
        max_depth: the far end of the colour scale in metres (None: the 98th percentile of the
            valid depth of all panels). Near is red, far is blue (turbo), as `colorize_depth`.
        extra_depths: more depth maps in the same scale (e.g. the sensor's depth beside the prediction).

    Depth panels of another size than `rgb` are resized (nearest) to its size. The bar's height is
    the panels' height; its ticks are labelled in metres.
    """
    depths = [np.asarray(d, dtype=np.float32) for d in (depth, *extra_depths)]
    for d in depths:
        if d.ndim != 2:
            raise ValueError(f"depth must be HxW, got shape {d.shape}")
    top = _scale_top(depths, max_depth)
    height, width = (rgb.shape[:2] if rgb is not None else depths[0].shape)
    panels = [] if rgb is None else [_as_rgb(rgb)]
    for d in depths:
        if d.shape != (height, width):
            d = cv2.resize(d, (width, height), interpolation=cv2.INTER_NEAREST)
        panels.append(colorize_depth(d, top))
    panels.append(colour_bar(height, top))
    return np.ascontiguousarray(np.concatenate(panels, axis=1))


def colour_bar(height: int, max_depth: float) -> np.ndarray:
    """Return a vertical HxWx3 uint8 RGB colour bar for 0..max_depth metres (far at the top), with labelled ticks."""
    if height < 1 or not max_depth > 0 or not math.isfinite(max_depth):
        raise ValueError(f"colour bar needs height >= 1 and a finite max_depth > 0, got {height}, {max_depth}")
    scale = float(np.clip(height / 900, 0.3, 0.8))
    thickness = 1 if scale < 0.6 else 2
    margin = max(3, height // 40)
    strip = max(8, height // 24)
    ticks = tick_values(max_depth, int(np.clip(height // 60, 2, 5)))
    labels = [format_metres(t) for t in ticks]
    text_w = max(cv2.getTextSize(label, FONT, scale, thickness)[0][0] for label in labels)
    text_h = cv2.getTextSize("0", FONT, scale, thickness)[0][1]
    bar = np.full((height, margin + strip + 4 + text_w + margin, 3), BACKGROUND, np.uint8)
    # The strip spans the rows [y0, y1] so that the top and bottom labels fit inside the image.
    y0, y1 = min(text_h // 2 + margin, height // 2), max(height - 1 - text_h // 2 - margin, height // 2)
    rows = np.arange(height, dtype=np.float32)
    metres = np.clip((y1 - rows) / max(y1 - y0, 1), 0, 1) * max_depth
    metres[metres <= 0] = 1e-6 * max_depth  # 0 m is a valid colour here, not "invalid"
    column = colorize_depth(metres[:, None], max_depth)
    bar[y0:y1 + 1, margin:margin + strip] = column[y0:y1 + 1]
    for value, label in zip(ticks, labels):
        y = int(round(y1 - value / max_depth * (y1 - y0)))
        cv2.line(bar, (margin + strip, y), (margin + strip + 3, y), TEXT, 1)
        baseline_y = int(np.clip(y + text_h // 2, text_h, height - 1))
        cv2.putText(bar, label, (margin + strip + 4, baseline_y), FONT, scale, TEXT, thickness, cv2.LINE_AA)
    return bar


def tick_values(max_depth: float, intervals: int = 5) -> list[float]:
    """Return round ticks 0, step, 2 step ... <= max_depth: the smallest step 1, 2 or 5 x 10^k giving <= `intervals`."""
    raw = max_depth / max(intervals, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    count = int(math.floor(max_depth / step + 1e-9))
    return [round(i * step, 10) for i in range(count + 1)]


def format_metres(value: float) -> str:
    """Return a tick label: `2 m`, `0.5 m`, `0.25 m`."""
    return f"{value:.2f}".rstrip("0").rstrip(".") + " m"


def _scale_top(depths: list[np.ndarray], max_depth: float | None) -> float:
    if max_depth is not None:
        if not (max_depth > 0 and math.isfinite(max_depth)):
            raise ValueError(f"max_depth must be finite and > 0, got {max_depth}")
        return float(max_depth)
    valid = np.concatenate([d[np.isfinite(d) & (d > 0)] for d in depths])
    return float(np.percentile(valid, 98)) if valid.size else 1.0


def _as_rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2).astype(np.uint8)
    return np.asarray(image[:, :, :3], dtype=np.uint8)
