"""`fusanet demo`: the bundled bag -> depth node -> saved outputs, over DDS between processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("rclpy")

from fusanet_ros.startup.runner import _held, shm_files  # noqa: E402


def _tiny_checkpoint(path: Path) -> Path:
    import fusanet_core
    from fusanet_core.checkpoint import save_checkpoint

    cfg = fusanet_core.preset_config("tiny")
    return save_checkpoint(path, fusanet_core.build_model(cfg), cfg)


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in args:
            found.append(args)
    return found


def test_demo_replays_the_sample_bag_and_saves_outputs(tmp_path: Path) -> None:
    ckpt = _tiny_checkpoint(tmp_path / "tiny.pt")
    out = tmp_path / "demo"
    shm_before = shm_files()
    cmd = [sys.executable, "-m", "fusanet_ros.cli", "demo", "--checkpoint", str(ckpt), "--out", str(out), "--rate", "2",
           "--param", "input_size:=[48, 64]", "--param", "num_threads:=1", "--timeout", "90"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=150)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = result.stdout
    assert "10 sent by the bag player" in summary and "abs_rel" in summary and "latency" in summary, summary
    assert (out / "summary.txt").read_text().strip() == summary.strip()

    depth_pngs = sorted((out / "frames").glob("*_depth.png"))
    assert len(depth_pngs) >= 5 and len(list((out / "frames").glob("*_preview.png"))) == len(depth_pngs)
    depth_mm = cv2.imread(str(depth_pngs[0]), cv2.IMREAD_UNCHANGED)
    assert depth_mm.dtype == np.uint16 and depth_mm.shape == (480, 640) and (depth_mm > 0).mean() > 0.9
    header = (out / "cloud.ply").read_bytes().split(b"end_header\n")[0].decode()
    vertices = int(header.split("element vertex ")[1].split()[0])
    assert vertices > 1000 and "property uchar red" in header

    assert not _processes_mentioning(str(ckpt)), "demo left processes behind"
    leaked = {n for n in shm_files() - shm_before if not n.startswith("sem.") and not _held(n)}
    assert not leaked, f"shared memory left behind: {sorted(leaked)}"


def test_demo_without_bundled_checkpoint_says_what_to_do(tmp_path: Path) -> None:
    from fusanet_core.predictor import DEFAULT_CHECKPOINT

    if DEFAULT_CHECKPOINT.is_file():
        pytest.skip("bundled checkpoint present")
    result = subprocess.run([sys.executable, "-m", "fusanet_ros.cli", "demo", "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--checkpoint" in result.stderr
