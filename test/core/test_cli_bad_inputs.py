"""Bad input corpus for the `fusanet` command line.

Every case runs the real CLI in a subprocess (so libjpeg / libpng / torch writes to the stderr file
descriptor are seen too) and must end with exit code 2, exactly one non-empty stderr line naming the
problem, and no output that looks valid (no depth PNG, no report, no .onnx) left behind.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import re
import struct
import subprocess
import sys
from typing import Callable
import zlib

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sample" / "tum_rgbd"
SAMPLE_MCAP = ROOT / "sample" / "tum_rgbd_bag" / "tum_rgbd_bag.mcap"
COLOR, DEPTH = "/camera/color/image_raw", "/camera/depth/image_raw"


# ------------------------------------------------------------------------------ bad files
def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_with_header(width: int, height: int, pixels: np.ndarray) -> bytes:
    """Build a PNG whose IHDR declares `width` x `height` (valid CRC) but whose IDAT holds `pixels` (8-bit grey)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = b"".join(b"\0" + row.tobytes() for row in np.ascontiguousarray(pixels, np.uint8))
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(rows))
            + png_chunk(b"IEND", b""))


def truncated_jpeg(d: Path) -> Path:
    path = d / "t.jpg"
    path.write_bytes((SAMPLE / "00.color.jpg").read_bytes()[:42673])  # the cut: half a picture
    return path


def huge_png(d: Path) -> Path:
    path = d / "huge.png"
    path.write_bytes(png_with_header(12000, 12000, np.zeros((12000, 12000), np.uint8)))  # 0.4 MB, 144 MP
    return path


def lying_png(d: Path) -> Path:
    path = d / "lying.png"
    path.write_bytes(png_with_header(640, 480, np.full((8, 8), 128, np.uint8)))  # 640x480 declared, 8x8 stored
    return path


def empty_file(d: Path) -> Path:
    path = d / "empty.jpg"
    path.write_bytes(b"")
    return path


def text_png(d: Path) -> Path:
    path = d / "notes.png"
    path.write_text("this is not an image\n")
    return path


def tiny_checkpoint(d: Path, poison: bool = False) -> Path:
    import fusanet_core
    from fusanet_core.checkpoint import save_checkpoint

    torch.manual_seed(0)
    cfg = fusanet_core.preset_config("tiny")
    model = fusanet_core.build_model(cfg)
    if poison:
        with torch.no_grad():
            next(p for p in model.parameters() if p.is_floating_point()).view(-1)[3] = float("nan")
    return save_checkpoint(d / ("nan_weights.pt" if poison else "tiny.pt"), model, cfg)


def plain_state_dict(d: Path) -> Path:
    path = d / "resnet.pt"
    torch.save(torch.nn.Linear(2, 2).state_dict(), path)
    return path


class Evil:
    """Runs a shell command when unpickled: it touches a marker file the test checks for."""

    def __reduce__(self):
        return (os.system, (f"touch {os.environ.get('FUSANET_TEST_MARKER', '/tmp/fusanet_pwned')}",))


def malicious_pickle(d: Path) -> Path:
    path = d / "evil.pt"
    torch.save({"format": "fusanet-checkpoint-v1", "payload": Evil()}, path)
    return path


def raw_pickle(d: Path) -> Path:
    import pickle

    path = d / "weights.pkl"
    path.write_bytes(pickle.dumps({"model": [1, 2, 3]}, protocol=4))  # torch warns about protocol 4 before refusing
    return path


def crafted_bag(d: Path, how: str) -> Path:
    """Write the sample MCAP with its chunk index lying: compressed size 2**62, or 1000 bytes short."""
    data = bytearray(SAMPLE_MCAP.read_bytes())
    index = data.rindex(b"\x08", 0, data.rindex(b"zstd") - 4 - 8)  # opcode of the chunk-index record
    pos = index + 9 + 32
    pos += 4 + struct.unpack_from("<I", data, pos)[0] + 8  # message index offsets, message index length
    pos += 4 + struct.unpack_from("<I", data, pos)[0]  # compression name
    size = struct.unpack_from("<Q", data, pos)[0]
    struct.pack_into("<Q", data, pos, 2**62 if how == "huge" else size - 1000)
    path = d / f"crafted_{how}.mcap"
    path.write_bytes(bytes(data))
    return path


