"""ImageNet (ILSVRC-2012) in the ImageFolder layout, decoded with OpenCV per item."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import ClassVar

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from .base import ConvDataModule, Split
from .datasets import AugmentedDataset
from .errors import DataError
from .samples import Samples
from .transforms import Geometry

EXTENSIONS = (".jpeg", ".jpg", ".png")
FOLDERS: dict[str, str] = {"train": "train", "test": "val"}


class ImageFileDataset(AugmentedDataset):
    """Images read from disk per item; paths kept as one numpy bytes array (no per-path Python
    objects, so forked workers do not copy them by touching refcounts)."""

    def __init__(self, root: Path, samples: Samples, transform: A.Compose, augment_seed: int | None = None) -> None:
        super().__init__(samples.labels, transform, augment_seed)
        self.root = root
        self.paths = samples.images

    def _item(self, index: int) -> tuple[torch.Tensor, int]:
        path = os.path.join(self.root, os.fsdecode(self.paths[index]))
        image = cv2.imread(path, cv2.IMREAD_COLOR)  # grey and CMYK files come out as 3-channel BGR
        if image is None:
            raise DataError(f"imagenet: cannot decode image {path}")
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        return self.transform(image=image)["image"], int(self.labels[index])


class ImageNetDataModule(ConvDataModule):
    """`root/train/<wnid>/*.JPEG` and `root/val/<wnid>/*.JPEG`; class index = position in the sorted
    wnid list of train/. The official val/ is the test split; with the default val_size 0 it is also
    the validation split (val_size > 0 carves validation from train instead).

    Train: RandomResizedCrop(image_size) + flip; eval: shorter side to round(image_size * 256 / 224),
    centre crop image_size (224 / 256 by default).
    """

    name: ClassVar[str] = "imagenet"
    native_shape: ClassVar[tuple[int, int, int]] = (3, 224, 224)
    default_root: ClassVar[str] = "data/imagenet"
    default_val_size: ClassVar[int] = 0
    default_flip: ClassVar[bool] = True
    dataset_mean: ClassVar[tuple[float, ...]] = (0.485, 0.456, 0.406)
    dataset_std: ClassVar[tuple[float, ...]] = (0.229, 0.224, 0.225)
    validate_on_test: ClassVar[bool] = True

    @cached_property
    def wnids(self) -> list[str]:
        """Sorted class folder names of train/; their positions are the labels."""
        train = self.root / FOLDERS["train"]
        if not train.is_dir():
            raise DataError(f"imagenet: no folder {train}; expected {self.root}/train/<wnid>/*.JPEG")
        wnids = sorted(e.name for e in os.scandir(train) if e.is_dir())
        if not wnids:
            raise DataError(f"imagenet: no class folders in {train}; expected {train}/<wnid>/*.JPEG")
        return wnids

    def native_num_classes(self) -> int:
        return len(self.wnids)

    def _geometry(self) -> Geometry:
        size = self.input_size[1]
        return Geometry("imagenet", out=(size, size), resize=round(size * 256 / 224))

    def _dataset(self, samples: Samples, train: bool) -> Dataset:
        return ImageFileDataset(self.root, samples, self._pipeline(train), self._augment_seed(train))

    def _load(self, split: Split) -> Samples:
        folder = self.root / FOLDERS[split]
        if not folder.is_dir():
            raise DataError(f"imagenet: no folder {folder}; expected {folder}/<wnid>/*.JPEG")
        label_of = {wnid: i for i, wnid in enumerate(self.wnids)}
        paths: list[bytes] = []
        labels: list[int] = []
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            if not entry.is_dir():
                continue
            if entry.name not in label_of:
                raise DataError(f"imagenet: class folder {entry.path} is not among the train/ classes")
            files = sorted(f.name for f in os.scandir(entry.path) if f.name.lower().endswith(EXTENSIONS))
            paths += [os.fsencode(f"{FOLDERS[split]}/{entry.name}/{f}") for f in files]
            labels += [label_of[entry.name]] * len(files)
        if not paths:
            raise DataError(f"imagenet: no images ({', '.join(EXTENSIONS)}) in {folder}/<wnid>/")
        return Samples(np.array(paths), np.array(labels, dtype=np.int64))
