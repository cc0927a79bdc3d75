"""`data.pipeline: device` (datamodules/device.py): the same augmentation as the Albumentations path,
drawn per image (a statistical test both paths pass), the same evaluation batches, and a device-path run
that resumes mid-epoch exactly through `train(config)`; the published run ids stay."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

import datamodules
from datamodules import DataConfig
from datamodules.base import ConvDataModule, Split
from datamodules.samples import Samples
from harness.config.train_config import TrainConfig
from harness.training.preemption import Preempted
from harness.training.run import train
from tests.helpers import in_process
from tests.test_datamodules import write_imagenet
from tests.test_train import TerminatedAt, merged_curve
from tests.test_train import config as train_config

PAD = 4
SIDE = 32
BRIGHT, DIM = (SIDE // 2, SIDE // 2), (SIDE // 2, SIDE // 2 + 1)  # a marker: its right-hand pixel is dimmer
DRAWS = 8192


class Markers(ConvDataModule):
    """Black 32 x 32 images with one asymmetric marker at the centre, whose position in a train image says
    the crop offset and whose orientation says the flip; or uniform grey (value 128), to see the noise."""

    name: ClassVar[str] = "markers"
    native_shape: ClassVar[tuple[int, int, int]] = (1, SIDE, SIDE)
    default_root: ClassVar[str | None] = None
    default_val_size: ClassVar[int] = 0
    default_flip: ClassVar[bool] = True
    dataset_mean: ClassVar[tuple[float, ...]] = (0.0,)
    dataset_std: ClassVar[tuple[float, ...]] = (1.0,)
    grey: ClassVar[bool] = False

    def native_num_classes(self) -> int:
        return 1

    def _load(self, split: Split) -> Samples:
        images = np.full((DRAWS, SIDE, SIDE, 1), 128 if self.grey else 0, np.uint8)
        if not self.grey:
            images[:, BRIGHT[0], BRIGHT[1]], images[:, DIM[0], DIM[1]] = 255, 128
        return Samples(images, np.zeros(DRAWS, np.int64))


class Grey(Markers):
    grey: ClassVar[bool] = True


def train_images(module: ConvDataModule) -> torch.Tensor:
    """One epoch of train batches as the model receives them (the device path's through the batch hook)."""
    loader = module.train_dataloader()
    return torch.cat([module.on_after_batch_transfer(batch, 0)[0] for batch in loader])


@pytest.mark.parametrize("pipeline", ["albumentations", "device"])
def test_both_paths_draw_each_images_crop_flip_and_noise_alike(pipeline: str) -> None:
    """8192 draws: the crop offsets uniform over 0..2 x padding on each axis, jointly (81 cells, so a batch
    sharing one offset fails), a flip rate of 1/2, and noise of mean 0 and the configured std."""
    config = DataConfig(batch_size=512, num_workers=0, pipeline=pipeline, augment={"crop": True, "normalize": False})
    x = train_images(Markers(config))[:, 0]
    n = len(x)
    at = x.flatten(1).argmax(1)
    rows, cols = at // SIDE, at % SIDE
    right = x[torch.arange(n), rows, (cols + 1).clamp(max=SIDE - 1)]
    flipped = (right - 128 / 255).abs() > 1e-3  # the dim pixel is on the left
    dy = BRIGHT[0] + PAD - rows
    dx = BRIGHT[1] + PAD - torch.where(flipped, SIDE - 1 - cols, cols)
    assert int(dy.min()) == int(dx.min()) == 0 and int(dy.max()) == int(dx.max()) == 2 * PAD
    cells = torch.bincount((dy * (2 * PAD + 1) + dx).long(), minlength=(2 * PAD + 1) ** 2).numpy()
    assert chisquare(cells).pvalue > 1e-3, cells
    assert abs(flipped.float().mean().item() - 0.5) < 4 * (0.25 / n) ** 0.5
    std = 0.1
    noisy = train_images(Grey(DataConfig(batch_size=512, num_workers=0, pipeline=pipeline, augment={
        "crop": False, "flip": False, "noise_std": std, "normalize": False})))  # fmt: skip
    noise = noisy.double() - 128 / 255
    count = noise.numel()
    assert abs(noise.mean().item()) < 4 * std / count**0.5
    assert noise.std().item() == pytest.approx(std, rel=4 / (2 * count) ** 0.5)
    assert noise.flatten(1).std(1).min().item() > 0.9 * std  # every image noised, each pixel its own draw


def test_device_path_evaluates_the_same_batches_and_errors_name_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Real Fashion-MNIST padded to 32 and as 3 channels: the device path's validation batches are the
    Albumentations path's (to float rounding), its train batches come in the same order, and it starts no
    workers. Image files: decoded and cropped to uint8 in the loader, each train batch keyed by its epoch
    and first index for the device's draws. A bad value is one line naming the key and what is accepted, exit 2."""
    for options in ({"image_size": 32}, {"in_chans": 3}):
        made = {
            p: datamodules.create("fashion-mnist", batch_size=500, val_size=1000, num_workers=0, pipeline=p, **options)
            for p in ("albumentations", "device")
        }
        reference, device = made["albumentations"], made["device"]
        for a, b in zip(reference.val_dataloader(), device.val_dataloader()):
            xb, yb = device.on_after_batch_transfer(b, 0)
            assert torch.equal(a[1], yb) and torch.allclose(a[0], xb, atol=1e-5) and xb.shape == a[0].shape
        loader = device.train_dataloader()
        a, b = next(iter(reference.train_dataloader())), next(iter(loader))
        assert torch.equal(a[1], b[1]) and b[0].dtype == torch.uint8 and b[2] == (0, int(loader.sampler.shard(0)[0]))
        assert device.loader_workers == 0
    folders = {
        p: datamodules.create("imagefolder", root=str(write_imagenet(tmp_path / p)), batch_size=4, num_workers=0,
                              image_size=32, pipeline=p)
        for p in ("albumentations", "device")
    }  # fmt: skip
    (x, y), (images, labels, key) = (
        next(iter(folders["albumentations"].val_dataloader())),
        next(iter(folders["device"].val_dataloader())),
    )
    assert key is None and torch.equal(y, labels)
    assert torch.allclose(x, folders["device"].on_after_batch_transfer((images, labels, key), 0)[0], atol=1e-5)
    loader = folders["device"].train_dataloader()
    images, labels, key = next(iter(loader))
    assert images.dtype == torch.uint8 and images.shape == (4, 3, 32, 32) and key == (0, loader.sampler.shard(0)[0])
    assert folders["device"].on_after_batch_transfer((images, labels, key), 0)[0].dtype == torch.float32
    code, _, err = in_process(capsys, "train", "--arch", "lenet5", "--data", "synthetic", "--set", "data.pipeline=gpu")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "data.pipeline='gpu': accepted albumentations, device" in err, err


# lenet5 on synthetic 3 x 32 x 32 images with every random stage on, 5 steps an epoch (tests.test_train.config)
SMALL = {"input_size": [3, 32, 32], "num_samples": 384, "val_size": 64, "augment": {"flip": True, "noise_std": 0.05}}


def config(tmp_path: Path, **data: str) -> TrainConfig:
    return train_config(tmp_path, epochs=2, data={**SMALL, **data})


def test_device_path_resumes_mid_epoch_exactly_and_keeps_the_published_run_ids(tmp_path: Path) -> None:
    """A SIGTERM in epoch 2 (5 steps an epoch, at step 7), resumed: the merged loss curve and the final
    figures equal the uninterrupted run's. The key at its default leaves the run id as it was."""
    straight = config(tmp_path / "a", pipeline="device")
    expected = train(straight)
    c = config(tmp_path / "b", pipeline="device")
    with pytest.raises(Preempted, match="SIGTERM at step 7"):
        train(c, extra_callbacks=[TerminatedAt(6, then_fail=False)])
    resumed = train(c, resume=True)
    for key in ("train_acc1", "train_loss", "val_acc1", "val_loss", "test_acc1", "test_loss", "global_step"):
        assert getattr(resumed, key) == getattr(expected, key), key
    run, straight_run = (tmp_path / d / "results" / c.run_id() for d in ("b", "a"))
    assert [s for s, _ in merged_curve(run)] == list(range(10)) and merged_curve(run) == merged_curve(straight_run)
    assert config(tmp_path, pipeline="albumentations").run_id() == config(tmp_path).run_id() != c.run_id()