def train_config(d: Path) -> Path:
    """Write a valid training config whose run would write into the checked output folder."""
    path = d / "train.yaml"
    config = {"preset": "tiny", "data": {"train": [str(SAMPLE)]}, "train": {"out_dir": str(d.parent / "out" / "run")}}
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def bag_with_huge_image(d: Path) -> Path:
    """Write a ROS 2 bag whose one colour Image declares 100000 x 100000 pixels (with 12 bytes of data)."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import get_typestore, Stores

    ts = get_typestore(Stores.LATEST)
    header = ts.types["std_msgs/msg/Header"](stamp=ts.types["builtin_interfaces/msg/Time"](sec=1, nanosec=0),
                                             frame_id="cam")
    image = ts.types["sensor_msgs/msg/Image"]
    color = image(header=header, height=100_000, width=100_000, encoding="rgb8", is_bigendian=0, step=300_000,
                  data=np.zeros(12, np.uint8))
    depth = image(header=header, height=2, width=2, encoding="16UC1", is_bigendian=0, step=4,
                  data=np.full(8, 1, np.uint8))
    path = d / "huge_bag"
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        for topic, msg in ((COLOR, color), (DEPTH, depth)):
            conn = writer.add_connection(topic, msg.__msgtype__, typestore=ts)
            writer.write(conn, 10**9, ts.serialize_cdr(msg, msg.__msgtype__))
    return path


# ---------------------------------------------------------------------------------- cases
Case = Callable[[Path], tuple[list[str], str]]  # tmp dir -> (CLI arguments, regex the error must match)

CASES: dict[str, Case] = {
    "truncated_jpeg": lambda d: (["predict", str(truncated_jpeg(d))], r"t\.jpg: truncated JPEG"),
    "png_huge_dims": lambda d: (["predict", str(huge_png(d))],
                                r"12000x12000 \(144\.0 MP\) exceeds max_input_pixels 16777216"),
    "png_lying_header": lambda d: (["predict", str(lying_png(d))], r"lying\.png: corrupt or truncated"),
    "zero_byte_file": lambda d: (["predict", str(empty_file(d))], r"empty\.jpg is empty \(0 bytes\)"),
    "text_named_png": lambda d: (["predict", str(text_png(d))], r"notes\.png: not an image"),
    "nan_weights_predict": lambda d: (["predict", str(SAMPLE / "00.color.jpg"),
                                       "--checkpoint", str(tiny_checkpoint(d, True))],
                                      r"non-finite weights: \S+ holds 1 NaN/inf"),
    "nan_weights_export": lambda d: (["export", "--checkpoint", str(tiny_checkpoint(d, True)),
                                      "--out", str(d / "out" / "m.onnx")],
                                     r"non-finite weights"),
    "foreign_state_dict": lambda d: (["predict", str(SAMPLE / "00.color.jpg"),
                                      "--checkpoint", str(plain_state_dict(d))],
                                     r"not a FuSaNet checkpoint"),
    "malicious_pickle": lambda d: (["predict", str(SAMPLE / "00.color.jpg"), "--checkpoint", str(malicious_pickle(d))],
                                   r"not a safe torch file"),
    "raw_pickle": lambda d: (["predict", str(SAMPLE / "00.color.jpg"), "--checkpoint", str(raw_pickle(d))],
                             r"weights\.pkl is corrupt, truncated or not a safe torch file"),
    "predict_input_size": lambda d: (["predict", str(SAMPLE / "00.color.jpg"), "--input-size", "8", "8"],
                                     r"input_size must be \[height, width\] >= 32, got \(8, 8\)"),
    "predict_ground_without_intrinsics": lambda d: (["predict", str(SAMPLE / "00.color.jpg"),
                                                     "--ground-plane", "0", "-1", "0", "1.2"],
                                                    r"--ground-plane / --ground-extrinsic need --intrinsics"),
    "predict_ground_below_camera": lambda d: (["predict", str(SAMPLE / "00.color.jpg"), "--intrinsics", "500", "500",
                                               "320", "240", "--ground-plane", "0", "-1", "0", "-1.2"],
                                              r"ground plane height h must be > 0"),
    "predict_ground_non_unit_quaternion": lambda d: (["predict", str(SAMPLE / "00.color.jpg"), "--intrinsics", "500",
                                                      "500", "320", "240", "--ground-extrinsic", "0", "0", "0.5", "0",
                                                      "0", "0", "2"], r"quaternion"),
    "export_input_size": lambda d: (["export", "--checkpoint", str(tiny_checkpoint(d)), "--input-size", "8", "8",
                                     "--out", str(d / "out" / "m.onnx")],
                                    r"input_size must be \[height, width\] >= 32"),
    "bag_eval_missing_topic": lambda d: (["bag-eval", str(SAMPLE_MCAP.parent),
                                          "--image-topic", COLOR, "--depth-topic", "/nope"],
                                         r"depth topic '/nope' is not in the bag"),
    "bag_eval_identical_topics": lambda d: (["bag-eval", str(SAMPLE_MCAP.parent),
                                             "--image-topic", COLOR, "--depth-topic", COLOR],
                                            r"--image-topic and --depth-topic are both"),
    "bag_eval_crafted_bag": lambda d: (["bag-eval", str(crafted_bag(d, "short")),
                                        "--image-topic", COLOR, "--depth-topic", DEPTH],
                                       r"cannot read bag .*crafted_short\.mcap after 0 messages: truncated or corrupt"),
    "bag_eval_huge_image": lambda d: (["bag-eval", str(bag_with_huge_image(d)),
                                       "--image-topic", COLOR, "--depth-topic", DEPTH,
                                       "--checkpoint", str(tiny_checkpoint(d)), "--input-size", "48", "64"],
                                      r"no frame could be scored: 1 of 1 frames error: "
                                      r".*100000x100000 \(10000\.0 MP\) exceeds"),
    "train_nan_grad_clip": lambda d: (["train", "--config", str(train_config(d)), "--set", "train.grad_clip=.nan"],
                                      r"train\.yaml: train\.grad_clip must be finite and >= 0, got nan$"),
    "train_zero_points_prob_2": lambda d: (["train", "--config", str(train_config(d)),
                                            "--set", "points.zero_points_prob=2.0"],
                                           r"points\.zero_points_prob must be in \[0, 1\], got 2\.0$"),
    "train_negative_max_points": lambda d: (["train", "--config", str(train_config(d)),
                                             "--set", "points.max_points=-5"],
                                            r"points\.max_points must be >= 0, got -5$"),
    "train_negative_max_steps": lambda d: (["train", "--config", str(train_config(d)), "--max-steps", "-1"],
                                           r"train\.max_steps must be >= 0, got -1$"),
    "play_missing_topic": lambda d: (["play", str(SAMPLE_MCAP.parent), "--topics", "/nope"],
                                     r"'/nope' is not in the bag"),
    "play_declared_length_2_62": lambda d: (["play", str(crafted_bag(d, "huge"))],
                                            r"cannot read bag .*crafted_huge\.mcap after 0 messages: "
                                            r"truncated or corrupt"),
    "play_chunk_size_lies": lambda d: (["play", str(crafted_bag(d, "short"))], r"crafted_short\.mcap after 0 messages"),
}


def run_fusanet(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    code = "import sys; from fusanet_ros.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_exits_2_with_one_line_and_leaves_nothing(name: str, tmp_path: Path, monkeypatch) -> None:
    if name.startswith("play"):
        pytest.importorskip("rclpy")
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    marker = tmp_path / "pickle_code_ran"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FUSANET_TEST_MARKER": str(marker), "ROS_DOMAIN_ID": "97",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    monkeypatch.setenv("FUSANET_TEST_MARKER", str(marker))  # Evil reads it when pickled, in this process
    args, expected = CASES[name](inputs)
    if args[0] in ("predict", "bag-eval"):
        args += ["--out", str(out), "--device", "cpu"]
    result = run_fusanet(args, tmp_path, env)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"fusanet {args[0]}: error: "), lines[0]
    assert re.search(expected, lines[0]), lines[0]
    left = [p for p in out.rglob("*") if p.is_file()] if out.exists() else []
    assert not left, f"output left behind: {left}"
    assert not marker.exists(), "the malicious pickle's code ran"
