"""Shared fixtures: the repository root, the bundled sample, the shared real data when present."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

# Two cores shared with other processes: several OpenMP threads spin against each other and a
# tiny forward pass takes seconds instead of milliseconds.
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample" / "tum_rgbd"
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """Trainer runs set their own thread count; every test starts with the one set above."""
    yield
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def sample_frame() -> dict:
    """First bundled TUM frame: rgb uint8, depth metres, intrinsics (fx, fy, cx, cy)."""
    rgb = cv2.cvtColor(cv2.imread(str(SAMPLE / "00.color.jpg")), cv2.COLOR_BGR2RGB)
    depth = cv2.imread(str(SAMPLE / "00.depth.png"), cv2.IMREAD_UNCHANGED).astype(np.float32) * 0.0002
    return {"rgb": rgb, "depth": depth, "intrinsics": (520.9, 521.0, 325.1, 249.7)}


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Write an untrained `tiny` checkpoint (seed 0) once per test session.

    The node, launch and demo tests need a model that loads in a second, not a good one.
    """
    import fusanet_core
    from fusanet_core.checkpoint import save_checkpoint

    torch.manual_seed(0)
    cfg = fusanet_core.preset_config("tiny")
    path = tmp_path_factory.mktemp("tiny_checkpoint") / "tiny.pt"
    return save_checkpoint(path, fusanet_core.build_model(cfg), cfg)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present (fresh clone)")
    return SHARED_DATA
