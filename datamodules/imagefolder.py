"""Class folders of JPEG and PNG files (the ImageFolder layout), decoded with OpenCV per item: the `imagefolder`
dataset, and what it shares with `imagenet` (listing, decoding, the 224 px crop pipelines, the statistics)."""

from __future__ import annotations

import functools
import math
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import ClassVar, TypeVar

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from .base import ConvDataModule, Split
from .config import DataConfig
from .datasets import AugmentedDataset
from .errors import DataError
from .samples import Samples
from .transforms import Geometry

EXTENSIONS = (".jpeg", ".jpg", ".png")
FOLDERS: dict[str, str] = {"train": "train", "test": "val"}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# one channel: the means of ImageNet's three, the usual statistics for feeding grey images to ImageNet nets
GREY_MEAN, GREY_STD = (0.449,), (0.226,)
# paths a decode-check process takes at a time
CHECK_CHUNK = 64
T, R = TypeVar("T"), TypeVar("R")


def class_folders(folder: Path) -> list[str]:
    """Sorted names of the folders in `folder`: the classes, whose positions are their labels."""
    return sorted(e.name for e in os.scandir(folder) if e.is_dir())


def folder_samples(root: Path, folder: str, classes: list[str], labels: list[int]) -> Samples:
    """The image files (by extension, any case; other files are ignored) of root/folder/<class>/ for each
    class, as paths relative to `root`, labelled with their class's label."""
    paths: list[bytes] = []
    per_image: list[int] = []
    for name, label in zip(classes, labels):
        files = sorted(f.name for f in os.scandir(root / folder / name) if f.name.lower().endswith(EXTENSIONS))
        paths += [os.fsencode(PurePosixPath(folder, name, f)) for f in files]
        per_image += [label] * len(files)
    return Samples(np.array(paths), np.array(per_image, dtype=np.int64))


def read(path: str, grey: bool) -> np.ndarray | None:
    """OpenCV's decode: one channel, or 3-channel BGR (grey files replicated, CMYK converted, alpha dropped);
    None when the file does not decode."""
    return cv2.imread(path, cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR)


class ImageFileDataset(AugmentedDataset):
    """Images read from disk per item (uint8 H x W x 1 with `grey`, else RGB); paths kept as one numpy bytes
    array (no per-path Python objects, so forked workers do not copy them by touching refcounts)."""

    def __init__(
        self,
        name: str,
        root: Path,
        samples: Samples,
        transform: A.Compose,
        augment_seed: int | None = None,
        grey: bool = False,
    ) -> None:
        super().__init__(samples.labels, transform, augment_seed)
        self.name = name
        self.root = root
        self.paths = samples.images
        self.grey = grey

    def _item(self, index: int) -> tuple[torch.Tensor, int]:
        path = os.path.join(self.root, os.fsdecode(self.paths[index]))
        image = read(path, self.grey)
        if image is None:
            raise DataError(f"{self.name}: cannot decode image {path}")
        image = image[..., None] if self.grey else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        return self.transform(image=image)["image"], int(self.labels[index])


class FolderDataModule(ConvDataModule):
    """Class folders of image files of any size: RandomResizedCrop(image_size) + flip for training; for
    evaluation the shorter side to round(image_size * 256 / 224), then a centre crop of image_size (224 / 256
    by default). Normalised by ImageNet's statistics. With val_size 0 the test split also validates."""

    native_shape: ClassVar[tuple[int, int, int]] = (3, 224, 224)
    default_val_size: ClassVar[int] = 0
    default_flip: ClassVar[bool] = True
    dataset_mean: ClassVar[tuple[float, ...]] = IMAGENET_MEAN
    dataset_std: ClassVar[tuple[float, ...]] = IMAGENET_STD
    validate_on_test: ClassVar[bool] = True

    def _geometry(self) -> Geometry:
        size = self.input_size[1]
        return Geometry("imagenet", out=(size, size), resize=round(size * 256 / 224))

    @property
    def loader_workers(self) -> int:
        """Files are decoded in DataLoader workers on either pipeline."""
        return self.config.num_workers

    def _dataset(self, samples: Samples, train: bool) -> Dataset:
        grey = self.stored_shape()[0] == 1
        return ImageFileDataset(self.name, self.root, samples, self._pipeline(train), self._augment_seed(train), grey)


