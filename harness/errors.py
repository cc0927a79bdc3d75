"""User-facing errors: the CLI prints them as one line and exits with their code, no traceback."""
from __future__ import annotations


class UserError(Exception):
    """A mistake in what the user asked for (a bad flag, config key, file). Exit code 2."""

    exit_code = 2
