"""What a data module is asked for. Pure stdlib, so `convbench list` can import it without Lightning.

`None` fields mean "the dataset's default"; the module fills them in (`ConvDataModule.config`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .errors import DataError


@dataclass
class AugmentConfig:
    """Train-time augmentation; every stage can be switched off. Evaluation never augments.

    crop: small images (CIFAR, Fashion-MNIST, synthetic) are zero-padded by `crop_padding` on each
        side and randomly cropped back to the image size (He et al.); ImageNet uses
        RandomResizedCrop(image_size) instead and ignores `crop_padding`. None = the dataset's
        default: True, but False for fashion-mnist, whose garments are centred and size-normalised
        (its published baselines train without crops; a crop costs ~5 points of one-epoch accuracy).
    flip: random horizontal flip; None = the dataset's default (True for cifar*/imagenet, whose labels
        are flip-invariant; False for fashion-mnist and synthetic).
    noise_std: std of additive Gaussian noise in pixel/255 units (0.1 = 25.5 grey levels), added to
        the [0, 1]-scaled image, clipped to [0, 1], before normalisation. Train only.
    normalize: subtract the dataset mean and divide by its std; if False images are just scaled to [0, 1].
    """

    crop: bool | None = None
    crop_padding: int = 4
    flip: bool | None = None
    noise_std: float = 0.0
    normalize: bool = True

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.crop is not None:
            _check_type("augment.crop", self.crop, bool)
        _check_int("augment.crop_padding", self.crop_padding, minimum=0)
        if self.flip is not None:
            _check_type("augment.flip", self.flip, bool)
        _check_type("augment.noise_std", self.noise_std, (int, float))
        if not 0.0 <= self.noise_std <= 1.0:
            raise DataError(f"augment.noise_std={self.noise_std!r}: accepted is 0 <= noise_std <= 1 (pixel/255 units)")
        _check_type("augment.normalize", self.normalize, bool)


@dataclass
class DataConfig:
    """Which images, how many, at what size, and how they are batched.

    root: data directory; None = the dataset's default (fashion-mnist: /usr/share/datasets/fashion-mnist,
        cifar10/cifar100: data (relative to the working directory), imagenet: data/imagenet).
    eval_batch_size: None = batch_size.
    val_size: images carved at random (seeded) from the official train set for validation; None =
        the dataset's default (5000 for cifar* and fashion-mnist, as He et al.'s 45k/5k; 0 for
        imagenet, whose validation and test loaders then both read the official val/ folder; 0 for
        synthetic). 0 = no validation split.
    seed: fixes the validation split, label/size subsampling, shuffling and augmentation streams.
    image_size: side of the square image the model receives; None = native (28 fashion-mnist, 32 cifar,
        224 imagenet). For small images, growing by at most 8 px zero-pads centred (Fashion-MNIST at 32
        is padded 2 px each side, the LeNet convention); any other change is a bilinear resize.
        ImageNet: crop size, the eval resize is scaled alike (256/224 * image_size).
    in_chans: channels the model receives; None = native. 3 on grey data replicates the channel.
    classes: keep only these original classes, relabelled 0..k-1 in the given order (transfer study).
    labels_per_class: keep this many train images per class (seeded), after the validation split.
    train_limit: keep at most this many train images (seeded), after labels_per_class.
    coarse_labels: cifar100 only: the 20 superclasses instead of the 100 classes.
    download: cifar* only: fetch and verify the official archive when the files are absent.
    num_samples, input_size (C, H, W), num_classes: synthetic only; train and test each hold
        num_samples images.
    """

    root: str | None = None
    batch_size: int = 128
    eval_batch_size: int | None = None
    num_workers: int = 2
    val_size: int | None = None
    seed: int = 0
    image_size: int | None = None
    in_chans: int | None = None
    classes: tuple[int, ...] | None = None
    labels_per_class: int | None = None
    train_limit: int | None = None
    coarse_labels: bool = False
    download: bool = False
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    num_samples: int = 1024
    input_size: tuple[int, int, int] = (3, 32, 32)
    num_classes: int = 10

    def __post_init__(self) -> None:
        # Accept what YAML/CLI layers naturally produce: lists for tuples, a dict for augment.
        if isinstance(self.classes, list):
            self.classes = tuple(self.classes)
        if isinstance(self.input_size, list):
            self.input_size = tuple(self.input_size)
        if isinstance(self.augment, dict):
            self.augment = _build(AugmentConfig, self.augment, "augment")
        if self.root is not None and not isinstance(self.root, str):
            self.root = str(self.root)  # a pathlib.Path
        self.validate()

    def validate(self) -> None:
        if self.root is not None:
            _check_type("root", self.root, str)
        _check_int("batch_size", self.batch_size, minimum=1)
        _check_int("eval_batch_size", self.eval_batch_size, minimum=1, optional=True)
        _check_int("num_workers", self.num_workers, minimum=0)
        _check_int("val_size", self.val_size, minimum=0, optional=True)
        _check_int("seed", self.seed, minimum=0)
        _check_int("image_size", self.image_size, minimum=1, optional=True)
        _check_int("in_chans", self.in_chans, minimum=1, optional=True)
        if self.classes is not None:
            _check_type("classes", self.classes, tuple)
            if not self.classes or not all(type(c) is int and c >= 0 for c in self.classes):
                raise DataError(f"classes={self.classes!r}: accepted is a non-empty tuple of class indices >= 0")
            if len(set(self.classes)) != len(self.classes):
                raise DataError(f"classes={self.classes!r}: each class may appear once")
        _check_int("labels_per_class", self.labels_per_class, minimum=1, optional=True)
        _check_int("train_limit", self.train_limit, minimum=1, optional=True)
        _check_type("coarse_labels", self.coarse_labels, bool)
        _check_type("download", self.download, bool)
        _check_type("augment", self.augment, AugmentConfig)
        self.augment.validate()
        _check_int("num_samples", self.num_samples, minimum=1)
        if not (isinstance(self.input_size, tuple) and len(self.input_size) == 3
                and all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in self.input_size)):
            raise DataError(f"input_size={self.input_size!r}: accepted is (C, H, W), three ints >= 1")
        _check_int("num_classes", self.num_classes, minimum=1)


# Fields that mean something for some datasets only: setting them elsewhere is an error, not a no-op.
DATASET_ONLY_FIELDS: dict[str, tuple[str, ...]] = {
    "coarse_labels": ("cifar100",),
    "download": ("cifar10", "cifar100"),
    "num_samples": ("synthetic",),
    "input_size": ("synthetic",),
    "num_classes": ("synthetic",),
}


def check_applicable(config: DataConfig, dataset: str) -> None:
    """Reject dataset-specific fields set away from their default on another dataset."""
    defaults = DataConfig()
    for name, owners in DATASET_ONLY_FIELDS.items():
        value = getattr(config, name)
        if dataset not in owners and value != getattr(defaults, name):
            raise DataError(f"{name}={value!r} applies only to {', '.join(owners)}, not {dataset}")


def with_overrides(config: DataConfig | None, overrides: dict[str, Any]) -> DataConfig:
    """`config` (or the defaults) with `overrides` applied; unknown field names are a DataError."""
    base = config if config is not None else DataConfig()
    if not isinstance(base, DataConfig):
        raise DataError(f"config={base!r}: accepted is a DataConfig or None")
    _check_names(DataConfig, overrides, "DataConfig")
    return dataclasses.replace(base, **overrides) if overrides else dataclasses.replace(base)


def _build(cls: type, values: dict[str, Any], what: str) -> Any:
    _check_names(cls, values, what)
    return cls(**values)


def _check_names(cls: type, values: dict[str, Any], what: str) -> None:
    accepted = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(accepted))
    if unknown:
        raise DataError(f"unknown {what} field {', '.join(unknown)}; accepted: {', '.join(accepted)}")


def _check_type(name: str, value: Any, types: type | tuple[type, ...]) -> None:
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        ok = False
    else:
        ok = isinstance(value, types)
    if not ok:
        names = types.__name__ if isinstance(types, type) else " or ".join(t.__name__ for t in types)
        raise DataError(f"{name}={value!r}: accepted is a {names}")


def _check_int(name: str, value: Any, minimum: int, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        none = " or None" if optional else ""
        raise DataError(f"{name}={value!r}: accepted is an int >= {minimum}{none}")
