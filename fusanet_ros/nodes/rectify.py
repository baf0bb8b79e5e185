"""Rectification of raw camera images, without image_proc (not installable from pip).

A driver's camera_info describes the *raw* image (K, D, R) and the rectified one (P). The node
computes depth in the rectified pinhole camera P, so a raw image with distortion (D != 0), a
rectifying rotation (R != I) or a P that differs from K is first remapped with
cv2.initUndistortRectifyMap(K, D, R, P), as image_proc's rectify node does. The maps cost tens of
ms to build, so they are cached per camera_info (a driver sends the same one with every frame).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import cv2
import numpy as np

from fusanet_core.io.messages import camera_info_k, ConversionError, msg_field

PINHOLE_MODELS = ("plumb_bob", "rational_polynomial")
FISHEYE_MODELS = ("equidistant",)


def topic_is_rectified(topic: str) -> bool:
    """Tell from the image topic's name whether it is rectified.

    image_proc names rectified images image_rect / image_rect_color; image_raw and anything
    else are taken as raw.
    """
    name = topic.rstrip("/").removesuffix("/compressed").rsplit("/", 1)[-1]
    return "rect" in name


def _matrices(info: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    k = np.asarray(msg_field(info, "k"), dtype=np.float64).reshape(3, 3)
    d = np.asarray(msg_field(info, "d"), dtype=np.float64).reshape(-1)
    r = np.asarray(msg_field(info, "r"), dtype=np.float64).reshape(3, 3)
    p = np.asarray(msg_field(info, "p"), dtype=np.float64).reshape(3, 4)
    if not np.any(r):
        r = np.eye(3)  # an unset R means no rectifying rotation
    return k, d, r, p


def needs_rectification(info: Any) -> bool:
    """Tell whether the raw image of `info` differs from the pinhole image of P.

    It does with non-zero distortion, a rotation R, or a P (when set) whose camera matrix
    differs from K.
    """
    k, d, r, p = _matrices(info)
    new_k = p[:, :3] if np.any(p) else k
    return bool(np.any(d != 0) or not np.allclose(r, np.eye(3)) or not np.allclose(new_k, k))


_UNDISTORT_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-10)


def _undistort_to_rays(pixels: np.ndarray, k: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Pinhole models: raw pixels (N, 1, 2) -> normalised rays, iterated to convergence.

    undistortPoints' default 5 fixed steps are off by ~1 px near the corners of a strongly distorted
    lens. OpenCV 4 has the iterating variant as undistortPointsIter; OpenCV 5 folded it into
    undistortPoints (criteria=).
    """
    eye = np.eye(3)
    coefficients = d if d.size else np.zeros(5)
    iterate = getattr(cv2, "undistortPointsIter", None)
    if iterate is not None:
        return iterate(pixels, k, coefficients, eye, eye, _UNDISTORT_CRITERIA)
    return cv2.undistortPoints(pixels, k, coefficients, R=eye, P=eye, criteria=_UNDISTORT_CRITERIA)


class Rectifier:
    """Remaps raw images into the rectified camera of their camera_info (maps cached)."""

    def __init__(self, cache_size: int = 4) -> None:
        self._maps: OrderedDict[tuple, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._cache_size = cache_size

    def rectify(self, image: np.ndarray, info: Any) -> np.ndarray:
        """`image` (H x W [x C]) remapped from the raw camera (K, D, R) to the rectified one (P).

        Raises:
            ConversionError: an unsupported distortion model or D of the wrong length.
        """
        height, width = image.shape[:2]
        map1, map2 = self._map(info, width, height)
        return cv2.remap(image, map1, map2, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)

    @staticmethod
    def rotation(info: Any) -> np.ndarray:
        """R of `info`: rotates raw-camera points into the rectified camera."""
        return _matrices(info)[2]

    @staticmethod
    def raw_pixels_to_points(uvz: np.ndarray, info: Any) -> np.ndarray:
        """(N, 3) raw-image pixels (u, v) with depth z -> (N, 3) points in the rectified camera.

        A sparse depth image aligned with a raw (distorted) image has its pixels on the raw grid:
        they are undistorted to rays of the raw camera, scaled by z and rotated by R; projecting
        them with P puts them on the rectified image the network sees. Call after rectify() has
        accepted `info` (it checks the distortion model).
        """
        if not len(uvz):
            return np.zeros((0, 3))
        k, d, r, _ = _matrices(info)
        pixels = uvz[:, None, :2].astype(np.float64)
        if str(info.distortion_model) in FISHEYE_MODELS:
            rays = cv2.fisheye.undistortPoints(pixels, k, d)
        else:
            rays = _undistort_to_rays(pixels, k, d)
        z = uvz[:, 2:3].astype(np.float64)
        return np.concatenate([rays[:, 0, :] * z, z], axis=1) @ r.T

    def _map(self, info: Any, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        k, d, r, p = _matrices(info)
        model = str(info.distortion_model)
        key = (width, height, model, k.tobytes(), d.tobytes(), r.tobytes(), p.tobytes())
        if key in self._maps:
            self._maps.move_to_end(key)
            return self._maps[key]
        # A K without a focal length, or NaN anywhere, maps every pixel to one place or outside:
        # a constant or black image that the network would turn into confident garbage.
        camera_info_k(info)
        if not all(np.all(np.isfinite(m)) for m in (d, r, p)):
            raise ConversionError("camera_info D, R or P has NaN or infinite values: cannot rectify")
        new_k = p[:, :3] if np.any(p) else k
        if model in FISHEYE_MODELS:
            if d.size != 4:
                raise ConversionError(f"camera_info distortion model {model} needs 4 coefficients, got {d.size}")
            maps = cv2.fisheye.initUndistortRectifyMap(k, d, r, new_k, (width, height), cv2.CV_16SC2)
        elif model in PINHOLE_MODELS or not model:
            if d.size not in (0, 4, 5, 8, 12, 14):
                raise ConversionError(f"camera_info has {d.size} distortion coefficients ({model or 'no model'})")
            maps = cv2.initUndistortRectifyMap(k, d if d.size else None, r, new_k, (width, height), cv2.CV_16SC2)
        else:
            raise ConversionError(f"camera_info distortion model {model!r} is not supported for rectification "
                                  f"(supported: {', '.join(PINHOLE_MODELS + FISHEYE_MODELS)}); set rectify:=off if the "
                                  "image is already rectified")
        self._maps[key] = maps
        while len(self._maps) > self._cache_size:
            self._maps.popitem(last=False)
        return maps
