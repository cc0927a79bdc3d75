"""The registry: every architecture is a row of data (a builder plus its keyword arguments and the
facts the papers state about it). Families register their variants in a loop over a small table."""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn


class ArchitectureError(ValueError):
    """An unknown architecture name or an override its builder does not take."""


@dataclass(frozen=True)
class ArchInfo:
    """What the registry knows of an architecture without building it."""

    name: str
    family: str
    depth: int  # weighted layers on the deepest path, the paper's convention
    residual: bool
    input_size: tuple[int, int, int]  # (C, H, W) the reference uses
    num_classes: int
    reference: str
    task: str = "classification"  # or "segmentation" (U-Net: num_classes = output channels)
    builder: Callable[..., nn.Module] = field(repr=False, compare=False, default=None)  # type: ignore[assignment]
    kwargs: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)


_REGISTRY: dict[str, ArchInfo] = {}


def register(
    name: str,
    builder: Callable[..., nn.Module],
    *,
    family: str,
    depth: int,
    input_size: tuple[int, int, int],
    reference: str,
    residual: bool = False,
    num_classes: int = 1000,
    task: str = "classification",
    **kwargs: Any,
) -> None:
    if name in _REGISTRY:
        raise ValueError(f"architecture {name!r} registered twice")
    _REGISTRY[name] = ArchInfo(name, family, depth, residual, input_size, num_classes, reference, task, builder, kwargs)


def names(pattern: str = "*") -> list[str]:
    """Registered names matching a glob such as ``resnet*``, in registration order."""
    return [n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern)]


def info(name: str) -> ArchInfo:
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=3, cutoff=0.5)
        hint = (
            f"; closest: {', '.join(close)}"
            if close
            else f"; known families: {', '.join(sorted({i.family for i in _REGISTRY.values()}))}"
        )
        raise ArchitectureError(f"unknown architecture {name!r}{hint} (see `convbench list`)") from None


def create(name: str, num_classes: int | None = None, in_chans: int | None = None, **overrides: Any) -> nn.Module:
    """Build ``name`` with the reference's defaults, replaced by any keyword given here."""
    spec = info(name)
    kwargs = {**spec.kwargs, "num_classes": num_classes or spec.num_classes, "in_chans": in_chans or spec.input_size[0]}
    accepted = inspect.signature(spec.builder).parameters
    unknown = sorted(set(overrides) - set(accepted))
    if unknown:
        allowed = ", ".join(sorted(set(accepted) - {"num_classes", "in_chans"}))
        raise ArchitectureError(f"{name} does not take override(s) {', '.join(unknown)}; it accepts: {allowed}")
    return spec.builder(**{**kwargs, **overrides})