class ImageFolderDataModule(FolderDataModule):
    """Any folder of class folders: `root/train/<class>/*` with `root/val/<class>/*` (the same classes), or one
    tree `root/<class>/*`; .jpg, .jpeg and .png files in any case. Class index = position of the folder name in
    sorted order.

    train/ + val/: as ImageNet, val/ is the test split, and with the default val_size 0 the validation split
    too (val_size > 0 carves validation from train/ instead). One tree: validation is a seeded carve of
    val_size images (default: a tenth, at least one), and, as there is no other held-out image, the test
    split is that same carve: its test figures are the final model's validation figures.

    Every image a split uses is decoded once at setup, so a broken file is named then, not in a DataLoader
    worker hours later. in_chans=1 decodes grey; otherwise RGB.
    """

    root_is_data: ClassVar[bool] = True

    name: ClassVar[str] = "imagefolder"
    default_root: ClassVar[str | None] = None

    def __init__(self, config: DataConfig) -> None:
        super().__init__(config)
        if not self.split_layout and not self.config.val_size:
            raise DataError(
                f"{self.name}: val_size=0 leaves {self.root}, one tree of class folders, no images to validate and "
                f"test on; accepted: val_size >= 1 (default: a tenth of the images), or {self._layouts()}"
            )
        self._decodable: set[bytes] = set()  # paths the setup check has decoded

    def stored_shape(self) -> tuple[int, int, int]:
        chans = self.config.in_chans
        if chans not in (None, 1, 3):
            raise DataError(f"{self.name}: in_chans={chans}: accepted is 1 (decoded grey) or 3 (RGB)")
        return (1 if chans == 1 else 3, *self.native_shape[1:])

    @property
    def dataset_mean(self) -> tuple[float, ...]:  # type: ignore[override]
        return GREY_MEAN if self.stored_shape()[0] == 1 else IMAGENET_MEAN

    @property
    def dataset_std(self) -> tuple[float, ...]:  # type: ignore[override]
        return GREY_STD if self.stored_shape()[0] == 1 else IMAGENET_STD

    @cached_property
    def split_layout(self) -> bool:
        """True for root/train + root/val, False for one tree of class folders."""
        root = self.root
        if not root.is_dir():
            raise DataError(f"{self.name}: data root {root} does not exist; accepted: {self._layouts()}")
        train, val = ((root / FOLDERS[split]).is_dir() for split in ("train", "test"))
        if train != val:
            has, lacks = ("train", "val") if train else ("val", "train")
            raise DataError(f"{self.name}: {root} has {has}/ but no {lacks}/; accepted: {self._layouts()}")
        return train

    @cached_property
    def class_names(self) -> list[str]:
        """Sorted class folder names; their positions are the labels."""
        if not self.split_layout:
            return self._class_folders(self.root)
        train, val = (self._class_folders(self.root / FOLDERS[split]) for split in ("train", "test"))
        if train != val:
            raise DataError(
                f"imagefolder: the class folders of {self.root}/train and {self.root}/val differ: missing from "
                f"val/: {_some(sorted(set(train) - set(val))) or 'none'}; missing from train/: "
                f"{_some(sorted(set(val) - set(train))) or 'none'}; accepted: the same class folders in both"
            )
        return train

    def _class_folders(self, folder: Path) -> list[str]:
        names = class_folders(folder)
        if not names:
            raise DataError(f"imagefolder: no class folders in {folder}; accepted: {self._layouts()}")
        return names

    def native_num_classes(self) -> int:
        return len(self.class_names)

    def _default_val_size(self) -> int:
        """train/ + val/: 0 (val/ validates); one tree: a tenth of its images after `classes`, at least one."""
        return 0 if self.split_layout else max(1, len(self._official("train")) // 10)

    def _official(self, split: Split) -> Samples:
        if split == "test" and not self.split_layout:
            return self._train_and_val()[1]  # one tree: the validation carve (never empty: val_size >= 1)
        return super()._official(split)

    def _load(self, split: Split) -> Samples:
        # one tree: only "train" is read (its test split is the validation carve, see _official)
        return self._read(FOLDERS[split]) if self.split_layout else self._tree

    @cached_property
    def _tree(self) -> Samples:
        return self._read("")

    def _read(self, folder: str) -> Samples:
        names = self.class_names
        samples = folder_samples(self.root, folder, names, list(range(len(names))))
        counts = np.bincount(samples.labels, minlength=len(names))
        empty = [str(self.root / folder / name) for name, count in zip(names, counts) if not count]
        if empty:
            raise DataError(
                f"imagefolder: no images in class folder{'s' if len(empty) > 1 else ''} {_some(empty)}; "
                f"accepted: files ending .jpg, .jpeg or .png (any case) in every class folder"
            )
        return samples

    def _dataset(self, samples: Samples, train: bool) -> Dataset:
        unchecked = [p for p in samples.images if p not in self._decodable]
        bad = undecodable(self.root, unchecked, self.stored_shape()[0] == 1)
        if bad:
            raise DataError(
                f"imagefolder: cannot decode {'image' if len(bad) == 1 else f'{len(bad)} images'} {_some(bad)}; "
                "accepted: .jpg, .jpeg or .png files that OpenCV decodes (remove or replace the broken files)"
            )
        self._decodable.update(unchecked)
        return super()._dataset(samples, train)

    def _layouts(self) -> str:
        root = self.root
        return f"{root}/train/<class>/* with {root}/val/<class>/*, or {root}/<class>/* (.jpg, .jpeg, .png files)"


def undecodable(root: Path, paths: list[bytes], grey: bool) -> list[str]:
    """The files among `paths` (relative to `root`) that do not decode, each decoded in full as a DataLoader
    worker would: about 0.9 s per 1000 500x375 JPEGs on a core, 2.8 s for PNGs (docs/data.md)."""
    files = [os.path.join(root, os.fsdecode(p)) for p in paths]
    return [f for f, ok in zip(files, checked(files, functools.partial(_decodes, grey=grey))) if not ok]


def checked(items: Sequence[T], check: Callable[[T], R]) -> list[R]:
    """`check(item)` for every item, spread over a process per core, forked, whose stderr is discarded
    (libpng and libjpeg print lines of their own about a bad file; the caller's DataError names it)."""
    if not items:
        return []
    workers = min(len(os.sched_getaffinity(0)), math.ceil(len(items) / CHECK_CHUNK))
    fork = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(workers, mp_context=fork, initializer=_quiet) as pool:
        return list(pool.map(check, items, chunksize=CHECK_CHUNK))


def _decodes(path: str, grey: bool) -> bool:
    return read(path, grey) is not None


def _quiet() -> None:
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)


def _some(items: list[str]) -> str:
    """The first three of `items`, and how many more."""
    return ", ".join(items[:3]) + (f" and {len(items) - 3} more" if len(items) > 3 else "")
