"""Datasets: manifest, list-file and bag sources from real frames; transforms keep geometry."""

from __future__ import annotations

from pathlib import Path
import shutil

import cv2
import numpy as np
import pytest
import torch

from fusanet_core.config import config_from_dict
from fusanet_core.datasets import (
    AugmentParams,
    build_dataset,
    build_source,
    collate,
    ConcatDataset,
    EpochSampler,
    parse_spec,
    RGBDDataset,
)
from fusanet_core.datasets import transforms as T
from fusanet_core.datasets.base import resolve_path
from fusanet_core.datasets.manifest import ManifestSource
from fusanet_core.model.points import PointBatch

ROOT = Path(__file__).resolve().parents[3]
SAMPLE = ROOT / "sample" / "tum_rgbd"
SAMPLE_K = np.array([520.9, 521.0, 325.1, 249.7])


def small_cfg(**data) -> object:
    return config_from_dict({"preset": "tiny", "data": {"image_size": [48, 64], **data}})


def sample_metres(index: int) -> np.ndarray:
    raw = cv2.imread(str(SAMPLE / f"{index:02d}.depth.png"), cv2.IMREAD_UNCHANGED)
    return raw.astype(np.float32) * 0.0002


# ------------------------------------------------------------------------- specs and manifests


def test_parse_spec_ranges():
    assert parse_spec("a/manifest.csv") == ("a/manifest.csv", slice(None))
    assert parse_spec("a/manifest.csv[0:400]") == ("a/manifest.csv", slice(0, 400))
    assert parse_spec("x[:3]") == ("x", slice(None, 3))
    assert parse_spec("x[-2:]") == ("x", slice(-2, None))
    with pytest.raises(ValueError, match="bad row range"):
        parse_spec("x[1:2:3]")


def test_relative_paths_resolve_against_base_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_path("tum_rgbd/manifest.csv", SAMPLE.parent) == SAMPLE / "manifest.csv"
    assert resolve_path("elsewhere.csv", SAMPLE.parent) == Path("elsewhere.csv")


def test_manifest_sample_layout_and_intrinsics():
    cfg = small_cfg()
    dataset = build_dataset(f"{SAMPLE}/manifest.csv[1:3]", cfg, train=False)
    assert len(dataset) == 2 and dataset.name == "tum_rgbd[1:3]"
    sample = dataset[0]
    assert sample["rgb"].shape == (3, 48, 64) and sample["rgb"].dtype == torch.float32
    assert 0 <= sample["rgb"].min() and sample["rgb"].max() <= 1
    assert sample["depth"].shape == (1, 48, 64) and sample["mask"].dtype == torch.bool
    assert torch.all(sample["depth"][~sample["mask"]] == 0) and torch.all(sample["depth"][sample["mask"]] > 0)
    sx, sy = 64 / 640, 48 / 480  # frame 01 is 640x480 with the manifest's intrinsics
    expected = [520.9 * sx, 521.0 * sy, (325.1 + 0.5) * sx - 0.5, (249.7 + 0.5) * sy - 0.5]
    assert np.allclose(sample["intrinsics"].numpy(), expected, atol=1e-4)
    points = sample["points"].numpy()
    assert points.ndim == 2 and points.shape[1] == 3 and 0 < len(points) <= cfg.points.max_points
    rows, cols = points[:, 1].astype(int), points[:, 0].astype(int)
    assert np.all(sample["mask"][0].numpy()[rows, cols])  # guiding points sit on valid depth
    assert np.allclose(sample["depth"][0].numpy()[rows, cols], points[:, 2])


def test_validation_samples_are_deterministic_and_train_ones_vary():
    cfg = small_cfg()
    val = build_dataset(str(SAMPLE), cfg, train=False)
    assert torch.equal(val[0]["rgb"], val[0]["rgb"])
    train = build_dataset(str(SAMPLE), cfg, train=True)
    a, b = train[(0, 1)], train[(0, 2)]
    assert torch.equal(train[(0, 1)]["rgb"], a["rgb"])  # a sample seed fixes the augmentation
    assert not torch.equal(a["rgb"], b["rgb"])


