"""Data modules for convbench: `create(name, config, **overrides)` -> a LightningDataModule.

Importing this package is cheap (stdlib only); torch, Lightning and Albumentations load on the first
`create()` so that `convbench list` does not pay for them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .config import AugmentConfig, DataConfig, with_overrides
from .errors import DataError

if TYPE_CHECKING:
    from .base import ConvDataModule

__all__ = ["AugmentConfig", "ConvDataModule", "DataConfig", "DataError", "create", "names"]

# name -> (module, class), imported on demand
_REGISTRY: dict[str, tuple[str, str]] = {
    "cifar10": (".cifar", "CIFAR10DataModule"),
    "cifar100": (".cifar", "CIFAR100DataModule"),
    "fashion-mnist": (".fashion_mnist", "FashionMNISTDataModule"),
    "imagefolder": (".imagefolder", "ImageFolderDataModule"),
    "imagenet": (".imagenet", "ImageNetDataModule"),
    "synthetic": (".synthetic", "SyntheticDataModule"),
}


def names() -> list[str]:
    """The dataset names `create` accepts, sorted."""
    return sorted(_REGISTRY)


def create(name: str, config: DataConfig | None = None, **overrides: Any) -> ConvDataModule:
    """The data module for `name`, configured by `config` (default DataConfig()) with `overrides`
    (DataConfig field names; `augment` may be a dict of AugmentConfig fields) applied on top."""
    if name not in _REGISTRY:
        raise DataError(f"unknown dataset {name!r}; accepted: {', '.join(names())}")
    config = with_overrides(config, overrides)
    module, cls = _REGISTRY[name]
    return getattr(importlib.import_module(module, __name__), cls)(config)


def __getattr__(attr: str) -> Any:
    if attr == "ConvDataModule":
        from .base import ConvDataModule

        return ConvDataModule
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
