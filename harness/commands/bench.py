"""`convbench bench NAME... [--mode infer|train|both] [--data DATASET] [--devices N]`: samples/s, step
time, peak memory and MFU of architectures on synthetic input, images/s of a data pipeline, and DDP
scaling across ranks. This module parses the flags; harness.bench.run does the work (harness.bench
says how each figure is measured)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import datamodules
from harness.bench.jobs import DISTRIBUTED_TIMING, MODES, PRECISIONS, Timing
from harness.bench.run import BenchRequest, bench
from harness.commands.options import add_input_size, nonnegative_int, positive_int

ONE, DDP = Timing(), DISTRIBUTED_TIMING
COST = f"""\
what a call costs: each measurement is a fresh process (one a rank), a few seconds to start; then
  one process: per NAME and mode, --warmup + --repeats x S steps, where S = --iters, or more
    steps when --iters do not fill --min-block seconds;
    defaults: {ONE.warmup} + {ONE.repeats} x S, S = max({ONE.iters} steps, {ONE.min_block_s:g} s of steps);
    then one peak FLOP/s measurement for the whole table (two kernels, on a CPU; none with --peak-flops).
  --devices N: per NAME and world size (1, 2, 4, ... N x M), --warmup + 1 + 2 x --repeats x S
    steps: every timed block runs again with the all-reduce skipped;
    defaults: {DDP.warmup} + 1 + 2 x {DDP.repeats} x S, S = max({DDP.iters} steps, {DDP.min_block_s:g} s of steps);
    on a CPU each rank gets cores / N threads, so its step is slower than one process's.
"""


def _default(one: float, ddp: float) -> str:
    return f"default {one:g}" + ("" if one == ddp else f" ({ddp:g} with --devices)")


def positive_number(unit: str) -> Callable[[str], float]:
    """argparse type: a finite float > 0, the error naming `unit`."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = 0.0
        if not value > 0 or value == float("inf"):
            raise argparse.ArgumentTypeError(f"expected a number of {unit} > 0, got {text!r}")
        return value

    return parse


def configure(p: argparse.ArgumentParser) -> None:
    p.epilog, p.formatter_class = COST, argparse.RawDescriptionHelpFormatter
    p.add_argument(
        "names", nargs="*", metavar="NAME", help="architectures (see `convbench list`); none with --data alone"
    )
    p.add_argument("--mode", choices=(*MODES, "both"), help="default: both (train with --devices)")
    p.add_argument(
        "--batch-size",
        type=positive_int,
        help="default: 128 for inputs up to 64 px (and for --data); above, 32 on "
        "GPU and 8 on CPU. Halved until it fits on out-of-memory; the batch that ran is reported",
    )
    add_input_size(p, "default: the architecture's reference input")
    p.add_argument("--num-classes", type=positive_int, help="default: the architecture's")
    p.add_argument("--channels-last", action="store_true", help="NHWC model and input")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (compiled during warm-up)")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="32",
        help="autocast dtype; default 32. 16-mixed needs a GPU: CPU float16 matmul is emulated, far slower than fp32",
    )
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available")
    p.add_argument(
        "--warmup",
        type=nonnegative_int,
        help=f"untimed steps first; {_default(ONE.warmup, DDP.warmup)}",
    )
    p.add_argument(
        "--iters",
        type=positive_int,
        help="timed steps per repeat, at least: more when needed for a repeat to last --min-block seconds; "
        + _default(ONE.iters, DDP.iters),
    )
    p.add_argument(
        "--min-block",
        type=positive_number("seconds"),
        metavar="SECONDS",
        help=f"least duration of a repeat; {_default(ONE.min_block_s, DDP.min_block_s)}",
    )
    p.add_argument(
        "--repeats",
        type=positive_int,
        help=f"timed blocks; step time is their median, ± their std; {_default(ONE.repeats, DDP.repeats)}",
    )
    p.add_argument(
        "--peak-flops",
        type=positive_number("FLOP/s"),
        metavar="FLOPS",
        help="MFU against this peak in FLOP/s (e.g. 9.89e14, an H100's dense bf16 datasheet figure) instead of "
        "Lightning's table or a measurement: one fixed denominator, so that separate calls' MFUs compare",
    )
    p.add_argument("--threads", type=positive_int, help="torch.set_num_threads; default all cores this process may use")
    p.add_argument("--detail", action="store_true", help="also time forward, backward and optimizer apart")
    p.add_argument(
        "--verify",
        action="store_true",
        help="also time the step with torch.utils.benchmark.Timer and report the agreement",
    )
    p.add_argument(
        "--data",
        metavar="DATASET",
        help=f"also measure this dataset's train pipeline in images/s ({', '.join(datamodules.names())}, or yours)",
    )
    p.add_argument("--data-root", help="--data's folder; default the dataset's")
    p.add_argument("--workers", type=nonnegative_int, default=2, help="--data's DataLoader workers; default 2")
    p.add_argument(
        "--devices",
        type=positive_int,
        metavar="N",
        help="measure the DDP train step at 1, 2, 4, ... N x --nodes ranks (N ranks a node; gloo on CPU, NCCL on GPU)",
    )
    p.add_argument(
        "--nodes",
        type=positive_int,
        default=1,
        metavar="M",
        help="with --devices: nodes of a Slurm step (run under srun --nodes M --ntasks-per-node N); default 1",
    )
    p.add_argument("--chart", type=Path, metavar="PNG", help="with --devices or --merge: write the scaling chart")
    p.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        metavar="FILE",
        help="read bench CSV/JSON result files into one table (measures nothing); --csv writes it as one file",
    )
    p.add_argument(
        "--sweep",
        type=Path,
        metavar="FILE",
        help="submit a bench sweep (e.g. sweeps/bench/scaling.yaml) as a Slurm array, one model a task",
    )
    p.add_argument("--dry-run", action="store_true", help="with --sweep: print the sbatch script, submit nothing")
    p.add_argument("--json", action="store_true", help="print a JSON list, one object per model and mode (and dataset)")
    p.add_argument("--csv", type=Path, metavar="FILE", help="append one row per result (header when the file is new)")
    p.add_argument(
        "--wandb",
        choices=("disabled", "offline", "online"),
        default="disabled",
        help="log a table of the results; default disabled (offline never touches the network)",
    )
    p.add_argument("--results", type=Path, default=Path("results"), help="where wandb writes; default results/")


def run(args: argparse.Namespace) -> int:
    return bench(BenchRequest.from_args(args))
