"""Terminal output: rich tables on a TTY and plain text in logs, integers with thousands separators."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence

from rich import box
from rich.console import Console
from rich.table import Table

console = Console(highlight=False, soft_wrap=True)


def human(n: float, unit: str = "") -> str:
    """1234567 -> '1.23M': for MACs, FLOP/s and bytes in tables."""
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{suffix}{unit}"
    return f"{n:.0f}{unit}" if float(n).is_integer() else f"{n:.3g}{unit}"


def print_table(
    title: str | None, columns: Sequence[str], rows: Iterable[Sequence[object]], right: Sequence[str] = ()
) -> None:
    table = Table(
        title=title, box=box.SIMPLE_HEAD if sys.stdout.isatty() else None, header_style="bold", pad_edge=False
    )
    for c in columns:
        table.add_column(c, justify="right" if c in right else "left")
    for r in rows:
        table.add_row(*(str(v) for v in r))
    console.print(table)
