"""Image files (`fusanet_core.io.images`): depth PNG round trip, checked decoding, listing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fusanet_core.io.images import (decode_image, ImageDecodeError, ImageTooLargeError, list_images, read_depth,
                                    read_rgb, write_depth_png, write_rgb)


def test_depth_png_round_trip_in_millimetres_with_zero_invalid(tmp_path: Path) -> None:
    depth = np.array([[1.2345, np.nan], [-1.0, 70.0]], np.float32)
    write_depth_png(tmp_path / "d.png", depth)
    back = read_depth(tmp_path / "d.png", 0.001)
    np.testing.assert_allclose(back, [[1.234, 0.0], [0.0, 0.0]], atol=1e-6)  # NaN, <= 0, > 65.534 m: 0


def test_rgb_round_trip_and_listing(tmp_path: Path) -> None:
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[..., 0] = 255  # red stays red (no BGR mix-up)
    write_rgb(tmp_path / "b.png", rgb)
    write_rgb(tmp_path / "a.png", rgb)
    (tmp_path / "notes.txt").write_text("not an image")
    assert np.array_equal(read_rgb(tmp_path / "b.png"), rgb)
    assert list_images([tmp_path]) == [tmp_path / "a.png", tmp_path / "b.png"]


def test_decoding_refuses_truncated_garbage_and_too_many_pixels(tmp_path: Path) -> None:
    write_rgb(tmp_path / "x.png", np.zeros((8, 8, 3), np.uint8))
    data = (tmp_path / "x.png").read_bytes()
    assert decode_image(data).shape == (8, 8, 3)
    with pytest.raises(ImageDecodeError, match="truncated PNG"):
        decode_image(data[:-10])
    with pytest.raises(ImageDecodeError):
        decode_image(b"not an image at all")
    with pytest.raises(ImageTooLargeError, match="exceeds max_input_pixels 63"):
        decode_image(data, max_pixels=63)
