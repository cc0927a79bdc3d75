"""The one validator of every config mapping (train flags, ``--config`` files, ``--set``, sweep files):
the dataclasses' own type hints are the schema, pydantic checks a mapping against them, and this
module turns its first complaint into one line naming the dotted key, the value and what is accepted.

pydantic validates in strict mode from JSON text, which is exactly what YAML and the CLI can express:
mappings for sections, lists for tuples, ints for floats, and never ``"5"`` for an int or ``true``
for a number."""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from typing import Any

from harness.errors import UserError

SCALARS = {
    "int_type": "int",
    "float_type": "float",
    "string_type": "str",
    "bool_type": "bool",
    "list_type": "a list",
    "tuple_type": "a list",
    "dict_type": "a mapping",
}
# every config dataclass says `__pydantic_config__ = STRICT` (a plain dict: pydantic loads only to check)
STRICT = {"strict": True, "extra": "forbid"}
BOUNDS = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}


class ConfigError(UserError):
    """A key or value the schema rejects; ``at`` is the dotted key's path, so a sweep can name its line."""

    def __init__(self, at: tuple[str, ...], problem: str, source: str = "") -> None:
        self.at, self.problem = at, problem
        super().__init__(f"{problem} ({source})" if source else problem)


@functools.cache
def _adapter(cls: type) -> Any:
    from pydantic import TypeAdapter

    return TypeAdapter(cls)


@functools.cache
def fields_of(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


def _unwrap(hint: Any) -> Any:
    """``X | None`` -> X and ``Annotated[X, ...]`` -> X: the type a key's value is checked against."""
    while True:
        origin = typing.get_origin(hint)
        if origin is typing.Annotated:
            hint = typing.get_args(hint)[0]
        elif origin in (typing.Union, types.UnionType):
            rest = [a for a in typing.get_args(hint) if a is not type(None)]
            if len(rest) != 1:
                return hint
            hint = rest[0]
        else:
            return hint


@functools.cache
def hints(cls: type) -> dict[str, Any]:
    return {k: _unwrap(v) for k, v in typing.get_type_hints(cls).items()}


def section(root: type, at: tuple[str, ...]) -> type | None:
    """The dataclass that holds the key at ``at`` (``("optim", "lr")`` -> OptimConfig); None when a
    mapping of free keys (``model``) or no field at all holds it."""
    node: Any = root
    for part in at[:-1]:
        node = hints(node).get(part) if dataclasses.is_dataclass(node) else None
        if not (isinstance(node, type) and dataclasses.is_dataclass(node)):
            return None
    return node


def problem(cls: type, at: tuple[str, ...], err: dict[str, Any], prefix: tuple[str, ...]) -> str:
    key, parent = ".".join(prefix + at), ".".join(prefix + at[:-1])
    kind, value = err["type"], err.get("input")
    owner = section(cls, at) if at else cls
    if kind in ("unexpected_keyword_argument", "extra_forbidden"):
        accepted = ", ".join(fields_of(owner)) if owner is not None else "?"
        return f"unknown config key {key}; accepted under {parent or 'the top level'}: {accepted}"
    if kind == "value_error":  # a check in a dataclass's __post_init__: its message names the key
        return str(err["ctx"]["error"])
    if kind == "literal_error":
        return f"{key}={value!r}: accepted {', '.join(str(c) for c in typing.get_args(hints(owner)[at[-1]]))}"
    if kind in BOUNDS:
        return f"{key}={value!r}: must be {BOUNDS[kind]} {next(iter(err['ctx'].values()))}"
    if kind in ("dataclass_type", "dataclass_exact_type"):
        sub = hints(owner).get(at[-1]) if owner is not None and at else cls
        names = ", ".join(fields_of(sub)) if dataclasses.is_dataclass(sub) else "keys"
        return f"{key or 'the config'}={value!r}: expected a mapping of {names}"
    if kind == "missing":
        return f"{key}: missing"
    return f"{key}={value!r}: expected {SCALARS.get(kind, err['msg'])}"


def parse(cls: type, values: dict[str, Any], source: str = "", prefix: tuple[str, ...] = ()) -> Any:
    """``values`` (a nested mapping) as a ``cls`` instance, or a ConfigError on its first fault.
    ``prefix`` is where ``cls`` sits in the whole config (``("data",)``), for the key's name."""
    from pydantic import ValidationError

    try:
        return _adapter(cls).validate_json(json.dumps(values, default=str))
    except ValidationError as err:
        first = err.errors()[0]
        at = tuple(str(p) for p in first["loc"] if not isinstance(p, int))
        raise ConfigError(prefix + at, problem(cls, at, first, prefix), source) from None
