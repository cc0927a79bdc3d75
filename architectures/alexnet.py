"""AlexNet (Krizhevsky et al. 2012): torchvision's single-tower layout and the paper's.

Both are one class over a table of layer widths: the paper's version adds local response
normalisation, takes 227x227 input with an unpadded stride-4 first conv (96x55x55), and can split
conv2/4/5 into the two GPU towers with ``groups=2``."""

from __future__ import annotations

import torch
from torch import nn

from .registry import register

# (out_channels, kernel, stride, padding, pool_after) per conv layer
TORCHVISION = (
    (64, 11, 4, 2, True),
    (192, 5, 1, 2, True),
    (384, 3, 1, 1, False),
    (256, 3, 1, 1, False),
    (256, 3, 1, 1, True),
)
PAPER = ((96, 11, 4, 0, True), (256, 5, 1, 2, True), (384, 3, 1, 1, False), (384, 3, 1, 1, False), (256, 3, 1, 1, True))
PAPER_TOWER_SPLIT = (1, 3, 4)  # conv2, conv4, conv5 see only their own GPU's half of the previous layer


class AlexNet(nn.Module):
    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        layers: tuple[tuple[int, int, int, int, bool], ...] = TORCHVISION,
        lrn: bool = False,
        groups: int = 1,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        feats: list[nn.Module] = []
        c_in = in_chans
        for i, (c_out, k, s, p, pool) in enumerate(layers):
            g = groups if i in PAPER_TOWER_SPLIT else 1
            feats += [nn.Conv2d(c_in, c_out, k, s, p, groups=g), nn.ReLU(inplace=True)]
            if lrn and i < 2:
                feats.append(nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0))
            if pool:
                feats.append(nn.MaxPool2d(3, 2))
            c_in = c_out
        self.features = nn.Sequential(*feats)
        self.avgpool = nn.AdaptiveAvgPool2d(6)  # lets the net run on inputs smaller than 224
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(c_in * 36, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


register(
    "alexnet",
    AlexNet,
    family="alexnet",
    depth=8,
    input_size=(3, 224, 224),
    reference="torchvision alexnet (Krizhevsky 2014 one weird trick)",
)
register(
    "alexnet_paper",
    AlexNet,
    family="alexnet",
    depth=8,
    input_size=(3, 227, 227),
    reference="Krizhevsky et al. 2012",
    layers=PAPER,
    lrn=True,
)
