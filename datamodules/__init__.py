"""Data modules for convbench: `create(name, config, **overrides)` -> a LightningDataModule.

Importing this package is cheap (stdlib only); torch, Lightning and Albumentations load on the first
`create()` so that `convbench list` does not pay for them. Datasets from outside are `ConvDataModule`
subclasses, registered with `@register_datamodule` by a module the user imports (`--import`), or
named by an installed distribution's ``convbench.datamodules`` entry point (``name = module:Class``),
which is imported only when that dataset is used.
"""

from __future__ import annotations

import importlib
import traceback
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from .config import AugmentConfig, DataConfig, with_overrides
from .errors import DataError

if TYPE_CHECKING:
    from .base import ConvDataModule

__all__ = [
    "AugmentConfig",
    "ConvDataModule",
    "DataConfig",
    "DataError",
    "create",
    "names",
    "origin",
    "register_datamodule",
    "root_is_data",
    "task",
]

ENTRY_POINTS = "convbench.datamodules"
BUILTIN = "datamodules."  # the origin of every dataset convbench reads itself starts so

# name -> (module, class), imported on demand; classes registered from outside are held as they are
_REGISTRY: dict[str, tuple[str, str] | type] = {
    "cifar10": (f"{BUILTIN}cifar", "CIFAR10DataModule"),
    "cifar100": (f"{BUILTIN}cifar", "CIFAR100DataModule"),
    "fashion-mnist": (f"{BUILTIN}fashion_mnist", "FashionMNISTDataModule"),
    "imagefolder": (f"{BUILTIN}imagefolder", "ImageFolderDataModule"),
    "imagenet": (f"{BUILTIN}imagenet", "ImageNetDataModule"),
    "segfolder": (f"{BUILTIN}segmentation", "SegFolderDataModule"),
    "shapes": (f"{BUILTIN}segmentation", "ShapesDataModule"),
    "synthetic": (f"{BUILTIN}synthetic", "SyntheticDataModule"),
}
# built-in datasets whose `root` is the data itself (their classes say `root_is_data`; named here so that a
# run id need not import Lightning to ask them)
_ROOT_IS_DATA = {"imagefolder", "segfolder"}
_ENTRY_POINT: dict[str, str] = {}  # name -> "entry point ... (distribution ...)", for errors
_discovered = False


def register_datamodule(cls: type[ConvDataModule]) -> type[ConvDataModule]:
    """Class decorator: register a `ConvDataModule` subclass under its `name`."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise DataError(f"{cls.__module__}:{cls.__qualname__}: a data module needs a `name` class attribute (a str)")
    _discover()
    if name in _REGISTRY and origin(name) != _origin_of(cls):  # an entry point naming this class is the same one
        raise DataError(f"dataset {name!r} registered twice: by {origin(name)} and by {_origin_of(cls)}; rename one")
    _REGISTRY[name] = cls
    return cls


def _discover() -> None:
    """The ``convbench.datamodules`` entry points' names, once; nothing is imported."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    for ep in entry_points(group=ENTRY_POINTS):
        where = f"entry point {ep.name} = {ep.value} ({ENTRY_POINTS}, distribution {ep.dist.name if ep.dist else '?'})"
        if ep.name in _REGISTRY:
            raise DataError(f"{where}: dataset {ep.name!r} is already {origin(ep.name)}; rename one")
        if not ep.attr:
            raise DataError(f"{where}: expected module:DataModuleClass")
        _REGISTRY[ep.name] = (ep.module, ep.attr)
        _ENTRY_POINT[ep.name] = where


def names() -> list[str]:
    """The dataset names `create` accepts, sorted."""
    _discover()
    return sorted(_REGISTRY)


def origin(name: str) -> str:
    """Where dataset `name` comes from, "module:Class" (built-in ones start with ``datamodules.``)."""
    _discover()
    entry = _REGISTRY[name]
    return f"{entry[0]}:{entry[1]}" if isinstance(entry, tuple) else _origin_of(entry)


def root_is_data(name: str) -> bool:
    """Whether dataset `name`'s `root` chooses the images, so that the run id must hash it."""
    entry = _REGISTRY[name]
    if isinstance(entry, tuple) and entry[0].startswith(BUILTIN):
        return name in _ROOT_IS_DATA
    return _load(name).root_is_data


def task(name: str) -> str:
    """What dataset `name`'s targets are: "classification" or "segmentation" (imports its module)."""
    return _load(name).task


def _origin_of(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _load(name: str) -> type[ConvDataModule]:
    from .base import ConvDataModule

    entry = _REGISTRY[name]
    if isinstance(entry, tuple):
        where = _ENTRY_POINT.get(name, f"dataset {name}")
        module, attr = entry
        try:
            entry = getattr(importlib.import_module(module), attr)
        except ModuleNotFoundError as err:
            if err.name is not None and module.startswith(err.name):
                raise DataError(f"{where} points nowhere: no module {err.name}") from None
            raise DataError(f"{where}: failed to import: {traceback.format_exception_only(err)[-1].strip()}") from None
        except AttributeError:
            raise DataError(f"{where} points nowhere: {module} has no {attr}") from None
        except DataError:
            raise
        except Exception as err:  # the user's module failed: its own error, as one line
            raise DataError(f"{where}: failed to import: {traceback.format_exception_only(err)[-1].strip()}") from None
    if not (isinstance(entry, type) and issubclass(entry, ConvDataModule)):
        raise DataError(f"dataset {name} ({origin(name)}) is not a datamodules.ConvDataModule subclass")
    return entry


def create(name: str, config: DataConfig | None = None, **overrides: Any) -> ConvDataModule:
    """The data module for `name`, configured by `config` (default DataConfig()) with `overrides`
    (DataConfig field names; `augment` may be a dict of AugmentConfig fields) applied on top."""
    if name not in names():
        raise DataError(f"unknown dataset {name!r}; accepted: {', '.join(names())}")
    config = with_overrides(config, overrides)
    return _load(name)(config)


def __getattr__(attr: str) -> Any:
    if attr == "ConvDataModule":
        from .base import ConvDataModule

        return ConvDataModule
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