def test_zero_points_probability_and_collate():
    cfg = small_cfg()
    cfg.points.zero_points_prob = 1.0
    train = build_dataset(str(SAMPLE), cfg, train=True)
    assert len(train[(0, 5)]["points"]) == 0
    cfg.points.zero_points_prob = 0.0
    mixed = ConcatDataset([build_dataset(str(SAMPLE), cfg, train=True), train])
    batch = collate([mixed[(0, 3)], mixed[(4, 3)]])
    assert batch["rgb"].shape == (2, 3, 48, 64) and batch["intrinsics"].shape == (2, 4)
    assert isinstance(batch["points"], PointBatch) and batch["points"].weight[1].sum() == 0
    assert batch["points"].weight[0].sum() > 0


def test_epoch_sampler_resumes_and_splits_ranks():
    full = EpochSampler(10, seed=3)
    full.set_epoch(2)
    keys = full.keys()
    assert sorted(k[0] for k in keys) == list(range(10))
    later = EpochSampler(10, seed=3)
    later.set_epoch(2, start=4)
    assert later.keys() == keys[4:]
    ranks = [EpochSampler(10, 3, rank=r, world_size=2) for r in range(2)]
    for r in ranks:
        r.set_epoch(2)
    assert sorted(k for r in ranks for k in r.keys()) == sorted(keys)
    other = EpochSampler(10, seed=3)
    other.set_epoch(3)
    assert other.keys() != keys


def _copy_sample(tmp_path: Path) -> Path:
    folder = tmp_path / "set"
    shutil.copytree(SAMPLE, folder)
    return folder


def test_empty_manifest_is_a_clear_error(tmp_path):
    path = tmp_path / "manifest.csv"
    path.write_text("rgb,depth,depth_to_m,fx,fy,cx,cy,note\n")
    with pytest.raises(ValueError, match=f"{path}.*no rows"):
        ManifestSource(path)


def test_row_range_outside_manifest_is_a_clear_error():
    with pytest.raises(ValueError, match=r"no rows in range \[5:9\]"):
        ManifestSource(SAMPLE / "manifest.csv", slice(5, 9))


def test_missing_file_is_named(tmp_path):
    folder = _copy_sample(tmp_path)
    (folder / "01.depth.png").unlink()
    with pytest.raises(FileNotFoundError, match="01.depth.png"):
        ManifestSource(folder)


def test_size_mismatch_names_both_files(tmp_path):
    folder = _copy_sample(tmp_path)
    depth = cv2.imread(str(folder / "00.depth.png"), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(folder / "00.depth.png"), depth[:240, :320])
    with pytest.raises(ValueError, match="00.color.jpg.*640x480.*00.depth.png.*320x240"):
        ManifestSource(folder).load(0)


def test_corrupt_image_is_named(tmp_path):
    folder = _copy_sample(tmp_path)
    (folder / "02.color.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(ValueError, match="02.color.jpg"):
        ManifestSource(folder).load(2)


@pytest.mark.parametrize("damage", ["truncated_jpeg", "truncated_depth_png"])
def test_truncated_images_are_refused_not_half_decoded(tmp_path, damage, capfd):
    """Refuse a training pair with a cut image, silently except for the error.

    cv2.imread decodes a cut JPEG into a half-grey picture (and libjpeg warns on stderr): a
    training pair must be refused instead, silently except for the error.
    """
    folder = _copy_sample(tmp_path)
    name = "01.color.jpg" if damage == "truncated_jpeg" else "01.depth.png"
    data = (folder / name).read_bytes()
    (folder / name).write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match=rf"{name}: truncated (JPEG|PNG)"):
        ManifestSource(folder).load(1)
    assert capfd.readouterr().err == ""


# ------------------------------------------------------------------------- list files


def _list_layout(tmp_path: Path, flavour: str) -> Path:
    """BTS layout from the sample: <root>/scene/rgb_*.jpg and depth PNGs in NYU mm or KITTI /256."""
    root = tmp_path / flavour
    scale = 1000.0 if flavour == "nyu" else 256.0
    lines = []
    for i in range(3):
        (root / "scene").mkdir(parents=True, exist_ok=True)
        shutil.copy(SAMPLE / f"{i:02d}.color.jpg", root / "scene" / f"rgb_{i:05d}.jpg")
        depth = np.round(sample_metres(i) * scale).astype(np.uint16)
        cv2.imwrite(str(root / "scene" / f"depth_{i:05d}.png"), depth)
        lines.append(f"/scene/rgb_{i:05d}.jpg /scene/depth_{i:05d}.png 518.8579")
    lines.insert(1, "scene/rgb_00001.jpg None 518.8579")  # KITTI lists hold frames without ground truth
    (root / "list.txt").write_text("\n".join(lines) + "\n")
    return root / "list.txt"


