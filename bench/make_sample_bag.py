"""Write the bundled demo bag `sample/tum_rgbd_bag/` from the three TUM RGB-D frames.

The bag is a ROS 2 bag (MCAP storage, zstd chunk compression, readable by `ros2 bag play` with the
MCAP plugin and by `rosbags`) holding what a registered RGB-D driver publishes:

* `/camera/color/image_raw`    sensor_msgs/Image rgb8 640x480
* `/camera/color/camera_info`  sensor_msgs/CameraInfo (intrinsics from sample/tum_rgbd/manifest.csv)
* `/camera/depth/image_raw`    sensor_msgs/Image 16UC1 millimetres, registered to colour (TUM
  depth is registered to colour by the dataset's own calibration)

Each frame is repeated (0, 1, 2, 0, 1, ...) to MESSAGES messages per topic at RATE_HZ; the
repeats compress away, which keeps the bag under 3 MB.

Usage: python bench/make_sample_bag.py [--out sample/tum_rgbd_bag] [--force]
"""

from __future__ import annotations

import argparse
import csv
from io import BytesIO
from pathlib import Path
import shutil
import sys

import cv2
import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.rosbag2.enums import CompressionFormat, CompressionMode
from rosbags.rosbag2.storage_mcap import McapWriter, write_record, write_uint16, write_uint32, write_uint64
from rosbags.typesys import get_typestore, Stores

try:  # the same zstd binding rosbags uses
    from compression import zstd
except ImportError:
    from backports import zstd

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "sample" / "tum_rgbd"
FRAME_ID = "camera_color_optical_frame"
MESSAGES = 10
RATE_HZ = 2.0
START_NS = 1_700_000_000 * 10**9  # a fixed, recognisable start stamp


class _OneChunkMcapWriter(McapWriter):
    """MCAP storage that keeps the whole (small) bag in one zstd chunk with an 8 MB window.

    Why: rosbags closes a chunk every 1 MB and compresses with a 2 MB window, so repeated VGA frames
    (4.6 MB apart) never compress. One chunk with a window covering the repeat distance brings ten
    frames down to the size of three unique ones. Standard MCAP readers decompress it as usual.
    """

    CHUNK_BYTES = 64 * 2**20
    ZSTD_OPTIONS = {zstd.CompressionParameter.compression_level: 19, zstd.CompressionParameter.window_log: 23}

    def __init__(self, path: Path, compression: CompressionMode) -> None:
        super().__init__(path, compression)
        if compression == CompressionMode.STORAGE:
            self.compressor = lambda data: zstd.compress(data, options=self.ZSTD_OPTIONS)

    def write(self, connection, timestamp: int, data: bytes | memoryview) -> None:
        """McapWriter.write with a larger chunk threshold (same record layout)."""
        self.message_start_time = min(timestamp, self.message_start_time)
        self.message_end_time = max(timestamp, self.message_end_time)
        self.channel_stats[connection.id] += 1
        self.chunk.message_start_time = min(timestamp, self.chunk.message_start_time)
        self.chunk.message_end_time = max(timestamp, self.chunk.message_end_time)
        self.chunk.msgs[connection.id].append((timestamp, self.chunk.bio.tell()))
        rec = BytesIO()
        write_uint16(rec, connection.id)
        write_uint32(rec, 0)
        write_uint64(rec, timestamp)
        write_uint64(rec, timestamp)
        rec.write(data)
        write_record(self.chunk.bio, 0x05, rec)
        if self.chunk.bio.tell() > self.CHUNK_BYTES:
            self.close_chunk()


class _SampleWriter(Writer):
    STORAGE_PLUGINS = {StoragePlugin.MCAP: _OneChunkMcapWriter}


