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

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .base import range_label, select_rows
from .transforms import Frame, default_intrinsics

log = logging.getLogger(__name__)

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
INFO_TYPE = "sensor_msgs/msg/CameraInfo"
COLOR_ENCODINGS = {"rgb8": None, "bgr8": cv2.COLOR_BGR2RGB, "rgba8": cv2.COLOR_RGBA2RGB, "bgra8": cv2.COLOR_BGRA2RGB,
                   "mono8": cv2.COLOR_GRAY2RGB}
DEPTH_ENCODINGS = ("16UC1", "mono16", "32FC1")


@dataclass
class _Ref:
    stamp_ns: int  # header stamp (bag time when the header has none)
    bag_ns: int  # bag receive time: the key to read the message again


def _open(path: Path) -> Any:
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    # ROS 1 bags carry their message definitions; the default store covers the rest
    return AnyReader([path], default_typestore=get_typestore(Stores.ROS2_HUMBLE))


def _stamp(msg: Any, bag_ns: int) -> int:
    stamp = msg.header.stamp
    ns = int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
    return ns if ns > 0 else bag_ns


def decode_image(msg: Any, msgtype: str, depth: bool, depth_scale: float) -> np.ndarray:
    """sensor_msgs Image / CompressedImage -> HxWx3 uint8 RGB or HxW float32 metres."""
    if msgtype.endswith("CompressedImage"):
        flag = cv2.IMREAD_UNCHANGED if depth else cv2.IMREAD_COLOR
        image = cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), flag)
        if image is None:
            raise ValueError(f"cannot decode compressed image (format {msg.format!r})")
        if depth:
            return image.astype(np.float32) * (depth_scale if image.dtype == np.uint16 else 1.0)
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    encoding = _norm_encoding(msg.encoding)
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    data = np.frombuffer(bytes(msg.data), np.uint8)
    if depth:
        if encoding not in DEPTH_ENCODINGS:
            raise ValueError(f"depth image encoding {msg.encoding!r} not supported (use one of {DEPTH_ENCODINGS})")
        dtype = np.dtype(np.float32 if encoding == "32FC1" else np.uint16).newbyteorder(">" if msg.is_bigendian else "<")
        rows = data.reshape(h, step)[:, : w * dtype.itemsize]
        raw = rows.copy().view(dtype).reshape(h, w).astype(np.float32)
        metres = raw if encoding == "32FC1" else raw * depth_scale
        if encoding != "32FC1":
            metres[(raw == 0) | (raw == 65535)] = 0.0
        return np.where(np.isfinite(metres), metres, 0.0).astype(np.float32)
    if encoding not in COLOR_ENCODINGS:
        raise ValueError(f"colour image encoding {msg.encoding!r} not supported (use one of {sorted(COLOR_ENCODINGS)})")
    channels = 1 if encoding == "mono8" else 4 if encoding in ("rgba8", "bgra8") else 3
    image = data.reshape(h, step)[:, : w * channels].reshape(h, w, channels) if channels > 1 else data.reshape(h, step)[:, :w]
    code = COLOR_ENCODINGS[encoding]
    return np.ascontiguousarray(image) if code is None else cv2.cvtColor(np.ascontiguousarray(image), code)


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
        try:
            with _open(path) as reader:
                self._index(reader, rgb_topic, depth_topic, info_topic, slop_s, assume_registered)
        except (ValueError, FileNotFoundError):
            raise
        except Exception as err:  # rosbags raises its own types for unreadable bags
            raise ValueError(f"cannot read bag {path}: {err}") from None
        self.pairs = select_rows(self.pairs, rows, f"bag {path}")

    # ------------------------------------------------------------------ indexing

    def _index(self, reader: Any, rgb_topic: str, depth_topic: str, info_topic: str, slop_s: float, assume_registered: bool) -> None:
        images = {c.topic: c for c in reader.connections if c.msgtype in IMAGE_TYPES}
        infos = {c.topic: c for c in reader.connections if c.msgtype == INFO_TYPE}
        self.rgb_topic, self.depth_topic = self._pick_image_topics(images, rgb_topic, depth_topic)
        self.info_topic = info_topic or _closest(self.rgb_topic, list(infos))
        if self.info_topic and self.info_topic not in infos:
            raise ValueError(f"bag {self.path} has no CameraInfo topic {self.info_topic!r}; CameraInfo topics: {sorted(infos)}")
        self.rgb_type = images[self.rgb_topic].msgtype
        self.depth_type = images[self.depth_topic].msgtype
        self.intrinsics, self.info_size = self._read_info(reader, infos.get(self.info_topic))
        depth_info = _closest(self.depth_topic, [t for t in infos if t != self.info_topic])
        if depth_info and not assume_registered and self.intrinsics is not None:
            k_depth, _ = self._read_info(reader, infos[depth_info])
            if k_depth is not None and not np.allclose(k_depth, self.intrinsics, rtol=0.01):
                raise ValueError(
                    f"bag {self.path}: depth {self.depth_topic} has its own camera ({depth_info}, fx {k_depth[0]:.1f}) "
                    f"unlike colour ({self.info_topic}, fx {self.intrinsics[0]:.1f}): depth is not registered to colour. "
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
        for topic in (rgb_topic, depth_topic):
            if topic and topic not in images:
                raise ValueError(f"bag {self.path} has no image topic {topic!r}; image topics: {sorted(images)}")
        if not depth_topic:
            found = [t for t in images if "depth" in t.lower() and t != rgb_topic]
            if len(found) != 1:
                raise ValueError(f"bag {self.path}: cannot tell the depth topic among {sorted(images)}; set data.bag_depth_topic")
            depth_topic = found[0]
        if not rgb_topic:
            found = [t for t in images if t != depth_topic and "depth" not in t.lower()]
            if len(found) != 1:
                raise ValueError(f"bag {self.path}: cannot tell the colour topic among {sorted(images)}; set data.bag_rgb_topic")
            rgb_topic = found[0]
        return rgb_topic, depth_topic

    @staticmethod
    def _read_info(reader: Any, connection: Any) -> tuple[np.ndarray | None, tuple[int, int] | None]:
        if connection is None:
            return None, None
        for conn, _, raw in reader.messages(connections=[connection]):
            msg = reader.deserialize(raw, conn.msgtype)
            k = np.asarray(msg.k if hasattr(msg, "k") else msg.K, np.float64).reshape(3, 3)  # ROS 2 / ROS 1 names
            if k[0, 0] > 0 and k[1, 1] > 0:
                return np.array([k[0, 0], k[1, 1], k[0, 2], k[1, 2]]), (int(msg.height), int(msg.width))
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
            self._reader = _open(self.path)
            self._reader.open()
            self._pid = os.getpid()
        connections = [c for c in self._reader.connections if c.topic == topic]
        for conn, _, raw in self._reader.messages(connections=connections, start=bag_ns, stop=bag_ns + 1):
            return self._reader.deserialize(raw, conn.msgtype)
        raise ValueError(f"bag {self.path}: message of {topic} at {bag_ns} ns vanished")

    def load(self, index: int) -> Frame:
        rgb_ref, depth_ref = self.pairs[index]
        rgb = decode_image(self._message(self.rgb_topic, rgb_ref.bag_ns), self.rgb_type, False, self.depth_scale)
        depth = decode_image(self._message(self.depth_topic, depth_ref.bag_ns), self.depth_type, True, self.depth_scale)
        where = f"bag {self.path} pair {index} ({self.rgb_topic} @ {rgb_ref.stamp_ns} ns)"
        if rgb.shape[:2] != depth.shape:
            raise ValueError(f"{where}: colour is {rgb.shape[1]}x{rgb.shape[0]} but depth is {depth.shape[1]}x{depth.shape[0]}")
        k = self.intrinsics
        if k is None:
            k = default_intrinsics(*depth.shape)
        elif self.info_size and self.info_size != depth.shape and all(self.info_size):
            sy, sx = depth.shape[0] / self.info_size[0], depth.shape[1] / self.info_size[1]
            k = np.array([k[0] * sx, k[1] * sy, (k[2] + 0.5) * sx - 0.5, (k[3] + 0.5) * sy - 0.5])
        return Frame(rgb, depth, k.copy())


def _norm_encoding(encoding: str) -> str:
    """"16uc1" -> "16UC1", "RGB8" -> "rgb8": ROS spells the two families differently."""
    upper = encoding.strip().upper()
    return upper if upper in ("16UC1", "32FC1") else encoding.strip().lower()


def _closest(topic: str, candidates: list[str]) -> str:
    """The candidate sharing the longest path prefix with `topic` ("" when none shares any)."""
    def shared(other: str) -> int:
        a, b = topic.strip("/").split("/"), other.strip("/").split("/")
        n = 0
        while n < min(len(a), len(b)) and a[n] == b[n]:
            n += 1
        return n

    scored = sorted(((shared(c), c) for c in candidates), reverse=True)
    if not scored or scored[0][0] == 0 or (len(scored) > 1 and scored[0][0] == scored[1][0]):
        return ""
    return scored[0][1]


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
