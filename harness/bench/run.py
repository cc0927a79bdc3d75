"""`convbench bench` from a parsed request to its output: check what was asked, pick the device, build
the jobs, run them one after the other with progress on stderr (harness.bench.progress), and write
the rows (stdout, --csv, --chart, W&B). Four paths:

- models and/or --data: a worker process per model and mode, then one peak FLOP/s job for the whole
  table (after the models, so that a model that cannot run fails fast), then the data pipeline;
- --devices N [--nodes M]: the DDP train step of each model at 1, 2, 4, ... N x M ranks
  (harness.bench.distributed); locally this process starts the ranks, under srun each task is one;
- --merge FILE...: result files into one table, measuring nothing;
- --sweep FILE: a bench sweep submitted as a Slurm array (harness.bench.sweep).

Choices worth knowing:
- --precision 16-mixed is refused on a CPU: without native fp16 arithmetic its matmuls are emulated,
  far slower than fp32; bf16-mixed is the CPU's mixed precision.
- the timing flags not given take the path's defaults: `Timing()` for one process,
  `DISTRIBUTED_TIMING` for --devices, which runs every step block twice at every world size.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import architectures
import datamodules
from harness.bench.jobs import (
    DISTRIBUTED_TIMING,
    MODES,
    DataJob,
    DistributedJob,
    ModelJob,
    PeakJob,
    Timing,
    default_batch_size,
    run_job,
)
from harness.bench.progress import BenchProgress
from harness.bench.results import Result, append_csv, check_csv, print_any
from harness.errors import UserError


@dataclass(frozen=True)
class BenchRequest:
    """The `convbench bench` flags, typed; None where a flag was not given and its default depends on
    the path (the timing flags) or on the machine (device, threads, batch size)."""

    names: list[str]
    mode: str | None
    batch_size: int | None
    input_size: list[int] | None  # C H W, checked by the parser; None: each model's reference input
    num_classes: int | None
    channels_last: bool
    compile: bool
    precision: str
    device: str | None
    warmup: int | None
    iters: int | None
    min_block: float | None
    repeats: int | None
    threads: int | None
    peak_flops: float | None  # MFU's denominator when given; else Lightning's table or a measurement
    detail: bool
    verify: bool
    data: str | None
    data_root: str | None
    workers: int
    devices: int | None
    nodes: int
    chart: Path | None
    merge: list[Path] | None
    sweep: Path | None
    dry_run: bool
    json: bool
    csv: Path | None
    wandb: str
    results: Path

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> BenchRequest:
        """From argparse's namespace, whose destinations are these fields' names."""
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})

    def timing(self) -> Timing:
        """The timing flags given, the others the path's defaults."""
        base = DISTRIBUTED_TIMING if self.devices is not None else Timing()
        return Timing(
            warmup=base.warmup if self.warmup is None else self.warmup,
            iters=base.iters if self.iters is None else self.iters,
            repeats=base.repeats if self.repeats is None else self.repeats,
            min_block_s=base.min_block_s if self.min_block is None else self.min_block,
        )

    def input_size_of(self, name: str) -> tuple[int, int, int]:
        info = architectures.info(name)  # an unknown name raises here, before any work
        return tuple(self.input_size) if self.input_size else info.input_size


def bench(request: BenchRequest) -> int:
    """Run what `request` asks for; the exit code."""
    if request.sweep is not None:
        return submit_sweep(request, request.sweep)
    if request.dry_run:
        raise UserError("--dry-run needs --sweep FILE")
    if request.merge:
        return merge(request, request.merge)
    check_distributed(request)
    if not request.names and not request.data:
        raise UserError("name at least one architecture, or a dataset with --data")
    for name in request.names:
        request.input_size_of(name)  # unknown names first
    if request.data is not None and request.data not in datamodules.names():
        raise UserError(f"--data {request.data}: unknown dataset; accepted: {', '.join(datamodules.names())}")
    if request.csv is not None:
        check_csv(request.csv)
    if request.chart is not None and not request.chart.parent.is_dir():
        raise UserError(f"--chart {request.chart}: folder {request.chart.parent} does not exist")
    if request.devices is not None:
        results = run_distributed(request, request.devices)
        if not results:
            return 0  # a Slurm task other than rank 0: rank 0 reports
    else:
        results = run_local(request)
    return output(request, results)


