"""`fusanet demo`: the bundled bag -> depth node -> saved outputs, over DDS between processes."""

from __future__ import annotations

import os
from pathlib import Path
import subprocess
import sys

import cv2
import numpy as np
import pytest

pytest.importorskip("rclpy")

from fusanet_ros.startup.dds import pick_domain_id, segment_held, shm_files  # noqa: E402
from fusanet_ros.tools.demo import choose_domain_id  # noqa: E402


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


def test_demo_replays_the_sample_bag_and_saves_outputs(tmp_path: Path, tiny_checkpoint: Path) -> None:
    ckpt = tiny_checkpoint
    out = tmp_path / "demo"
    shm_before = shm_files()
    cmd = [sys.executable, "-m", "fusanet_ros.cli", "demo", "--checkpoint", str(ckpt), "--out", str(out), "--rate", "2",
           "--param", "input_size:=[48, 64]", "--param", "num_threads:=1", "--timeout", "90"]
    domain = pick_domain_id()  # the caller's ROS_DOMAIN_ID is honoured (a free one is picked only when unset)
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain)}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=150, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = result.stdout
    assert f"ROS_DOMAIN_ID {domain} (from ROS_DOMAIN_ID)" in summary, summary
    assert "10 sent by the bag player" in summary and "abs_rel" in summary and "latency" in summary, summary
    assert (out / "summary.txt").read_text().strip() == summary.strip()

    depth_pngs = sorted((out / "frames").glob("*_depth.png"))
    assert len(depth_pngs) >= 5 and len(list((out / "frames").glob("*_preview.png"))) == len(depth_pngs)
    depth_mm = cv2.imread(str(depth_pngs[0]), cv2.IMREAD_UNCHANGED)
    assert depth_mm.dtype == np.uint16 and depth_mm.shape == (480, 640) and (depth_mm > 0).mean() > 0.9
    preview = cv2.imread(str(sorted((out / "frames").glob("*_preview.png"))[0]))
    assert preview.shape[0] == 480 and preview.shape[1] > 3 * 640  # colour | depth | bag depth | colour bar
    header = (out / "cloud.ply").read_bytes().split(b"end_header\n")[0].decode()
    vertices = int(header.split("element vertex ")[1].split()[0])
    assert vertices > 1000 and "property uchar red" in header

    assert not _processes_mentioning(str(ckpt)), "demo left processes behind"
    leaked = {n for n in shm_files() - shm_before if not n.startswith("sem.") and not segment_held(n)}
    assert not leaked, f"shared memory left behind: {sorted(leaked)}"


def test_demo_without_bundled_checkpoint_says_what_to_do(tmp_path: Path) -> None:
    from fusanet_core.checkpoint import DEFAULT_CHECKPOINT

    if DEFAULT_CHECKPOINT.is_file():
        pytest.skip("bundled checkpoint present")
    result = subprocess.run([sys.executable, "-m", "fusanet_ros.cli", "demo", "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--checkpoint" in result.stderr


def _never_pick() -> int:
    raise AssertionError("picked a domain although one was set")


def test_demo_domain_id_option_then_environment_then_a_free_one() -> None:
    assert choose_domain_id(7, {"ROS_DOMAIN_ID": "42"}, _never_pick) == (7, "from --domain-id")
    assert choose_domain_id(None, {"ROS_DOMAIN_ID": " 42 "}, _never_pick) == (42, "from ROS_DOMAIN_ID")
    assert choose_domain_id(None, {"ROS_DOMAIN_ID": "0"}, _never_pick) == (0, "from ROS_DOMAIN_ID")
    for unset in ({}, {"ROS_DOMAIN_ID": ""}, {"ROS_DOMAIN_ID": "  "}):
        assert choose_domain_id(None, unset, lambda: 55) == (55, "picked: no ROS_DOMAIN_ID set")


@pytest.mark.parametrize(("requested", "environ", "message"), [
    (None, {"ROS_DOMAIN_ID": "abc"}, "ROS_DOMAIN_ID must be an integer"),
    (None, {"ROS_DOMAIN_ID": "300"}, "ROS_DOMAIN_ID must be in 0-232"),
    (-1, {}, "--domain-id must be in 0-232"),
])
def test_demo_rejects_bad_domain_ids(requested: int | None, environ: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        choose_domain_id(requested, environ, _never_pick)


def test_demo_bad_domain_id_exits_2_before_starting_anything(tmp_path: Path, tiny_checkpoint: Path) -> None:
    env = {**os.environ, "ROS_DOMAIN_ID": "not-a-number"}
    result = subprocess.run([sys.executable, "-m", "fusanet_ros.cli", "demo", "--out", str(tmp_path / "demo"),
                             "--checkpoint", str(tiny_checkpoint)],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 2 and "ROS_DOMAIN_ID must be an integer" in result.stderr, result.stderr
    assert not (tmp_path / "demo" / "logs").exists()
