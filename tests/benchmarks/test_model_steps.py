"""Train and infer steps of representative nets, built by the same code as `convbench bench`:
a plain conv stack (lenet5), a residual CIFAR net (resnet20), the VGG pattern (vggp7) and a
DenseNet, whose concatenations stress memory traffic rather than GEMMs (at a small batch)."""

from __future__ import annotations

import pytest

from harness.throughput_check.measure import Throughput

NETS = {"lenet5": 128, "resnet20": 32, "vggp7": 32, "densenet_bc100_k12": 8}  # name -> batch size


@pytest.mark.parametrize("mode", ["train", "infer"])
@pytest.mark.parametrize("name", list(NETS))
def test_step(name: str, mode: str, throughput: Throughput) -> None:
    step = throughput.train_step if mode == "train" else throughput.infer_step
    measured = step(name, batch_size=NETS[name])  # checked against baseline.json's f"{mode}_step/{name}"
    assert measured is None or measured.key == f"{mode}_step/{name}"
