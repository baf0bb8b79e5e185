"""`fusanet finetune`: a robot's own recording in, a checkpoint the Predictor loads out; bad input refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("rosbags")

import fusanet_core  # noqa: E402
from fusanet_core.checkpoint import read_checkpoint, save_checkpoint  # noqa: E402
from fusanet_core.cli import main  # noqa: E402
from fusanet_core.training import finetune as finetune_mod  # noqa: E402
from fusanet_core.training.finetune import finetune, FinetuneSettings  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
SAMPLE_BAG = ROOT / "sample" / "tum_rgbd_bag"
K = (60.0, 60.0, 39.5, 29.5)


@pytest.fixture(scope="module")
def tiny_start(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Write an untrained `tiny` checkpoint with a 48x64 network input (fast enough for CI)."""
    torch.manual_seed(0)
    cfg = fusanet_core.preset_config("tiny")
    cfg.model.backbone_pretrained = False
    cfg.inference.input_size = (48, 64)
    cfg.data.image_size = (48, 64)
    return save_checkpoint(tmp_path_factory.mktemp("start") / "tiny.pt", fusanet_core.build_model(cfg), cfg)


def _settings(**kw) -> FinetuneSettings:
    return FinetuneSettings(**{"minutes": 5.0, "batch_size": 4, "lr": 1e-3, "threads": 1, "device": "cpu", **kw})


def _train_losses(out: Path) -> list[tuple[int, float]]:
    lines = (out / "run" / "metrics.jsonl").read_text().splitlines()
    return [(r["step"], r["train_loss"]) for r in map(json.loads, lines) if r["event"] == "epoch"]


def test_finetune_on_the_sample_bag_learns_loads_and_resumes(tiny_start, tmp_path, monkeypatch):
    out = tmp_path / "ft"
    # A kill after the third epoch: the run stops with last.pt written, no result yet.
    real_end = finetune_mod.Trainer._end_epoch

    def end_then_die(self, epoch):
        real_end(self, epoch)
        if epoch == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(finetune_mod.Trainer, "_end_epoch", end_then_die)
    with pytest.raises(KeyboardInterrupt):
        finetune([str(SAMPLE_BAG)], out, _settings(max_steps=12), tiny_start)
    assert not (out / "finetuned.pt").exists()
    assert [step for step, _ in _train_losses(out)] == [2, 4, 6]
    monkeypatch.setattr(finetune_mod.Trainer, "_end_epoch", real_end)

    report = finetune([str(SAMPLE_BAG)], out, _settings(max_steps=12), tiny_start)
    losses = _train_losses(out)
    assert [step for step, _ in losses] == [2, 4, 6, 8, 10, 12]  # continued at step 6, nothing redone
    assert losses[-1][1] < losses[0][1]  # the loss falls
    assert report["frames"][str(SAMPLE_BAG)] == {"train": 8, "val": 2, "skipped": {}}  # last 20 % validate

    payload, cfg = read_checkpoint(out / "finetuned.pt")
    assert payload["finetune"]["data"] == [str(SAMPLE_BAG)] and payload["finetune"]["steps"] == 12
    assert tuple(cfg.inference.input_size) == (48, 64)  # the start's preset and input size
    predictor = fusanet_core.Predictor.from_checkpoint(out / "finetuned.pt", "cpu")
    depth = predictor.predict(np.zeros((60, 80, 3), np.uint8), K)["depth"]
    assert depth.shape == (60, 80) and np.isfinite(depth).all()
    text = (out / "report.md").read_text()
    assert "| before |" in text and "| after |" in text and (out / "val_frames.png").stat().st_size > 0


# ------------------------------------------------------------------------------- bad input


