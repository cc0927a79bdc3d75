"""What a data module is asked for: the dataclasses' fields, types and defaults are the schema, and
pydantic checks values against them (strict, from JSON: what YAML, the CLI and Python callers can
write). Importing this module is cheap: pydantic loads on the first check, so `convbench list` does
not pay for it.

`None` fields mean "the dataset's default"; the module fills them in (`ConvDataModule.config`).
Field metadata says two more things: ``identity: False`` for fields that do not change what is
computed (where the files are, how they are read), and ``datasets`` for fields that apply to some
datasets only (setting them elsewhere is an error, not a no-op). A field's docstring (the string on
the line after it) is its `data.*` key's entry in docs/config.md.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from annotated_types import Ge, Le

from .errors import DataError

# pydantic's ConfigDict is a TypedDict: a plain dict says the same without importing pydantic
STRICT = {"strict": True, "extra": "forbid"}
NOT_IDENTITY = {"identity": False}
Count = Annotated[int, Ge(1)]


@dataclass
class AugmentConfig:
    """Train-time augmentation; every stage can be switched off. Evaluation never augments."""

    __pydantic_config__ = STRICT

    crop: bool | None = None
    """Pad by `crop_padding` and randomly crop back (He et al.); imagenet, imagefolder, segfolder:
    RandomResizedCrop(image_size). null: the dataset's default, on but off for fashion-mnist, whose garments
    are centred and size-normalised (its published baselines train without crops)."""
    crop_padding: Annotated[int, Ge(0)] = 4
    """Zero padding on each side before the random crop of small images; imagenet and imagefolder ignore it."""
    flip: bool | None = None
    """Random horizontal flip; null: the dataset's default, on where labels are flip-invariant
    (cifar*, imagenet, imagefolder, segfolder, shapes), off for fashion-mnist and synthetic."""
    noise_std: Annotated[float, Ge(0), Le(1)] = 0.0
    """Std of Gaussian noise added to the [0, 1]-scaled image (0.1 = 25.5 grey levels), clipped to
    [0, 1], before normalisation."""
    normalize: bool = True
    """Subtract the dataset's mean and divide by its std; false: images only scaled to [0, 1]."""


@dataclass
class DataConfig:
    """Which images, how many, at what size, and how they are batched."""

    __pydantic_config__ = STRICT

    root: str | None = field(default=None, metadata=NOT_IDENTITY)
    """The dataset's folder; null: its default (fashion-mnist /usr/share/datasets/fashion-mnist,
    cifar10 and cifar100 data, imagenet data/imagenet; imagefolder has none: give it; relative paths from the
    working directory)."""
    batch_size: Count = 128
    """Training batch size on each rank (a recipe proposes its paper's)."""
    eval_batch_size: Count | None = None
    """Validation and test batch size; null: `batch_size`."""
    num_workers: Annotated[int, Ge(0)] = field(default=2, metadata=NOT_IDENTITY)
    """DataLoader worker processes (0: load in the training process)."""
    val_size: Annotated[int, Ge(0)] | None = None
    """Images carved at random (seeded) from the official train set for validation; 0: none; null: the
    dataset's default, 5000 for cifar* and fashion-mnist (He et al.'s 45k/5k), 0 for synthetic, imagenet and
    an imagefolder with train/ and val/ (whose validation and test loaders then both read val/). An
    imagefolder of one tree of class folders: a tenth of its images, at least 1; its test split is this carve."""
    seed: Annotated[int, Ge(0)] = 0
    """Fixes the validation split, the label and size subsampling, the shuffling and the augmentation;
    a training run passes its `seed` unless this is given."""
    image_size: Count | None = None
    """Side of the square image the model receives; null: native (28 fashion-mnist, 32 cifar, 224
    imagenet and imagefolder). Growing a small image by at most 8 px zero-pads it centred (Fashion-MNIST at 32: 2 px
    each side, the LeNet convention); any other change is a bilinear resize. imagenet, imagefolder: the crop
    size, and the evaluation resize scales alike (256/224 x image_size)."""
    in_chans: Count | None = None
    """Channels the model receives; null: native. 3 on grey data replicates the channel; imagefolder: 3 (RGB,
    its default) or 1 (files decoded grey)."""
    classes: tuple[Annotated[int, Ge(0)], ...] | None = None
    """Keep only these original classes, relabelled 0..k-1 in the given order."""
    labels_per_class: Count | None = None
    """Keep this many training images a class (seeded), after the validation split."""
    train_limit: Count | None = None
    """Keep at most this many training images (seeded), after `labels_per_class`."""
    coarse_labels: bool = field(default=False, metadata={"datasets": ("cifar100",)})
    """The 20 superclasses instead of the 100 classes."""
    download: bool = field(default=False, metadata={**NOT_IDENTITY, "datasets": ("cifar10", "cifar100")})
    """Fetch the official archive when the files are absent, check its MD5, unpack it atomically."""
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    """Train-time augmentation."""
    pipeline: Literal["albumentations", "device"] = field(
        default="albumentations", metadata={"identity": "non-default"}
    )
    """Where images are augmented. albumentations: per image in DataLoader workers (the reference path);
    device: as batch operations on the training device after the transfer (pad-crop, flip, noise,
    normalisation), with fashion-mnist, cifar* and synthetic held there whole as uint8 (no workers);
    imagenet and imagefolder still decode and RandomResizedCrop in the workers (README: choosing the path)."""
    num_samples: Count = field(default=1024, metadata={"datasets": ("synthetic", "shapes")})
    """Images in the train set and in the test set each."""
    input_size: tuple[Count, Count, Count] = field(default=(3, 32, 32), metadata={"datasets": ("synthetic",)})
    """The images' channels, height and width (`in_chans` and `image_size` override them)."""
    num_classes: Count | None = field(default=None, metadata={"datasets": ("synthetic", "segfolder")})
    """synthetic: classes of the uniform random labels (noise images: nothing to learn), null: 10; segfolder:
    the classes of the masks, whose values must be 0..num_classes-1, null: 2 (background and foreground)."""

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
