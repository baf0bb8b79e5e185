"""Geometric and photometric transforms of an RGB-D frame.

They keep depth, validity and the camera intrinsics consistent.

Conventions: images are numpy arrays (RGB HxWx3 uint8, depth HxW float32 metres with 0 =
invalid); intrinsics are (fx, fy, cx, cy) in pixels with the pixel-centre convention (pixel
(0, 0) is centred at u = v = 0), the one of `PointBatch.scaled` and the Predictor. Depth is
always resampled with nearest neighbour so that no depth value is invented between a foreground
and a background surface. Guiding points are computed after these transforms, on the transformed
image, so they need no transform of their own.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..geometry import scale_intrinsics


@dataclass
class Frame:
    """One RGB-D frame.

    Attributes:
        rgb: HxWx3 uint8 RGB.
        depth: HxW float32 metres; 0 (or non-finite) = invalid.
        intrinsics: (4,) float64 fx, fy, cx, cy at this resolution.
    """

    rgb: np.ndarray
    depth: np.ndarray
    intrinsics: np.ndarray

    @property
    def size(self) -> tuple[int, int]:
        return self.rgb.shape[0], self.rgb.shape[1]


@dataclass
class AugmentParams:
    """Augmentation strengths.

    Paper section 4.2: rotation +-5 deg, flip, window dropping, colour jitter; the exact strengths
    of the last two are not published.
    """

    rotation_deg: float = 5.0
    flip_prob: float = 0.5
    drop_prob: float = 0.5
    drop_max_frac: float = 0.25  # the dropped rectangle spans up to this share of each side
    jitter: float = 0.2  # brightness/contrast/saturation factors in [1 - j, 1 + j]
    channel_gain: float = 0.1  # per-channel colour gain in [1 - g, 1 + g]
    zoom_min: float = 1.0  # random zoom: a [zoom_min, 1] x size window resized back (1 = off)


def default_intrinsics(height: int, width: int) -> np.ndarray:
    """Return intrinsics for an unknown camera, the same guess as the model's.

    That is fx = fy = width, principal point at the centre.
    """
    return np.array([width, width, (width - 1) / 2, (height - 1) / 2], np.float64)


def resize(frame: Frame, size: tuple[int, int]) -> Frame:
    """Resize to (height, width); intrinsics scale with the pixel-centre convention."""
    h, w = frame.size
    nh, nw = int(size[0]), int(size[1])
    if (h, w) == (nh, nw):
        return frame
    sx, sy = nw / w, nh / h
    interp = cv2.INTER_AREA if sx < 1 and sy < 1 else cv2.INTER_LINEAR
    rgb = cv2.resize(frame.rgb, (nw, nh), interpolation=interp)
    # INTER_NEAREST_EXACT samples the source pixel under each target pixel centre; plain
    # INTER_NEAREST is shifted by half a source pixel per scale step.
    depth = cv2.resize(frame.depth, (nw, nh), interpolation=cv2.INTER_NEAREST_EXACT)
    return Frame(rgb, depth, np.array(scale_intrinsics(frame.intrinsics, sx, sy), np.float64))


def crop(frame: Frame, top: int, left: int, size: tuple[int, int]) -> Frame:
    """Crop a (height, width) window at (top, left); the principal point shifts with it."""
    h, w = int(size[0]), int(size[1])
    fh, fw = frame.size
    if not (0 <= top and 0 <= left and top + h <= fh and left + w <= fw):
        raise ValueError(f"crop {size} at ({top}, {left}) does not fit a {fh}x{fw} frame")
    fx, fy, cx, cy = frame.intrinsics
    return Frame(
        frame.rgb[top:top + h, left:left + w].copy(),
        frame.depth[top:top + h, left:left + w].copy(),
        np.array([fx, fy, cx - left, cy - top], np.float64),
    )


def random_crop(frame: Frame, size: tuple[int, int], rng: np.random.Generator) -> Frame:
    fh, fw = frame.size
    top = int(rng.integers(0, fh - size[0] + 1))
    left = int(rng.integers(0, fw - size[1] + 1))
    return crop(frame, top, left, size)


def center_crop(frame: Frame, size: tuple[int, int]) -> Frame:
    fh, fw = frame.size
    return crop(frame, (fh - size[0]) // 2, (fw - size[1]) // 2, size)


def hflip(frame: Frame) -> Frame:
    """Mirror left-right: pixel u goes to w - 1 - u, and so does the principal point."""
    w = frame.size[1]
    fx, fy, cx, cy = frame.intrinsics
    return Frame(
        np.ascontiguousarray(frame.rgb[:, ::-1]),
        np.ascontiguousarray(frame.depth[:, ::-1]),
        np.array([fx, fy, w - 1 - cx, cy], np.float64),
    )


def rotation_matrix(intrinsics: np.ndarray, angle_deg: float) -> np.ndarray:
    """Return the 2x3 affine map of pixels for an in-plane rotation about the principal point.

    OpenCV convention: positive = counter-clockwise on screen.
    """
    cx, cy = float(intrinsics[2]), float(intrinsics[3])
    return cv2.getRotationMatrix2D((cx, cy), float(angle_deg), 1.0)


def rotate(frame: Frame, angle_deg: float) -> Frame:
    """Rotate the image about the principal point.

    This is a roll of the camera about its optical axis, so depth values (Z) are unchanged and the
    intrinsics stay the same (exactly for fx = fy; to within (fx - fy) / fx otherwise). Depth
    outside the source becomes invalid.
    """
    if angle_deg == 0:
        return frame
    h, w = frame.size
    m = rotation_matrix(frame.intrinsics, angle_deg)
    # Reflected borders keep the RGB free of artificial black wedges; their depth is unknown.
    rgb = cv2.warpAffine(frame.rgb, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    depth = cv2.warpAffine(frame.depth, m, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                           borderValue=0)
    return Frame(rgb, depth, frame.intrinsics.copy())


def drop_window(rgb: np.ndarray, rng: np.random.Generator, max_frac: float) -> np.ndarray:
    """Zero a random rectangle of the RGB (depth untouched: the network must infer it)."""
    h, w = rgb.shape[:2]
    dh = max(1, int(round(h * rng.uniform(0.05, max_frac))))
    dw = max(1, int(round(w * rng.uniform(0.05, max_frac))))
    top, left = int(rng.integers(0, h - dh + 1)), int(rng.integers(0, w - dw + 1))
    out = rgb.copy()
    out[top:top + dh, left:left + dw] = 0
    return out


def color_jitter(rgb: np.ndarray, rng: np.random.Generator, jitter: float, channel_gain: float) -> np.ndarray:
    """Brightness, contrast, saturation and per-channel gain on float RGB in [0, 1]."""
    lo, hi = 1.0 - jitter, 1.0 + jitter
    out = rgb * rng.uniform(lo, hi)
    mean = out.mean()
    out = (out - mean) * rng.uniform(lo, hi) + mean
    gray = out.mean(axis=2, keepdims=True)
    out = (out - gray) * rng.uniform(lo, hi) + gray
    out = out * rng.uniform(1.0 - channel_gain, 1.0 + channel_gain, size=3).astype(np.float32)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def random_zoom(frame: Frame, rng: np.random.Generator, zoom_min: float) -> Frame:
    """Crop a random window of zoom x the size (zoom uniform in [zoom_min, 1]) and resize it back.

    A longer lens from the same place: fx and fy grow by 1 / zoom (crop moves the principal point,
    resize scales it), depth values are unchanged.
    """
    h, w = frame.size
    zoom = rng.uniform(zoom_min, 1.0)
    size = (max(1, int(round(h * zoom))), max(1, int(round(w * zoom))))
    if size == (h, w):
        return frame
    return resize(random_crop(frame, size, rng), (h, w))


def augment_geometry(frame: Frame, rng: np.random.Generator, params: AugmentParams) -> Frame:
    """Random zoom (off by default), horizontal flip and rotation.

    Flip and rotation are the geometric half of the paper's augmentation; the zoom is ours
    (crops/rescales with consistent intrinsics, for model.focal_aware).
    """
    if params.zoom_min < 1.0:
        frame = random_zoom(frame, rng, params.zoom_min)
    if rng.random() < params.flip_prob:
        frame = hflip(frame)
    if params.rotation_deg > 0:
        frame = rotate(frame, rng.uniform(-params.rotation_deg, params.rotation_deg))
    return frame


def augment_photometric(rgb: np.ndarray, rng: np.random.Generator, params: AugmentParams) -> np.ndarray:
    """Window dropping and colour jitter on float RGB in [0, 1] (RGB only)."""
    if rng.random() < params.drop_prob:
        rgb = drop_window(rgb, rng, params.drop_max_frac)
    if params.jitter > 0 or params.channel_gain > 0:
        rgb = color_jitter(rgb, rng, params.jitter, params.channel_gain)
    return rgb
