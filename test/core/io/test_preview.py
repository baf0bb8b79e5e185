"""Preview PNGs: image | coloured depth | colour bar with tick labels in metres."""

from __future__ import annotations

import numpy as np
import pytest

from fusanet_core.io.images import colorize_depth
from fusanet_core.io.preview import colour_bar, depth_preview, format_metres, tick_values


def _ramp(height: int = 120, width: int = 160, far: float = 4.0) -> np.ndarray:
    return np.repeat(np.linspace(0.5, far, height, dtype=np.float32)[:, None], width, axis=1)


def test_preview_is_image_then_depth_then_bar() -> None:
    rgb = np.full((120, 160, 3), 77, np.uint8)
    depth = _ramp()
    depth[:10, :10] = np.nan
    out = depth_preview(rgb, depth, max_depth=5.0)
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[0] == 120 and out.shape[2] == 3
    assert out.shape[1] > 2 * 160  # a bar is appended
    assert np.array_equal(out[:, :160], rgb)
    assert np.array_equal(out[:, 160:320], colorize_depth(depth, 5.0))  # same colours as colorize_depth
    assert np.array_equal(out[:, 320:], colour_bar(120, 5.0))


def test_bar_colours_match_the_depth_scale_and_it_has_labels() -> None:
    bar = colour_bar(480, 4.0)
    reference = colorize_depth(np.array([[0.05, 3.95]], np.float32), 4.0)[0]
    strip = bar[:, int(np.argmax(bar.std(axis=(0, 2))))]  # the most colourful column: inside the strip
    # near (red) at the bottom, far (blue) at the top, as colorize_depth colours depth
    assert np.abs(strip[-30].astype(int) - reference[0]).sum() < 60
    assert np.abs(strip[30].astype(int) - reference[1]).sum() < 60
    white = (bar > 200).all(axis=2)  # no turbo colour is near white: these are ticks and labels
    assert white.sum() > 100 and not white[:, : bar.shape[1] // 4].any(), "no tick labels beside the strip"


def test_extra_depth_panels_share_the_scale_and_are_resized() -> None:
    rgb = np.zeros((60, 80, 3), np.uint8)
    pred = _ramp(60, 80)
    sensor = _ramp(30, 40)  # half size: resized (nearest) to the image
    out = depth_preview(rgb, pred, 4.0, [sensor])
    assert np.array_equal(out[:, 80:160], colorize_depth(pred, 4.0))
    assert out[:, 160:240].any() and out.shape[0] == 60


def test_default_scale_is_the_98th_percentile_and_no_rgb_is_allowed() -> None:
    depth = _ramp(far=10.0)
    out = depth_preview(None, depth)
    top = float(np.percentile(depth, 98))
    assert np.array_equal(out[:, :160], colorize_depth(depth, top))
    all_invalid = depth_preview(None, np.full((20, 30), np.nan, np.float32))
    assert all_invalid.shape[0] == 20 and not all_invalid[:, :30].any()


@pytest.mark.parametrize(("top", "ticks"), [(4.1, [0, 1, 2, 3, 4]), (10.0, [0, 2, 4, 6, 8, 10]),
                                            (0.7, [0, 0.2, 0.4, 0.6]), (80.0, [0, 20, 40, 60, 80])])
def test_ticks_are_round_metres(top: float, ticks: list[float]) -> None:
    assert tick_values(top) == pytest.approx(ticks)
    assert format_metres(2.0) == "2 m" and format_metres(0.5) == "0.5 m" and format_metres(0.25) == "0.25 m"


def test_bad_input_is_rejected() -> None:
    with pytest.raises(ValueError):
        depth_preview(None, np.zeros((2, 3, 4), np.float32))
    with pytest.raises(ValueError):
        depth_preview(None, _ramp(), max_depth=0.0)
    with pytest.raises(ValueError):
        colour_bar(100, float("nan"))
