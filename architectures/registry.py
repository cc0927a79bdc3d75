"""The registry: every architecture is a row of data (a builder plus its keyword arguments and the
facts the papers state about it). Families register their variants in a loop over a small table;
models from outside come in the same way, through `register` or the `register_model` decorator,
from a module the user names (`--import`) or one an installed distribution declares in the
``convbench.architectures`` entry-point group (imported on the first lookup, not before)."""

from __future__ import annotations

import difflib
import fnmatch
import inspect
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any, TypeVar

from torch import nn

from .cost import on_meta, profile

ENTRY_POINTS = "convbench.architectures"
ZOO = "architectures."  # the origin of every model of convbench's own zoo starts so
Builder = TypeVar("Builder", bound=Callable[..., nn.Module])


class ArchitectureError(ValueError):
    """An unknown architecture name, an override its builder does not take, or a model from outside
    that cannot be registered or built."""


@dataclass(frozen=True)
class ArchInfo:
    """What the registry knows of an architecture without building it."""

    name: str
    family: str
    depth: int | None  # weighted layers on the deepest path, the paper's convention; None: see depth()
    residual: bool
    input_size: tuple[int, int, int]  # (C, H, W) the reference uses
    num_classes: int
    reference: str
    task: str = "classification"  # or "segmentation" (U-Net: num_classes = output channels)
    builder: Callable[..., nn.Module] = field(repr=False, compare=False, default=None)  # type: ignore[assignment]
    kwargs: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)
    origin: str = ""  # "module:name": where the builder's code lives, and the name it is registered under

    @property
    def zoo(self) -> bool:
        """One of convbench's own architectures (their run ids hash no origin)."""
        return self.origin.startswith(ZOO)


_REGISTRY: dict[str, ArchInfo] = {}
_MEASURED: dict[str, int] = {}  # depth() of the architectures registered without one
_discovered = False


def register(
    name: str,
    builder: Callable[..., nn.Module],
    *,
    family: str,
    input_size: tuple[int, int, int],
    reference: str = "",
    depth: int | None = None,
    residual: bool = False,
    num_classes: int = 1000,
    task: str = "classification",
    **kwargs: Any,
) -> None:
    """Register ``builder(num_classes=, in_chans=, **kwargs)`` as ``name``. ``depth`` (weighted layers on
    the deepest path) is measured by :func:`architectures.profile` when not given; ``kwargs`` are the
    variant's defaults, which ``create``'s overrides replace."""
    origin = f"{getattr(builder, '__module__', '?')}:{name}"
    if name in _REGISTRY:
        raise ArchitectureError(
            f"architecture {name!r} registered twice: by {_REGISTRY[name].origin} and by {origin}; rename one"
        )
    accepted = inspect.signature(builder).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
    missing = [] if takes_any else [p for p in ("num_classes", "in_chans") if p not in accepted]
    if missing:
        raise ArchitectureError(
            f"{origin}: its builder must take num_classes and in_chans (convbench passes both); "
            f"it lacks {' and '.join(missing)}"
        )
    if len(input_size) != 3:
        raise ArchitectureError(f"{origin}: input_size={input_size!r}; accepted is (C, H, W)")
    _REGISTRY[name] = ArchInfo(
        name, family, depth, residual, tuple(input_size), num_classes, reference, task, builder, kwargs, origin
    )


def register_model(*, name: str | None = None, family: str | None = None, **facts: Any) -> Callable[[Builder], Builder]:
    """``@register_model(input_size=(3, 32, 32), num_classes=10, family="mynet")`` over a builder registers
    it under its function name (or ``name``), as timm's ``@register_model`` does; ``facts`` are
    :func:`register`'s keywords (``family`` defaults to the name). The builder is returned unchanged."""

    def decorate(builder: Builder) -> Builder:
        register(name or builder.__name__, builder, family=family or name or builder.__name__, **facts)
        return builder

    return decorate


