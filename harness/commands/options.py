"""Argument parsing that more than one verb shares."""

from __future__ import annotations

from harness.errors import UserError


def parse_input_size(values: list[str] | None, default: tuple[int, int, int]) -> tuple[int, int, int]:
    if values is None:
        return default
    try:
        size = tuple(int(v) for v in values)
    except ValueError:
        size = ()
    if len(size) != 3 or min(size) < 1:
        raise UserError(f"--input-size takes three positive integers C H W, got {' '.join(values)!r}")
    return size  # type: ignore[return-value]
