"""`convbench bench NAME... [--mode infer|train|both] [--data DATASET]`: samples/s, step time, peak
memory and MFU of architectures on synthetic input, and images/s of a data pipeline, each measured
in its own worker process (see harness.bench).

Choices worth knowing:
- train = zero_grad(set_to_none) + forward + cross-entropy + backward + SGD step, counted as
  3 x forward FLOPs; infer = forward in eval mode under torch.inference_mode.
- MFU is against the device's dense peak for the precision: Lightning's table for known GPUs; on
  a CPU the faster of a 2048^3 GEMM and a 3x3 convolution in fp32 (bf16 for bf16-mixed), measured
  in the same run at --threads (harness.bench.peak: MKL's GEMM alone is not the peak on AMD CPUs).
- --precision 16-mixed is refused on a CPU: without native fp16 arithmetic its matmuls ran ~100x
  slower than fp32 on this project's AVX-512 CPU; bf16-mixed is the CPU's mixed precision.
- --data DATASET measures the dataset's train DataLoader (with --workers) beside the models, or
  alone when no NAME is given: if its images/s is below a model's train samples/s, data is the
  bottleneck.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Iterator

import architectures
import datamodules
from harness.bench.jobs import MODES, PRECISIONS, DataJob, ModelJob, PeakJob, Timing, default_batch_size
from harness.bench.report import append_csv, check_csv, print_results
from harness.bench.result import Result
from harness.bench.runner import run_job
from harness.commands.options import parse_input_size
from harness.errors import UserError


def positive_int(text: str) -> int:
    return _int_at_least(text, 1)


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}")
    return value


def nonnegative_int(text: str) -> int:
    return _int_at_least(text, 0)


def _int_at_least(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
    return value


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("names", nargs="*", metavar="NAME", help="architectures (see `convbench list`); none with --data alone")
    p.add_argument("--mode", choices=(*MODES, "both"), default="both", help="default: both")
    p.add_argument("--batch-size", type=positive_int, help="default: 128 for inputs up to 64 px (and for --data); above, 32 on "
                   "GPU and 8 on CPU. Halved until it fits on out-of-memory; the batch that ran is reported")
    p.add_argument("--input-size", nargs=3, metavar=("C", "H", "W"), help="default: the architecture's reference input")
    p.add_argument("--num-classes", type=positive_int, help="default: the architecture's")
    p.add_argument("--channels-last", action="store_true", help="NHWC model and input")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (compiled during warm-up)")
    p.add_argument("--precision", choices=PRECISIONS, default="32",
                   help="autocast dtype; default 32. 16-mixed needs a GPU: CPU float16 matmul is emulated, ~100x slower than fp32")
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available")
    p.add_argument("--warmup", type=nonnegative_int, default=10, help="untimed steps first; default 10")
    p.add_argument("--iters", type=positive_int, default=20, help="timed steps per repeat, at least: more when needed for a repeat to last --min-block seconds; default 20")
    p.add_argument("--min-block", type=positive_float, default=1.0, metavar="SECONDS", help="least duration of a repeat; default 1.0")
    p.add_argument("--repeats", type=positive_int, default=5, help="timed blocks; step time is their median, ± their std; default 5")
    p.add_argument("--threads", type=positive_int, help="torch.set_num_threads; default all cores this process may use")
    p.add_argument("--detail", action="store_true", help="also time forward, backward and optimizer apart")
    p.add_argument("--verify", action="store_true", help="also time the step with torch.utils.benchmark.Timer and report the agreement")
    p.add_argument("--data", choices=datamodules.names(), metavar="DATASET",
                   help=f"also measure this dataset's train pipeline in images/s ({', '.join(datamodules.names())})")
    p.add_argument("--data-root", help="--data's folder; default the dataset's")
    p.add_argument("--workers", type=nonnegative_int, default=2, help="--data's DataLoader workers; default 2")
    p.add_argument("--json", action="store_true", help="print a JSON list, one object per model and mode (and dataset)")
    p.add_argument("--csv", type=Path, metavar="FILE", help="append one row per result (header when the file is new)")
    p.add_argument("--wandb", choices=("disabled", "offline", "online"), default="disabled",
                   help="log a table of the results; default disabled (offline never touches the network)")
    p.add_argument("--results", type=Path, default=Path("results"), help="where wandb writes; default results/")


def resolve_device(requested: str | None) -> str:
    import torch

    if requested == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available")
    return requested or ("cuda" if torch.cuda.is_available() else "cpu")


def progress(label: str) -> contextlib.AbstractContextManager[object]:
    """A spinner on a terminal's stderr; nothing when stderr is a file or pipe."""
    if not sys.stderr.isatty():
        return contextlib.nullcontext()
    from rich.console import Console

    return Console(stderr=True).status(f"bench: {label}")


def model_jobs(args: argparse.Namespace, device: str, threads: int, timing: Timing) -> Iterator[ModelJob]:
    for name in args.names:
        info = architectures.info(name)
        size = parse_input_size(args.input_size, info.input_size)
        for mode in MODES if args.mode == "both" else (args.mode,):
            yield ModelJob(name=name, mode=mode, batch_size=args.batch_size or default_batch_size(size, device),
                           input_size=size, num_classes=args.num_classes, device=device, precision=args.precision,
                           channels_last=args.channels_last, compile=args.compile, threads=threads, timing=timing,
                           detail=args.detail, verify=args.verify)


def run(args: argparse.Namespace) -> int:
    if not args.names and not args.data:
        raise UserError("name at least one architecture, or a dataset with --data")
    for name in args.names:
        parse_input_size(args.input_size, architectures.info(name).input_size)  # unknown names and bad sizes first
    if args.csv is not None:
        check_csv(args.csv)
    threads = args.threads or len(os.sched_getaffinity(0))
    timing = Timing(warmup=args.warmup, iters=args.iters, repeats=args.repeats, min_block_s=args.min_block)
    results: list[Result] = []
    if args.names:
        device = resolve_device(args.device)
        if args.precision == "16-mixed" and device == "cpu":
            raise UserError("--precision 16-mixed needs a GPU: CPU float16 matmul is emulated (~100x slower than fp32); "
                            "use bf16-mixed")
        for job in model_jobs(args, device, threads, timing):
            label = f"{job.name} {job.mode}"
            with progress(label):
                results.append(Result(**run_job(job, label)))
        # after the models, so that a model that cannot run fails fast; one peak for the whole table
        with progress(f"peak FLOP/s ({args.precision})"):
            peak = run_job(PeakJob(device=device, precision=args.precision, threads=threads), "peak FLOP/s")
        for r in results:
            r.peak_flops_per_s, r.peak_flops_source = peak["peak_flops_per_s"], peak["peak_flops_source"]
            r.mfu = r.flops_per_s / r.peak_flops_per_s
    if args.data:
        size = parse_input_size(args.input_size, (3, 32, 32)) if args.input_size else None
        job = DataJob(dataset=args.data, batch_size=args.batch_size or 128, workers=args.workers, root=args.data_root,
                      input_size=size, threads=threads, timing=timing)
        with progress(f"{args.data} pipeline"):
            results.append(Result(**run_job(job, f"{args.data} pipeline")))
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=1))
    else:
        print_results(results, args.detail, args.verify)
    if args.csv is not None:
        append_csv(args.csv, results)
    if args.wandb != "disabled":
        from harness.bench.wandb_log import log_results

        config = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        folder = log_results(results, args.wandb, args.results, config)
        print(f"wandb run: {folder}", file=sys.stderr)
    return 0
