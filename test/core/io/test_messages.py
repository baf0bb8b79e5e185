"""sensor_msgs -> numpy readers (`fusanet_core.io.messages`): encodings, input bounds, camera_info (no ROS)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rosbags")


def test_readers_work_on_rosbags_messages_with_any_encoding_case() -> None:
    from rosbags.typesys import get_typestore, Stores

    from fusanet_core.io import messages

    image = get_typestore(Stores.LATEST).types["sensor_msgs/msg/Image"]
    bgr = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    msg = image(header=None, height=2, width=3, encoding="BGR8", is_bigendian=0, step=9, data=bgr.reshape(-1))
    np.testing.assert_array_equal(messages.image_to_rgb(msg), bgr[:, :, ::-1])
    mm = np.array([[0, 1500]], np.uint16)
    depth = image(header=None, height=1, width=2, encoding="16uc1", is_bigendian=0, step=4,
                  data=mm.view(np.uint8).reshape(-1))
    np.testing.assert_allclose(messages.image_to_depth(depth, 0.002), [[np.nan, 3.0]])
    with pytest.raises(messages.ConversionError, match="not a colour encoding"):
        messages.image_to_rgb(depth)


def _msg(**fields):
    from types import SimpleNamespace

    return SimpleNamespace(**fields)


def test_raw_images_above_the_pixel_limit_are_refused_before_the_data_is_read() -> None:
    from fusanet_core.io import messages

    class Untouchable:
        def __buffer__(self, flags):  # np.frombuffer would call this: the check must come first
            raise AssertionError("data was read")

    msg = _msg(encoding="rgb8", height=12000, width=12000, step=36000, is_bigendian=0, data=Untouchable())
    with pytest.raises(messages.ConversionError,
                       match=r"image 12000x12000 \(144\.0 MP\) exceeds max_input_pixels 16777216"):
        messages.image_to_rgb(msg, max_pixels=messages.DEFAULT_MAX_INPUT_PIXELS)
    small = _msg(encoding="mono8", height=2, width=2, step=2, is_bigendian=0, data=bytes(4))
    assert messages.image_to_rgb(small, max_pixels=4).shape == (2, 2, 3)
    with pytest.raises(messages.ConversionError, match="2x2 .* exceeds max_input_pixels 3"):
        messages.image_to_rgb(small, max_pixels=3)


def test_compressed_images_are_checked_by_header_size_and_completeness(capfd) -> None:
    import resource
    import struct
    import zlib

    from fusanet_core.io import messages

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = zlib.compress(b"\0" * 12001 * 12000)  # 12000 x 12000 grey, all zero: 0.4 MB compressed
    bomb = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 12000, 12000, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", rows) + chunk(b"IEND", b""))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(messages.ConversionError,
                       match=r"12000x12000 \(144\.0 MP\) exceeds max_input_pixels 16777216"):
        messages.compressed_to_rgb(_msg(format="png", data=bomb), max_pixels=messages.DEFAULT_MAX_INPUT_PIXELS)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # kB: never decoded (432 MB as RGB)

    jpeg = (Path(__file__).resolve().parents[3] / "sample" / "tum_rgbd" / "00.color.jpg").read_bytes()
    full = messages.compressed_to_rgb(_msg(format="jpeg", data=np.frombuffer(jpeg, np.uint8)))
    import cv2

    np.testing.assert_array_equal(full, cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR),
                                                     cv2.COLOR_BGR2RGB))  # same pixels as OpenCV gave
    with pytest.raises(messages.ConversionError, match="truncated JPEG"):
        messages.compressed_to_rgb(_msg(format="jpeg", data=jpeg[:42673]))
    png = (Path(__file__).resolve().parents[3] / "sample" / "tum_rgbd" / "00.depth.png").read_bytes()
    with pytest.raises(messages.ConversionError, match="truncated PNG"):
        messages.compressed_to_depth(_msg(format="png", data=png[:-100]))
    assert capfd.readouterr().err == ""  # no libjpeg / libpng lines


@pytest.mark.parametrize("field, value, match", [
    ("cx", 1e12, r"camera_info P cx = 1e\+12 is implausible for a 640x480 image \(expected -320 to 960\)"),
    ("cy", -300.0, r"cy = -300 is implausible"),
    ("fx", 10.0, r"fx = 10 is implausible for a 640x480 image \(expected 32 < fx < 32000\)"),
    ("fy", 1e6, r"fy = 1e\+06 is implausible"),
])
def test_camera_info_intrinsics_must_be_plausible_for_the_image_size(field, value, match) -> None:
    from fusanet_core.io import messages

    k = {"fx": 525.0, "fy": 525.0, "cx": 319.5, "cy": 239.5}
    assert messages.camera_info_intrinsics(_info(k)) == (525.0, 525.0, 319.5, 239.5)
    with pytest.raises(messages.ConversionError, match=match):
        messages.camera_info_intrinsics(_info({**k, field: value}))
    with pytest.raises(messages.ConversionError, match=match.replace("P", "K")):
        messages.camera_info_k(_info({**k, field: value}))
    # Unknown size (0 x 0): only the focal length sign and finiteness can be checked.
    assert messages.camera_info_intrinsics(_info({**k, field: abs(value)}, 0, 0))[0] > 0


def _info(k: dict, width: int = 640, height: int = 480):
    fx, fy, cx, cy = k["fx"], k["fy"], k["cx"], k["cy"]
    return _msg(width=width, height=height, k=[fx, 0, cx, 0, fy, cy, 0, 0, 1],
                p=[fx, 0, cx, 0, 0, fy, cy, 0, 0, 0, 1, 0])