def resolve_device(request: BenchRequest) -> str:
    import torch

    if request.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available")
    device = request.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if request.precision == "16-mixed" and device == "cpu":
        raise UserError("--precision 16-mixed needs a GPU: CPU float16 matmul is emulated; use bf16-mixed")
    return device


def check_distributed(request: BenchRequest) -> None:
    """--devices measures one thing, the DDP train step: refuse the options that do not apply to it."""
    if request.devices is None:
        for flag, given in (
            ("--nodes", request.nodes != 1),
            ("--chart", request.chart is not None and not request.merge),
        ):
            if given:
                raise UserError(f"{flag} needs --devices N (the DDP bench)")
        return
    for flag, given in (
        ("--mode " + str(request.mode), request.mode not in (None, "train")),
        ("--detail", request.detail),
        ("--verify", request.verify),
        ("--data", request.data is not None),
        ("--peak-flops", request.peak_flops is not None),
    ):
        if given:
            raise UserError(
                f"{flag} does not apply to --devices, which measures the DDP train step; run it without --devices"
            )
    if not request.names:
        raise UserError("--devices: name at least one architecture")


def model_jobs(request: BenchRequest, device: str, threads: int, timing: Timing) -> list[ModelJob]:
    """Every model in every mode asked for (both unless --mode says one)."""
    jobs = []
    for name in request.names:
        size = request.input_size_of(name)
        for mode in MODES if request.mode in (None, "both") else (request.mode,):
            jobs.append(
                ModelJob(
                    name=name,
                    mode=mode,
                    batch_size=request.batch_size or default_batch_size(size, device),
                    input_size=size,
                    num_classes=request.num_classes,
                    device=device,
                    precision=request.precision,
                    channels_last=request.channels_last,
                    compile=request.compile,
                    threads=threads,
                    timing=timing,
                    detail=request.detail,
                    verify=request.verify,
                )
            )
    return jobs


def run_local(request: BenchRequest) -> list[Result]:
    """The models in each mode, one peak for their table, and the data pipeline, one worker each."""
    threads = request.threads or len(os.sched_getaffinity(0))
    timing = request.timing()
    device = resolve_device(request)
    jobs = model_jobs(request, device, threads, timing)
    results: list[Result] = []
    measure_peak = bool(jobs) and request.peak_flops is None
    with BenchProgress(len(jobs) + measure_peak + 2 * bool(request.data)) as progress:
        for job in jobs:
            label = f"{job.name} {job.mode}"
            with progress.step(label):
                results.append(Result(**run_job(job, label)))
        if jobs:
            if measure_peak:
                label = f"peak FLOP/s, precision {request.precision}"
                with progress.step(label):
                    peak = run_job(PeakJob(device=device, precision=request.precision, threads=threads), label)
            else:
                peak = {"peak_flops_per_s": request.peak_flops, "peak_flops_source": "given with --peak-flops"}
            for r in results:
                r.peak_flops_per_s, r.peak_flops_source = peak["peak_flops_per_s"], peak["peak_flops_source"]
                r.mfu = r.flops_per_s / r.peak_flops_per_s
        if request.data:  # both pipelines: the Albumentations one in its workers, the device one on the device
            for pipeline, on in (("albumentations", "cpu"), ("device", device)):
                data = DataJob(
                    dataset=request.data,
                    batch_size=request.batch_size or 128,
                    workers=request.workers,
                    root=request.data_root,
                    input_size=tuple(request.input_size) if request.input_size else None,
                    threads=threads,
                    timing=timing,
                    pipeline=pipeline,
                    device=on,
                )
                label = f"{request.data} pipeline" if pipeline == "albumentations" else f"{request.data} on {on}"
                with progress.step(label):
                    results.append(Result(**run_job(data, label)))
    return results


