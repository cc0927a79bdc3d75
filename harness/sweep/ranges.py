"""Sets of run indices written as Slurm writes array indices: ``0-599``, ``0-9,20-29``, ``7``.

A sweep of 10,000 runs is one short string in jobs.json, in ``--array=`` and in every message,
never a list of every index.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator


def spans(indices: Iterable[int]) -> Iterator[tuple[int, int]]:
    """The maximal runs of consecutive integers in ``indices`` as (first, last), ascending."""
    first = last = None
    for i in sorted(set(indices)):
        if last is not None and i == last + 1:
            last = i
            continue
        if first is not None:
            yield first, last
        first = last = i
    if first is not None:
        yield first, last


def span_text(first: int, last: int) -> str:
    return str(first) if first == last else f"{first}-{last}"


def compact(indices: Iterable[int]) -> str:
    """``[0, 1, 2, 5, 7, 8]`` -> ``"0-2,5,7-8"`` (empty: ``""``)."""
    return ",".join(span_text(a, b) for a, b in spans(indices))


def expand(text: str) -> list[int]:
    """``"0-2,5"`` -> ``[0, 1, 2, 5]``; also reads Slurm's ``[0-2,5%4]`` (brackets and a ``%N`` throttle)."""
    out: list[int] = []
    for part in text.strip().strip("[]").split("%")[0].split(","):
        first, sep, last = part.partition("-")
        if sep:
            out += range(int(first), int(last) + 1)
        elif part:
            out.append(int(part))
    return out


def count(text: str) -> int:
    """How many indices ``text`` holds, without expanding it."""
    total = 0
    for part in text.strip().strip("[]").split("%")[0].split(","):
        first, sep, last = part.partition("-")
        total += int(last) - int(first) + 1 if sep else int(bool(part))
    return total
