"""The device pipeline (`data.pipeline: device`): augmentation as batch operations on the training device,
and small datasets held there whole.

A batch reaches the device as `(uint8 N x C x H x W, int64 N, key)`; `DeviceAugment` turns it into the
model's float32 batch there: random pad-crop, horizontal flip, Gaussian noise, normalisation, grey -> 3
channel replication, the same stages in the same order as `transforms.train_pipeline`. `key` is
(epoch, the batch's first index) for a train batch, as the Albumentations path reseeds from, or None for
an evaluation batch (normalisation only). Each image draws its own crop offset, flip and noise from one
generator on the device, seeded from (seed, stream, epoch, first index) on the host: no value is read
back from the device, and a resumed run draws what the uninterrupted one did.

Plain torch ops, not Kornia: per batch, one gather crops and flips every image at its own offset, one
`randn` draws the noise, from a generator passed explicitly; Kornia draws its parameters from the global
generator and was 3-9x slower here (README, "Choosing the data pipeline", has the measured figures).

`ResidentImages` holds a small dataset (Fashion-MNIST, CIFAR, synthetic) as one uint8 tensor, copied to
the device once; `ResidentLoader` cuts its batches there in the sampler's (seed, epoch) order and rank
shard: no workers, no per-item Python.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .sampler import DEVICE_AUGMENT_STREAM, EpochSampler, ShardSampler

Key = tuple[int, int] | None
Batch = tuple[torch.Tensor, torch.Tensor, Key]


def batch_seed(seed: int, key: tuple[int, int]) -> int:
    """The device generator's seed for the train batch `key` = (epoch, first index): a 64-bit hash of
    (seed, stream, epoch, first), independent of the Albumentations path's stream of the same key."""
    return int(np.random.SeedSequence((seed, DEVICE_AUGMENT_STREAM, *key)).generate_state(1, np.uint64)[0])


@dataclass
class DeviceAugment:
    """uint8 N x C x H x W (on any device) -> float32 N x out_chans x H x W, per `transforms.train_pipeline`'s
    order: crop and flip on uint8, then [0, 1] floats, noise clipped to [0, 1], normalisation, replication.

    `crop_padding`: pad by this much each side and crop back at a random offset per image (None: no crop;
    the images already have the model's size). `mean` / `std` in pixel/255 units, one per stored channel;
    None: only scaled to [0, 1]."""

    seed: int
    crop_padding: int | None
    flip: bool
    noise_std: float
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    out_chans: int
    _stats: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict, init=False, repr=False)

    def __call__(self, images: torch.Tensor, key: Key) -> torch.Tensor:
        x = images
        if key is not None:
            generator = _generator(x.device)
            generator.manual_seed(batch_seed(self.seed, key))
            if self.crop_padding or self.flip:
                x = random_crop_flip(x, self.crop_padding or 0, self.flip, generator)
        x = x.to(torch.float32).mul_(1 / 255)
        if key is not None and self.noise_std > 0:
            noise = torch.randn(x.shape, generator=_generator(x.device), device=x.device, dtype=x.dtype)
            x = x.add_(noise, alpha=self.noise_std).clamp_(0.0, 1.0)
        if self.mean is not None and self.std is not None:
            scale, shift = self._on(x.device, self.mean, self.std)
            x = x.mul_(scale).add_(shift)
        if x.shape[1] != self.out_chans:
            x = x.expand(-1, self.out_chans, -1, -1).contiguous()
        return x

    def _on(
        self, device: torch.device, mean: tuple[float, ...], std: tuple[float, ...]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalisation as x * scale + shift (1 / std, -mean / std: 1 x C x 1 x 1) on `device`, copied there once."""
        if device not in self._stats:
            scale, shift = (
                torch.tensor(v).view(1, -1, 1, 1) for v in ([1 / s for s in std], [-m / s for m, s in zip(mean, std)])
            )
            self._stats[device] = (_to(scale, device), _to(shift, device))
        return self._stats[device]


_GENERATORS: dict[torch.device, torch.Generator] = {}


def _generator(device: torch.device) -> torch.Generator:
    """One generator per device, reseeded per batch (creating a CUDA generator per batch costs more)."""
    if device not in _GENERATORS:
        _GENERATORS[device] = torch.Generator(device=device)
    return _GENERATORS[device]


def random_crop_flip(images: torch.Tensor, padding: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad by `padding` each side and crop back to H x W at an offset drawn uniformly from 0..2 x padding
    per image and axis, then (`flip`) mirror each image left-right with probability 1/2: one gather over the
    flattened planes does both."""
    n, c, h, w = images.shape
    device = images.device
    if padding:
        images = F.pad(images, (padding,) * 4)
        offsets = torch.randint(0, 2 * padding + 1, (n, 2), generator=generator, device=device)
    else:
        offsets = torch.zeros(n, 2, dtype=torch.int64, device=device)
    cols = torch.arange(w, device=device).expand(n, w)
    if flip:
        mirrored = torch.rand(n, 1, generator=generator, device=device) < 0.5
        cols = torch.where(mirrored, cols.flip(-1), cols)
    rows = offsets[:, :1] + torch.arange(h, device=device)  # N x H
    cols = offsets[:, 1:] + cols  # N x W
    index = (rows[:, :, None] * (w + 2 * padding) + cols[:, None, :]).view(n, 1, h * w).expand(n, c, h * w)
    return images.flatten(2).gather(2, index).view(n, c, h, w)


class ResidentImages:
    """A split's uint8 images as one N x C x H x W tensor and its labels, on the host until `on(device)`
    copies them once (from pinned memory where CUDA is present) and keeps the copy."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
        self.labels = torch.from_numpy(labels)
        self._on: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self.labels)

    def on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(images, labels) on `device`; only the latest device's copy is kept."""
        if device not in self._on:
            self._on = {device: (_to(self.images, device), _to(self.labels, device))}
        return self._on[device]


def _to(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`tensor` on `device`: to a GPU from pinned memory without blocking the host (no synchronisation)."""
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


class ResidentLoader:
    """Batches `(uint8 images, labels, key)` cut on `device` from `data` in `sampler`'s order: an
    `EpochSampler` (train: this rank's shard of the (seed, epoch) permutation, resumable mid-epoch;
    key = (epoch, first index)) or a `ShardSampler` (eval: key None). Lightning calls
    `loader.sampler.set_epoch` as it does a DataLoader's."""

    batch_sampler = None  # Lightning reads it wherever there is a `sampler`, as on a DataLoader

    def __init__(
        self, data: ResidentImages, batch_size: int, sampler: EpochSampler | ShardSampler, device: torch.device
    ) -> None:
        self.data, self.batch_size, self.sampler, self.device = data, batch_size, sampler, device

    def __len__(self) -> int:
        return -(-len(self.sampler) // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        train = isinstance(self.sampler, EpochSampler)
        order = self.sampler.epoch_order() if train else self.sampler.indices()
        epoch = self.sampler.epoch if train else 0
        images, labels = self.data.on(self.device)
        index = _to(torch.from_numpy(order), self.device)  # this epoch's order, one copy
        for start in range(0, len(order), self.batch_size):
            batch = index[start : start + self.batch_size]
            key = (epoch, int(order[start])) if train else None
            yield images.index_select(0, batch), labels.index_select(0, batch), key
