"""Albumentations pipelines: uint8 H x W x C numpy image in, float32 C x H x W tensor out.

Geometry runs on uint8 (cheapest), then the image becomes float: noise (train only) is added in
pixel/255 units and clipped to [0, 1], then normalisation. Grey -> 3 channel replication is not
done here but by the dataset on the output tensor, after normalisation, as a zero-copy expand.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import albumentations as A
import cv2
import numpy as np
from albumentations.pytorch import ToTensorV2

from .config import AugmentConfig

# Small images grown by at most this many pixels are zero-padded (centred) rather than resized.
MAX_PAD = 8


@dataclass(frozen=True)
class Geometry:
    """How stored images become (height, width) = `out` model inputs.

    kind "small": images are stored at size `native` (CIFAR, Fashion-MNIST, synthetic); "imagenet":
    images of any size, cropped to `out` (eval: shorter side resized to `resize`, then a centre crop).
    """

    kind: Literal["small", "imagenet"]
    out: tuple[int, int]
    native: tuple[int, int] = (0, 0)
    resize: int = 0


def train_pipeline(
    geometry: Geometry, augment: AugmentConfig, flip: bool, mean: tuple[float, ...], std: tuple[float, ...], seed: int
) -> A.Compose:
    """Crop + flip + noise + normalise, each stage as switched in `augment`."""
    height, width = geometry.out
    steps: list[A.BasicTransform] = []
    if geometry.kind == "imagenet":
        steps += [A.RandomResizedCrop(size=geometry.out)] if augment.crop else _center(geometry)
    else:
        pad = 2 * augment.crop_padding
        # when the fit is itself a centred zero pad, one pad does both (zero padding composes)
        steps += _fit(geometry) if not (augment.crop and _fits_by_padding(geometry)) else []
        if augment.crop:
            steps += [_pad(height + pad, width + pad), A.RandomCrop(height, width)]
    if flip:
        steps.append(A.HorizontalFlip(p=0.5))
    return _compose(steps + _to_tensor(augment.noise_std, augment.normalize, mean, std), seed)


def eval_pipeline(geometry: Geometry, normalize: bool, mean: tuple[float, ...], std: tuple[float, ...]) -> A.Compose:
    """Deterministic resize / centre crop, then normalise."""
    steps = _center(geometry) if geometry.kind == "imagenet" else _fit(geometry)
    return _compose(steps + _to_tensor(0.0, normalize, mean, std), seed=0)


def fit_images(geometry: Geometry, images: np.ndarray) -> np.ndarray:
    """The evaluation pipeline's size fit (a centred zero pad or a resize) applied once to a whole uint8
    N x H x W x C array of small images: the device pipeline holds them at the model's size, and pads
    for its crop on the device (a centred pad then a pad for the crop is the one pad of the train pipeline)."""
    if geometry.out == geometry.native:
        return images
    if _fits_by_padding(geometry):  # PadIfNeeded's centring: the odd pixel goes below and right
        (dh, dw) = (o - n for o, n in zip(geometry.out, geometry.native))
        return np.pad(images, ((0, 0), (dh // 2, dh - dh // 2), (dw // 2, dw - dw // 2), (0, 0)))
    fit = A.Compose(_fit(geometry))
    return np.stack([fit(image=image)["image"].reshape(*geometry.out, images.shape[3]) for image in images])


def decode_pipeline(geometry: Geometry, crop: bool, train: bool, seed: int) -> A.Compose:
    """The device pipeline's CPU part for images of any size: RandomResizedCrop (train, `crop`) or the
    evaluation resize and centre crop, to a uint8 C x H x W tensor; flip, noise and normalisation follow
    on the device."""
    steps = [A.RandomResizedCrop(size=geometry.out)] if train and crop else _center(geometry)
    return _compose([*steps, ToTensorV2()], seed)


def _compose(steps: list[A.BasicTransform], seed: int) -> A.Compose:
    pipeline = A.Compose(steps)
    reseed(pipeline, seed)
    return pipeline


def reseed(pipeline: A.Compose, seed: int | Sequence[int]) -> None:
    """One generator pair shared by all stages. (Compose(seed=...) gives every stage its own
    generator with the same seed, correlating e.g. the crop offset with the flip decision.)
    Also gives each DataLoader worker its own stream: forked workers copy the parent's.
    `seed` may be a sequence of ints (a key such as (seed, stream, epoch, index)): it is then hashed
    by numpy's SeedSequence into two independent seeds, one per generator."""
    if isinstance(seed, int):
        pipeline.set_random_state(np.random.default_rng(seed), random.Random(seed))
        return
    numpy_seed, python_seed = np.random.SeedSequence(seed).spawn(2)
    pipeline.set_random_state(
        np.random.default_rng(numpy_seed),
        random.Random(int.from_bytes(python_seed.generate_state(4).tobytes(), "little")),
    )


def _center(geometry: Geometry) -> list[A.BasicTransform]:
    return [A.SmallestMaxSize(max_size=geometry.resize), A.CenterCrop(*geometry.out)]


def _fits_by_padding(geometry: Geometry) -> bool:
    return all(0 <= o - n <= MAX_PAD for o, n in zip(geometry.out, geometry.native))


def _fit(geometry: Geometry) -> list[A.BasicTransform]:
    if geometry.out == geometry.native:
        return []
    if _fits_by_padding(geometry):
        return [_pad(*geometry.out)]
    shrink = geometry.out[0] * geometry.out[1] < geometry.native[0] * geometry.native[1]
    return [A.Resize(*geometry.out, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)]


def _pad(height: int, width: int) -> A.PadIfNeeded:
    return A.PadIfNeeded(min_height=height, min_width=width, position="center", border_mode=cv2.BORDER_CONSTANT, fill=0)


def _to_tensor(
    noise_std: float, normalize: bool, mean: tuple[float, ...], std: tuple[float, ...]
) -> list[A.BasicTransform]:
    steps: list[A.BasicTransform] = []
    scale = 255.0
    if noise_std > 0:
        steps += [
            A.ToFloat(max_value=255.0),
            A.GaussNoise(std_range=(noise_std, noise_std), mean_range=(0.0, 0.0), p=1.0),
        ]
        scale = 1.0
    if normalize:
        steps.append(A.Normalize(mean=mean, std=std, max_pixel_value=scale))
    elif scale != 1.0:
        steps.append(A.ToFloat(max_value=scale))
    return steps + [ToTensorV2()]
