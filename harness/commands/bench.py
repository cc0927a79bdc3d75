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
- --devices N [--nodes M] measures the DDP train step at 1, 2, 4, ... N x M ranks instead, batch
  fixed per rank (harness.bench.distributed): global samples/s, scaling efficiency, all-reduce share
  and bus bandwidth. Locally it starts the ranks on this machine; under srun each task is a rank.
- --merge FILE... reads bench CSV/JSON files (a sweep's per-job results) into one table, and with
  --csv writes them as one file.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import architectures
import datamodules
from harness.bench.jobs import (
    MODES,
    PRECISIONS,
    DataJob,
    DistributedJob,
    ModelJob,
    PeakJob,
    Timing,
    default_batch_size,
    run_job,
)
from harness.bench.results import Result, append_csv, check_csv, print_any
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
    p.add_argument("--input-size", nargs=3, metavar=("C", "H", "W"), help="default: the architecture's reference input")
    p.add_argument("--num-classes", type=positive_int, help="default: the architecture's")
    p.add_argument("--channels-last", action="store_true", help="NHWC model and input")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (compiled during warm-up)")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="32",
        help="autocast dtype; default 32. 16-mixed needs a GPU: CPU float16 matmul is emulated, ~100x slower than fp32",
    )
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available")
    p.add_argument("--warmup", type=nonnegative_int, default=10, help="untimed steps first; default 10")
    p.add_argument(
        "--iters",
        type=positive_int,
        default=20,
        help="timed steps per repeat, at least: more when needed for a repeat to last --min-block seconds; default 20",
    )
    p.add_argument(
        "--min-block",
        type=positive_float,
        default=1.0,
        metavar="SECONDS",
        help="least duration of a repeat; default 1.0",
    )
    p.add_argument(
        "--repeats",
        type=positive_int,
        default=5,
        help="timed blocks; step time is their median, ± their std; default 5",
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
        choices=datamodules.names(),
        metavar="DATASET",
        help=f"also measure this dataset's train pipeline in images/s ({', '.join(datamodules.names())})",
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
        for mode in MODES if args.mode in (None, "both") else (args.mode,):
            yield ModelJob(
                name=name,
                mode=mode,
                batch_size=args.batch_size or default_batch_size(size, device),
                input_size=size,
                num_classes=args.num_classes,
                device=device,
                precision=args.precision,
                channels_last=args.channels_last,
                compile=args.compile,
                threads=threads,
                timing=timing,
                detail=args.detail,
                verify=args.verify,
            )


def check_distributed(args: argparse.Namespace) -> None:
    """--devices measures one thing, the DDP train step: refuse the options that do not apply to it."""
    if args.devices is None:
        for flag, given in (("--nodes", args.nodes != 1), ("--chart", args.chart is not None and not args.merge)):
            if given:
                raise UserError(f"{flag} needs --devices N (the DDP bench)")
        return
    for flag, given in (
        ("--mode " + str(args.mode), args.mode not in (None, "train")),
        ("--detail", args.detail),
        ("--verify", args.verify),
        ("--data", args.data is not None),
    ):
        if given:
            raise UserError(
                f"{flag} does not apply to --devices, which measures the DDP train step; run it without --devices"
            )
    if not args.names:
        raise UserError("--devices: name at least one architecture")


def run_distributed(args: argparse.Namespace, timing: Timing) -> list[Result]:
    """Every model at every world size; only the process that holds rank 0 gets rows back."""
    from harness.bench.distributed import launcher, with_efficiency, world_sizes

    device = resolve_device(args.device)
    if args.precision == "16-mixed" and device == "cpu":
        raise UserError(
            "--precision 16-mixed needs a GPU: CPU float16 matmul is emulated (~100x slower than fp32); use bf16-mixed"
        )
    if device == "cuda" and not os.environ.get("SLURM_NTASKS"):
        import torch

        if torch.cuda.device_count() < args.devices:
            raise UserError(f"--devices {args.devices}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    launch = launcher(args.devices, args.nodes)
    cores = len(os.sched_getaffinity(0))
    threads = args.threads or int(os.environ.get("SLURM_CPUS_PER_TASK") or max(1, cores // args.devices))
    results: list[Result] = []
    index = 0
    for name in args.names:
        size = parse_input_size(args.input_size, architectures.info(name).input_size)
        job = DistributedJob(
            name=name,
            batch_size=args.batch_size or default_batch_size(size, device),
            input_size=size,
            num_classes=args.num_classes,
            device=device,
            precision=args.precision,
            channels_last=args.channels_last,
            compile=args.compile,
            threads=threads,
            timing=timing,
        )
        rows = []
        for world in world_sizes(args.devices * args.nodes):
            label = f"{name} train, {world} rank{'' if world == 1 else 's'}"
            with progress(label):
                row = launch.run(job, world, index, label)
            index += 1
            if row is not None:
                rows.append(row)
        results += with_efficiency(rows)
    return results if launch.is_reporter else []


def sweep(args: argparse.Namespace) -> int:
    from harness.sweep import bench

    if args.names or args.data or args.devices or args.merge:
        raise UserError(
            "--sweep takes its models and devices from the file: give it no NAME, --data, --devices or --merge"
        )
    spec = bench.load(args.sweep)
    if args.dry_run:
        print(bench.render(spec), end="")
        return 0
    job_id, script = bench.submit(spec)
    print(
        f"submitted array job {job_id} ({script}): {len(spec.models)} models x {len(spec.settings())} settings; when it is done: "
        f"convbench bench --merge {spec.results}/*.csv --csv {spec.results}.csv --chart {spec.results}.png"
    )
    return 0


def run(args: argparse.Namespace) -> int:
    if args.sweep is not None:
        return sweep(args)
    if args.dry_run:
        raise UserError("--dry-run needs --sweep FILE")
    if args.merge:
        return merge(args)
    check_distributed(args)
    if not args.names and not args.data:
        raise UserError("name at least one architecture, or a dataset with --data")
    for name in args.names:
        parse_input_size(args.input_size, architectures.info(name).input_size)  # unknown names and bad sizes first
    if args.csv is not None:
        check_csv(args.csv)
    if args.chart is not None and not args.chart.parent.is_dir():
        raise UserError(f"--chart {args.chart}: folder {args.chart.parent} does not exist")
    threads = args.threads or len(os.sched_getaffinity(0))
    timing = Timing(warmup=args.warmup, iters=args.iters, repeats=args.repeats, min_block_s=args.min_block)
    if args.devices is not None:
        results = run_distributed(args, timing)
        if not results:
            return 0  # a Slurm task other than rank 0: rank 0 reports
        return output(args, results)
    results: list[Result] = []
    if args.names:
        device = resolve_device(args.device)
        if args.precision == "16-mixed" and device == "cpu":
            raise UserError(
                "--precision 16-mixed needs a GPU: CPU float16 matmul is emulated (~100x slower than fp32); "
                "use bf16-mixed"
            )
        for job in model_jobs(args, device, threads, timing):  # --mode both unless given
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
        job = DataJob(
            dataset=args.data,
            batch_size=args.batch_size or 128,
            workers=args.workers,
            root=args.data_root,
            input_size=size,
            threads=threads,
            timing=timing,
        )
        with progress(f"{args.data} pipeline"):
            results.append(Result(**run_job(job, f"{args.data} pipeline")))
    return output(args, results)


def merge(args: argparse.Namespace) -> int:
    from harness.bench.results import read_results

    if args.names or args.data or args.devices:
        raise UserError("--merge reads result files and measures nothing: give it no NAME, --data or --devices")
    results = read_results(args.merge)
    if not results:
        raise UserError(f"--merge: no rows in {', '.join(map(str, args.merge))}")
    results.sort(
        key=lambda r: (r.name, r.mode, r.device_name, str(r.precision), bool(r.channels_last), r.world_size or 0)
    )
    if args.csv is not None:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        append_csv(args.csv, results, mode="w")
        args.csv = None  # written whole, not appended to
    return output(args, results)


def output(args: argparse.Namespace, results: list[Result]) -> int:
    """The rows to stdout (table or JSON), the CSV file, the scaling chart and W&B."""
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=1))
    else:
        print_any(results, args.detail, args.verify)
    if args.csv is not None:
        append_csv(args.csv, results)
    if args.chart is not None:
        from harness.bench.results import scaling_chart

        print(f"chart: {scaling_chart(results, args.chart)}", file=sys.stderr)
    if args.wandb != "disabled":
        from harness.bench.results import log_results

        config = {k: _plain(v) for k, v in vars(args).items()}
        folder = log_results(results, args.wandb, args.results, config)
        print(f"wandb run: {folder}", file=sys.stderr)
    return 0


def _plain(value: object) -> object:
    """W&B config values: paths (and --merge's list of them) as strings."""
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return str(value) if isinstance(value, Path) else value