def run_distributed(request: BenchRequest, devices: int) -> list[Result]:
    """Every model at every world size, `devices` ranks a node; only the process that holds rank 0
    gets rows back."""
    from harness.bench.distributed import launcher, with_efficiency, world_sizes

    device = resolve_device(request)
    if device == "cuda" and not os.environ.get("SLURM_NTASKS"):
        import torch

        if torch.cuda.device_count() < devices:
            raise UserError(f"--devices {devices}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    launch = launcher(devices, request.nodes)
    cores = len(os.sched_getaffinity(0))
    threads = request.threads or int(os.environ.get("SLURM_CPUS_PER_TASK") or max(1, cores // devices))
    timing = request.timing()
    worlds = world_sizes(devices * request.nodes)
    results: list[Result] = []
    index = 0
    with BenchProgress(len(request.names) * len(worlds), enabled=launch.is_reporter) as progress:
        for name in request.names:
            size = request.input_size_of(name)
            job = DistributedJob(
                name=name,
                batch_size=request.batch_size or default_batch_size(size, device),
                input_size=size,
                num_classes=request.num_classes,
                device=device,
                precision=request.precision,
                channels_last=request.channels_last,
                compile=request.compile,
                threads=threads,
                timing=timing,
            )
            rows = []
            for world in worlds:
                label = f"{name} train, {world} rank{'' if world == 1 else 's'}"
                with progress.step(label):
                    row = launch.run(job, world, index, label)
                index += 1
                if row is not None:
                    rows.append(row)
            results += with_efficiency(rows)
    return results if launch.is_reporter else []


def submit_sweep(request: BenchRequest, path: Path) -> int:
    from harness.bench import sweep

    if request.names or request.data or request.devices or request.merge:
        raise UserError(
            "--sweep takes its models and devices from the file: give it no NAME, --data, --devices or --merge"
        )
    spec = sweep.load(path)
    if request.dry_run:
        print(sweep.render(spec), end="")
        return 0
    job_id, script = sweep.submit(spec)
    print(
        f"submitted array job {job_id} ({script}): {len(spec.models)} models x {len(spec.settings())} settings; "
        f"when it is done: convbench bench --merge {spec.results}/*.csv --csv {spec.results}.csv "
        f"--chart {spec.results}.png"
    )
    return 0


def merge(request: BenchRequest, files: list[Path]) -> int:
    from harness.bench.results import read_results

    if request.names or request.data or request.devices:
        raise UserError("--merge reads result files and measures nothing: give it no NAME, --data or --devices")
    results = read_results(files)
    if not results:
        raise UserError(f"--merge: no rows in {', '.join(map(str, files))}")
    results.sort(
        key=lambda r: (r.name, r.mode, r.device_name, str(r.precision), bool(r.channels_last), r.world_size or 0)
    )
    if request.csv is None:
        return output(request, results)
    request.csv.parent.mkdir(parents=True, exist_ok=True)
    append_csv(request.csv, results, mode="w")
    return output(replace(request, csv=None), results)  # written whole, not appended to


def output(request: BenchRequest, results: list[Result]) -> int:
    """The rows to stdout (table or JSON), the CSV file, the scaling chart and W&B."""
    if request.json:
        print(json.dumps([r.to_dict() for r in results], indent=1))
    else:
        print_any(results, request.detail, request.verify)
    if request.csv is not None:
        append_csv(request.csv, results)
    if request.chart is not None:
        from harness.bench.results import scaling_chart

        print(f"chart: {scaling_chart(results, request.chart)}", file=sys.stderr)
    if request.wandb != "disabled":
        from harness.bench.results import log_results

        timing = request.timing()
        used = replace(
            request, warmup=timing.warmup, iters=timing.iters, repeats=timing.repeats, min_block=timing.min_block_s
        )
        config = {k: _plain(v) for k, v in asdict(used).items()}
        folder = log_results(results, request.wandb, request.results, config)
        print(f"wandb run: {folder}", file=sys.stderr)
    return 0


def _plain(value: object) -> object:
    """W&B config values: paths (and --merge's list of them) as strings."""
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return str(value) if isinstance(value, Path) else value
