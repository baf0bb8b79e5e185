"""fusanet_core.io.bags: opening bags with one-line errors, Humble-era bags, the missing-topic error (no ROS)."""

from __future__ import annotations

from pathlib import Path
import re
import sqlite3

import numpy as np
import pytest

pytest.importorskip("rosbags")

from fusanet_core.io.bags import bag_topics, open_bag, require_topics  # noqa: E402
from fusanet_core.io.messages import stamp_ns  # noqa: E402

SAMPLE_BAG = Path(__file__).resolve().parents[3] / "sample" / "tum_rgbd_bag"
TOPICS = {"/camera/color/image_raw": ("sensor_msgs/msg/Image", 10),
          "/camera/color/camera_info": ("sensor_msgs/msg/CameraInfo", 10)}


def test_missing_and_damaged_bags_fail_with_one_line(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="bag not found"):
        open_bag(tmp_path / "absent.bag")
    garbage = tmp_path / "garbage.bag"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ValueError, match="truncated, corrupt or not a bag") as info:
        open_bag([garbage])
    assert len(str(info.value).splitlines()) == 1 and str(garbage) in str(info.value)


def _humble_bag(path: Path) -> Path:
    """Write a ROS 2 bag as Humble records it: metadata version 5, no message definitions."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import get_typestore, Stores

    store = get_typestore(Stores.ROS2_HUMBLE)
    string = store.types["std_msgs/msg/String"]
    with Writer(path, version=8, storage_plugin=StoragePlugin.SQLITE3) as writer:
        conn = writer.add_connection("/chatter", string.__msgtype__, typestore=store)
        writer.write(conn, 1, store.serialize_cdr(string(data="hi"), string.__msgtype__))
    meta = path / "metadata.yaml"
    meta.write_text(re.sub(r"\n *type_description_hash:\s*\S+", "",
                           meta.read_text().replace("version: 8", "version: 5")))
    with sqlite3.connect(next(path.glob("*.db3"))) as db:
        db.execute("DROP TABLE message_definitions")
        db.execute("UPDATE schema SET schema_version = 3")
    return path


def test_bags_without_message_definitions_are_read(tmp_path: Path) -> None:
    reader = open_bag(_humble_bag(tmp_path / "humble"))
    try:
        assert bag_topics(reader) == {"/chatter": ("std_msgs/msg/String", 1)}
        conn, _, raw = next(reader.messages())
        assert reader.deserialize(raw, conn.msgtype).data == "hi"
    finally:
        reader.close()


def test_sample_bag_topics_and_stamps() -> None:
    reader = open_bag(SAMPLE_BAG)
    try:
        topics = bag_topics(reader)
        conn = next(c for c in reader.connections if c.topic == "/camera/color/image_raw")
        first = reader.deserialize(next(reader.messages(connections=[conn]))[2], conn.msgtype)
    finally:
        reader.close()
    assert topics["/camera/color/image_raw"] == ("sensor_msgs/msg/Image", 10)
    assert stamp_ns(first.header) == 1_700_000_000 * 10**9


def test_missing_topic_error_lists_the_bag() -> None:
    require_topics(TOPICS, list(TOPICS), ("sensor_msgs/msg/Image", "sensor_msgs/msg/CameraInfo"))
    with pytest.raises(ValueError) as info:
        require_topics(TOPICS, "/nope", what="depth", bag="x.bag")
    assert str(info.value) == ("depth topic '/nope' is not in the bag x.bag; it has: /camera/color/camera_info "
                               "(sensor_msgs/msg/CameraInfo, 10); /camera/color/image_raw (sensor_msgs/msg/Image, 10)")
    with pytest.raises(ValueError, match=r"topics '/a', '/b' are not in the bag; it has: /camera"):
        require_topics(TOPICS, ["/a", "/camera/color/image_raw", "/b"])
    with pytest.raises(ValueError, match=r"image topic '/camera/color/camera_info' has type "
                                         r"sensor_msgs/msg/CameraInfo, expected sensor_msgs/msg/Image; the bag has: "):
        require_topics(TOPICS, "/camera/color/camera_info", ("sensor_msgs/msg/Image",), "image")
    with pytest.raises(ValueError, match="it has: no topics"):
        require_topics({}, "/a")


def test_bag_and_message_readers_need_no_ros_and_no_torch() -> None:
    import subprocess
    import sys

    code = ("import sys\n"
            "for name in ('rclpy', 'sensor_msgs', 'sensor_msgs.msg', 'std_msgs', 'std_msgs.msg', 'fusanet_ros'):\n"
            "    sys.modules[name] = None\n"
            "import fusanet_core.io.bags, fusanet_core.io.messages\n"
            "assert 'torch' not in sys.modules, 'io.bags/io.messages pulled in torch'\n"
            "import fusanet_core.datasets.bag\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_error_reason_is_one_bounded_line():
    from fusanet_core.errors import error_reason

    assert error_reason(ValueError("first\nsecond")) == "first"
    assert error_reason(KeyError()) == "KeyError"
    assert error_reason(OSError("x" * 500), limit=10) == "x" * 10
    assert error_reason(OSError("x" * 500)) == "x" * 500  # CLIs keep the whole line


# ------------------------------------------------------------------ io.messages input bounds
