"""VGG (Simonyan & Zisserman 2015). The configurations are a table: an int is a 3x3 pad-1 conv of
that width, ``(width, 1)`` a 1x1 conv (configuration C), "M" a 2x2 max pool.

``vgg_pattern`` is the general rule behind the table, for depth sweeps on 28-32 px data: stages of
equal-width 3x3 convs, subsample by 2 at the end of each stage, double the width each stage, then
global average pooling and one linear layer."""

from __future__ import annotations

import torch
from torch import nn

from .registry import register

Layer = int | tuple[int, int] | str
CONFIGS: dict[str, list[Layer]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "C": [64, 64, "M", 128, 128, "M", 256, 256, (256, 1), "M", 512, 512, (512, 1), "M", 512, 512, (512, 1), "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


def make_features(cfg: list[Layer], in_chans: int, batch_norm: bool) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    c_in = in_chans
    for item in cfg:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
            continue
        c_out, k = item if isinstance(item, tuple) else (item, 3)
        layers.append(nn.Conv2d(c_in, c_out, k, padding=k // 2))
        if batch_norm:
            layers.append(nn.BatchNorm2d(c_out))
        layers.append(nn.ReLU(inplace=True))
        c_in = c_out
    return nn.Sequential(*layers), c_in


class VGG(nn.Module):
    """The ImageNet VGGs: torchvision's layout (adaptive 7x7 pool, 4096-4096 classifier)."""

    def __init__(
        self, cfg: str = "D", num_classes: int = 1000, in_chans: int = 3, batch_norm: bool = False, dropout: float = 0.5
    ) -> None:
        super().__init__()
        self.features, width = make_features(CONFIGS[cfg], in_chans, batch_norm)
        self.avgpool = nn.AdaptiveAvgPool2d(7)
        self.classifier = nn.Sequential(
            nn.Linear(width * 49, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(4096, num_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class VGGPattern(nn.Module):
    """Any depth, width and stage count of the VGG rule; depth = stages * convs_per_stage + 1."""

    def __init__(
        self,
        convs_per_stage: int = 2,
        stages: int = 3,
        base_width: int = 16,
        num_classes: int = 10,
        in_chans: int = 3,
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        cfg: list[Layer] = []
        for s in range(stages):
            cfg += [base_width * 2**s] * convs_per_stage + ["M"]
        self.features, width = make_features(cfg, in_chans, batch_norm)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


_REF = "Simonyan & Zisserman 2015"
for _name, _cfg, _depth in (("vgg11", "A", 11), ("vgg13", "B", 13), ("vgg16", "D", 16), ("vgg19", "E", 19)):
    register(
        _name,
        VGG,
        family="vgg",
        depth=_depth,
        input_size=(3, 224, 224),
        reference=f"{_REF}, configuration {_cfg}",
        cfg=_cfg,
    )
    register(
        f"{_name}_bn",
        VGG,
        family="vgg",
        depth=_depth,
        input_size=(3, 224, 224),
        reference=f"{_REF}, configuration {_cfg} + BatchNorm",
        cfg=_cfg,
        batch_norm=True,
    )
register(
    "vgg16c",
    VGG,
    family="vgg",
    depth=16,
    input_size=(3, 224, 224),
    reference=f"{_REF}, configuration C (1x1 convs)",
    cfg="C",
)
register(
    "vgg_pattern",
    VGGPattern,
    family="vgg_pattern",
    depth=7,
    input_size=(3, 32, 32),
    num_classes=10,
    reference=f"{_REF}, the design rule at any depth",
)
for _n in (1, 2, 3, 4, 6, 8):  # the depth ladder of the depth study: 4, 7, 10, 13, 19, 25 weighted layers
    register(
        f"vggp{3 * _n + 1}",
        VGGPattern,
        family="vgg_pattern",
        depth=3 * _n + 1,
        input_size=(3, 32, 32),
        num_classes=10,
        reference=f"{_REF}, the design rule: 3 stages x {_n} convs",
        convs_per_stage=_n,
    )
