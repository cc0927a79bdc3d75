"""U-Net (Ronneberger et al. 2015): a contracting path of double 3x3 convs and 2x2 max pools, an
expanding path of 2x2 up-convolutions that halve the channels, each concatenated with the
contracting path's map at the same level, and a 1x1 conv to the class maps.

The paper's net uses valid (unpadded) convs, so a 572x572 input gives a 388x388 map and the skip
maps are center-cropped; ``padded=True`` (the common modern variant) keeps the input size and adds
BatchNorm after each conv. ``skips=False`` drops the skip connections (the expanding path sees only
the upsampled map): the segmentation analogue of a plain net against a residual one."""

from __future__ import annotations

import torch
from torch import nn

from .registry import register


def double_conv(c_in: int, c_out: int, padded: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for c in (c_in, c_out):
        layers.append(nn.Conv2d(c, c_out, 3, padding=int(padded), bias=not padded))
        if padded:
            layers.append(nn.BatchNorm2d(c_out))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def center_crop(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    top, left = (x.shape[-2] - h) // 2, (x.shape[-1] - w) // 2
    return x[..., top : top + h, left : left + w]


class UNet(nn.Module):
    def __init__(
        self,
        num_classes: int = 2,
        in_chans: int = 1,
        base_width: int = 64,
        levels: int = 5,
        padded: bool = False,
        skips: bool = True,
    ) -> None:
        super().__init__()
        self.skips = skips
        widths = [base_width * 2**i for i in range(levels)]
        self.down = nn.ModuleList()
        c = in_chans
        for w in widths:
            self.down.append(double_conv(c, w, padded))
            c = w
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList(nn.ConvTranspose2d(w * 2, w, 2, stride=2) for w in reversed(widths[:-1]))
        self.up_conv = nn.ModuleList(double_conv(w * (2 if skips else 1), w, padded) for w in reversed(widths[:-1]))
        self.out = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, down in enumerate(self.down):
            x = down(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for up, conv in zip(self.up, self.up_conv):
            x = up(x)
            skip = skips.pop()
            x = conv(torch.cat([center_crop(skip, x.shape[-2], x.shape[-1]), x], 1) if self.skips else x)
        return self.out(x)


_COMMON = dict(family="unet", depth=23, num_classes=2, task="segmentation")
register(
    "unet", UNet, input_size=(1, 572, 572), reference="Ronneberger et al. 2015 (valid convs, 572 -> 388)", **_COMMON
)
register(
    "unet_padded",
    UNet,
    input_size=(1, 256, 256),
    reference="U-Net with same padding and BatchNorm",
    padded=True,
    **_COMMON,
)
