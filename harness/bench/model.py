"""Measure one architecture in one mode, inside a worker process."""
from __future__ import annotations

import statistics

import torch

import architectures
from harness.errors import UserError
from harness.memory import peak_bytes, peak_reserved_bytes, reset_peak

from .device import device_name, load_average
from .jobs import ModelJob
from .oom import with_halving
from .result import Result
from .step import Step, infer_step, synthetic_batch, train_step
from .timing import StepTimes, TimerCheck, time_phases, time_steps

TRAIN_FLOPS_FACTOR = 3  # backward ~ 2 x forward (gradients w.r.t. inputs and weights)


def measure_model(job: ModelJob) -> Result:
    torch.set_num_threads(job.threads)
    device = torch.device(job.device)
    model = architectures.create(job.name, num_classes=job.num_classes, in_chans=job.input_size[0])
    try:
        profile = architectures.profile(model, job.input_size)  # on CPU, before the move: batch 1, eval
    except RuntimeError as err:
        size = "x".join(map(str, job.input_size))
        raise UserError(f"{job.name} cannot run on input {size}: {str(err).splitlines()[0]}") from None
    model.to(device)
    if job.channels_last:
        model.to(memory_format=torch.channels_last)
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
    result = Result(
        name=job.name, mode=job.mode, batch_size=batch_size, requested_batch_size=job.batch_size,
        samples_per_s=batch_size / step_time, step_time_ms=step_time * 1e3,
        step_time_std_ms=None if std is None else std * 1e3, step_time_cv=cv, step_time_mean_ms=times.mean * 1e3,
        peak_memory_bytes=peak_memory, peak_memory_reserved_bytes=peak_reserved,
        params=profile.params, macs=profile.macs, flops_per_step=flops_per_step, flops_per_s=flops_per_s,
        mfu=None, peak_flops_per_s=None, peak_flops_source=None,  # the parent's peak job fills these in
        input_size=list(job.input_size), device=str(device), device_name=device_name(device),
        torch_version=torch.__version__, precision=job.precision, channels_last=job.channels_last,
        compile=job.compile, threads=job.threads, load_average=load_average(), warmup=job.timing.warmup,
        iters=len(times.repeats[0]), repeats=job.timing.repeats,
    )
    if job.detail:
        ms = {name: seconds * 1e3 for name, seconds in time_phases(step, device, job.timing.iters).items()}
        result.forward_ms, result.backward_ms, result.optimizer_ms = ms["forward"], ms.get("backward"), ms.get("optimizer")
    if check is not None:
        result.timer_samples_per_s = batch_size / check.median
        result.timer_agreement = result.samples_per_s / result.timer_samples_per_s - 1
    return result
