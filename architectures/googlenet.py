"""GoogLeNet (Szegedy et al. 2015) and its Inception module.

One class covers both published variants: torchvision's (BatchNorm after bias-free convs, its
"5x5" branch is a 3x3 conv) and the paper's (biased convs, no BatchNorm, a true 5x5 branch, local
response normalisation in the stem, dropout 0.4). The module can also be built naive: no 1x1
bottlenecks before the 3x3/5x5 convs and no projection after the pool, so the pool passes its
input channels straight through."""

from __future__ import annotations

import torch
from torch import nn

from .registry import register

# (in, 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj) of the paper's Table 1; "M" a 3x3/2 max pool
STAGES: list[tuple[int, ...] | str] = [
    (192, 64, 96, 128, 16, 32, 32),
    (256, 128, 128, 192, 32, 96, 64),
    "M",
    (480, 192, 96, 208, 16, 48, 64),
    (512, 160, 112, 224, 24, 64, 64),
    (512, 128, 128, 256, 24, 64, 64),
    (512, 112, 144, 288, 32, 64, 64),
    (528, 256, 160, 320, 32, 128, 128),
    "M2",
    (832, 256, 160, 320, 32, 128, 128),
    (832, 384, 192, 384, 48, 128, 128),
]
AUX_AFTER = (3, 6)  # the auxiliary heads read the outputs of inception 4a and 4d


class ConvBlock(nn.Module):
    """Conv + ReLU, with BatchNorm (and no conv bias) in torchvision's variant."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, batch_norm: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2, bias=not batch_norm)
        self.bn = nn.BatchNorm2d(c_out, eps=0.001) if batch_norm else nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Inception(nn.Module):
    """Four parallel branches concatenated on channels. A reduce width of 0 builds the naive
    module: the 3x3/5x5 convs see the input directly and the pool branch is not projected."""

    def __init__(
        self,
        c_in: int,
        c1: int,
        c3_reduce: int,
        c3: int,
        c5_reduce: int,
        c5: int,
        pool_proj: int,
        five_kernel: int = 5,
        batch_norm: bool = True,
    ) -> None:
        super().__init__()

        def reduced(width: int, reduce: int, kernel: int) -> nn.Module:
            if not reduce:
                return ConvBlock(c_in, width, kernel, batch_norm=batch_norm)
            return nn.Sequential(
                ConvBlock(c_in, reduce, 1, batch_norm=batch_norm),
                ConvBlock(reduce, width, kernel, batch_norm=batch_norm),
            )

        self.branch1 = ConvBlock(c_in, c1, 1, batch_norm=batch_norm)
        self.branch3 = reduced(c3, c3_reduce, 3)
        self.branch5 = reduced(c5, c5_reduce, five_kernel)
        pool = nn.MaxPool2d(3, 1, 1, ceil_mode=True)
        self.branch_pool = (
            nn.Sequential(pool, ConvBlock(c_in, pool_proj, 1, batch_norm=batch_norm)) if pool_proj else pool
        )
        self.out_channels = c1 + c3 + c5 + (pool_proj or c_in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch3(x), self.branch5(x), self.branch_pool(x)], 1)


class AuxHead(nn.Module):
    """The training-time side classifier: avg pool to 4x4, 1x1 conv 128, fc 1024, dropout 0.7."""

    def __init__(self, c_in: int, num_classes: int, batch_norm: bool) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.conv = ConvBlock(c_in, 128, 1, batch_norm=batch_norm)
        self.fc = nn.Sequential(
            nn.Flatten(), nn.Linear(2048, 1024), nn.ReLU(inplace=True), nn.Dropout(0.7), nn.Linear(1024, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(self.pool(x)))


class GoogLeNet(nn.Module):
    """In training mode with ``aux_logits=True`` the forward returns (logits, aux1, aux2)."""

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        batch_norm: bool = True,
        five_kernel: int = 3,
        lrn: bool = False,
        dropout: float = 0.2,
        aux_logits: bool = False,
    ) -> None:
        super().__init__()
        norm = [nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)] if lrn else []
        self.stem = nn.Sequential(
            ConvBlock(in_chans, 64, 7, 2, batch_norm),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            *norm,
            ConvBlock(64, 64, 1, batch_norm=batch_norm),
            ConvBlock(64, 192, 3, batch_norm=batch_norm),
            *norm,
            nn.MaxPool2d(3, 2, ceil_mode=True),
        )
        blocks: list[nn.Module] = []
        for stage in STAGES:
            if isinstance(stage, str):
                blocks.append(
                    nn.MaxPool2d(3, 2, ceil_mode=True) if stage == "M" else nn.MaxPool2d(2, 2, ceil_mode=True)
                )
            else:
                blocks.append(Inception(*stage, five_kernel=five_kernel, batch_norm=batch_norm))
        self.blocks = nn.ModuleList(blocks)
        self.aux = (
            nn.ModuleList(AuxHead(blocks[i].out_channels, num_classes, batch_norm) for i in AUX_AFTER)
            if aux_logits
            else None
        )
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(1024, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        x = self.stem(x)
        aux: list[torch.Tensor] = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if self.aux is not None and self.training and i in AUX_AFTER:
                aux.append(self.aux[AUX_AFTER.index(i)](x))
        logits = self.head(x)
        return (logits, *aux) if aux else logits


_DEPTH = 22  # layers with parameters on the deepest path (paper, section 5)
register(
    "googlenet",
    GoogLeNet,
    family="googlenet",
    depth=_DEPTH,
    input_size=(3, 224, 224),
    reference="torchvision googlenet (BatchNorm, 3x3 in the '5x5' branch)",
)
register(
    "googlenet_paper",
    GoogLeNet,
    family="googlenet",
    depth=_DEPTH,
    input_size=(3, 224, 224),
    reference="Szegedy et al. 2015",
    batch_norm=False,
    five_kernel=5,
    lrn=True,
    dropout=0.4,
)
