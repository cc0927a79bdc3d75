"""One measured row and where it goes: the same fields in the JSON list, the CSV file (appended,
or merged from many with `--merge`), the rich tables printed, the wandb table and the scaling chart."""

from __future__ import annotations

import ast
import csv
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from harness.console import console, human
from harness.errors import UserError


@dataclass
class Result:
    """A model in one mode, or a data pipeline (mode "data": the Albumentations path in DataLoader workers,
    "data-device": the device pipeline on `device`; model fields are None).

    Each repeat yields one step time: for a model its median step (robust to the scheduler
    preempting a step on a shared machine), for a data pipeline its mean batch time (prefetching
    makes single batches bursty). step_time_ms is the median over repeats, step_time_std_ms and
    step_time_cv their spread (None with one repeat); samples_per_s = batch_size / step_time.
    step_time_mean_ms is total time over all timed steps (throughput semantics, as timm reports).
    peak_memory_bytes: GPU: the allocator's peak allocation; CPU: the worker's peak resident set
    (the kernel's high-water mark, so it includes a larger batch that ran out of memory first);
    for a data pipeline, the loading process's own (DataLoader workers are separate processes).
    FLOPs are model FLOPs, 2 x MACs per image forward, and 3 x forward for a train step
    (backward ~ 2 x forward); mfu = flops_per_s / peak_flops_per_s.
    """

    name: str
    mode: str
    batch_size: int
    requested_batch_size: int
    samples_per_s: float
    step_time_ms: float
    step_time_std_ms: float | None
    step_time_cv: float | None
    step_time_mean_ms: float
    peak_memory_bytes: int
    peak_memory_reserved_bytes: int | None
    params: int | None
    macs: int | None
    flops_per_step: int | None
    flops_per_s: float | None
    mfu: float | None
    peak_flops_per_s: float | None
    peak_flops_source: str | None
    input_size: list[int] | None
    device: str
    device_name: str
    torch_version: str
    precision: str | None
    channels_last: bool | None
    compile: bool | None
    threads: int
    load_average: float  # 1-minute, read when the timing ended
    warmup: int
    iters: int
    repeats: int
    workers: int | None = None
    samples_per_s_per_worker: float | None = None
    forward_ms: float | None = None
    backward_ms: float | None = None
    optimizer_ms: float | None = None
    timer_samples_per_s: float | None = None
    timer_agreement: float | None = None  # samples_per_s / timer_samples_per_s - 1
    # the DDP train step (`--devices`): samples_per_s is then the global rate, the sum over ranks of
    # batch_size / each rank's step time; the step time and memory are rank 0's
    world_size: int | None = None
    nodes: int | None = None
    hosts: list[str] | None = None  # each rank's, in rank order
    backend: str | None = None
    rank_samples_per_s_min: float | None = None
    rank_samples_per_s_max: float | None = None
    scaling_efficiency: float | None = None  # samples_per_s / (world_size x the 1-rank samples_per_s)
    no_comm_step_time_ms: float | None = None  # the same step with the all-reduce skipped, interleaved
    allreduce_share: float | None = None  # 1 - no_comm_step_time / step_time: the step's exposed all-reduce cost
    allreduce_bytes: int | None = None  # gradient bytes all-reduced per step (DDP's buckets)
    allreduce_ms: float | None = None  # per step, while any bucket's all-reduce was in flight
    allreduce_busbw: float | None = (
        None  # bytes/s, nccl-tests' busbw of DDP's buckets: 2(n-1)/n x bytes / allreduce time
    )
    raw_allreduce_ms: float | None = None  # one torch.distributed.all_reduce of allreduce_bytes, alone
    raw_allreduce_busbw: float | None = None
    hardware: dict[str, Any] | None = None  # harness.hardware.Hardware: hosts, CPUs, GPUs, libraries, threads

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


FIELDS: list[str] = [f.name for f in fields(Result)]
OPTIONAL = ("hardware",)  # fields files written by older versions lack
REQUIRED = [f for f in FIELDS if f not in OPTIONAL]


COLUMNS = ["name", "mode", "batch", "samples/s", "step ms", "peak mem", "params", "MACs", "GFLOP/s", "MFU"]
DETAIL_COLUMNS = ["fwd ms", "bwd ms", "opt ms"]
VERIFY_COLUMNS = ["Timer samples/s", "agreement"]


def _num(value: float | None, fmt: str, scale: float = 1.0, suffix: str = "") -> str:
    return "-" if value is None else format(value * scale, fmt) + suffix


