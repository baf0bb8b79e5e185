"""Image files in and out: RGB, 16-bit depth PNGs, confidence, coloured previews.

Every encoded image the package reads (files here, CompressedImage messages in `messages`,
training data in `datasets`) goes through `decode_image`, the one place for the input rules:
the size is read from the header and refused above a limit before any pixel is decoded, and a
truncated or corrupt file is refused instead of decoded into a half-grey picture.
"""

from __future__ import annotations

import io
from pathlib import Path
import warnings

import cv2
import numpy as np
from PIL import Image, ImageFile, ImageOps

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff")

# 4096 x 4096: far above any camera the network is used with (it runs at 320x240), far below
# what makes a decode a memory bomb (a 0.4 MB PNG can declare 12000x12000 = 432 MB of RGB).
DEFAULT_MAX_INPUT_PIXELS = 16_777_216

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"IEND\xaeB`\x82"  # the IEND chunk type and its (fixed) CRC: the last 8 bytes of a PNG
_JPEG_START, _JPEG_END = b"\xff\xd8", b"\xff\xd9"


class ImageDecodeError(ValueError):
    """Encoded image bytes that are refused: empty, not an image, too large, truncated or corrupt."""


class ImageTooLargeError(ImageDecodeError):
    """An image whose declared size is above the `max_input_pixels` rule (counted apart by the node)."""


def decode_image(data: bytes | bytearray | memoryview | np.ndarray, what: str = "image", *, color: bool = True,
                 max_pixels: int | None = DEFAULT_MAX_INPUT_PIXELS) -> np.ndarray:
    """Decode an encoded image (PNG, JPEG, BMP, PPM, TIFF) after checking it.

    Decoding is done by Pillow, not OpenCV: Pillow raises on truncated data and never prints
    libjpeg / libpng warnings on stderr (OpenCV does both: "Premature end of JPEG file" and a
    grey-filled picture). Pillow's and OpenCV's JPEG and PNG pixels are identical (both use
    libjpeg-turbo's default IDCT); the EXIF orientation is applied to colour images, as
    `cv2.imread` does.

    Args:
        data: the encoded bytes.
        what: how the error names the input ("image /path/x.jpg", "compressed image").
        color: True -> HxWx3 uint8 RGB (grey is repeated, alpha dropped, 16-bit scaled to 8);
            False -> the stored samples unchanged (HxW uint16 for a 16-bit depth PNG).
        max_pixels: refuse images whose header declares more pixels; None = no limit.

    Raises:
        ImageDecodeError (a ValueError): one line naming `what` and the problem.
    """
    raw = np.ascontiguousarray(data, dtype=np.uint8).tobytes() if isinstance(data, np.ndarray) else bytes(data)
    if not raw:
        raise ImageDecodeError(f"{what} is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            # Pillow's own bomb guard warns on stderr from 89 MP on; `max_pixels` below is the rule.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(raw))  # lazy: reads the header only
    except Image.DecompressionBombError as err:
        # Pillow refuses above 2 * MAX_IMAGE_PIXELS before we see the size: that is above
        # `max_pixels` too when the limit is lower, and then says so (the node counts too_large).
        bomb_limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
        if max_pixels is not None and max_pixels < bomb_limit:
            raise ImageTooLargeError(f"{what} exceeds max_input_pixels {max_pixels} ({err})") from None
        raise ImageDecodeError(f"cannot decode {what}: too large ({err})") from None
    except Exception:  # noqa: BLE001 - Pillow raises UnidentifiedImageError, SyntaxError, struct.error ...
        raise ImageDecodeError(f"cannot decode {what}: not an image, or its header is corrupt "
                               f"({len(raw)} bytes)") from None
    width, height = image.size
    check_pixel_count(width, height, max_pixels, what)
    if width == 0 or height == 0:
        raise ImageDecodeError(f"{what} has zero size {width}x{height}")
    _check_complete(raw, what)
    try:
        if ImageFile.LOAD_TRUNCATED_IMAGES:  # someone else's global switch must not let truncated data through
            raise OSError("Pillow's LOAD_TRUNCATED_IMAGES is set")
        image.load()
    except Exception as err:  # noqa: BLE001 - OSError, SyntaxError, ValueError, EOFError for broken streams
        reason = str(err).strip() or type(err).__name__
        raise ImageDecodeError(f"cannot decode {what}: corrupt or truncated ({reason})") from None
    return _to_rgb(image) if color else np.asarray(image)


def check_pixel_count(width: int, height: int, max_pixels: int | None, what: str = "image") -> None:
    """Apply the input size rule (files, compressed and raw messages): at most `max_pixels` (None = no limit).

    Raises:
        ImageTooLargeError: e.g. "image 12000x12000 (144.0 MP) exceeds max_input_pixels 16777216".
    """
    if max_pixels is not None and width * height > max_pixels:
        mp = width * height / 1e6
        raise ImageTooLargeError(f"{what} {width}x{height} ({mp:.1f} MP) exceeds max_input_pixels {max_pixels}")


def _check_complete(raw: bytes, what: str) -> None:
    """Check that a JPEG ends with EOI and a PNG with IEND.

    A cut-off file is refused before decoding (trailing zero padding, as some cameras write, is
    allowed).
    """
    tail = raw.rstrip(b"\0")
    if raw.startswith(_PNG_SIGNATURE) and not tail.endswith(_PNG_END):
        raise ImageDecodeError(f"cannot decode {what}: truncated PNG (no IEND chunk at the end, {len(raw)} bytes)")
    if raw.startswith(_JPEG_START) and not tail.endswith(_JPEG_END):
        raise ImageDecodeError(f"cannot decode {what}: truncated JPEG (no end-of-image marker FFD9, {len(raw)} bytes)")


def _to_rgb(image: Image.Image) -> np.ndarray:
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16/32-bit grey: top 8 bits, like cv2.IMREAD_COLOR
        grey = np.asarray(image).astype(np.uint32)
        grey = (grey >> 8 if image.mode.startswith("I;16") else np.clip(grey, 0, 65535) >> 8).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    return np.asarray(image.convert("RGB"))


def read_image_file(path: str | Path, what: str = "image", *, color: bool = True,
                    max_pixels: int | None = DEFAULT_MAX_INPUT_PIXELS) -> np.ndarray:
    """`decode_image` of a file; a missing file raises FileNotFoundError with its name."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    return decode_image(path.read_bytes(), f"{what} {path}", color=color, max_pixels=max_pixels)


def read_rgb(path: str | Path, max_pixels: int | None = DEFAULT_MAX_INPUT_PIXELS) -> np.ndarray:
    """HxWx3 uint8 RGB; a missing, undecodable, truncated or oversized file raises with its name."""
    return read_image_file(path, "image", max_pixels=max_pixels)


def read_depth(path: str | Path, depth_to_m: float) -> np.ndarray:
    """Metric depth (float32 metres) from a 16-bit PNG/PGM; 0 and 65535 become 0 (invalid)."""
    raw = read_image_file(path, "depth image", color=False)
    if raw.dtype == np.int32 and raw.size and 0 <= raw.min() and raw.max() <= 65535:
        raw = raw.astype(np.uint16)  # Pillow opens a 16-bit PGM as 32-bit mode "I"
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
