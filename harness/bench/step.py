"""The measured step on synthetic input already on the device, as a chain of named phases so that
`--detail` can time forward, backward and the optimizer apart with the same code that runs whole.

infer: forward under torch.inference_mode in eval mode. train: zero_grad(set_to_none=True),
forward + cross-entropy, backward, SGD step. Both under autocast for the mixed precisions;
16-mixed training scales the loss (GradScaler), as Lightning's 16-mixed does.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, ContextManager

import torch
import torch.nn.functional as F
from torch import nn

from .peak import DTYPES


@dataclass
class Step:
    phases: list[tuple[str, Callable[[Any], Any]]]  # each phase receives the previous one's output

    def __call__(self) -> None:
        value = None
        for _, phase in self.phases:
            value = phase(value)


def autocast(device: torch.device, precision: str) -> Callable[[], ContextManager[Any]]:
    if precision == "32":
        return contextlib.nullcontext
    return lambda: torch.autocast(device.type, dtype=DTYPES[precision])


def synthetic_batch(batch_size: int, input_size: tuple[int, int, int], output_shape: list[int], device: torch.device,
                    channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Normal images and uniform labels shaped for the model's output: (N,) for a classifier's
    (classes,), (N, H, W) for a segmenter's (classes, H, W)."""
    x = torch.randn(batch_size, *input_size, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(output_shape[0], (batch_size, *output_shape[1:]), device=device)
    return x, y


def infer_step(model: nn.Module, x: torch.Tensor, precision: str) -> Step:
    model.eval()
    cast = autocast(x.device, precision)

    def forward(_: None) -> torch.Tensor:
        with torch.inference_mode(), cast():
            return model(x)

    return Step([("forward", forward)])


def train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, precision: str) -> Step:
    model.train()
    cast = autocast(x.device, precision)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    scaler = torch.amp.GradScaler(x.device.type, enabled=precision == "16-mixed")

    def forward(_: None) -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        with cast():
            return F.cross_entropy(model(x), y)

    def backward(loss: torch.Tensor) -> None:
        scaler.scale(loss).backward()

    def update(_: None) -> None:
        scaler.step(optimizer)
        scaler.update()

    return Step([("forward", forward), ("backward", backward), ("optimizer", update)])