def row(r: Result, detail: bool, verify: bool) -> list[str]:
    batch = (
        str(r.batch_size)
        if r.batch_size == r.requested_batch_size
        else f"{r.batch_size} (OOM at {r.requested_batch_size})"
    )
    mode = {
        "data": f"data, {r.workers} worker{'' if r.workers == 1 else 's'}",
        "data-device": f"data on {r.device}",
    }.get(r.mode, r.mode)
    spread = "" if r.step_time_std_ms is None else f" ± {r.step_time_std_ms:.2f}"
    cells = [
        r.name,
        mode,
        batch,
        f"{r.samples_per_s:,.1f}",
        f"{r.step_time_ms:.2f}{spread}",
        human(r.peak_memory_bytes, "B"),
        "-" if r.params is None else human(r.params),
        "-" if r.macs is None else human(r.macs),
        _num(r.flops_per_s, ".1f", 1e-9),
        _num(r.mfu, ".1f", 100, "%"),
    ]
    if detail:
        cells += [_num(r.forward_ms, ".2f"), _num(r.backward_ms, ".2f"), _num(r.optimizer_ms, ".2f")]
    if verify:
        cells += [_num(r.timer_samples_per_s, ",.1f"), _num(r.timer_agreement, "+.2f", 100, "%")]
    return cells


def print_results(results: Sequence[Result], detail: bool, verify: bool) -> None:
    columns = COLUMNS + (DETAIL_COLUMNS if detail else []) + (VERIFY_COLUMNS if verify else [])
    _print_table(columns, [row(r, detail, verify) for r in results])
    models = [r for r in results if not r.mode.startswith("data")]
    if models and models[0].peak_flops_per_s is not None:
        r = models[0]
        print(
            f"{r.device} ({r.device_name}), {r.threads} threads, torch {r.torch_version}, precision {r.precision}"
            f"{', channels_last' if r.channels_last else ''}{', compiled' if r.compile else ''}; "
            f"step ms = median over {r.repeats} repeats of each one's median of {r.iters} steps, ± their std; "
            f"MFU vs {r.peak_flops_per_s / 1e9:.1f} GFLOP/s ({r.peak_flops_source}); "
            "FLOPs = 2 x MACs per image, train step = 3 x forward"
        )
    busiest, cores = max(r.load_average for r in results), len(os.sched_getaffinity(0))
    if busiest > cores:
        print(
            f"warning: the machine was busy (1-minute load average up to {busiest:.1f} on {cores} cores): "
            "expect noisy figures; on a shared machine --threads 1 suffers least from neighbours"
        )


SCALING_COLUMNS = [
    "name",
    "ranks",
    "nodes",
    "batch/rank",
    "samples/s",
    "rank min-max",
    "efficiency",
    "step ms",
    "no-comm ms",
    "all-reduce share",
    "all-reduce ms",
    "busbw GB/s",
    "raw all-reduce ms",
    "raw busbw GB/s",
]


def scaling_row(r: Result) -> list[str]:
    spread = "" if r.step_time_std_ms is None else f" ± {r.step_time_std_ms:.2f}"
    return [
        r.name,
        str(r.world_size),
        str(r.nodes),
        str(r.batch_size),
        f"{r.samples_per_s:,.1f}",
        f"{r.rank_samples_per_s_min:,.1f}-{r.rank_samples_per_s_max:,.1f}",
        _num(r.scaling_efficiency, ".1f", 100, "%"),
        f"{r.step_time_ms:.2f}{spread}",
        _num(r.no_comm_step_time_ms, ".2f"),
        _num(r.allreduce_share, ".1f", 100, "%"),
        _num(r.allreduce_ms, ".2f"),
        _num(r.allreduce_busbw, ".2f", 1e-9),
        _num(r.raw_allreduce_ms, ".3f"),
        _num(r.raw_allreduce_busbw, ".2f", 1e-9),
    ]


def print_scaling(results: Sequence[Result]) -> None:
    """The DDP rows (`--devices`): one line per model and world size, and a footnote saying what each figure is."""
    _print_table(SCALING_COLUMNS, [scaling_row(r) for r in results])
    r = results[0]
    print(
        f"{r.device} ({r.device_name}), {r.backend}, {r.threads} thread{'' if r.threads == 1 else 's'} a rank, "
        f"torch {r.torch_version}, "
        f"precision {r.precision}{', channels_last' if r.channels_last else ''}{', compiled' if r.compile else ''}; "
        "samples/s = the sum over ranks of batch/rank / each rank's median step; efficiency = samples/s / (ranks x the "
        "1-rank samples/s), batch per rank fixed; all-reduce share = 1 - no-comm step / step (the same step with DDP's "
        "all-reduce skipped, interleaved): its exposed cost; all-reduce ms = per step while a gradient bucket was in "
        "flight; busbw = 2(n-1)/n x gradient bytes / time (nccl-tests); raw = one all_reduce of the same bytes alone"
    )


