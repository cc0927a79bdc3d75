"""The torch Datasets and the DataLoader worker hook shared by all data modules."""

from __future__ import annotations

import signal
from abc import ABC, abstractmethod

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from .sampler import AUGMENT_STREAM
from .samples import Samples
from .transforms import reseed


class AugmentedDataset(Dataset, ABC):
    """Items (C x H x W float32 tensor, int label) through one Albumentations pipeline.

    `dataset[i]` takes a plain index 0..n-1 (epoch 0) and continues the pipeline's current random
    stream. Batches (the DataLoader calls `__getitems__` when it collates) also accept the
    epoch-encoded indices `epoch * n + i` of `sampler.EpochSampler`; with `augment_seed` set (train),
    each batch first reseeds the pipeline from (augment_seed, epoch, the batch's first index), so a
    batch's augmentations depend on its contents and epoch only: not on the process or worker
    running it, nor on what that process ran before (resume, num_workers, persistent workers).
    """

    def __init__(self, labels: np.ndarray, transform: A.Compose, augment_seed: int | None) -> None:
        self.labels = labels
        self.transform = transform
        self.augment_seed = augment_seed

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self._item(index)

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, int]]:
        if self.augment_seed is None or not indices:
            return KeyedItems([self._item(i) for i in indices], None)
        n = len(self.labels)
        epoch, first = divmod(indices[0], n)
        reseed(self.transform, (self.augment_seed, AUGMENT_STREAM, epoch, first))
        return KeyedItems([self._item(i % n) for i in indices], (epoch, first))

    @abstractmethod
    def _item(self, index: int) -> tuple[torch.Tensor, int]:
        """Item `index` of the stored images, through the pipeline."""


class KeyedItems(list):
    """A batch's items and its key, (epoch, first index) for a train batch, None for an evaluation one."""

    def __init__(self, items: list[tuple[torch.Tensor, int]], key: tuple[int, int] | None) -> None:
        super().__init__(items)
        self.key = key


def collate_keyed(items: KeyedItems) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int] | None]:
    """The device pipeline's batch: (uint8 N x C x H x W, int64 N, key), the key as plain ints (the device
    seeds its draws from it without reading anything back)."""
    images = torch.stack([image for image, _ in items])
    return images, torch.tensor([label for _, label in items], dtype=torch.int64), items.key


class ArrayDataset(AugmentedDataset):
    """uint8 images held in memory; per item: one Albumentations call, then optional channel replication.

    `in_chans` > stored channels (grey -> 3) is a zero-copy expand of the normalised tensor; the
    batch collation makes it contiguous.
    """

    def __init__(self, samples: Samples, transform: A.Compose, in_chans: int, augment_seed: int | None = None) -> None:
        super().__init__(samples.labels, transform, augment_seed)
        self.images = samples.images
        self.in_chans = in_chans

    def _item(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.transform(image=self.images[index])["image"]
        if image.shape[0] != self.in_chans:
            image = image.expand(self.in_chans, -1, -1)
        return image, int(self.labels[index])


def init_worker(worker_id: int) -> None:
    """One OpenCV thread per worker, so workers x OpenCV threads do not oversubscribe the cores, and
    a per-worker stream (from torch's worker seed) for items fetched one by one; batches reseed
    themselves (AugmentedDataset.__getitems__). Workers ignore SIGTERM: Slurm signals the whole
    process group, and a worker dying under the training process would fail the step in which the
    trainer checkpoints on that signal (the workers exit with their parent)."""
    info = get_worker_info()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    cv2.setNumThreads(1)
    reseed(info.dataset.transform, info.seed % 2**32)
