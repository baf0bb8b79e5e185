"""FastDepth (Wofk et al., ICRA 2019), the peer network of bench/bench_model.py.

MobileNet-v1 encoder (3x3 depthwise-separable convs, BN, ReLU6) and the NNConv5 decoder: five
depthwise-separable 5x5 convs (BN, ReLU), each followed by 2x nearest upsampling, with additive
skips from the encoder at 1/2, 1/4 and 1/8, then a 1x1 conv to depth. The channel widths are
those of the published NetAdapt-pruned model ("mobilenet-nnconv5dw-skipadd-pruned"): 1.344 M
convolution weights (the paper's 1.34 M; 1.361 M parameters with the BatchNorm affines) and 0.37
GMAC at 224x224. Random weights: only its size and speed are measured here.
"""

from __future__ import annotations

from torch import nn, Tensor
import torch.nn.functional as F

# Output channels of MobileNet layers 0..13 after pruning (layer 0 a full 3x3 conv, 1..13
# depthwise-separable) and their strides; the decoder's five output widths.
ENCODER = (16, 56, 88, 120, 144, 256, 408, 376, 272, 288, 296, 328, 480, 512)
STRIDES = (2, 1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1)
DECODER = (200, 256, 120, 56, 16)
SKIPS = {1: 5, 2: 3, 3: 1}  # decoder stage (0-based, after its upsampling) -> encoder layer added


def _conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1,
             relu6: bool = True) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU6(inplace=True) if relu6 else nn.ReLU(inplace=True),
    ]


def separable(c_in: int, c_out: int, kernel: int, stride: int = 1, relu6: bool = True) -> nn.Sequential:
    """Depthwise kxk conv, BN, ReLU(6), then pointwise 1x1 conv, BN, ReLU(6)."""
    return nn.Sequential(*_conv_bn(c_in, c_in, kernel, stride, c_in, relu6), *_conv_bn(c_in, c_out, 1, relu6=relu6))


class FastDepth(nn.Module):
    """FastDepth: rgb (B, 3, H, W) -> depth (B, 1, H, W).

    Each upsampling goes to the size of the encoder map one stride finer (2x exactly when H and W
    are multiples of 32; e.g. 240 = 7.5 x 32).
    """

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Sequential(*_conv_bn(3, ENCODER[0], 3, STRIDES[0]))]
        for c_in, c_out, stride in zip(ENCODER[:-1], ENCODER[1:], STRIDES[1:]):
            layers.append(separable(c_in, c_out, 3, stride))
        self.encoder = nn.ModuleList(layers)
        widths = (ENCODER[-1], *DECODER)
        self.decoder = nn.ModuleList(separable(a, b, 5, relu6=False) for a, b in zip(widths[:-1], widths[1:]))
        self.head = nn.Sequential(*_conv_bn(DECODER[-1], 1, 1, relu6=False))

    def forward(self, rgb: Tensor) -> Tensor:
        x, taps = rgb, {}
        sizes = {1: rgb.shape[-2:]}  # stride -> (h, w)
        stride = 1
        for i, layer in enumerate(self.encoder):
            x = layer(x)
            taps[i] = x
            stride *= STRIDES[i]
            sizes[stride] = x.shape[-2:]
        for k, stage in enumerate(self.decoder):
            x = F.interpolate(stage(x), size=sizes[2 ** (len(self.decoder) - 1 - k)], mode="nearest")
            if k in SKIPS:
                x = x + taps[SKIPS[k]]
        return self.head(x)


def conv_weights(model: nn.Module) -> int:
    """Convolution weights only (what the FastDepth paper counts as parameters)."""
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Conv2d))
