"""The CIFAR-10 and Fashion-MNIST Albumentations train pipelines through their data modules, in
the test process (num_workers=0: the per-image cost itself, without worker hand-off noise), and
CIFAR-10's device pipeline (`data.pipeline: device`) on this machine's device, the CPU: the images held
as one tensor, each batch cut, cropped and flipped as batch operations, as the training step receives it.
CIFAR-10 reads random images written in the official pickle layout (the real archive is not on the
build machines); Fashion-MNIST reads the real files."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import datamodules
from harness.bench.worker import endless
from harness.throughput_check.measure import Throughput

BATCH = 128
FASHION = Path("/usr/share/datasets/fashion-mnist")


def write_cifar10(root: Path, per_batch: int = 1024) -> None:
    """Uniform noise in the python-version layout: five train batches and a test batch."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            b"labels": rng.integers(0, 10, per_batch).tolist(),
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=4))


def pipeline_step(dm: datamodules.ConvDataModule) -> Callable[[], object]:
    batches = endless(dm.train_dataloader())
    return lambda: next(batches)


def test_cifar10_train_pipeline(tmp_path: Path, throughput: Throughput) -> None:
    write_cifar10(tmp_path)
    dm = datamodules.create("cifar10", root=str(tmp_path), batch_size=BATCH, num_workers=0, val_size=0)
    throughput("pipeline/cifar10", pipeline_step(dm), items=BATCH)


def test_cifar10_device_pipeline(tmp_path: Path, throughput: Throughput) -> None:
    write_cifar10(tmp_path)
    dm = datamodules.create("cifar10", root=str(tmp_path), batch_size=BATCH, val_size=0, pipeline="device")
    batches = endless(dm.train_dataloader())
    throughput("pipeline/cifar10-device", lambda: dm.on_after_batch_transfer(next(batches), 0), items=BATCH)


@pytest.mark.skipif(not FASHION.is_dir(), reason="apt-get install dataset-fashion-mnist (make setup does)")
def test_fashion_mnist_train_pipeline(throughput: Throughput) -> None:
    dm = datamodules.create("fashion-mnist", root=str(FASHION), batch_size=BATCH, num_workers=0)
    throughput("pipeline/fashion-mnist", pipeline_step(dm), items=BATCH)
