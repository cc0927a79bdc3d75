"""ResNets (He et al. 2016) and their plain twins, ImageNet and CIFAR, as one parametric class.

``shortcut`` chooses how a block adds its input back: "A" identity with zero-padded channels where
the width doubles (no parameters; the paper's CIFAR nets), "B" a 1x1 projection where the shape
changes (torchvision's ImageNet nets), or None: no shortcut at all, the plain network of the same
depth. ImageNet bottlenecks put the stride on the 3x3 conv (torchvision's "v1.5");
``stride_in_1x1=True`` puts it on the first 1x1 as in the paper (v1): same parameters, fewer MACs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register


def conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2, bias=False), nn.BatchNorm2d(c_out)]


class PadShortcut(nn.Module):
    """Option A: subsample by striding and zero-pad the new channels, half on each side."""

    def __init__(self, stride: int, extra_channels: int) -> None:
        super().__init__()
        self.stride, self.pad = stride, extra_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))


def make_shortcut(kind: str | None, c_in: int, c_out: int, stride: int) -> nn.Module | None:
    if kind is None:
        return None
    if stride == 1 and c_in == c_out:
        return nn.Identity()
    if kind == "A":
        return PadShortcut(stride, c_out - c_in)
    if kind == "B":
        return nn.Sequential(*conv_bn(c_in, c_out, 1, stride))
    raise ValueError(f"shortcut must be 'A', 'B' or None, not {kind!r}")


class Block(nn.Module):
    """The residual function F(x) as a Sequential; the output is relu(F(x) + shortcut(x)), or
    relu(F(x)) when the block is plain (``self.shortcut is None``)."""

    expansion = 1

    def __init__(self, residual: nn.Sequential, shortcut: nn.Module | None) -> None:
        super().__init__()
        self.residual, self.shortcut = residual, shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.residual(x)
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return F.relu(out)


def basic_block(c_in: int, width: int, stride: int, shortcut: str | None, stride_in_1x1: bool) -> tuple[Block, int]:
    f = nn.Sequential(*conv_bn(c_in, width, 3, stride), nn.ReLU(inplace=True), *conv_bn(width, width, 3))
    return Block(f, make_shortcut(shortcut, c_in, width, stride)), width


def bottleneck_block(
    c_in: int, width: int, stride: int, shortcut: str | None, stride_in_1x1: bool
) -> tuple[Block, int]:
    c_out = width * 4
    s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
    f = nn.Sequential(
        *conv_bn(c_in, width, 1, s1),
        nn.ReLU(inplace=True),
        *conv_bn(width, width, 3, s3),
        nn.ReLU(inplace=True),
        *conv_bn(width, c_out, 1),
    )
    return Block(f, make_shortcut(shortcut, c_in, c_out, stride)), c_out


BLOCKS = {"basic": basic_block, "bottleneck": bottleneck_block}


class ResNet(nn.Module):
    def __init__(
        self,
        layers: tuple[int, ...] = (2, 2, 2, 2),
        block: str = "basic",
        widths: tuple[int, ...] = (64, 128, 256, 512),
        stem: str = "imagenet",
        shortcut: str | None = "B",
        stride_in_1x1: bool = False,
        zero_init_residual: bool = False,
        num_classes: int = 1000,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        if stem == "imagenet":  # 7x7/2 conv + 3x3/2 max pool: 224 -> 56
            self.stem = nn.Sequential(*conv_bn(in_chans, widths[0], 7, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        else:  # CIFAR: one 3x3 conv at full resolution
            self.stem = nn.Sequential(*conv_bn(in_chans, widths[0], 3), nn.ReLU(inplace=True))
        make_block = BLOCKS[block]
        stages, c_in = [], widths[0]
        for i, (n, width) in enumerate(zip(layers, widths)):
            blocks = []
            for j in range(n):
                b, c_in = make_block(c_in, width, 2 if i > 0 and j == 0 else 1, shortcut, stride_in_1x1)
                blocks.append(b)
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if zero_init_residual:  # each block starts as the identity (Goyal et al. 2017)
            for b in self.modules():
                if isinstance(b, Block):
                    nn.init.zeros_(b.residual[-1].weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


IMAGENET: dict[int, tuple[str, tuple[int, ...]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
CIFAR_DEPTHS = (20, 32, 44, 56, 110, 1202)  # 6n + 2

for _d, (_block, _layers) in IMAGENET.items():
    _common = dict(family="resnet", depth=_d, input_size=(3, 224, 224), block=_block, layers=_layers)
    register(f"resnet{_d}", ResNet, residual=True, reference="He et al. 2016, torchvision v1.5", **_common)
    register(f"plain{_d}", ResNet, reference="He et al. 2016, plain baseline", shortcut=None, **_common)
for _d in CIFAR_DEPTHS:
    _n = (_d - 2) // 6
    _common = dict(
        family="resnet_cifar",
        depth=_d,
        input_size=(3, 32, 32),
        num_classes=10,
        layers=(_n,) * 3,
        widths=(16, 32, 64),
        stem="cifar",
    )
    register(
        f"resnet{_d}", ResNet, residual=True, reference="He et al. 2016 section 4.2, option A", shortcut="A", **_common
    )
    register(f"plain{_d}", ResNet, reference="He et al. 2016 section 4.2, plain baseline", shortcut=None, **_common)
