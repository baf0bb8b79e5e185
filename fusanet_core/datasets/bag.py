"""RGB-D pairs from ROS bags (ROS 1 `.bag`, ROS 2 sqlite3 or MCAP) through `rosbags`.

An image topic and a depth topic are paired by header stamp (nearest depth within `slop_s`;
each depth frame used once); intrinsics come from the colour camera's CameraInfo (K). Depth
must be registered to the colour camera (e.g. RealSense `aligned_depth_to_color`): when the
depth topic has its own CameraInfo with a different K, the bag is refused unless
`assume_registered` says otherwise, because unregistered depth would teach the network wrong
edges. Topics are auto-detected when not given (an Image topic with "depth" in its name, the
other Image topic, and the CameraInfo topic sharing the longest prefix with the colour topic).
"""

from __future__ import annotations

from dataclasses import dataclass
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from .base import range_label, select_rows
from .transforms import default_intrinsics, Frame
from ..geometry import scale_intrinsics
from ..io import messages
from ..io.bags import bag_topics, closest_topic, open_bag, require_topics

log = logging.getLogger(__name__)

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
INFO_TYPE = "sensor_msgs/msg/CameraInfo"


@dataclass
class _Ref:
    stamp_ns: int  # header stamp (bag time when the header has none)
    bag_ns: int  # bag receive time: the key to read the message again


def _stamp(msg: Any, bag_ns: int) -> int:
    """Header stamp, or the bag time when the header has none."""
    return messages.stamp_ns(msg.header) or bag_ns


def decode_image(msg: Any, msgtype: str, depth: bool, depth_scale: float) -> np.ndarray:
    """Decode a sensor_msgs Image / CompressedImage -> HxWx3 uint8 RGB, or HxW float32 metres with 0 invalid.

    16-bit depth is taken times `depth_scale`; 0 and 65535 are invalid, as in depth PNGs.

    Raises:
        ValueError: (messages.ConversionError) unsupported encoding or malformed message.
    """
    compressed = msgtype.endswith("CompressedImage")
    if not depth:
        return messages.compressed_to_rgb(msg) if compressed else messages.image_to_rgb(msg)
    if compressed:
        metres = messages.compressed_to_depth(msg, depth_scale)
    else:
        metres = messages.image_to_depth(msg, depth_scale)
        if messages.norm_encoding(msg.encoding) != "32FC1":
            metres[metres == np.float32(65535) * np.float32(depth_scale)] = np.nan  # saturated 16-bit: no reading
    return np.nan_to_num(metres, nan=0.0)


