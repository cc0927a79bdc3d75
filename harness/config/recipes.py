"""Optimiser and schedule presets that reproduce the papers. Every field can be overridden
(``--set optim.lr=0.05``); a recipe also proposes the paper's batch size unless one is given."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from annotated_types import Ge, Gt, Lt

from harness.config.schema import STRICT


@dataclass
class OptimConfig:
    """SGD (or AdamW) and a learning-rate schedule; the milestones are fractions of the run, so a
    recipe holds at any budget (He et al.'s 32k and 48k of 64k iterations = 0.5 and 0.75)."""

    __pydantic_config__ = STRICT

    optimizer: Literal["sgd", "adamw"] = "sgd"
    """SGD with momentum, or AdamW (which ignores `momentum` and `nesterov`)."""
    lr: Annotated[float, Gt(0)] = 0.1
    """The learning rate (the backbone's under finetuning: times `backbone_lr_scale`)."""
    momentum: float = 0.9
    """SGD's momentum."""
    nesterov: bool = False
    """SGD with Nesterov momentum."""
    weight_decay: float = 1e-4
    """L2 weight decay (AdamW: decoupled)."""
    schedule: Literal["multistep", "plateau", "cosine", "constant"] = "multistep"
    """multistep: times `gamma` at each of `milestones`; plateau: times `gamma` when the validation
    top-1 (train top-1 without a validation split) stops improving for `patience` epochs; cosine:
    anneals to zero; constant: keeps lr."""
    milestones: tuple[Annotated[float, Gt(0), Lt(1)], ...] = (0.5, 0.75)
    """The multistep schedule's steps, as fractions of the run's optimiser steps."""
    gamma: float = 0.1
    """The lr factor at a milestone or a plateau."""
    patience: int = 5
    """Plateau: epochs without improvement before the lr drops."""
    warmup_epochs: float = 0.0
    """Linear warm-up from lr/100, in epochs (fractions allowed)."""
    label_smoothing: Annotated[float, Ge(0), Lt(1)] = 0.0
    """Label smoothing of the training loss (evaluation never smooths)."""
    backbone_lr_scale: float = 0.1
    """Finetuning: the pretrained layers learn at lr times this."""


@dataclass(frozen=True)
class Recipe:
    optim: dict[str, Any]
    batch_size: int
    reference: str


RECIPES: dict[str, Recipe] = {
    "alexnet": Recipe(
        dict(lr=1e-2, weight_decay=5e-4, schedule="plateau"),
        128,
        "Krizhevsky et al. 2012: SGD 0.9, lr 1e-2 /10 by hand when val error plateaus, wd 5e-4, dropout 0.5",
    ),
    "vgg": Recipe(
        dict(lr=1e-2, weight_decay=5e-4, schedule="plateau"),
        256,
        "Simonyan & Zisserman 2015: SGD 0.9, lr 1e-2 /10 when val accuracy stops improving, wd 5e-4, batch 256",
    ),
    "googlenet": Recipe(
        dict(
            lr=1e-2, weight_decay=2e-4, schedule="multistep", milestones=tuple(i / 10 for i in range(1, 10)), gamma=0.8
        ),
        128,
        "Szegedy et al. 2015: SGD 0.9, lr decreased by 4% every 8 epochs (here: x0.8 at each tenth of the run)",
    ),
    "resnet-cifar": Recipe(
        dict(lr=0.1, weight_decay=1e-4, schedule="multistep", milestones=(0.5, 0.75)),
        128,
        "He et al. 2016 s4.2: SGD 0.9, lr 0.1 /10 at 32k and 48k of 64k iterations, wd 1e-4, batch 128",
    ),
    "resnet-imagenet": Recipe(
        dict(lr=0.1, weight_decay=1e-4, schedule="plateau"),
        256,
        "He et al. 2016: SGD 0.9, lr 0.1 /10 when the error plateaus, wd 1e-4, batch 256",
    ),
    "densenet-cifar": Recipe(
        dict(lr=0.1, weight_decay=1e-4, nesterov=True, schedule="multistep", milestones=(0.5, 0.75)),
        64,
        "Huang et al. 2017: SGD Nesterov 0.9, lr 0.1 /10 at 50% and 75% of the epochs, wd 1e-4, batch 64",
    ),
    "lenet": Recipe(
        dict(lr=0.05, weight_decay=5e-4, schedule="cosine"),
        32,
        "LeNet-5 on small grey images: SGD 0.9, lr 0.05 cosine, wd 5e-4, batch 32",
    ),
}

DEFAULT_FOR_FAMILY = {
    "lenet": "lenet",
    "alexnet": "alexnet",
    "vgg": "vgg",
    "vgg_pattern": "resnet-cifar",
    "googlenet": "googlenet",
    "resnet": "resnet-imagenet",
    "resnet_cifar": "resnet-cifar",
    "densenet": "resnet-imagenet",
    "densenet_cifar": "densenet-cifar",
    "unet": "resnet-cifar",
}