@pytest.mark.parametrize("flavour,tolerance", [("nyu", 6e-4), ("kitti", 2.5e-3)])
def test_list_file_units_and_intrinsics(tmp_path, flavour, tolerance):
    listfile = _list_layout(tmp_path, flavour)
    cfg = small_cfg(kind=flavour)
    source = build_source(f"{listfile}[0:2]", cfg)
    assert len(source) == 2
    frame = source.load(1)
    valid = sample_metres(1) > 0
    assert np.allclose(frame.depth[valid], sample_metres(1)[valid], atol=tolerance)
    assert np.all(frame.depth[~valid] == 0)
    assert frame.intrinsics[0] == pytest.approx(518.8579)
    cx = 325.5824 if flavour == "nyu" else 319.5
    assert frame.intrinsics[2] == pytest.approx(cx)
    sample = build_dataset(str(listfile), cfg, train=True)[(0, 1)]
    assert sample["depth"].shape == (1, 48, 64)


def test_list_file_missing_image_is_named(tmp_path):
    listfile = _list_layout(tmp_path, "nyu")
    (listfile.parent / "scene" / "depth_00002.png").unlink()
    with pytest.raises(FileNotFoundError, match="depth_00002.png"):
        build_source(str(listfile), small_cfg(kind="nyu"))


@pytest.mark.parametrize("focal", ["0", "-518.8", "nan", "inf"])
def test_list_file_non_positive_focal_is_named(tmp_path, focal):
    listfile = _list_layout(tmp_path, "nyu")
    lines = listfile.read_text().splitlines()
    lines[0] = lines[0].rsplit(" ", 1)[0] + f" {focal}"
    listfile.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=f"line 1: focal must be a positive number of pixels, got '{focal}'"):
        build_source(str(listfile), small_cfg(kind="nyu"))


# ------------------------------------------------------------------------- bags