class BagSource:
    """Paired colour + depth frames of one bag.

    Args:
        path: `.bag` file, ROS 2 bag folder (metadata.yaml) or its `.db3` / `.mcap` file.
        rows: range over the paired frames.
        rgb_topic, depth_topic, info_topic: topics ("" = auto-detect).
        slop_s: largest stamp difference of a pair, seconds.
        depth_scale: metres per unit of 16-bit depth.
        assume_registered: use depth even when its CameraInfo differs from the colour one.
    """

    def __init__(
        self,
        path: str | Path,
        rows: slice = slice(None),
        rgb_topic: str = "",
        depth_topic: str = "",
        info_topic: str = "",
        slop_s: float = 0.05,
        depth_scale: float = 0.001,
        assume_registered: bool = False,
    ) -> None:
        path = Path(path)
        if path.suffix in (".db3", ".mcap") and (path.parent / "metadata.yaml").is_file():
            path = path.parent  # rosbags opens ROS 2 bags by folder
        if not path.exists():
            raise FileNotFoundError(f"bag not found: {path}")
        self.path, self.depth_scale = path, float(depth_scale)
        self.name = f"{path.stem}{range_label(rows)}"
        self._reader: Any = None
        self._pid = -1
        reader = open_bag(path)
        try:
            self._index(reader, rgb_topic, depth_topic, info_topic, slop_s, assume_registered)
        except (ValueError, FileNotFoundError):
            raise
        except Exception as err:  # rosbags raises its own types for damaged messages
            raise ValueError(f"cannot read bag {path}: {err}") from None
        finally:
            reader.close()
        self.pairs = select_rows(self.pairs, rows, f"bag {path}")

    # ------------------------------------------------------------------ indexing

    def _index(self, reader: Any, rgb_topic: str, depth_topic: str, info_topic: str, slop_s: float,
               assume_registered: bool) -> None:
        topics = bag_topics(reader)
        images = {c.topic: c for c in reader.connections if c.msgtype in IMAGE_TYPES}
        infos = {c.topic: c for c in reader.connections if c.msgtype == INFO_TYPE}
        require_topics(topics, [t for t in (rgb_topic, depth_topic) if t], IMAGE_TYPES, "image", self.path)
        if info_topic:
            require_topics(topics, info_topic, (INFO_TYPE,), "camera_info", self.path)
        self.rgb_topic, self.depth_topic = self._pick_image_topics(images, rgb_topic, depth_topic)
        self.info_topic = info_topic or closest_topic(self.rgb_topic, list(infos)) or ""
        self.rgb_type = images[self.rgb_topic].msgtype
        self.depth_type = images[self.depth_topic].msgtype
        self.intrinsics, self.info_size = self._read_info(reader, infos.get(self.info_topic))
        depth_info = closest_topic(self.depth_topic, [t for t in infos if t != self.info_topic])
        if depth_info and not assume_registered and self.intrinsics is not None:
            k_depth, _ = self._read_info(reader, infos[depth_info])
            if k_depth is not None and not np.allclose(k_depth, self.intrinsics, rtol=0.01):
                raise ValueError(
                    f"bag {self.path}: depth {self.depth_topic} has its own camera ({depth_info}, "
                    f"fx {k_depth[0]:.1f}) unlike colour ({self.info_topic}, fx {self.intrinsics[0]:.1f}): "
                    "depth is not registered to colour. "
                    "Record aligned depth (e.g. aligned_depth_to_color) or set data.bag_assume_registered: true"
                )
        rgb = self._refs(reader, images[self.rgb_topic])
        depth = self._refs(reader, images[self.depth_topic])
        self.pairs = _pair(rgb, depth, int(slop_s * 1e9))
        if not self.pairs:
            raise ValueError(
                f"bag {self.path}: no {self.rgb_topic} / {self.depth_topic} pair within {slop_s} s "
                f"({len(rgb)} colour, {len(depth)} depth frames); raise data.bag_slop_s"
            )

    def _pick_image_topics(self, images: dict[str, Any], rgb_topic: str, depth_topic: str) -> tuple[str, str]:
        if not depth_topic:
            found = [t for t in images if "depth" in t.lower() and t != rgb_topic]
            if len(found) != 1:
                raise ValueError(f"bag {self.path}: cannot tell the depth topic among {sorted(images)}; "
                                 "set data.bag_depth_topic")
            depth_topic = found[0]
        if not rgb_topic:
            found = [t for t in images if t != depth_topic and "depth" not in t.lower()]
            if len(found) != 1:
                raise ValueError(f"bag {self.path}: cannot tell the colour topic among {sorted(images)}; "
                                 "set data.bag_rgb_topic")
            rgb_topic = found[0]
        return rgb_topic, depth_topic

    @staticmethod
    def _read_info(reader: Any, connection: Any) -> tuple[np.ndarray | None, tuple[int, int] | None]:
        if connection is None:
            return None, None
        for conn, _, raw in reader.messages(connections=[connection]):
            msg = reader.deserialize(raw, conn.msgtype)
            try:
                k = messages.camera_info_k(msg)  # K: the camera of the recorded (unrectified) image
            except messages.ConversionError:
                continue
            return np.array(k), (int(msg.height), int(msg.width))
        return None, None

    @staticmethod
    def _refs(reader: Any, connection: Any) -> list[_Ref]:
        refs = []
        for conn, bag_ns, raw in reader.messages(connections=[connection]):
            msg = reader.deserialize(raw, conn.msgtype)
            refs.append(_Ref(_stamp(msg, bag_ns), bag_ns))
        return sorted(refs, key=lambda r: r.stamp_ns)

    # ------------------------------------------------------------------ loading

    def __len__(self) -> int:
        return len(self.pairs)

    def close(self) -> None:
        """Close the reader `load` opened (it reopens on the next load)."""
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_reader"], state["_pid"] = None, -1  # an open reader does not cross processes
        return state

    def _message(self, topic: str, bag_ns: int) -> Any:
        """Read one message back by bag time (the reader is opened once per process)."""
        if self._reader is None or self._pid != os.getpid():
            self._reader = open_bag(self.path)
            self._pid = os.getpid()
        connections = [c for c in self._reader.connections if c.topic == topic]
        for conn, _, raw in self._reader.messages(connections=connections, start=bag_ns, stop=bag_ns + 1):
            return self._reader.deserialize(raw, conn.msgtype)
        raise ValueError(f"bag {self.path}: message of {topic} at {bag_ns} ns vanished")

    def load(self, index: int) -> Frame:
        rgb_ref, depth_ref = self.pairs[index]
        where = f"bag {self.path} pair {index} ({self.rgb_topic} @ {rgb_ref.stamp_ns} ns)"
        try:
            rgb = decode_image(self._message(self.rgb_topic, rgb_ref.bag_ns), self.rgb_type, False, self.depth_scale)
            depth = decode_image(self._message(self.depth_topic, depth_ref.bag_ns), self.depth_type, True,
                                 self.depth_scale)
        except messages.ConversionError as err:
            raise ValueError(f"{where}: {err}") from None
        if rgb.shape[:2] != depth.shape:
            raise ValueError(f"{where}: colour is {rgb.shape[1]}x{rgb.shape[0]} but depth is "
                             f"{depth.shape[1]}x{depth.shape[0]}")
        k = self.intrinsics
        if k is None:
            k = default_intrinsics(*depth.shape)
        elif self.info_size and self.info_size != depth.shape and all(self.info_size):
            sy, sx = depth.shape[0] / self.info_size[0], depth.shape[1] / self.info_size[1]
            k = np.array(scale_intrinsics(tuple(k), sx, sy))
        return Frame(rgb, depth, k.copy())


def _pair(rgb: list[_Ref], depth: list[_Ref], slop_ns: int) -> list[tuple[_Ref, _Ref]]:
    """Nearest depth (by stamp) for each colour frame within the slop; each depth used once."""
    pairs, used = [], set()
    stamps = np.array([d.stamp_ns for d in depth], np.int64)
    for ref in rgb:
        if not len(stamps):
            break
        order = np.argsort(np.abs(stamps - ref.stamp_ns), kind="stable")
        for j in order[:3]:
            if abs(int(stamps[j]) - ref.stamp_ns) > slop_ns:
                break
            if int(j) not in used:
                used.add(int(j))
                pairs.append((ref, depth[int(j)]))
                break
    return pairs
