"""The one exception type of the data layer."""

from __future__ import annotations


class DataError(ValueError):
    """A bad data config, a missing or malformed data file: one line naming the file, key or value
    at fault and what is accepted. The CLI prints it without a traceback."""
