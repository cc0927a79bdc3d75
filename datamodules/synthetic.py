"""Random images of any shape and class count, for benchmarks and smoke tests (no files needed)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from .base import ConvDataModule, Split
from .samples import Samples

DEFAULT_CLASSES = 10  # data.num_classes null


class SyntheticDataModule(ConvDataModule):
    """Uniform uint8 noise images with uniform random labels (nothing to learn), generated in memory
    from `seed`: the same config always yields the same data. Shape: `input_size` (C, H, W), with
    `in_chans` / `image_size` overriding C / H and W. Train and test each hold `num_samples` images
    drawn from independent streams; goes through the same CIFAR-style pipeline as real small images.
    """

    name: ClassVar[str] = "synthetic"
    default_root: ClassVar[str | None] = None
    default_val_size: ClassVar[int] = 0
    default_flip: ClassVar[bool] = False
    # uniform over 0..255, in pixel/255 units: mean 1/2, std sqrt((256^2 - 1) / 12) / 255
    dataset_mean: ClassVar[tuple[float, ...]] = (0.5,)
    dataset_std: ClassVar[tuple[float, ...]] = (float(np.sqrt((256**2 - 1) / 12) / 255),)

    def stored_shape(self) -> tuple[int, int, int]:
        chans, height, width = self.config.input_size
        size = self.config.image_size
        return (self.config.in_chans or chans, size or height, size or width)

    def native_num_classes(self) -> int:
        return self.config.num_classes or DEFAULT_CLASSES

    def _load(self, split: Split) -> Samples:
        chans, height, width = self.stored_shape()
        n = self.config.num_samples
        rng = np.random.default_rng((self.config.seed, 0 if split == "train" else 1))
        images = rng.integers(0, 256, size=(n, height, width, chans), dtype=np.uint8)
        labels = rng.integers(0, self.native_num_classes(), size=n, dtype=np.int64)
        return Samples(images, labels)
