"""Measure a data module's train pipeline (decode, Albumentations, collate, worker hand-off) in
images/s, inside a worker process, to set beside the models' samples/s: whichever is lower bounds
training throughput."""
from __future__ import annotations

import itertools
import statistics
from typing import Iterator

import torch

import datamodules
from harness.memory import peak_rss_bytes

from .device import device_name, load_average
from .jobs import DataJob
from .result import Result
from .timing import time_steps


def endless(loader: torch.utils.data.DataLoader) -> Iterator[object]:
    """Batches across epoch boundaries (the loader's workers persist, so a new epoch only restarts prefetching)."""
    return itertools.chain.from_iterable(itertools.repeat(loader))


def measure_data(job: DataJob) -> Result:
    torch.set_num_threads(job.threads)
    overrides = {"input_size": job.input_size} if job.input_size is not None and job.dataset == "synthetic" else {}
    dm = datamodules.create(job.dataset, root=job.root, batch_size=job.batch_size, num_workers=job.workers, **overrides)
    batches = endless(dm.train_dataloader())
    times = time_steps(lambda: next(batches), torch.device("cpu"), job.timing)
    batch_time, std, cv = times.summary(statistics.fmean)
    rate = job.batch_size / batch_time
    return Result(
        name=job.dataset, mode="data", batch_size=job.batch_size, requested_batch_size=job.batch_size,
        samples_per_s=rate, step_time_ms=batch_time * 1e3,
        step_time_std_ms=None if std is None else std * 1e3, step_time_cv=cv, step_time_mean_ms=times.mean * 1e3,
        peak_memory_bytes=peak_rss_bytes(), peak_memory_reserved_bytes=None, params=None, macs=None,
        flops_per_step=None, flops_per_s=None, mfu=None, peak_flops_per_s=None, peak_flops_source=None,
        input_size=list(dm.input_size), device="cpu", device_name=device_name(torch.device("cpu")),
        torch_version=torch.__version__, precision=None, channels_last=None, compile=None, threads=job.threads,
        load_average=load_average(), warmup=job.timing.warmup, iters=len(times.repeats[0]), repeats=job.timing.repeats,
        workers=job.workers, samples_per_s_per_worker=rate / max(job.workers, 1),
    )
