"""Offline bag evaluation (`fusanet bag-eval`, `fusanet_core.evaluation.bag_eval`).

The bundled sample bag end to end, the real RealSense D435 bag (ROS 1, sqlite3, MCAP; registered
against a reference registration) when ../shared/data is present, and bad input: missing topics,
damaged bags, ground truth without valid pixels, size mismatches, corrupt messages.
"""

from __future__ import annotations

import json
from pathlib import Path
import shutil
from typing import Any

import cv2
import numpy as np
import pytest

pytest.importorskip("rosbags")

from rosbags.rosbag2 import StoragePlugin, Writer  # noqa: E402
from rosbags.typesys import get_typestore, Stores  # noqa: E402

from fusanet_core.evaluation.bag_eval import BagEvalOptions, evaluate_bag  # noqa: E402
from fusanet_core.evaluation.metrics import compute_metrics  # noqa: E402
from fusanet_core.evaluation.registration import realsense_extrinsic, register_depth  # noqa: E402
from fusanet_core.io.bags import open_bag  # noqa: E402
from fusanet_core.io.messages import image_to_depth  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
SAMPLE = ROOT / "sample" / "tum_rgbd"
SAMPLE_BAG = ROOT / "sample" / "tum_rgbd_bag"
D435 = Path(__file__).parents[3].parent / "shared" / "data" / "realsense_d435_bag"
D435_TOPICS = {"image": "/device_0/sensor_1/Color_0/image/data", "depth": "/device_0/sensor_0/Depth_0/image/data"}
D435_FORMS = {"ros1": "single_depth_color_640x480.bag", "sqlite3": "rs_d435_ros2_sqlite3", "mcap": "rs_d435_ros2_mcap"}
TS = get_typestore(Stores.LATEST)
K_TUM = (520.9, 521.0, 325.1, 249.7)
FAST = (48, 64)  # network input for tests: the tiny model at this size takes milliseconds


# ----------------------------------------------------------------------------------- helpers
def _header(stamp_ns: int, frame_id: str) -> Any:
    stamp = TS.types["builtin_interfaces/msg/Time"](sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
    return TS.types["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id)


def image_msg(stamp_ns: int, pixels: np.ndarray, encoding: str, frame_id: str = "cam", truncate: int = 0) -> Any:
    data = np.ascontiguousarray(pixels).view(np.uint8).reshape(-1)
    height, width = pixels.shape[:2]
    step = data.size // height
    return TS.types["sensor_msgs/msg/Image"](header=_header(stamp_ns, frame_id), height=height, width=width,
                                             encoding=encoding, is_bigendian=0, step=step,
                                             data=data[:data.size - truncate])


def info_msg(stamp_ns: int, k: tuple[float, ...], width: int, height: int, frame_id: str = "cam") -> Any:
    fx, fy, cx, cy = k
    roi = TS.types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return TS.types["sensor_msgs/msg/CameraInfo"](
        header=_header(stamp_ns, frame_id), height=height, width=width, distortion_model="plumb_bob", d=np.zeros(5),
        k=np.array([fx, 0, cx, 0, fy, cy, 0, 0, 1.0]), r=np.eye(3).reshape(9),
        p=np.array([fx, 0, cx, 0, 0, fy, cy, 0, 0, 0, 1.0, 0]), binning_x=0, binning_y=0, roi=roi)


def tf_msg(stamp_ns: int, parent: str, child: str, t: tuple[float, float, float], q: tuple[float, ...]) -> Any:
    T = TS.types
    transform = T["geometry_msgs/msg/Transform"](
        translation=T["geometry_msgs/msg/Vector3"](x=t[0], y=t[1], z=t[2]),
        rotation=T["geometry_msgs/msg/Quaternion"](x=q[0], y=q[1], z=q[2], w=q[3]))
    stamped = T["geometry_msgs/msg/TransformStamped"](header=_header(stamp_ns, parent), child_frame_id=child,
                                                      transform=transform)
    return T["tf2_msgs/msg/TFMessage"](transforms=[stamped])


def write_bag(path: Path, messages: list[tuple[str, int, Any]], storage: str = "mcap") -> Path:
    """Write a ROS 2 bag (version 9) with the messages in the given order."""
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        conns: dict[str, Any] = {}
        for topic, t, msg in messages:
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, msg.__msgtype__, typestore=TS)
            writer.write(conns[topic], t, TS.serialize_cdr(msg, msg.__msgtype__))
    return path


def small_frame(i: int, size: tuple[int, int] = (160, 120)) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """TUM frame i scaled to `size`: rgb uint8, depth uint16 mm, intrinsics at that size."""
    rgb = cv2.cvtColor(cv2.imread(str(SAMPLE / f"0{i}.color.jpg")), cv2.COLOR_BGR2RGB)
    raw = cv2.imread(str(SAMPLE / f"0{i}.depth.png"), cv2.IMREAD_UNCHANGED)
    s = size[0] / rgb.shape[1]
    mm = np.round(cv2.resize(raw, size, interpolation=cv2.INTER_NEAREST) * 0.2).astype(np.uint16)
    k = (K_TUM[0] * s, K_TUM[1] * s, (K_TUM[2] + 0.5) * s - 0.5, (K_TUM[3] + 0.5) * s - 0.5)
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), mm, k


