"""`python -m harness.bench.worker`: run one job (JSON on stdin), print one result (JSON on stdout);
the single-process measurements of a model (one mode) and of a data pipeline live here, the DDP one
in harness.bench.distributed.

A fresh process per measurement: models measured in one process skew each other (allocator and
oneDNN caches, compiled kernels, a warmed or fragmented heap) and the CPU's peak resident memory is
per process. The worker pins glibc's malloc thresholds first (`pin_thresholds`), so that the same
model measures the same in every process. Anything else that writes to stdout (compilers,
libraries) is sent to stderr so the parent reads exactly one JSON document. A user mistake is
reported as {"error": ...} with exit 2; anything else is a traceback on stderr and exit 1.
"""

from __future__ import annotations

import itertools
import json
import os
import statistics
import sys
from collections.abc import Iterator
from dataclasses import asdict

import torch
from lightning_fabric.utilities.apply_func import move_data_to_device

import datamodules
from harness.errors import user_errors
from harness.hardware import describe
from harness.memory import peak_bytes, peak_reserved_bytes, pin_thresholds, reset_peak

from .jobs import DataJob, DistributedJob, Job, ModelJob, from_json
from .measure import (
    TRAIN_FLOPS_FACTOR,
    Step,
    StepTimes,
    TimerCheck,
    build_model,
    infer_step,
    load_average,
    synthetic_batch,
    time_phases,
    time_steps,
    train_step,
    with_halving,
)
from .results import Result


def measure_model(job: ModelJob) -> Result:
    torch.set_num_threads(job.threads)
    device = torch.device(job.device)
    model, profile = build_model(job, device)
    runner = torch.compile(model) if job.compile else model

    def measure(batch_size: int) -> tuple[Step, StepTimes, TimerCheck | None, int, int | None]:
        reset_peak(device)
        x, y = synthetic_batch(batch_size, job.input_size, profile.output_shape, device, job.channels_last)
        step = infer_step(runner, x, job.precision) if job.mode == "infer" else train_step(runner, x, y, job.precision)
        check = TimerCheck(step, job.threads) if job.verify else None
        times = time_steps(step, device, job.timing, between=check)
        return step, times, check, peak_bytes(device), peak_reserved_bytes(device)

    (step, times, check, peak_memory, peak_reserved), batch_size = with_halving(measure, job.batch_size)
    flops_per_step = 2 * profile.macs * batch_size * (TRAIN_FLOPS_FACTOR if job.mode == "train" else 1)
    step_time, std, cv = times.summary(statistics.median)
    flops_per_s = flops_per_step / step_time
    hw = describe(device)
    result = Result(
        name=job.name,
        mode=job.mode,
        batch_size=batch_size,
        requested_batch_size=job.batch_size,
        samples_per_s=batch_size / step_time,
        step_time_ms=step_time * 1e3,
        step_time_std_ms=None if std is None else std * 1e3,
        step_time_cv=cv,
        step_time_mean_ms=times.mean * 1e3,
        peak_memory_bytes=peak_memory,
        peak_memory_reserved_bytes=peak_reserved,
        params=profile.params,
        macs=profile.macs,
        flops_per_step=flops_per_step,
        flops_per_s=flops_per_s,
        mfu=None,
        peak_flops_per_s=None,
        peak_flops_source=None,  # the parent's peak job fills these in
        input_size=list(job.input_size),
        device=str(device),
        device_name=hw.devices[0],
        hardware=asdict(hw),
        torch_version=torch.__version__,
        precision=job.precision,
        channels_last=job.channels_last,
        compile=job.compile,
        threads=job.threads,
        load_average=load_average(),
        warmup=job.timing.warmup,
        iters=len(times.repeats[0]),
        repeats=job.timing.repeats,
    )
    if job.detail:
        ms = {name: seconds * 1e3 for name, seconds in time_phases(step, device, job.timing.iters).items()}
        result.forward_ms, result.backward_ms, result.optimizer_ms = (
            ms["forward"],
            ms.get("backward"),
            ms.get("optimizer"),
        )
    if check is not None:
        result.timer_samples_per_s = batch_size / check.median
        result.timer_agreement = result.samples_per_s / result.timer_samples_per_s - 1
    return result


def endless(loader: torch.utils.data.DataLoader) -> Iterator[object]:
    """Batches across epoch boundaries (the loader's workers persist, so a new epoch only restarts prefetching)."""
    return itertools.chain.from_iterable(itertools.repeat(loader))


def measure_data(job: DataJob) -> Result:
    """A train pipeline's batches as the step receives them: the Albumentations path's from its workers; the
    device path's cut and augmented on `job.device` (no workers: its rate is the device's)."""
    torch.set_num_threads(job.threads)
    overrides = {"input_size": job.input_size} if job.input_size is not None and job.dataset == "synthetic" else {}
    device = torch.device(job.device)
    dm = datamodules.create(
        job.dataset,
        root=job.root,
        batch_size=job.batch_size,
        num_workers=job.workers,
        pipeline=job.pipeline,
        **overrides,
    )
    dm.resident_device = device
    batches = endless(dm.train_dataloader())
    times = time_steps(
        lambda: dm.on_after_batch_transfer(move_data_to_device(next(batches), device), 0), device, job.timing
    )
    batch_time, std, cv = times.summary(statistics.fmean)
    rate = job.batch_size / batch_time
    workers = dm.loader_workers
    hw = describe(job.device, workers=workers)
    return Result(
        name=job.dataset,
        mode="data" if job.pipeline == "albumentations" else "data-device",
        batch_size=job.batch_size,
        requested_batch_size=job.batch_size,
        samples_per_s=rate,
        step_time_ms=batch_time * 1e3,
        step_time_std_ms=None if std is None else std * 1e3,
        step_time_cv=cv,
        step_time_mean_ms=times.mean * 1e3,
        peak_memory_bytes=peak_bytes(device),
        peak_memory_reserved_bytes=None,
        params=None,
        macs=None,
        flops_per_step=None,
        flops_per_s=None,
        mfu=None,
        peak_flops_per_s=None,
        peak_flops_source=None,
        input_size=list(dm.input_size),
        device=job.device,
        device_name=hw.devices[0],
        hardware=asdict(hw),
        torch_version=torch.__version__,
        precision=None,
        channels_last=None,
        compile=None,
        threads=job.threads,
        load_average=load_average(),
        warmup=job.timing.warmup,
        iters=len(times.repeats[0]),
        repeats=job.timing.repeats,
        workers=workers,
        samples_per_s_per_worker=rate / max(workers, 1),
    )


def run(job: Job) -> dict:
    if isinstance(job, ModelJob):
        return measure_model(job).to_dict()
    if isinstance(job, DataJob):
        return measure_data(job).to_dict()
    if isinstance(job, DistributedJob):
        from .distributed import measure_ddp

        result = measure_ddp(job)
        return {} if result is None else result.to_dict()  # ranks other than 0 have nothing to report
    from .peak import device_peak

    device = torch.device(job.device)
    flops, source = device_peak(device, job.precision, job.threads)
    return {"peak_flops_per_s": flops, "peak_flops_source": source}


def main() -> int:
    pin_thresholds()
    result_out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    payload = json.load(sys.stdin)
    try:
        result = run(from_json(payload))
    except user_errors() as err:
        json.dump({"error": str(err)}, result_out)
        return 2
    json.dump(result, result_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