def _load_frames() -> list[dict]:
    """Colour (RGB), depth (uint16 mm) and intrinsics of each manifest row."""
    frames = []
    with open(SOURCE / "manifest.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            bgr = cv2.imread(str(SOURCE / row["rgb"]), cv2.IMREAD_COLOR)
            raw = cv2.imread(str(SOURCE / row["depth"]), cv2.IMREAD_UNCHANGED)
            if bgr is None or raw is None:
                raise FileNotFoundError(f"cannot read frame {row['rgb']} / {row['depth']} in {SOURCE}")
            metres = raw.astype(np.float64) * float(row["depth_to_m"])
            mm = np.where(raw > 0, np.round(metres * 1000.0), 0).astype(np.uint16)
            k = tuple(float(row[key]) for key in ("fx", "fy", "cx", "cy"))
            frames.append({"rgb": cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), "depth_mm": mm, "k": k})
    return frames


def _messages(store, frame: dict, stamp_ns: int) -> dict[str, object]:
    """Build the three messages of one frame, all with the same header."""
    msg = store.types
    Header, Time = msg["std_msgs/msg/Header"], msg["builtin_interfaces/msg/Time"]
    Image, CameraInfo = msg["sensor_msgs/msg/Image"], msg["sensor_msgs/msg/CameraInfo"]
    RegionOfInterest = msg["sensor_msgs/msg/RegionOfInterest"]
    header = Header(stamp=Time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9), frame_id=FRAME_ID)
    rgb, mm = frame["rgb"], frame["depth_mm"]
    h, w = mm.shape
    fx, fy, cx, cy = frame["k"]
    color = Image(header=header, height=h, width=w, encoding="rgb8", is_bigendian=0, step=w * 3,
                  data=np.ascontiguousarray(rgb).reshape(-1))
    depth = Image(header=header, height=h, width=w, encoding="16UC1", is_bigendian=0, step=w * 2,
                  data=np.ascontiguousarray(mm.astype("<u2")).view(np.uint8).reshape(-1))
    info = CameraInfo(
        header=header, height=h, width=w, distortion_model="plumb_bob", d=np.zeros(5),
        k=np.array([fx, 0, cx, 0, fy, cy, 0, 0, 1], np.float64), r=np.eye(3).reshape(-1),
        p=np.array([fx, 0, cx, 0, 0, fy, cy, 0, 0, 0, 1, 0], np.float64), binning_x=0, binning_y=0,
        roi=RegionOfInterest(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))
    return {"/camera/color/image_raw": color, "/camera/color/camera_info": info, "/camera/depth/image_raw": depth}


def write_bag(out: Path, messages: int = MESSAGES, rate_hz: float = RATE_HZ) -> Path:
    """Write the bag to `out` (a folder that must not exist) and return it."""
    store = get_typestore(Stores.ROS2_KILTED)
    frames = _load_frames()
    writer = _SampleWriter(out, version=9, storage_plugin=StoragePlugin.MCAP)
    writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
    with writer:
        conns = {}
        for i in range(messages):
            stamp = START_NS + int(round(i * 1e9 / rate_hz))
            for topic, message in _messages(store, frames[i % len(frames)], stamp).items():
                if topic not in conns:
                    conns[topic] = writer.add_connection(topic, message.__msgtype__, typestore=store)
                writer.write(conns[topic], stamp, store.serialize_cdr(message, message.__msgtype__))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "sample" / "tum_rgbd_bag")
    parser.add_argument("--force", action="store_true", help="replace an existing bag")
    parser.add_argument("--messages", type=int, default=MESSAGES, help="messages per topic")
    parser.add_argument("--rate", type=float, default=RATE_HZ, help="frames per second")
    args = parser.parse_args(argv)
    if args.out.exists():
        if not args.force:
            print(f"{args.out} exists (use --force to replace it)", file=sys.stderr)
            return 2
        shutil.rmtree(args.out)
    write_bag(args.out, args.messages, args.rate)
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"wrote {args.out} ({size / 1e6:.2f} MB, {args.messages} frames at {args.rate} Hz)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