def _bag(path: Path, frames: int = 10, depth_topic: bool = True, depth_size: tuple[int, int] = (60, 80),
         depth_m: float = 1.5, corrupt: tuple[int, ...] = ()) -> Path:
    """Write a ROS 2 bag of synthetic frames: rgb8 colour 80x60, 16UC1 depth (mm), colour CameraInfo."""
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import get_typestore, Stores

    store = get_typestore(Stores.ROS2_HUMBLE)
    Image, Info = store.types["sensor_msgs/msg/Image"], store.types["sensor_msgs/msg/CameraInfo"]
    Header, Time = store.types["std_msgs/msg/Header"], store.types["builtin_interfaces/msg/Time"]
    RoI = store.types["sensor_msgs/msg/RegionOfInterest"]
    header = (lambda ns: Header(stamp=Time(sec=ns // 10**9, nanosec=ns % 10**9), frame_id="cam"))

    def image(ns: int, array: np.ndarray, encoding: str, broken: bool = False) -> bytes:
        step = array.shape[1] * array.itemsize * (array.shape[2] if array.ndim == 3 else 1)
        data = np.frombuffer(array.tobytes(), np.uint8)
        msg = Image(header=header(ns), height=array.shape[0], width=array.shape[1], encoding=encoding,
                    is_bigendian=0, step=step, data=data[: len(data) // 2] if broken else data)
        return store.serialize_cdr(msg, Image.__msgtype__)

    fx, fy, cx, cy = K
    info = Info(header=header(0), height=60, width=80, distortion_model="plumb_bob", d=np.zeros(5),
                k=np.array([fx, 0, cx, 0, fy, cy, 0, 0, 1.0]), r=np.eye(3).ravel(),
                p=np.array([fx, 0, cx, 0, 0, fy, cy, 0, 0, 0, 1, 0.0]), binning_x=0, binning_y=0,
                roi=RoI(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))
    rng = np.random.default_rng(0)
    with Writer(path, version=8) as writer:
        c_rgb = writer.add_connection("/camera/color/image_raw", Image.__msgtype__, typestore=store)
        c_info = writer.add_connection("/camera/color/camera_info", Info.__msgtype__, typestore=store)
        c_depth = (writer.add_connection("/camera/aligned_depth_to_color/image_raw", Image.__msgtype__,
                                         typestore=store) if depth_topic else None)
        writer.write(c_info, 1, store.serialize_cdr(info, Info.__msgtype__))
        for i in range(frames):
            ns = (i + 1) * 100_000_000
            writer.write(c_rgb, ns, image(ns, rng.integers(0, 255, (60, 80, 3), dtype=np.uint8), "rgb8"))
            if c_depth is not None:
                depth = np.full(depth_size, int(depth_m * 1000), np.uint16)
                writer.write(c_depth, ns + 1, image(ns, depth, "16UC1", broken=i in corrupt))
    return path


def _cli(args: list[str], capsys) -> tuple[int, str]:
    code = main(["finetune", *args])
    return code, capsys.readouterr().err.strip()


@pytest.mark.parametrize("bag_kwargs, message", [
    ({"depth_topic": False}, "--depth-topic"),
    ({"depth_size": (30, 40)}, "not registered"),
    ({"depth_m": 0.0}, "no valid depth"),
    ({"frames": 5}, "fewer than one batch"),
], ids=["no_depth_topic", "depth_not_registered", "all_invalid_depth", "fewer_frames_than_a_batch"])
def test_bad_recordings_end_with_one_line_and_write_nothing(tiny_start, tmp_path, capsys, bag_kwargs, message):
    bag = _bag(tmp_path / "bag", **bag_kwargs)
    out = tmp_path / "out"
    code, err = _cli([str(bag), "--out", str(out), "--checkpoint", str(tiny_start), "--batch-size", "8"], capsys)
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err
    assert not out.exists()


def test_corrupt_frames_mid_bag_are_skipped_and_counted(tiny_start, tmp_path, capsys):
    bag = _bag(tmp_path / "bag", frames=12, corrupt=(4, 7))
    out = tmp_path / "out"
    code, err = _cli([str(bag), "--out", str(out), "--checkpoint", str(tiny_start), "--batch-size", "4",
                      "--max-steps", "1", "--threads", "1", "--device", "cpu"], capsys)
    assert code == 0, err
    frames = read_checkpoint(out / "finetuned.pt")[0]["finetune"]["frames"][str(bag)]
    assert frames == {"train": 8, "val": 2, "skipped": {"unreadable": 2}}


def test_an_output_folder_holding_something_else_is_refused_untouched(tiny_start, tmp_path, capsys):
    bag = _bag(tmp_path / "bag")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    code, err = _cli([str(bag), "--out", str(foreign), "--checkpoint", str(tiny_start)], capsys)
    assert code == 2 and "holds no fine-tuning run" in err
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]

    other = tmp_path / "other"
    other.mkdir()
    (other / finetune_mod.REQUEST_FILE).write_text(json.dumps({"data": ["/elsewhere/office.bag"]}))
    code, err = _cli([str(bag), "--out", str(other), "--checkpoint", str(tiny_start)], capsys)
    assert code == 2 and "holds another fine-tuning run" in err and "office.bag" in err
    assert json.loads((other / finetune_mod.REQUEST_FILE).read_text()) == {"data": ["/elsewhere/office.bag"]}


def test_an_unreadable_request_is_refused_and_force_replaces_only_our_files(tiny_start, tmp_path, capsys):
    bag = _bag(tmp_path / "bag")
    out = tmp_path / "out"
    out.mkdir()
    (out / finetune_mod.REQUEST_FILE).write_text("{not json")
    (out / "notes.txt").write_text("mine")
    code, err = _cli([str(bag), "--out", str(out), "--checkpoint", str(tiny_start)], capsys)
    assert code == 2 and "unreadable" in err
    code, err = _cli([str(bag), "--out", str(out), "--checkpoint", str(tiny_start), "--force", "--batch-size", "4",
                      "--max-steps", "1", "--threads", "1", "--device", "cpu"], capsys)
    assert code == 0, err
    assert (out / "notes.txt").read_text() == "mine" and (out / "finetuned.pt").is_file()
    assert json.loads((out / finetune_mod.REQUEST_FILE).read_text())["data"] == [str(bag)]
