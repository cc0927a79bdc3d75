"""Segmentation data: images with per-pixel class masks. `segfolder` reads paired files (images/ and
masks/ folders, with imagefolder's split layouts and decode check); `shapes` draws squares and discs in
memory, something real to learn without any file.

A batch is (float32 N x C x H x W, int64 N x H x W). One Albumentations call moves an image and its
mask together (`mask=`): crops, pads, resizes (nearest for the mask) and flips apply to both, noise and
normalisation to the image only. Masks are padded with class 0.
"""

from __future__ import annotations

import functools
import os
from abc import ABC, abstractmethod
from pathlib import Path, PurePosixPath
from typing import ClassVar

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from .base import ConvDataModule, Split
from .config import DataConfig
from .datasets import AugmentedDataset
from .errors import DataError
from .imagefolder import EXTENSIONS, ImageFolderDataModule, _some, checked, read
from .samples import Samples

IMAGES, MASKS = "images", "masks"
MASK_EXTENSION = ".png"  # class indices need a lossless format
DEFAULT_CLASSES = 2  # segfolder's data.num_classes null: background and foreground


class SegmentationDataModule(ConvDataModule, ABC):
    """What every segmentation dataset shares: its task, and the options it cannot honour (`classes` and
    `labels_per_class` select by an image's one label, and a mask has many; the device pipeline's batch
    transforms have no mask to move with the image)."""

    task: ClassVar[str] = "segmentation"

    def __init__(self, config: DataConfig) -> None:
        for key in ("classes", "labels_per_class"):
            if getattr(config, key) is not None:
                raise DataError(
                    f"{self.name}: {key}={getattr(config, key)!r} selects images by their class label, which a "
                    "segmentation dataset's images do not have; accepted: null (unset)"
                )
        if config.pipeline != "albumentations":
            raise DataError(
                f"{self.name}: pipeline={config.pipeline!r} augments images alone, and a mask must take its "
                "image's crop and flip; accepted: albumentations"
            )
        super().__init__(config)


