"""CIFAR-10 / CIFAR-100, "python version" pickles, read through the restricted unpickler."""

from __future__ import annotations

import os
from abc import abstractmethod
from pathlib import Path
from typing import ClassVar

import numpy as np

from .base import ConvDataModule, Split
from .download import Archive, fetch
from .errors import DataError
from .samples import Samples
from .unpickle import load_pickle

OFFICIAL_URL = "https://www.cs.toronto.edu/~kriz"
# Base URL of a server holding the same tarballs (a local mirror); the MD5 check still applies.
MIRROR_ENV = "CONVBENCH_CIFAR_MIRROR"
ARCHIVES: dict[str, Archive] = {
    "cifar10": Archive(
        f"{OFFICIAL_URL}/cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a", "cifar-10-batches-py"
    ),
    "cifar100": Archive(
        f"{OFFICIAL_URL}/cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85", "cifar-100-python"
    ),
}


def archive_for(name: str) -> Archive:
    """The archive to fetch, at the mirror named by $CONVBENCH_CIFAR_MIRROR if set."""
    archive = ARCHIVES[name]
    mirror = os.environ.get(MIRROR_ENV)
    if not mirror:
        return archive
    return Archive(f"{mirror.rstrip('/')}/{archive.url.rsplit('/', 1)[1]}", archive.md5, archive.folder)


class _CIFARDataModule(ConvDataModule):
    """32x32 RGB held in memory as uint8 N x 32 x 32 x 3 (decoded from the channel-planar rows)."""

    native_shape: ClassVar[tuple[int, int, int]] = (3, 32, 32)
    default_root: ClassVar[str] = "data"
    default_flip: ClassVar[bool] = True
    split_files: ClassVar[dict[str, tuple[str, ...]]]

    def prepare_data(self) -> None:
        """Download (once, on one process) when asked to and the files are absent."""
        if self.config.download and self._missing(("train", "test")):
            fetch(archive_for(self.name), self.root)

    @property
    def folder(self) -> Path:
        return self.root / ARCHIVES[self.name].folder

    @abstractmethod
    def _label_key(self) -> bytes:
        """The batch files' label key: b"labels" (CIFAR-10), b"fine_labels" or b"coarse_labels" (CIFAR-100)."""

    def _missing(self, splits: tuple[Split, ...]) -> list[Path]:
        return [p for s in splits for f in self.split_files[s] if not (p := self.folder / f).is_file()]

    def _load(self, split: Split) -> Samples:
        missing = self._missing((split,))
        if missing:
            hint = (
                ("download=True fetches " + archive_for(self.name).url)
                if not self.config.download
                else "download=True did not produce them: run prepare_data() first"
            )
            raise DataError(
                f"{self.name}: missing {', '.join(map(str, missing))}; expected the python-version "
                f"files {', '.join(f for fs in self.split_files.values() for f in fs)} in {self.folder} "
                f"({hint})"
            )
        parts = [self._read(self.folder / f) for f in self.split_files[split]]
        return Samples(np.concatenate([p.images for p in parts]), np.concatenate([p.labels for p in parts]))

    def _read(self, path: Path) -> Samples:
        batch = load_pickle(path)
        if not isinstance(batch, dict):
            raise DataError(f"{path}: expected a dict, found {type(batch).__name__}")
        key = self._label_key()
        for needed in (b"data", key):
            if needed not in batch:
                raise DataError(f"{path}: missing key {needed!r}; found keys {sorted(map(repr, batch))}")
        data = batch[b"data"]
        if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == 3072):
            shape = getattr(data, "shape", None)
            raise DataError(
                f"{path}: key b'data' must be a uint8 N x 3072 array, found {type(data).__name__} "
                f"{getattr(data, 'dtype', '')} {shape}"
            )
        try:
            labels = np.asarray(batch[key], dtype=np.int64)
        except (TypeError, ValueError):
            raise DataError(f"{path}: key {key!r} must be a list of ints") from None
        if labels.shape != (len(data),):
            raise DataError(f"{path}: key {key!r} holds {labels.shape} labels for {len(data)} images")
        n = self.native_num_classes()
        if len(labels) and (labels.min() < 0 or labels.max() >= n):
            raise DataError(f"{path}: key {key!r} has labels outside 0..{n - 1}")
        # rows are R plane, G plane, B plane, each 32x32 row-major -> N x H x W x C
        images = np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        return Samples(images, labels)


class CIFAR10DataModule(_CIFARDataModule):
    """CIFAR-10: 50,000 train (5,000 of them validation by default, as He et al.), 10,000 test."""

    name: ClassVar[str] = "cifar10"
    split_files: ClassVar[dict[str, tuple[str, ...]]] = {
        "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
        "test": ("test_batch",),
    }
    # Per-pixel statistics of the 50,000 train images, pixel/255 (published; no CIFAR on the build machines).
    dataset_mean: ClassVar[tuple[float, ...]] = (0.4914, 0.4822, 0.4465)
    dataset_std: ClassVar[tuple[float, ...]] = (0.2470, 0.2435, 0.2616)

    def native_num_classes(self) -> int:
        return 10

    def _label_key(self) -> bytes:
        return b"labels"


class CIFAR100DataModule(_CIFARDataModule):
    """CIFAR-100: 100 fine classes, or the 20 superclasses with coarse_labels=True."""

    name: ClassVar[str] = "cifar100"
    split_files: ClassVar[dict[str, tuple[str, ...]]] = {"train": ("train",), "test": ("test",)}
    dataset_mean: ClassVar[tuple[float, ...]] = (0.5071, 0.4865, 0.4409)
    dataset_std: ClassVar[tuple[float, ...]] = (0.2673, 0.2564, 0.2762)

    def native_num_classes(self) -> int:
        return 20 if self.config.coarse_labels else 100

    def _label_key(self) -> bytes:
        return b"coarse_labels" if self.config.coarse_labels else b"fine_labels"
