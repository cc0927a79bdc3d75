"""Results as a rich table (with a footnote saying what MFU is relative to) or appended to a CSV file."""
from __future__ import annotations

import csv
import os
import sys
from pathlib import Path
from typing import Sequence

from rich import box
from rich.console import Console
from rich.table import Table

from harness.console import console, human
from harness.errors import UserError

from .result import FIELDS, Result

COLUMNS = ["name", "mode", "batch", "samples/s", "step ms", "peak mem", "params", "MACs", "GFLOP/s", "MFU"]
DETAIL_COLUMNS = ["fwd ms", "bwd ms", "opt ms"]
VERIFY_COLUMNS = ["Timer samples/s", "agreement"]


def _num(value: float | None, fmt: str, scale: float = 1.0, suffix: str = "") -> str:
    return "-" if value is None else format(value * scale, fmt) + suffix


def row(r: Result, detail: bool, verify: bool) -> list[str]:
    batch = str(r.batch_size) if r.batch_size == r.requested_batch_size else f"{r.batch_size} (OOM at {r.requested_batch_size})"
    mode = r.mode if r.mode != "data" else f"data, {r.workers} worker{'' if r.workers == 1 else 's'}"
    spread = "" if r.step_time_std_ms is None else f" ± {r.step_time_std_ms:.2f}"
    cells = [r.name, mode, batch, f"{r.samples_per_s:,.1f}", f"{r.step_time_ms:.2f}{spread}", human(r.peak_memory_bytes, "B"),
             "-" if r.params is None else human(r.params), "-" if r.macs is None else human(r.macs),
             _num(r.flops_per_s, ".1f", 1e-9), _num(r.mfu, ".1f", 100, "%")]
    if detail:
        cells += [_num(r.forward_ms, ".2f"), _num(r.backward_ms, ".2f"), _num(r.optimizer_ms, ".2f")]
    if verify:
        cells += [_num(r.timer_samples_per_s, ",.1f"), _num(r.timer_agreement, "+.2f", 100, "%")]
    return cells


def print_results(results: Sequence[Result], detail: bool, verify: bool) -> None:
    columns = COLUMNS + (DETAIL_COLUMNS if detail else []) + (VERIFY_COLUMNS if verify else [])
    table = Table(box=box.SIMPLE_HEAD if sys.stdout.isatty() else None, header_style="bold", pad_edge=False)
    for c in columns:
        table.add_column(c, justify="left" if c in ("name", "mode") else "right", no_wrap=True)
    for r in results:
        table.add_row(*row(r, detail, verify))
    # a log or pipe gets the table's natural width, not rich's 80-column default
    (console if console.is_terminal else Console(highlight=False, width=250)).print(table)
    models = [r for r in results if r.mode != "data"]
    if models:
        r = models[0]
        print(f"{r.device} ({r.device_name}), {r.threads} threads, torch {r.torch_version}, precision {r.precision}"
              f"{', channels_last' if r.channels_last else ''}{', compiled' if r.compile else ''}; "
              f"step ms = median over {r.repeats} repeats of each one's median of {r.iters} steps, ± their std; "
              f"MFU vs {r.peak_flops_per_s / 1e9:.1f} GFLOP/s ({r.peak_flops_source}); "
              "FLOPs = 2 x MACs per image, train step = 3 x forward")
    busiest = max(r.load_average for r in results)
    if busiest > len(os.sched_getaffinity(0)):
        print(f"warning: the machine was busy (1-minute load average up to {busiest:.1f} on {len(os.sched_getaffinity(0))} cores): "
              "expect noisy figures; on a shared machine --threads 1 suffers least from neighbours")


def check_csv(path: Path) -> None:
    """Fail before measuring, not after: the folder must exist and an existing file must have our header."""
    if not path.parent.is_dir():
        raise UserError(f"--csv {path}: folder {path.parent} does not exist")
    if path.is_file() and path.stat().st_size:
        with path.open(newline="") as f:
            header = next(csv.reader(f), [])
        if header != FIELDS:
            raise UserError(f"--csv {path}: the file's header is not convbench bench's ({len(header)} vs {len(FIELDS)} "
                            "columns); use another file")


def append_csv(path: Path, results: Sequence[Result]) -> None:
    """One row per result; the header only when the file is new or empty."""
    new = not path.is_file() or path.stat().st_size == 0
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        if new:
            writer.writeheader()
        writer.writerows(r.to_dict() for r in results)
