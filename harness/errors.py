"""User-facing errors: the CLI prints them as one line and exits with their code, no traceback."""

from __future__ import annotations

import sys


class UserError(Exception):
    """A mistake in what the user asked for (a bad flag, config key, file). Exit code 2."""

    exit_code = 2


def user_errors() -> tuple[type[Exception], ...]:
    """The error types that mean "the user asked for something wrong". DataError only counts once
    datamodules is imported, so code that needs no data does not pay for its import."""
    from architectures import ArchitectureError

    data = sys.modules.get("datamodules")
    return (UserError, ArchitectureError) + ((data.DataError,) if data is not None else ())
