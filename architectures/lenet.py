"""LeNet-5 as commonly implemented (LeCun et al. 1998): 32x32 grey input, 6-16-120-84-10, C3
densely connected to S2 (the paper's sparse C3 table is not used). The modern default is ReLU and
max pooling; ``activation="tanh", pool="avg"`` gives the paper's squashing units and subsampling
(same 61,706 parameters), which train markedly slower."""

from __future__ import annotations

import torch
from torch import nn

from .registry import register


class LeNet5(nn.Module):
    def __init__(self, num_classes: int = 10, in_chans: int = 1, activation: str = "relu", pool: str = "max") -> None:
        super().__init__()
        act = {"relu": nn.ReLU, "tanh": nn.Tanh}[activation]
        pool_ = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}[pool]
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, 6, 5),
            act(),
            pool_(2),  # C1, S2
            nn.Conv2d(6, 16, 5),
            act(),
            pool_(2),  # C3, S4
            nn.Conv2d(16, 120, 5),
            act(),  # C5: a 5x5 conv on the 5x5 map, i.e. fully connected
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(120, 84), act(), nn.Linear(84, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


register(
    "lenet5", LeNet5, family="lenet", depth=5, input_size=(1, 32, 32), num_classes=10, reference="LeCun et al. 1998"
)