def rgbd_messages(frames: list[dict[str, Any]]) -> list[tuple[str, int, Any]]:
    """Bag messages: per frame camera_info + colour + depth (each optional), 0.1 s apart."""
    out = []
    for n, f in enumerate(frames):
        t = 10**18 + n * 10**8
        rgb, mm, k = f.get("rgb"), f.get("depth"), f["k"]
        if rgb is not None:
            out.append(("/cam/color/camera_info", t, info_msg(t, k, rgb.shape[1], rgb.shape[0])))
            out.append(("/cam/color/image_raw", t, image_msg(t, rgb, "rgb8", truncate=f.get("truncate", 0))))
        if mm is not None:
            gt_t = t + f.get("gt_offset", 0)
            out.append(("/cam/depth/image_raw", gt_t, image_msg(gt_t, mm, "16UC1")))
    return out


def run_cli(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    from fusanet_ros.cli import main

    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def options(bag: Path, out: Path, checkpoint: Path, **kwargs: Any) -> BagEvalOptions:
    base = {"image_topic": "/cam/color/image_raw", "depth_topic": "/cam/depth/image_raw", "input_size": FAST}
    return BagEvalOptions(bag=str(bag), out=str(out), checkpoint=str(checkpoint), device="cpu", **{**base, **kwargs})


# ---------------------------------------------------------------------------- sample bag, CLI
def _sample_bag(tmp_path: Path) -> Path:
    """Return the bundled sample bag, or the same thing built here from sample/tum_rgbd."""
    if (SAMPLE_BAG / "metadata.yaml").is_file():
        return SAMPLE_BAG
    frames = [dict(zip(("rgb", "depth", "k"), small_frame(i % 3, (640, 480)))) for i in range(3)]
    msgs = [(t.replace("/cam/", "/camera/"), s, m) for t, s, m in rgbd_messages(frames)]
    return write_bag(tmp_path / "tum_rgbd_bag", msgs)


def test_sample_bag_end_to_end_matches_a_direct_computation(tmp_path: Path, tiny_checkpoint: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    from rosbags.highlevel import AnyReader

    from fusanet_core.inference.predictor import Predictor
    from fusanet_ros.nodes import conversions as conv

    bag, out = _sample_bag(tmp_path), tmp_path / "report"
    code, stdout, err = run_cli(["bag-eval", str(bag), "--image-topic", "/camera/color/image_raw", "--depth-topic",
                                 "/camera/depth/image_raw", "--checkpoint", str(tiny_checkpoint), "--device", "cpu",
                                 "--input-size", "48", "64", "--out", str(out)], capsys)
    assert code == 0, err
    assert "abs_rel" in stdout and str(out / "report.md") in stdout
    data = json.loads((out / "report.json").read_text())
    assert data["counts"]["ok"] == data["counts"]["frames"] >= 3
    assert {"report.md", "metrics_over_time.png", "error_histogram.png"} <= {p.name for p in out.iterdir()}
    assert any(p.name.startswith("panel_") for p in out.iterdir())
    # Independent path: rosbags + conversions + Predictor + compute_metrics on the first frames.
    predictor = Predictor.from_checkpoint(tiny_checkpoint, "cpu", input_size=FAST)
    msgs: dict[str, list[Any]] = {}
    with AnyReader([bag]) as reader:
        for conn, _, raw in reader.messages():
            msgs.setdefault(conn.topic, []).append(reader.deserialize(raw, conn.msgtype))
    for i in range(3):
        rgb, info = conv.image_to_rgb(msgs["/camera/color/image_raw"][i]), msgs["/camera/color/camera_info"][i]
        gt = conv.image_to_depth(msgs["/camera/depth/image_raw"][i])
        pred = predictor.predict(rgb, conv.camera_info_intrinsics(info))["depth"]
        expected = compute_metrics(pred, gt, max_depth=10.0)
        assert data["frames"][i]["metrics"] == pytest.approx(expected, rel=1e-6)


def test_bad_frames_are_reported_and_the_good_ones_scored(tmp_path: Path, tiny_checkpoint: Path) -> None:
    frames = [dict(zip(("rgb", "depth", "k"), small_frame(i % 2))) for i in range(6)]
    frames[1]["depth"] = np.zeros_like(frames[1]["depth"])  # no valid ground truth
    frames[2]["truncate"] = 7  # colour message with a short data field
    frames[3]["depth"] = cv2.resize(frames[3]["depth"], (80, 60), interpolation=cv2.INTER_NEAREST)  # half size
    frames[4]["gt_offset"] = 70_000_000  # ground truth 70 ms late: outside the default 50 ms slop
    bag = write_bag(tmp_path / "bad", rgbd_messages(frames))
    evaluation, paths = evaluate_bag(options(bag, tmp_path / "out", tiny_checkpoint))
    status = [f.status for f in sorted(evaluation.frames, key=lambda f: f.index)]
    assert status == ["ok", "no_valid_gt", "error", "ok", "unpaired", "ok"]
    messages = {f.index: f.message for f in evaluation.frames}
    assert "data length" in messages[2] and "ground truth" in messages[4]
    data = json.loads(paths["json"].read_text())
    assert data["summary"]["n_images"] == 3
    assert any("resized" in n for n in data["notes"]) and any("paired 5 of 6" in n for n in data["notes"])


def test_registration_needed_without_extrinsic_is_an_error_and_the_flag_fixes_it(tmp_path: Path,
                                                                                 tiny_checkpoint: Path) -> None:
    rgb, mm, k = small_frame(0)
    t = 10**18
    msgs = [("/cam/color/camera_info", t, info_msg(t, k, 160, 120, "color")),
            ("/cam/depth/camera_info", t, info_msg(t, k, 160, 120, "depth")),
            ("/cam/color/image_raw", t, image_msg(t, rgb, "rgb8", "color")),
            ("/cam/depth/image_raw", t, image_msg(t, mm, "16UC1", "depth"))]
    bag = write_bag(tmp_path / "frames", msgs)
    with pytest.raises(ValueError, match="--extrinsic"):
        evaluate_bag(options(bag, tmp_path / "a", tiny_checkpoint))
    # Identity extrinsic, same intrinsics: registration must give back the same scores.
    registered, _ = evaluate_bag(options(bag, tmp_path / "b", tiny_checkpoint, extrinsic=[0, 0, 0, 0, 0, 0, 1]))
    plain, _ = evaluate_bag(options(bag, tmp_path / "c", tiny_checkpoint, register="never"))
    assert registered.summary()["rmse"] == pytest.approx(plain.summary()["rmse"], rel=1e-6)
    meta = json.loads((tmp_path / "b" / "report.json").read_text())["meta"]
    assert "frame_id 'depth' differs" in meta["registration"]["extrinsic_source"]


def test_extrinsic_is_read_from_tf_static(tmp_path: Path, tiny_checkpoint: Path) -> None:
    rgb, mm, k = small_frame(0)
    t = 10**18
    msgs = [("/tf_static", t, tf_msg(t, "link", "color", (0.015, 0, 0), (0, 0, 0, 1))),
            ("/tf_static", t, tf_msg(t, "link", "depth", (0, 0, 0), (0, 0, 0, 1))),
            ("/cam/color/image_raw", t, image_msg(t, rgb, "rgb8", "color")),
            ("/cam/color/camera_info", t, info_msg(t, k, 160, 120, "color")),
            ("/cam/depth/camera_info", t, info_msg(t, k, 160, 120, "depth")),
            ("/cam/depth/image_raw", t, image_msg(t, mm, "16UC1", "depth"))]
    evaluation, paths = evaluate_bag(options(write_bag(tmp_path / "tf", msgs), tmp_path / "out", tiny_checkpoint))
    reg = json.loads(paths["json"].read_text())["meta"]["registration"]
    np.testing.assert_allclose(reg["depth_to_color_txyz_qxyzw"], [-0.015, 0, 0, 0, 0, 0, 1], atol=1e-12)
    assert reg["extrinsic_source"].startswith("/tf_static depth -> color") and evaluation.counts["ok"] == 1


def test_missing_topic_lists_the_bag_topics(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bag = _sample_bag(tmp_path)
    code, _, err = run_cli(["bag-eval", str(bag), "--image-topic", "/camera/color/image_raw", "--depth-topic", "/nope"],
                           capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "'/nope' is not in the bag" in err and "/camera/depth/image_raw (sensor_msgs/msg/Image" in err


@pytest.mark.parametrize("damage", ["truncated", "garbage", "missing"])
def test_damaged_bags_fail_with_one_line(tmp_path: Path, damage: str, capsys: pytest.CaptureFixture) -> None:
    if damage == "truncated":
        src = _sample_bag(tmp_path)
        bag = shutil.copytree(src, tmp_path / "trunc") if src.is_dir() else src
        for f in bag.glob("*.mcap"):
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    elif damage == "garbage":
        bag = tmp_path / "garbage.bag"
        bag.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    else:
        bag = tmp_path / "absent.bag"
    code, _, err = run_cli(["bag-eval", str(bag), "--image-topic", "/a", "--depth-topic", "/b"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert ("not found" if damage == "missing" else "truncated, corrupt or not a bag") in err


def corrupt_message(bag: Path, topic_marker: bytes, occurrence: int) -> Path:
    r"""Make the `occurrence`-th message holding `topic_marker` undeserializable.

    `topic_marker` is e.g. b"rgb8\0", the encoding string; its CDR string length becomes 2**31 - 1
    (uncompressed MCAP).
    """
    mcap = next(bag.glob("*.mcap"))
    data = bytearray(mcap.read_bytes())
    at, pos = -1, -1
    for _ in range(occurrence + 1):
        pos = data.index(topic_marker, pos + 1)
        at = pos - 4
    data[at:at + 4] = (2**31 - 1).to_bytes(4, "little")
    mcap.write_bytes(bytes(data))
    return bag


def test_identical_topics_are_refused_before_anything_runs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "report"
    code, _, err = run_cli(["bag-eval", str(_sample_bag(tmp_path)), "--image-topic", "/camera/color/image_raw",
                            "--depth-topic", "/camera/color/image_raw", "--out", str(out)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "--image-topic and --depth-topic are both '/camera/color/image_raw'" in err
    assert not out.exists()


def test_nothing_scored_names_the_real_reason_and_writes_no_report(tmp_path: Path, tiny_checkpoint: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    from fusanet_core.evaluation.bag_eval import NothingScoredError

    rgb, mm, k = small_frame(0)
    t = 10**18
    huge = image_msg(t, rgb, "rgb8")
    huge.width = huge.height = 100_000  # a lying header: 10 GP declared, 57 kB of data
    msgs = [("/cam/color/image_raw", t, huge), ("/cam/depth/image_raw", t, image_msg(t, mm, "16UC1"))]
    bag = write_bag(tmp_path / "huge", msgs)
    with pytest.raises(NothingScoredError, match=r"1 of 1 frames error: bad colour image: image 100000x100000 "
                                                 r"\(10000.0 MP\) exceeds max_input_pixels 16777216") as info:
        evaluate_bag(options(bag, tmp_path / "a", tiny_checkpoint))
    assert info.value.evaluation.counts == {"error": 1} and not (tmp_path / "a").exists()
    out = tmp_path / "b"
    code, stdout, err = run_cli(["bag-eval", str(bag), "--image-topic", "/cam/color/image_raw", "--depth-topic",
                                 "/cam/depth/image_raw", "--checkpoint", str(tiny_checkpoint), "--device", "cpu",
                                 "--input-size", "48", "64", "--out", str(out)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "exceeds max_input_pixels" in err and "no report written" in err and not out.exists()


def test_a_corrupt_message_mid_bag_is_skipped_and_counted(tmp_path: Path, tiny_checkpoint: Path) -> None:
    frames = [dict(zip(("rgb", "depth", "k"), small_frame(i % 2))) for i in range(4)]
    bag = corrupt_message(write_bag(tmp_path / "bag", rgbd_messages(frames)), b"rgb8\0", 1)
    evaluation, paths = evaluate_bag(options(bag, tmp_path / "out", tiny_checkpoint))
    data = json.loads(paths["json"].read_text())
    assert data["counts"]["corrupt"] == 1 and data["counts"]["ok"] == 3 and data["summary"]["n_images"] == 3
    assert any("1 corrupt messages skipped (1 on /cam/color/image_raw)" in n and "Invalid string length" in n
               for n in data["notes"])
    # The frames after the corrupt one are paired with their own ground truth, not shifted by one.
    plain_bag = write_bag(tmp_path / "plain", rgbd_messages(frames))
    plain, _ = evaluate_bag(options(plain_bag, tmp_path / "ref", tiny_checkpoint))
    expected = {f.stamp_ns: f.metrics for f in plain.frames}
    assert all(f.metrics == pytest.approx(expected[f.stamp_ns]) for f in evaluation.frames)


def test_a_broken_chunk_stops_with_the_frames_so_far(tmp_path: Path, tiny_checkpoint: Path, monkeypatch) -> None:
    """The rosbags reader cannot read past a broken chunk: the run keeps what it read and says so."""
    from rosbags.highlevel import AnyReader

    frames = [dict(zip(("rgb", "depth", "k"), small_frame(i % 2))) for i in range(4)]
    bag = write_bag(tmp_path / "bag", rgbd_messages(frames))
    real = AnyReader.messages

    def breaks_after_seven(self: Any, *args: Any, **kwargs: Any) -> Any:
        for n, item in enumerate(real(self, *args, **kwargs)):
            if n == 7:  # first pass: frames 0 and 1 complete (camera_info, colour, depth) then the storage fails
                raise RuntimeError("Chunk checksum mismatch.")
            yield item

    monkeypatch.setattr(AnyReader, "messages", breaks_after_seven)
    evaluation, paths = evaluate_bag(options(bag, tmp_path / "out", tiny_checkpoint))
    data = json.loads(paths["json"].read_text())
    assert data["counts"]["ok"] == data["counts"]["frames"] == 2
    assert any("cannot read bag" in n and "Chunk checksum mismatch" in n and "only the frames before" in n
               for n in data["notes"])


# ---------------------------------------------------------------------------- RealSense D435 bag
@pytest.fixture
def d435() -> Path:
    if not D435.is_dir():
        pytest.skip("../shared/data is not present (fresh clone)")
    return D435


def test_d435_registration_matches_the_reference(d435: Path) -> None:
    from fusanet_core.evaluation.bag_eval import _Messages
    from fusanet_core.evaluation.registration import camera_model, Registration

    reader = open_bag(d435 / D435_FORMS["ros1"])
    try:
        msgs: dict[str, Any] = {}
        for topic, _, msg in _Messages(reader, [c.topic for c in reader.connections]):
            msgs.setdefault(topic, msg)  # the first message of each topic
    finally:
        reader.close()
    color = camera_model(msgs["/device_0/sensor_1/Color_0/info/camera_info"])
    depth = camera_model(msgs["/device_0/sensor_0/Depth_0/info/camera_info"])
    extrinsic, _ = realsense_extrinsic(msgs, D435_TOPICS["depth"], D435_TOPICS["image"])
    registered = Registration(depth, color, extrinsic, "bag").apply(image_to_depth(msgs[D435_TOPICS["depth"]]))
    reference = cv2.imread(str(d435 / "extracted" / "depth_registered_to_color_mm.png"),
                           cv2.IMREAD_UNCHANGED).astype(np.float64)
    ref_valid = reference > 0
    mm = np.nan_to_num(registered.astype(np.float64) * 1000.0)
    close = np.abs(mm - reference) <= np.maximum(2.0, 0.01 * reference)
    assert (close & ref_valid).sum() / ref_valid.sum() > 0.95
    assert abs((mm > 0).mean() - ref_valid.mean()) < 0.02  # sparse like the reference (~39 % of pixels)
    # The inverse convention (colour-to-depth) must be clearly worse: the test tells them apart.
    wrong = register_depth(image_to_depth(msgs[D435_TOPICS["depth"]]), depth.intrinsics, color.intrinsics, (640, 480),
                           extrinsic.inverse())
    wrong_mm = np.nan_to_num(wrong.astype(np.float64) * 1000.0)
    close = np.abs(wrong_mm - reference) <= np.maximum(2.0, 0.01 * reference)
    assert (close & ref_valid).sum() / ref_valid.sum() < 0.5


def test_d435_bag_in_all_three_storage_formats(d435: Path, tmp_path: Path, tiny_checkpoint: Path) -> None:
    summaries = {}
    for form, name in D435_FORMS.items():
        opts = options(d435 / name, tmp_path / form, tiny_checkpoint, image_topic=D435_TOPICS["image"],
                       depth_topic=D435_TOPICS["depth"], slop=0.15)
        evaluation, paths = evaluate_bag(opts)
        data = json.loads(paths["json"].read_text())
        assert data["counts"]["ok"] == 1 and data["counts"]["frames"] == 1, form
        assert "1 of 1 paired" in data["meta"]["pairing"]
        assert "librealsense" in data["meta"]["registration"]["extrinsic_source"]
        assert 0.3 < data["summary"]["coverage"] <= 1.0
        summaries[form] = data["summary"]
    assert summaries["sqlite3"] == pytest.approx(summaries["ros1"], rel=1e-9)
    assert summaries["mcap"] == pytest.approx(summaries["ros1"], rel=1e-9)


def test_d435_default_slop_pairs_nothing_and_says_why(d435: Path, tmp_path: Path, tiny_checkpoint: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "report"
    code, _, err = run_cli(["bag-eval", str(d435 / D435_FORMS["mcap"]), "--image-topic", D435_TOPICS["image"],
                            "--depth-topic", D435_TOPICS["depth"], "--checkpoint", str(tiny_checkpoint),
                            "--device", "cpu", "--input-size", "48", "64", "--out", str(out)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "1 of 1 frames unpaired" in err and "101.6 ms" in err and "--slop" in err
    assert not out.exists() or not list(out.iterdir())  # no report without metrics: it would look like a result
