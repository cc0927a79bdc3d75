"""Fashion-MNIST from the original gzipped IDX files (Debian: `apt-get install dataset-fashion-mnist`)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from .base import ConvDataModule, Split
from .errors import DataError
from .idx import IMAGES_MAGIC, LABELS_MAGIC, read_idx
from .samples import Samples

FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


class FashionMNISTDataModule(ConvDataModule):
    """28x28 grey, 10 balanced classes; 60,000 train (5,000 of them validation by default), 10,000 test.

    For 32x32 networks set image_size=32 (zero-pads 2 px each side); for 3-channel networks set
    in_chans=3 (replicates the grey channel). Arrays are held in memory as uint8 (~55 MB).
    """

    name: ClassVar[str] = "fashion-mnist"
    native_shape: ClassVar[tuple[int, int, int]] = (1, 28, 28)
    default_root: ClassVar[str] = "/usr/share/datasets/fashion-mnist"
    default_flip: ClassVar[bool] = False
    default_crop: ClassVar[bool] = False
    # Of the real 60,000 train images, pixel/255 (tests/test_datamodules.py checks them).
    dataset_mean: ClassVar[tuple[float, ...]] = (0.2860406,)
    dataset_std: ClassVar[tuple[float, ...]] = (0.3530242,)

    def native_num_classes(self) -> int:
        return 10

    def _load(self, split: Split) -> Samples:
        paths = [self.root / name for name in FILES[split]]
        missing = [p for p in paths if not p.is_file()]
        if missing:
            expected = ", ".join(name for names in FILES.values() for name in names)
            raise DataError(
                f"fashion-mnist: missing {', '.join(map(str, missing))}; expected {expected} in {self.root} "
                f"(`apt-get install dataset-fashion-mnist` puts them in {self.default_root})"
            )
        images = read_idx(paths[0], IMAGES_MAGIC)
        labels = read_idx(paths[1], LABELS_MAGIC)
        if images.shape[1:] != self.native_shape[1:]:
            raise DataError(f"{paths[0]}: images are {images.shape[1]}x{images.shape[2]}, expected 28x28")
        if len(images) != len(labels):
            raise DataError(f"{paths[1]}: {len(labels)} labels for {len(images)} images in {paths[0].name}")
        if len(labels) and labels.max() >= 10:
            raise DataError(f"{paths[1]}: label {labels.max()} out of range 0..9")
        return Samples(images[..., None], labels.astype(np.int64))
