"""The user's own modules (`--import`, `imports:`): imported before any architecture or dataset is
looked up, so that the models and data modules they register are there, in this process and, through
the run's config or the bench job, in every rank and array task it starts."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable

from architectures import ArchitectureError
from architectures.registry import last_line
from datamodules import DataError
from harness.errors import UserError

_LOADED: list[str] = []


def load(modules: Iterable[str], source: str) -> None:
    """Import each of ``modules`` (dotted names), found as Python finds them plus in the working directory,
    as ``python -m`` would; a module that fails is one line naming ``source`` and its error's last line."""
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    for name in modules:
        try:
            importlib.import_module(name)
        except (ArchitectureError, DataError, UserError) as err:  # a registration it made was refused
            raise UserError(f"{source}: importing {name}: {err}") from None
        except Exception as err:
            raise UserError(f"{source}: cannot import {name}: {last_line(err)}") from None
        if name not in _LOADED:
            _LOADED.append(name)


def loaded() -> list[str]:
    """The modules :func:`load` imported in this process, in order: what a process it starts must import too."""
    return list(_LOADED)
