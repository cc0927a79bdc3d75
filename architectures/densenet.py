"""DenseNet (Huang et al. 2017): each layer sees the concatenation of all earlier feature maps.

One class covers torchvision's ImageNet DenseNet-BC (bottleneck 1x1 of ``bn_size * growth``
channels, compression 0.5) and the paper's CIFAR nets: the basic DenseNet (``bn_size=0``: no
bottleneck, ``compression=1``) and DenseNet-BC."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register


def bn_relu_conv(c_in: int, c_out: int, kernel: int) -> list[nn.Module]:
    return [
        nn.BatchNorm2d(c_in),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False),
    ]


class DenseLayer(nn.Module):
    def __init__(self, c_in: int, growth: int, bn_size: int, drop_rate: float) -> None:
        super().__init__()
        if bn_size:
            self.f = nn.Sequential(*bn_relu_conv(c_in, bn_size * growth, 1), *bn_relu_conv(bn_size * growth, growth, 3))
        else:
            self.f = nn.Sequential(*bn_relu_conv(c_in, growth, 3))
        self.drop_rate = drop_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        new = F.dropout(self.f(x), self.drop_rate, self.training)
        return torch.cat([x, new], 1)


class DenseNet(nn.Module):
    def __init__(
        self,
        block_config: tuple[int, ...] = (6, 12, 24, 16),
        growth: int = 32,
        init_features: int = 64,
        bn_size: int = 4,
        compression: float = 0.5,
        stem: str = "imagenet",
        drop_rate: float = 0.0,
        num_classes: int = 1000,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        if stem == "imagenet":
            layers: list[nn.Module] = [
                nn.Conv2d(in_chans, init_features, 7, 2, 3, bias=False),
                nn.BatchNorm2d(init_features),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(3, 2, 1),
            ]
        else:
            layers = [nn.Conv2d(in_chans, init_features, 3, padding=1, bias=False)]
        c = init_features
        for i, n in enumerate(block_config):
            for _ in range(n):
                layers.append(DenseLayer(c, growth, bn_size, drop_rate))
                c += growth
            if i < len(block_config) - 1:  # transition: 1x1 conv (with compression) and 2x2 average pool
                c_out = int(c * compression)
                layers += [*bn_relu_conv(c, c_out, 1), nn.AvgPool2d(2, 2)]
                c = c_out
        layers += [nn.BatchNorm2d(c), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


IMAGENET: dict[int, tuple[int, tuple[int, ...], int]] = {  # depth: growth, block_config, init_features
    121: (32, (6, 12, 24, 16), 64),
    161: (48, (6, 12, 36, 24), 96),
    169: (32, (6, 12, 32, 32), 64),
    201: (32, (6, 12, 48, 32), 64),
}
for _d, (_k, _blocks, _init) in IMAGENET.items():
    register(
        f"densenet{_d}",
        DenseNet,
        family="densenet",
        depth=_d,
        input_size=(3, 224, 224),
        reference="Huang et al. 2017, torchvision",
        growth=_k,
        block_config=_blocks,
        init_features=_init,
    )
_CIFAR = dict(family="densenet_cifar", input_size=(3, 32, 32), num_classes=10, stem="cifar", growth=12)
register(
    "densenet40_k12",
    DenseNet,
    depth=40,
    reference="Huang et al. 2017, DenseNet (L=40, k=12)",
    block_config=(12, 12, 12),
    init_features=16,
    bn_size=0,
    compression=1.0,
    **_CIFAR,
)
register(
    "densenet_bc100_k12",
    DenseNet,
    depth=100,
    reference="Huang et al. 2017, DenseNet-BC (L=100, k=12)",
    block_config=(16, 16, 16),
    init_features=24,
    bn_size=4,
    compression=0.5,
    **_CIFAR,
)