class MaskedDataset(AugmentedDataset, ABC):
    """Items (C x H x W float32 image, H x W int64 mask), both through the one pipeline call."""

    def __init__(self, samples: Samples, transform: A.Compose, in_chans: int, augment_seed: int | None) -> None:
        super().__init__(samples.labels, transform, augment_seed)
        self.in_chans = in_chans

    @abstractmethod
    def _pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The stored uint8 image (H x W x C) and its mask (H x W)."""

    def _item(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        image, mask = self._pair(index)
        out = self.transform(image=image, mask=mask)
        image = out["image"]
        if image.shape[0] != self.in_chans:
            image = image.expand(self.in_chans, -1, -1)
        return image, out["mask"].long()


class ArrayPairs(MaskedDataset):
    """In memory: each stored image carries its mask as one more, last, channel."""

    def __init__(self, samples: Samples, transform: A.Compose, in_chans: int, augment_seed: int | None) -> None:
        super().__init__(samples, transform, in_chans, augment_seed)
        self.images = samples.images

    def _pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        stored = self.images[index]
        return stored[..., :-1], stored[..., -1]


class FilePairs(MaskedDataset):
    """On disk: `samples.images` rows are (image path, mask path) relative to `root`, decoded per item."""

    def __init__(
        self, name: str, root: Path, samples: Samples, transform: A.Compose, augment_seed: int | None, grey: bool
    ) -> None:
        super().__init__(samples, transform, 1 if grey else 3, augment_seed)
        self.name, self.root, self.paths, self.grey = name, root, samples.images, grey

    def _pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        image_path, mask_path = (os.path.join(self.root, os.fsdecode(p)) for p in self.paths[index])
        image, mask = read(image_path, self.grey), read_mask(mask_path)
        if image is None or mask is None:
            raise DataError(f"{self.name}: cannot decode {image_path if image is None else mask_path}")
        return (image[..., None] if self.grey else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)), mask


def read_mask(path: str) -> np.ndarray | None:
    """The mask as stored (no conversion: a 3-channel file is refused, not turned grey); None if it does not decode."""
    return cv2.imread(path, cv2.IMREAD_UNCHANGED)


def pair_problem(paths: tuple[str, str], grey: bool, num_classes: int) -> str | None:
    """Why an image and its mask cannot train, in words; None when they can. Each file is decoded in full."""
    image_path, mask_path = paths
    image, mask = read(image_path, grey), read_mask(mask_path)
    if image is None:
        return f"cannot decode image {image_path}; accepted: .jpg, .jpeg or .png files that OpenCV decodes"
    if mask is None:
        return f"cannot decode mask {mask_path}; accepted: .png files that OpenCV decodes"
    if mask.ndim != 2:
        return f"mask {mask_path} has {mask.shape[2]} channels; accepted: a single-channel PNG of class indices"
    if mask.shape != image.shape[:2]:
        return (
            f"mask {mask_path} is {mask.shape[1]}x{mask.shape[0]} but its image {image_path} is "
            f"{image.shape[1]}x{image.shape[0]}; accepted: the same width and height"
        )
    top = int(mask.max())
    if top >= num_classes:
        y, x = np.argwhere(mask == top)[0]
        return (
            f"mask {mask_path} has value {top} at x={x}, y={y}; accepted: class indices 0..{num_classes - 1} "
            f"(data.num_classes={num_classes})"
        )
    return None


class SegFolderDataModule(SegmentationDataModule, ImageFolderDataModule):
    """Paired files: `root/images/*` (.jpg, .jpeg, .png) with `root/masks/<same name>.png`, single-channel
    class indices 0..num_classes-1; or `root/train/{images,masks}` with `root/val/{images,masks}`. The splits
    are imagefolder's: val/ tests (and validates at val_size 0); one tree carves validation (a tenth by
    default), which is also its test split. The pipelines are imagefolder's (RandomResizedCrop to image_size
    and flips in training, the centre crop in evaluation), applied to both files. Every pair a split uses is
    decoded at setup, sizes and mask values checked, so a bad file is named before the first step."""

    name: ClassVar[str] = "segfolder"

    def native_num_classes(self) -> int:
        return self.config.num_classes or DEFAULT_CLASSES

    def _read(self, folder: str) -> Samples:
        images_dir, masks_dir = self.root / folder / IMAGES, self.root / folder / MASKS
        for where in (images_dir, masks_dir):
            if not where.is_dir():
                raise DataError(f"{self.name}: no folder {where}; accepted: {self._layouts()}")
        images = {Path(f).stem: f for f in _files(images_dir, EXTENSIONS)}
        masks = {Path(f).stem: f for f in _files(masks_dir, (MASK_EXTENSION,))}
        unmasked = [str(images_dir / images[s]) for s in sorted(images.keys() - masks.keys())]
        if unmasked:
            raise DataError(
                f"{self.name}: no mask for image {_some(unmasked)}; accepted: each image with "
                f"{masks_dir}/<its name>.png"
            )
        orphans = [str(masks_dir / masks[s]) for s in sorted(masks.keys() - images.keys())]
        if orphans:
            raise DataError(
                f"{self.name}: no image for mask {_some(orphans)}; accepted: each mask with "
                f"{images_dir}/<its name>.jpg, .jpeg or .png"
            )
        if not images:
            raise DataError(f"{self.name}: no images in {images_dir}; accepted: {self._layouts()}")
        rows = [
            (os.fsencode(PurePosixPath(folder, IMAGES, images[s])), os.fsencode(PurePosixPath(folder, MASKS, masks[s])))
            for s in sorted(images)
        ]
        return Samples(np.array(rows), np.zeros(len(rows), dtype=np.int64))

    def _dataset(self, samples: Samples, train: bool) -> Dataset:
        grey = self.stored_shape()[0] == 1
        # a pair is known by its image's path (its mask's follows from it)
        unchecked = [row for row in samples.images if row[0] not in self._decodable]
        pairs = [tuple(os.path.join(self.root, os.fsdecode(p)) for p in row) for row in unchecked]
        check = functools.partial(pair_problem, grey=grey, num_classes=self.native_num_classes())
        problems = [p for p in checked(pairs, check) if p is not None]
        if problems:
            more = f" (and {len(problems) - 1} more bad pairs)" if len(problems) > 1 else ""
            raise DataError(f"{self.name}: {problems[0]}{more}")
        self._decodable.update(row[0] for row in unchecked)
        return FilePairs(self.name, self.root, samples, self._pipeline(train), self._augment_seed(train), grey)

    def _layouts(self) -> str:
        root = self.root
        return (
            f"{root}/images/* with {root}/masks/*.png, or {root}/train/{{images,masks}}/* with "
            f"{root}/val/{{images,masks}}/* (images .jpg, .jpeg, .png; masks single-channel class-index .png)"
        )


def _files(folder: Path, extensions: tuple[str, ...]) -> list[str]:
    return sorted(f.name for f in os.scandir(folder) if f.is_file() and f.name.lower().endswith(extensions))


SHAPES_CLASSES = ("background", "square", "disc")


class ShapesDataModule(SegmentationDataModule):
    """Squares (class 1) and discs (class 2) on a noisy background: 1 to 3 shapes an image, 20-45% of its
    side, of random grey levels, later ones over earlier ones, then Gaussian noise over the whole image. A
    square and a disc of one size and brightness differ only in their outline, so the net must see shape,
    not just brightness. Generated in memory from (seed, split): the same config, the same images. 64x64
    grey by default (`image_size`, `in_chans` 3 replicates)."""

    name: ClassVar[str] = "shapes"
    native_shape: ClassVar[tuple[int, int, int]] = (1, 64, 64)
    default_root: ClassVar[str | None] = None
    default_val_size: ClassVar[int] = 128
    default_flip: ClassVar[bool] = True
    default_crop: ClassVar[bool] = True
    # pixel/255 of the default 1024 train images at 64x64, seed 0 (tests/test_segmentation.py checks them)
    dataset_mean: ClassVar[tuple[float, ...]] = (0.3056,)
    dataset_std: ClassVar[tuple[float, ...]] = (0.1952,)

    def stored_shape(self) -> tuple[int, int, int]:
        size = self.config.image_size or self.native_shape[1]
        return (1, size, size)

    def native_num_classes(self) -> int:
        return len(SHAPES_CLASSES)

    def _load(self, split: Split) -> Samples:
        size = self.stored_shape()[1]
        rng = np.random.default_rng((self.config.seed, 0 if split == "train" else 1))
        stored = np.stack([draw_shapes(rng, size) for _ in range(self.config.num_samples)])
        return Samples(stored, np.zeros(len(stored), dtype=np.int64))

    def _dataset(self, samples: Samples, train: bool) -> Dataset:
        return ArrayPairs(samples, self._pipeline(train), self.input_size[0], self._augment_seed(train))


def draw_shapes(rng: np.random.Generator, size: int) -> np.ndarray:
    """One size x size image and its mask, stacked as 2 channels (uint8)."""
    image = np.full((size, size), rng.uniform(30, 90), dtype=np.float32)
    mask = np.zeros((size, size), dtype=np.uint8)
    for _ in range(rng.integers(1, 4)):
        kind = int(rng.integers(1, 3))
        side = max(2, int(size * rng.uniform(0.2, 0.45)))
        x, y = (int(v) for v in rng.integers(0, size - side, size=2))
        shape = np.zeros((size, size), dtype=np.uint8)
        if kind == 1:
            cv2.rectangle(shape, (x, y), (x + side - 1, y + side - 1), 1, thickness=-1)
        else:
            cv2.circle(shape, (x + side // 2, y + side // 2), side // 2, 1, thickness=-1)
        inside = shape.astype(bool)
        image[inside] = rng.uniform(110, 230)
        mask[inside] = kind
    image += rng.normal(0, 20, size=image.shape).astype(np.float32)
    return np.stack([np.clip(image, 0, 255).astype(np.uint8), mask], axis=-1)
