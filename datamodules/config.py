"""What a data module is asked for: the dataclasses' fields, types and defaults are the schema, and
pydantic checks values against them (strict, from JSON: what YAML, the CLI and Python callers can
write). Importing this module is cheap: pydantic loads on the first check, so `convbench list` does
not pay for it.

`None` fields mean "the dataset's default"; the module fills them in (`ConvDataModule.config`).
Field metadata says two more things: ``identity: False`` for fields that do not change what is
computed (where the files are, how they are read), and ``datasets`` for fields that apply to some
datasets only (setting them elsewhere is an error, not a no-op).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from annotated_types import Ge, Le

from .errors import DataError

# pydantic's ConfigDict is a TypedDict: a plain dict says the same without importing pydantic
STRICT = {"strict": True, "extra": "forbid"}
NOT_IDENTITY = {"identity": False}
Count = Annotated[int, Ge(1)]


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

    __pydantic_config__ = STRICT

    crop: bool | None = None
    crop_padding: Annotated[int, Ge(0)] = 4
    flip: bool | None = None
    noise_std: Annotated[float, Ge(0), Le(1)] = 0.0
    normalize: bool = True


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

    __pydantic_config__ = STRICT

    root: str | None = field(default=None, metadata=NOT_IDENTITY)
    batch_size: Count = 128
    eval_batch_size: Count | None = None
    num_workers: Annotated[int, Ge(0)] = field(default=2, metadata=NOT_IDENTITY)
    val_size: Annotated[int, Ge(0)] | None = None
    seed: Annotated[int, Ge(0)] = 0
    image_size: Count | None = None
    in_chans: Count | None = None
    classes: tuple[Annotated[int, Ge(0)], ...] | None = None
    labels_per_class: Count | None = None
    train_limit: Count | None = None
    coarse_labels: bool = field(default=False, metadata={"datasets": ("cifar100",)})
    download: bool = field(default=False, metadata={**NOT_IDENTITY, "datasets": ("cifar10", "cifar100")})
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    num_samples: Count = field(default=1024, metadata={"datasets": ("synthetic",)})
    input_size: tuple[Count, Count, Count] = field(default=(3, 32, 32), metadata={"datasets": ("synthetic",)})
    num_classes: Count = field(default=10, metadata={"datasets": ("synthetic",)})

    def __post_init__(self) -> None:
        # Python callers may pass what YAML produces (lists for tuples, a dict for augment) or a Path
        if isinstance(self.classes, list):
            self.classes = tuple(self.classes)
        if isinstance(self.input_size, list):
            self.input_size = tuple(self.input_size)
        if isinstance(self.augment, dict):
            self.augment = parse(AugmentConfig, self.augment)
        if isinstance(self.root, Path):
            self.root = str(self.root)
        if self.classes is not None:  # what the type cannot say
            if not self.classes:
                raise DataError("classes=(): accepted is a non-empty tuple of class indices >= 0")
            if len(set(self.classes)) != len(self.classes):
                raise DataError(f"classes={self.classes!r}: each class may appear once")

    def validate(self) -> None:
        """Check every field's type and bounds (a DataConfig built by hand skips them)."""
        parse(DataConfig, dataclasses.asdict(self))


def check_applicable(config: DataConfig, dataset: str) -> None:
    """Reject dataset-specific fields set away from their default on another dataset."""
    defaults = DataConfig()
    for f in dataclasses.fields(DataConfig):
        owners = f.metadata.get("datasets")
        value = getattr(config, f.name)
        if owners and dataset not in owners and value != getattr(defaults, f.name):
            raise DataError(f"{f.name}={value!r} applies only to {', '.join(owners)}, not {dataset}")


def with_overrides(config: DataConfig | None, overrides: dict[str, Any]) -> DataConfig:
    """`config` (or the defaults) with `overrides` applied, every field checked."""
    base = config if config is not None else DataConfig()
    if not isinstance(base, DataConfig):
        raise DataError(f"config={base!r}: accepted is a DataConfig or None")
    values = {
        **dataclasses.asdict(base),
        **{k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v for k, v in overrides.items()},
    }
    return parse(DataConfig, values)


@functools.cache
def _adapter(cls: type) -> Any:
    from pydantic import TypeAdapter

    return TypeAdapter(cls)


def parse(cls: type, values: dict[str, Any]) -> Any:
    """A DataConfig or AugmentConfig from a mapping, or a DataError naming the first bad field."""
    from pydantic import ValidationError

    try:
        return _adapter(cls).validate_json(json.dumps(values, default=str))
    except ValidationError as err:
        raise DataError(_message(cls, err.errors()[0])) from None


def _message(cls: type, err: dict[str, Any]) -> str:
    at = [str(p) for p in err["loc"] if not isinstance(p, int)]
    key, value, kind = ".".join(at), err.get("input"), err["type"]
    if kind == "unexpected_keyword_argument":
        owner = AugmentConfig if cls is AugmentConfig or at[0] == "augment" and len(at) > 1 else DataConfig
        what = "augment" if owner is AugmentConfig else "DataConfig"
        return f"unknown {what} field {at[-1]}; accepted: {', '.join(f.name for f in dataclasses.fields(owner))}"
    if kind == "value_error":
        return str(err["ctx"]["error"])
    bounds = {"greater_than_equal": ">=", "less_than_equal": "<="}
    if kind in bounds:
        return f"{key}={value!r}: must be {bounds[kind]} {next(iter(err['ctx'].values()))}"
    expected = {
        "int_type": "int",
        "float_type": "float",
        "string_type": "str",
        "bool_type": "bool",
        "tuple_type": "a list",
    }
    if kind in expected:
        return f"{key}={value!r}: expected {expected[kind]}"
    if kind in ("missing", "too_short", "too_long"):  # a tuple of fixed length
        return f"{key}={value!r}: wrong number of items (see DataConfig.{at[0]})"
    return f"{key}={value!r}: {err['msg'].lower()}"