def print_any(results: Sequence[Result], detail: bool = False, verify: bool = False) -> None:
    """Single-process rows in the bench's table, DDP rows in the scaling table."""
    single = [r for r in results if r.world_size is None]
    ddp = [r for r in results if r.world_size is not None]
    if single:
        print_results(single, detail, verify)
    if ddp:
        print_scaling(ddp)


def _print_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    table = Table(box=box.SIMPLE_HEAD if sys.stdout.isatty() else None, header_style="bold", pad_edge=False)
    for c in columns:
        table.add_column(c, justify="left" if c in ("name", "mode") else "right", no_wrap=True)
    for cells in rows:
        table.add_row(*cells)
    # a log or pipe gets the table's natural width, not rich's 80-column default
    (console if console.is_terminal else Console(highlight=False, width=250)).print(table)


def check_csv(path: Path) -> None:
    """Fail before measuring, not after: the folder must exist and an existing file must have our header."""
    if not path.parent.is_dir():
        raise UserError(f"--csv {path}: folder {path.parent} does not exist")
    if path.is_file() and path.stat().st_size:
        with path.open(newline="") as f:
            header = next(csv.reader(f), [])
        if header != FIELDS:
            raise UserError(
                f"--csv {path}: the file's header is not convbench bench's ({len(header)} vs {len(FIELDS)} "
                "columns); use another file"
            )


