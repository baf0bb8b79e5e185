"""`fusanet train / eval / export` end to end on the bundled sample, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path
import shutil
import subprocess
import sys

import cv2
import pytest
import yaml

from fusanet_core.checkpoint import read_checkpoint
from fusanet_core.cli import main

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sample" / "tum_rgbd"


def write_config(folder: Path, train: list[str] | None = None, **extra) -> Path:
    """Tiny-preset config; data paths relative to the config's folder (as users write them)."""
    cfg = {
        "preset": "tiny",
        "inference": {"input_size": [48, 64]},
        "data": {"train": train or ["set/manifest.csv", "set"], "val": ["set/manifest.csv[0:2]"],
                 "image_size": [48, 64]},
        "train": {"epochs": 1, "batch_size": 2, "max_steps": 2, "out_dir": str(folder / "run"), "threads": 1},
        **extra,
    }
    path = folder / "train.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch) -> Path:
    shutil.copytree(SAMPLE, tmp_path / "set")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def error_line(capsys, command: str) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines and lines[-1].startswith(f"fusanet {command}: error: "), lines
    return lines[-1]


def test_train_resume_eval_predict_export(workdir, capsys):
    config = write_config(workdir)
    assert main(["train", "--config", str(config)]) == 0
    last = workdir / "run" / "last.pt"
    assert read_checkpoint(last)[0]["trainer"]["step"] == 2

    assert main(["train", "--config", str(config), "--resume", "--max-steps", "3"]) == 0
    assert read_checkpoint(last)[0]["trainer"]["step"] == 3  # one step on from where it stopped
    assert (workdir / "run" / "best.pt").is_file()  # epoch 1 (3 steps) ended with validation

    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(last), "--data", "set/manifest.csv[1:3]", "--json", "m.json"]) == 0
    out = capsys.readouterr().out
    assert "2 images" in out and "abs_rel" in out and "delta1" in out
    metrics = json.loads((workdir / "m.json").read_text())
    assert metrics["n_images"] == 2 and metrics["rmse"] > 0

    assert main(["predict", str(workdir / "set" / "00.color.jpg"), "--checkpoint", str(last), "--out", "pred",
                 "--device", "cpu"]) == 0
    depth = cv2.imread(str(workdir / "pred" / "00.color_depth.png"), cv2.IMREAD_UNCHANGED)
    assert depth.shape == (480, 640) and depth.dtype.name == "uint16"

    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    capsys.readouterr()
    assert main(["export", "--checkpoint", str(last), "--out", "model.onnx"]) == 0
    assert "max |depth diff|" in capsys.readouterr().out
    assert (workdir / "model.onnx").stat().st_size > 10_000


def test_train_refuses_to_overwrite_and_to_resume_nothing(workdir, capsys):
    config = write_config(workdir)
    assert main(["train", "--config", str(config), "--resume"]) == 2
    assert "nothing to resume" in error_line(capsys, "train")
    (workdir / "run").mkdir()
    (workdir / "run" / "last.pt").write_bytes(b"")
    assert main(["train", "--config", str(config)]) == 2
    assert "--resume" in error_line(capsys, "train")


def _break_missing(folder: Path) -> str:
    (folder / "set" / "01.color.jpg").unlink()
    return "01.color.jpg"


def _break_empty(folder: Path) -> str:
    (folder / "set" / "manifest.csv").write_text("rgb,depth,depth_to_m,fx,fy,cx,cy,note\n")
    return "has no rows"


def _break_size(folder: Path) -> str:
    depth = cv2.imread(str(folder / "set" / "00.depth.png"), cv2.IMREAD_UNCHANGED)
    for i in range(3):  # every frame, so whichever comes first fails
        cv2.imwrite(str(folder / "set" / f"{i:02d}.depth.png"), depth[:100, :100])
    return "is 640x480 but depth"


def _break_corrupt(folder: Path) -> str:
    for i in range(3):
        (folder / "set" / f"{i:02d}.color.jpg").write_bytes(b"\xff\xd8 truncated")
    return "cannot decode image"


@pytest.mark.parametrize("damage", [_break_missing, _break_empty, _break_size, _break_corrupt],
                         ids=["missing_file", "empty_manifest", "size_mismatch", "corrupt_image"])
def test_bad_data_gives_one_clear_line(workdir, capsys, damage):
    expected = damage(workdir)
    assert main(["train", "--config", str(write_config(workdir))]) == 2
    assert expected in error_line(capsys, "train")