def load_entry_point(ep: EntryPoint, error: type[Exception]) -> None:
    """Import what an entry point names (its import registers what it brings); a failure as one
    ``error`` line naming the entry point, its distribution and the cause."""
    dist = f"distribution {ep.dist.name}" if ep.dist is not None else "no distribution"
    where = f"entry point {ep.name} = {ep.value} ({ep.group}, {dist})"
    try:
        ep.load()
    except (ArchitectureError, error) as err:
        raise error(f"{where}: {err}") from None
    except ModuleNotFoundError as err:
        if err.name is not None and ep.module.startswith(err.name):
            raise error(f"{where} points nowhere: no module {err.name}") from None
        raise error(f"{where}: failed to import: {last_line(err)}") from None
    except AttributeError as err:
        if ep.attr is None:
            raise error(f"{where}: failed to import: {last_line(err)}") from None
        raise error(f"{where} points nowhere: {ep.module} has no {ep.attr}") from None
    except Exception as err:  # the user's module failed: its own error, as one line
        raise error(f"{where}: failed to import: {last_line(err)}") from None


def last_line(err: BaseException) -> str:
    """An exception as Python's last traceback line: ``NameError: name 'nn' is not defined``."""
    return traceback.format_exception_only(err)[-1].strip()


def discover() -> None:
    """Import the ``convbench.architectures`` entry points of the installed distributions, once."""
    global _discovered
    if _discovered:
        return
    _discovered = True  # first: a plugin that looks a name up while it is imported must not recurse
    for ep in entry_points(group=ENTRY_POINTS):
        load_entry_point(ep, ArchitectureError)


def names(pattern: str = "*") -> list[str]:
    """Registered names matching a glob such as ``resnet*``, in registration order."""
    discover()
    return [n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern)]


def info(name: str) -> ArchInfo:
    discover()
    try:
        spec = _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=3, cutoff=0.5)
        hint = (
            f"; closest: {', '.join(close)}"
            if close
            else f"; known families: {', '.join(sorted({i.family for i in _REGISTRY.values()}))}"
        )
        raise ArchitectureError(f"unknown architecture {name!r}{hint} (see `convbench list`)") from None
    return spec


def depth(name: str) -> int:
    """The registered depth, or, for a model registered without one, the depth :func:`profile` measures in a
    forward pass at its input size (once; never in ``info``, which must not compute: a sweep's runner looks
    names up, then forks)."""
    spec = info(name)
    if spec.depth is not None:
        return spec.depth
    if name not in _MEASURED:
        _MEASURED[name] = profile(create(name), spec.input_size).depth
    return _MEASURED[name]


def create(name: str, num_classes: int | None = None, in_chans: int | None = None, **overrides: Any) -> nn.Module:
    """Build ``name`` with the reference's defaults, replaced by any keyword given here."""
    spec = info(name)
    kwargs = {**spec.kwargs, "num_classes": num_classes or spec.num_classes, "in_chans": in_chans or spec.input_size[0]}
    accepted = inspect.signature(spec.builder).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
    unknown = [] if takes_any else sorted(set(overrides) - set(accepted))
    if unknown:
        allowed = ", ".join(sorted(set(accepted) - {"num_classes", "in_chans"}))
        raise ArchitectureError(f"{name} does not take override(s) {', '.join(unknown)}; it accepts: {allowed}")
    model = spec.builder(**{**kwargs, **overrides})
    if not isinstance(model, nn.Module):
        raise ArchitectureError(
            f"{name} ({spec.origin}): its builder returned {type(model).__name__}, not an nn.Module"
        )
    return model


def count_params(name: str, **kwargs: Any) -> int:
    """The parameters of ``create(name, **kwargs)``, counted on a build on the meta device, so that
    listing the whole zoo builds none of its gigabytes of weights."""
    with on_meta():
        model = create(name, **kwargs)
    return sum(p.numel() for p in model.parameters())