def append_csv(path: Path, results: Sequence[Result], mode: str = "a") -> None:
    """One row per result; the header only when the file is new or empty (mode "w": always new)."""
    new = mode == "w" or not path.is_file() or path.stat().st_size == 0
    with path.open(mode, newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        if new:
            writer.writeheader()
        writer.writerows(r.to_dict() for r in results)


def _parse(kind: str, text: str) -> Any:
    """A CSV cell back to its field's type (the dataclass annotation, a string here)."""
    if text == "" and "None" in kind:
        return None
    if kind.startswith(("list", "dict")):
        return ast.literal_eval(text)
    if kind.startswith("bool"):
        return text == "True"
    if kind.startswith("int"):
        return int(text)
    if kind.startswith("float"):
        return float(text)
    return text


def read_results(paths: Sequence[Path]) -> list[Result]:
    """Rows of bench CSV files (`--csv`) and JSON lists (`--json`), in file order, as Results:
    how `--merge` gathers one table from a sweep's per-job files, as timm keeps its results CSVs."""
    kinds = {f.name: str(f.type) for f in fields(Result)}
    rows: list[Result] = []
    for path in paths:
        if not path.is_file():
            raise UserError(f"--merge {path}: no such file")
        try:
            if path.suffix == ".json":
                data = json.loads(path.read_text())
                rows += [Result(**{k: v for k, v in item.items() if k in kinds}) for item in data]
                continue
            with path.open(newline="") as f:
                reader = csv.DictReader(f)
                if not set(REQUIRED) <= set(reader.fieldnames or ()) <= set(FIELDS):
                    raise UserError(
                        f"--merge {path}: the header is not convbench bench's; merge files written by "
                        "`convbench bench --csv` or `--json`"
                    )
                rows += [Result(**{k: _parse(kinds[k], v) for k, v in line.items()}) for line in reader]
        except (ValueError, TypeError, SyntaxError, KeyError) as err:
            raise UserError(
                f"--merge {path}: not a convbench bench result file ({type(err).__name__}: {err})"
            ) from None
    return rows


def scaling_chart(results: Sequence[Result], path: Path) -> Path:
    """Global samples/s against ranks (ideal linear scaling dashed) and the scaling efficiency, one
    line per model and setting, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines: dict[str, list[Result]] = {}
    for r in sorted((r for r in results if r.world_size is not None), key=lambda r: r.world_size or 0):
        label = r.name + (f" {r.precision}" if r.precision != "32" else "") + (" NHWC" if r.channels_last else "")
        machine = r.hardware["label"] if r.hardware else r.device_name  # rows merged from older files lack it
        lines.setdefault(f"{label} ({machine}, {r.backend})", []).append(r)
    if not lines:
        raise UserError(f"--chart {path}: no DDP rows to chart (measure with --devices N)")
    fig, (ax_rate, ax_eff) = plt.subplots(1, 2, figsize=(11, 4.2))
    for label, rows in lines.items():
        ranks = [r.world_size for r in rows]
        (line,) = ax_rate.plot(ranks, [r.samples_per_s for r in rows], marker="o", label=label)
        one = next((r.samples_per_s for r in rows if r.world_size == 1), None)
        if one is not None:
            ax_rate.plot(ranks, [one * n for n in ranks], linestyle="--", color=line.get_color(), alpha=0.5)
        ax_eff.plot(ranks, [100 * (r.scaling_efficiency or 0) for r in rows], marker="o", color=line.get_color())
    ticks = sorted({r.world_size for rows in lines.values() for r in rows if r.world_size is not None})
    for ax in (ax_rate, ax_eff):
        ax.set_xscale("log", base=2)
        ax.set_xticks(ticks, [str(n) for n in ticks])
        ax.minorticks_off()
        ax.set_xlabel("ranks (world size)")
        ax.grid(alpha=0.3)
    ax_rate.set_ylabel("global train samples/s (dashed: linear)")
    ax_eff.set_ylabel("scaling efficiency (%)")
    ax_eff.set_ylim(0, max(110, 10 + max(100 * (r.scaling_efficiency or 0) for rows in lines.values() for r in rows)))
    ax_rate.legend(fontsize=8)
    fig.suptitle("DDP scaling at a fixed batch per rank (convbench bench --devices)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


CHART_COLUMNS = [
    "model",
    "name",
    "mode",
    "batch_size",
    "macs",
    "params",
    "samples_per_s",
    "step_time_ms",
    "peak_memory_mib",
    "mfu",
]


def chart_table(results: Sequence[Result]) -> list[list[Any]]:
    """The model rows (a data pipeline row has no MACs), one line each: 'resnet20 train' (or 'resnet20
    train x2' at 2 ranks) is the model label."""
    return [
        [
            f"{r.name} {r.mode}" + ("" if r.world_size is None else f" x{r.world_size}"),
            r.name,
            r.mode,
            r.batch_size,
            r.macs,
            r.params,
            r.samples_per_s,
            r.step_time_ms,
            r.peak_memory_bytes / 2**20,
            r.mfu,
        ]
        for r in results
        if r.macs is not None
    ]


def log_results(results: Sequence[Result], mode: str, results_dir: Path, config: dict[str, Any]) -> Path:
    """One W&B run (job_type "bench"): a table of all rows, native W&B charts over the model rows
    (wandb.plot: samples/s and MFU per model, samples/s vs MACs, peak memory vs samples/s) and, in its
    summary, each row's figures. Returns the run's local folder."""
    import wandb

    from harness.wandb_run import require_written

    results_dir.mkdir(parents=True, exist_ok=True)
    run = wandb.init(
        project="convbench",
        job_type="bench",
        dir=str(results_dir),
        mode=mode,
        config=config,
        settings=wandb.Settings(silent=True, console="off"),
    )
    data: dict[str, Any] = {
        "bench": wandb.Table(columns=FIELDS, data=[[_cell(v) for v in r.to_dict().values()] for r in results])
    }
    cells = chart_table(results)
    if cells:
        t = wandb.Table(columns=CHART_COLUMNS, data=cells)
        data.update(
            {
                "charts/samples_per_s": wandb.plot.bar(t, "model", "samples_per_s", title="samples/s per model"),
                "charts/samples_per_s_vs_macs": wandb.plot.scatter(
                    t, "macs", "samples_per_s", title="samples/s vs MACs per sample"
                ),
                "charts/memory_vs_samples_per_s": wandb.plot.scatter(
                    t, "samples_per_s", "peak_memory_mib", title="peak memory MiB vs samples/s"
                ),
            }
        )
        if any(c[-1] is not None for c in cells):
            data["charts/mfu"] = wandb.plot.bar(t, "model", "mfu", title="MFU per model")
    run.log(data)
    for r in results:
        key = f"{r.name}/{r.mode}" + ("" if r.world_size is None else f"/ranks{r.world_size}")
        run.summary[f"{key}/samples_per_s"] = r.samples_per_s
        for name in ("mfu", "scaling_efficiency", "allreduce_share", "allreduce_busbw", "raw_allreduce_busbw"):
            if getattr(r, name) is not None:
                run.summary[f"{key}/{name}"] = getattr(r, name)
    folder = Path(run.dir).parent
    run.finish()
    return require_written(folder, run.id)


def _cell(value: Any) -> Any:
    """wandb tables take scalars: input_size becomes '3x32x32', hosts 'node1,node2'."""
    if isinstance(value, list):
        return ("x" if all(isinstance(v, int) for v in value) else ",").join(map(str, value))
    return value