def test_train_set_overrides_reach_the_run(workdir, capsys):
    config = write_config(workdir)
    assert main(["train", "--config", str(config), "--set", "train.max_steps=1", "--set", "loss.lam=0"]) == 0
    payload = read_checkpoint(workdir / "run" / "last.pt")[0]
    assert payload["trainer"]["step"] == 1 and payload["config"]["loss"]["lam"] == 0.0
    assert main(["train", "--config", str(config), "--force", "--set", "loss.lamda=0"]) == 2
    assert "unknown key(s) ['lamda']" in error_line(capsys, "train")


def test_bad_eval_inputs(workdir, capsys):
    assert main(["eval", "--checkpoint", "nope.pt", "--data", "set"]) == 2
    assert "nope.pt" in error_line(capsys, "eval")
    assert main(["eval", "--checkpoint", str(workdir / "set" / "00.depth.png"), "--data", "set"]) == 2
    assert "00.depth.png" in error_line(capsys, "eval")


def test_unknown_config_key_through_the_installed_command(workdir):
    config = write_config(workdir, trian={"epochs": 3})
    exe = Path(sys.executable).parent / "fusanet"
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "fusanet_core.cli"]
    done = subprocess.run([*cmd, "train", "--config", str(config)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown key(s) ['trian']" in lines[0] and str(config) in lines[0]


def test_eval_of_a_list_file_with_its_own_rgb_and_depth_roots(tmp_path, monkeypatch, capsys):
    """KITTI / NYU lists name RGB and depth relative to two roots that need not hold the list."""
    import numpy as np

    from fusanet_core.inference.predictor import default_checkpoint

    rgb_root, gt_root = tmp_path / "raw", tmp_path / "gt"
    for root in (rgb_root / "scene", gt_root / "scene"):
        root.mkdir(parents=True)
    shutil.copy(SAMPLE / "00.color.jpg", rgb_root / "scene" / "rgb_0.jpg")
    depth = cv2.imread(str(SAMPLE / "00.depth.png"), cv2.IMREAD_UNCHANGED)  # TUM: 1/5000 m
    cv2.imwrite(str(gt_root / "scene" / "depth_0.png"), np.round(depth / 5.0).astype(np.uint16))  # NYU: mm
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "test.txt").write_text("scene/rgb_0.jpg scene/depth_0.png 525.0\n")
    monkeypatch.chdir(tmp_path)
    base = ["eval", "--checkpoint", str(default_checkpoint()), "--data", "lists/test.txt", "--kind", "nyu",
            "--device", "cpu"]
    assert main(base) == 2  # the RGB is not next to the list: named
    assert "rgb_0.jpg" in error_line(capsys, "eval")
    assert main(base + ["--data-root", "raw"]) == 2  # depth defaults to the RGB root: named
    assert "depth_0.png" in error_line(capsys, "eval")
    assert main(base + ["--data-root", "raw", "--gt-root", "gt", "--json", "m.json"]) == 0
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["n_images"] == 1 and 0 < metrics["abs_rel"] < 1


def test_predict_takes_the_floor_and_says_whether_it_was_used(tiny_checkpoint, tmp_path, capsys):
    """A plane facing the camera 3 m ahead is seen by every ray: the depth is scaled to it and told so."""
    image, k = str(SAMPLE / "00.color.jpg"), ["520.9", "521.0", "325.1", "249.7"]
    common = ["--checkpoint", str(tiny_checkpoint), "--input-size", "48", "64", "--intrinsics", *k]
    assert main(["predict", image, *common, "--out", str(tmp_path / "plain")]) == 0
    facing = ["--ground-plane", "0", "0", "-1", "3"]
    assert main(["predict", image, *common, "--out", str(tmp_path / "floor"), *facing]) == 0
    assert "00.color.jpg: floor scale " in capsys.readouterr().out
    plain = cv2.imread(str(tmp_path / "plain" / "00.color_depth.png"), cv2.IMREAD_UNCHANGED)
    floored = cv2.imread(str(tmp_path / "floor" / "00.color_depth.png"), cv2.IMREAD_UNCHANGED)
    assert abs(float(floored[floored > 0].mean()) - 3000) < 300 and abs(float(plain.mean()) - 3000) > 300
    assert main(["predict", image, *common, "--out", str(tmp_path / "up"),
                 "--ground-plane", "0", "-0.5", "0.8660254", "1.2"]) == 0  # pitched 60 deg up: no ray meets the floor
    assert "floor not used (the floor plane's horizon is below the image" in capsys.readouterr().out
