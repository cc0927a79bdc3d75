"""Train and infer steps of representative nets, built by the same code as `convbench bench`:
a plain conv stack (lenet5), a residual CIFAR net (resnet20), the VGG pattern (vggp7) and a
DenseNet, whose concatenations stress memory traffic rather than GEMMs (at a small batch)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

import architectures
from harness.bench.measure import infer_step, synthetic_batch, train_step

NETS = {"lenet5": 128, "resnet20": 32, "vggp7": 32, "densenet_bc100_k12": 8}  # name -> batch size


@pytest.mark.parametrize("mode", ["train", "infer"])
@pytest.mark.parametrize("name", list(NETS))
def test_step(name: str, mode: str, regression_check: Callable[..., None]) -> None:
    torch.manual_seed(0)
    model = architectures.create(name)
    info = architectures.info(name)
    x, y = synthetic_batch(NETS[name], info.input_size, [info.num_classes], torch.device("cpu"), channels_last=False)
    step = train_step(model, x, y, "32") if mode == "train" else infer_step(model, x, "32")
    regression_check(f"{mode}_step/{name}", step, items=NETS[name])