def _write_bag(path: Path, ros1: bool, depth_info_k: list[float] | None = None) -> None:
    """Write a small bag from the sample frames: colour (rgb8), depth (16UC1 mm), colour CameraInfo."""
    from rosbags.typesys import get_typestore, Stores

    store = get_typestore(Stores.ROS1_NOETIC if ros1 else Stores.ROS2_HUMBLE)
    Image, Info = store.types["sensor_msgs/msg/Image"], store.types["sensor_msgs/msg/CameraInfo"]
    Header, Time = store.types["std_msgs/msg/Header"], store.types["builtin_interfaces/msg/Time"]
    RoI = store.types["sensor_msgs/msg/RegionOfInterest"]

    def header(ns: int, frame: str) -> object:
        extra = {"seq": 0} if ros1 else {}
        return Header(**extra, stamp=Time(sec=ns // 10**9, nanosec=ns % 10**9), frame_id=frame)

    def info(ns: int, k: list[float]) -> object:
        fx, fy, cx, cy = k
        kmat = np.array([fx, 0, cx, 0, fy, cy, 0, 0, 1], np.float64)
        pmat = np.array([fx, 0, cx, 0, 0, fy, cy, 0, 0, 0, 1, 0], np.float64)
        matrices = {"d": np.zeros(5), "k": kmat, "r": np.eye(3).ravel(), "p": pmat}
        if ros1:  # ROS 1 spells them D, K, R, P
            matrices = {name.upper(): value for name, value in matrices.items()}
        return Info(header=header(ns, "cam"), height=480, width=640, distortion_model="plumb_bob", **matrices,
                    binning_x=0, binning_y=0, roi=RoI(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))

    def image(ns: int, array: np.ndarray, encoding: str) -> object:
        step = array.shape[1] * array.dtype.itemsize * (array.shape[2] if array.ndim == 3 else 1)
        return Image(header=header(ns, "cam"), height=array.shape[0], width=array.shape[1], encoding=encoding,
                     is_bigendian=0, step=step, data=np.frombuffer(array.tobytes(), np.uint8))

    if ros1:
        from rosbags.rosbag1 import Writer

        writer = Writer(path)
    else:
        from rosbags.rosbag2 import Writer

        writer = Writer(path, version=8)
    with writer:
        add = (lambda t, m: writer.add_connection(t, m, typestore=store))
        ser = store.serialize_ros1 if ros1 else store.serialize_cdr
        conns = {"rgb": add("/camera/color/image_raw", Image.__msgtype__),
                 "depth": add("/camera/aligned_depth_to_color/image_raw", Image.__msgtype__),
                 "info": add("/camera/color/camera_info", Info.__msgtype__)}
        if depth_info_k:
            conns["dinfo"] = add("/camera/aligned_depth_to_color/camera_info", Info.__msgtype__)
        base = 1_700_000_000 * 10**9
        writer.write(conns["info"], base, ser(info(base, list(SAMPLE_K)), Info.__msgtype__))
        if depth_info_k:
            writer.write(conns["dinfo"], base, ser(info(base, depth_info_k), Info.__msgtype__))
        for i in range(2):
            ns = base + (i + 1) * 100_000_000
            rgb = cv2.cvtColor(cv2.imread(str(SAMPLE / f"{i:02d}.color.jpg")), cv2.COLOR_BGR2RGB)
            depth_mm = np.round(sample_metres(i) * 1000).astype(np.uint16)
            writer.write(conns["rgb"], ns, ser(image(ns, rgb, "rgb8"), Image.__msgtype__))
            writer.write(conns["depth"], ns + 5_000_000,
                         ser(image(ns + 4_000_000, depth_mm, "16UC1"), Image.__msgtype__))


@pytest.mark.parametrize("ros1", [False, True], ids=["ros2_sqlite3", "ros1"])
def test_bag_source_pairs_frames(tmp_path, ros1):
    path = tmp_path / ("test.bag" if ros1 else "test_bag")
    _write_bag(path, ros1)
    source = build_source(str(path), small_cfg())
    assert len(source) == 2
    assert source.rgb_topic == "/camera/color/image_raw" and source.info_topic == "/camera/color/camera_info"
    frame = source.load(1)
    rgb = cv2.cvtColor(cv2.imread(str(SAMPLE / "01.color.jpg")), cv2.COLOR_BGR2RGB)
    assert np.array_equal(frame.rgb, rgb)
    assert np.allclose(frame.depth, np.round(sample_metres(1) * 1000) / 1000, atol=1e-6)
    assert np.allclose(frame.intrinsics, SAMPLE_K)
    sample = build_dataset(f"{path}[1:2]", small_cfg(), train=False)[0]
    assert sample["depth"].shape == (1, 48, 64) and len(sample["points"]) > 0


def test_bag_with_unregistered_depth_is_refused(tmp_path):
    path = tmp_path / "unregistered"
    _write_bag(path, ros1=False, depth_info_k=[390.4, 390.4, 331.4, 242.2])
    with pytest.raises(ValueError, match="not registered"):
        build_source(str(path), small_cfg())
    assert len(build_source(str(path), small_cfg(bag_assume_registered=True))) == 2


def test_real_realsense_bag(shared_data):
    bag = shared_data / "realsense_d435_bag" / "single_depth_color_640x480.bag"
    with pytest.raises(ValueError, match="not registered"):
        build_source(str(bag), small_cfg())
    source = build_source(str(bag), small_cfg(bag_assume_registered=True, bag_slop_s=0.2))
    frame = source.load(0)
    assert frame.rgb.shape == (480, 640, 3) and frame.depth.shape == (480, 640)
    assert frame.intrinsics[0] == pytest.approx(613.204, abs=1e-3)


# ------------------------------------------------------------------------- geometry


def _marker_frame(k: np.ndarray, uv: tuple[int, int], z: float = 2.0) -> T.Frame:
    """Make a plane at 4 m with a 3x3 marker at `uv` at depth z (and a white RGB dot there)."""
    depth = np.full((60, 80), 4.0, np.float32)
    rgb = np.zeros((60, 80, 3), np.uint8)
    u, v = uv
    depth[v - 1:v + 2, u - 1:u + 2] = z
    rgb[v - 1:v + 2, u - 1:u + 2] = 255
    return T.Frame(rgb, depth, k.astype(np.float64))


def _marker_pixel(frame: T.Frame, z: float = 2.0) -> np.ndarray:
    rows, cols = np.nonzero(np.isclose(frame.depth, z))
    assert len(rows), "marker lost"
    return np.array([cols.mean(), rows.mean()])


def _project(k: np.ndarray, p: np.ndarray) -> np.ndarray:
    return np.array([k[0] * p[0] / p[2] + k[2], k[1] * p[1] / p[2] + k[3]])


def _unproject(k: np.ndarray, uv: tuple[int, int], z: float) -> np.ndarray:
    return np.array([(uv[0] - k[2]) * z / k[0], (uv[1] - k[3]) * z / k[1], z])


K = np.array([70.0, 70.0, 41.3, 28.6])
UV = (60, 15)


def test_flip_moves_the_point_with_the_intrinsics():
    frame = _marker_frame(K, UV)
    point = _unproject(K, UV, 2.0)
    flipped = T.hflip(frame)
    mirrored = point * np.array([-1, 1, 1])  # a mirrored camera sees X -> -X
    assert np.allclose(_marker_pixel(flipped), _project(flipped.intrinsics, mirrored), atol=1e-6)
    assert flipped.intrinsics[2] == pytest.approx(80 - 1 - K[2])


@pytest.mark.parametrize("angle", [-5.0, 3.0, 5.0])
def test_rotation_is_a_roll_about_the_optical_axis(angle):
    frame = _marker_frame(K, UV)
    point = _unproject(K, UV, 2.0)
    rotated = T.rotate(frame, angle)
    a = np.deg2rad(angle)
    roll = np.array([[np.cos(a), np.sin(a), 0], [-np.sin(a), np.cos(a), 0], [0, 0, 1]])
    expected = _project(rotated.intrinsics, roll @ point)
    assert np.allclose(_marker_pixel(rotated), expected, atol=1.0)  # nearest-neighbour: < 1 px
    assert np.all((rotated.depth == 0) | np.isin(rotated.depth, [2.0, 4.0]))  # no blended depths


def test_resize_and_crop_keep_projection():
    frame = _marker_frame(K, UV)
    point = _unproject(K, UV, 2.0)
    resized = T.resize(frame, (120, 160))
    assert np.allclose(_marker_pixel(resized), _project(resized.intrinsics, point), atol=0.51)
    cropped = T.crop(resized, 10, 50, (96, 100))
    assert np.allclose(_marker_pixel(cropped), _project(cropped.intrinsics, point), atol=0.51)
    small = T.resize(T.resize(frame, (120, 160)), (60, 80))
    assert np.allclose(_marker_pixel(small), _project(small.intrinsics, point), atol=0.51)


def test_augmented_samples_keep_points_depth_and_intrinsics_consistent():
    """End to end through RGBDDataset: every guiding point lies on the (augmented) depth map."""
    cfg = small_cfg(rotation_deg=5.0, flip_prob=0.5)
    cfg.points.zero_points_prob = 0.0
    dataset = build_dataset(str(SAMPLE), cfg, train=True)
    assert isinstance(dataset.augment, AugmentParams)
    for seed in range(4):
        sample = dataset[(seed % 3, seed)]
        points = sample["points"].numpy()
        rows, cols = points[:, 1].astype(int), points[:, 0].astype(int)
        assert np.allclose(sample["depth"][0].numpy()[rows, cols], points[:, 2])
        fx, fy, cx, cy = sample["intrinsics"].numpy()
        assert fx == pytest.approx((520.9 if seed % 3 < 2 else 525.0) * 64 / 640, rel=1e-4)
        assert 0 < cx < 64 and 0 < cy < 48


def test_photometric_augmentation_touches_rgb_only():
    rng = np.random.default_rng(0)
    rgb = rng.random((48, 64, 3)).astype(np.float32)
    out = T.augment_photometric(rgb, rng, AugmentParams(drop_prob=1.0))
    assert out.shape == rgb.shape and out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1
    assert (out.reshape(-1, 3) == 0).all(axis=1).sum() > 0  # a dropped window


def test_rgbd_dataset_crop_size(tmp_path):
    source = ManifestSource(SAMPLE)
    dataset = RGBDDataset(source, (60, 80), max_depth=10.0, crop_size=(48, 64), train=False, max_points=0)
    sample = dataset[0]
    assert sample["rgb"].shape == (3, 48, 64) and len(sample["points"]) == 0
    k = T.resize(source.load(0), (60, 80)).intrinsics
    assert np.allclose(sample["intrinsics"].numpy(), [k[0], k[1], k[2] - 8, k[3] - 6], atol=1e-4)
