"""Image files in and out: RGB, 16-bit depth PNGs, confidence, coloured previews."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff")


def _imread(path: str | Path, flag: int, what: str) -> np.ndarray:
    """cv2.imread that names a missing or undecodable file instead of returning None."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    image = cv2.imread(str(path), flag)
    if image is None:
        raise ValueError(f"cannot decode {what} {path} (corrupt or not an image)")
    return image


def read_rgb(path: str | Path) -> np.ndarray:
    """HxWx3 uint8 RGB; a missing or undecodable file raises with its name."""
    return cv2.cvtColor(_imread(path, cv2.IMREAD_COLOR, "image"), cv2.COLOR_BGR2RGB)


def read_depth(path: str | Path, depth_to_m: float) -> np.ndarray:
    """Metric depth (float32 metres) from a 16-bit PNG/PGM; 0 and 65535 become 0 (invalid)."""
    raw = _imread(path, cv2.IMREAD_UNCHANGED, "depth image")
    if raw.ndim != 2 or raw.dtype not in (np.uint16, np.uint8):
        raise ValueError(f"depth image {path} must be single-channel 16-bit, got {raw.dtype} {raw.shape}")
    depth = raw.astype(np.float32) * float(depth_to_m)
    depth[(raw == 0) | (raw == 65535)] = 0.0
    return depth


def write_depth_png(path: str | Path, depth: np.ndarray) -> None:
    """16-bit millimetre PNG, 0 = invalid (NaN, inf, <= 0 or beyond 65.534 m)."""
    mm = np.nan_to_num(depth * 1000.0, nan=0.0, posinf=0.0, neginf=0.0)
    mm = np.where((mm > 0) & (mm < 65535), np.round(mm), 0).astype(np.uint16)
    _write(path, mm)


def write_confidence_png(path: str | Path, confidence: np.ndarray) -> None:
    """Confidence in [0, 1] as 8-bit (255 = 1)."""
    _write(path, np.round(np.clip(np.nan_to_num(confidence), 0, 1) * 255).astype(np.uint8))


def colorize_depth(depth: np.ndarray, max_depth: float | None = None) -> np.ndarray:
    """HxWx3 uint8 RGB turbo colouring (near = red); invalid pixels black."""
    valid = np.isfinite(depth) & (depth > 0)
    top = max_depth or (float(np.percentile(depth[valid], 98)) if valid.any() else 1.0)
    scaled = np.clip(np.where(valid, depth, 0) / max(top, 1e-6), 0, 1)
    bgr = cv2.applyColorMap(np.round((1 - scaled) * 255).astype(np.uint8), cv2.COLORMAP_TURBO)
    bgr[~valid] = 0
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def write_rgb(path: str | Path, rgb: np.ndarray) -> None:
    _write(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def list_images(inputs: list[str | Path]) -> list[Path]:
    """Files as given plus the images inside given folders (sorted); errors name what is missing."""
    found: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found += sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif item.is_file():
            found.append(item)
        else:
            raise FileNotFoundError(f"input not found: {item}")
    if not found:
        raise ValueError(f"no images found in {', '.join(map(str, inputs))}")
    return found


def _write(path: str | Path, image: np.ndarray) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"could not write {path}")
