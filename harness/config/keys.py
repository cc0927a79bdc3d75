"""Dotted config keys (``optim.lr``, ``data.augment.flip``) and the nested mappings they stand for:
the one translation between the two, used by flags, ``--set``, sweep files and the report."""

from __future__ import annotations

from typing import Any


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"optim.lr": 0.1, "optim.gamma": 0.5}`` -> ``{"optim": {"lr": 0.1, "gamma": 0.5}}``."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def flatten(nested: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The inverse of :func:`nest`; an empty mapping stays a leaf (``model: {}``), so nothing is lost."""
    out: dict[str, Any] = {}
    for k, v in nested.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out
