"""How a step is measured, shared by every bench worker: what the machine was (device name, load),
the step itself (synthetic input on the device, infer or train as named phases), its timing
(warm-up, repeated blocks of device-synchronised per-step stamps, the phase split, an independent
torch.utils.benchmark check) and the out-of-memory policy (halve the batch and retry).

The train step is zero_grad(set_to_none=True), forward + cross-entropy, backward, SGD step; infer is
forward under torch.inference_mode in eval mode. Both run under autocast for the mixed precisions;
16-mixed training scales the loss (GradScaler), as Lightning's 16-mixed does. Timing stamps every
step without serialising the device (timm's benchmark.py times one synchronised block; per-step
stamps also give the distribution).
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import statistics
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.benchmark import Timer

import architectures
from harness.errors import UserError

from .jobs import DistributedJob, ModelJob, Timing
from .peak import DTYPES

T = TypeVar("T")
TRAIN_FLOPS_FACTOR = 3  # backward ~ 2 x forward (gradients w.r.t. inputs and weights)


def load_average() -> float:
    """The 1-minute load average (this worker included): above the core count, neighbours were
    competing for the cores while it measured."""
    return os.getloadavg()[0]


@dataclass
class Step:
    phases: list[tuple[str, Callable[[Any], Any]]]  # each phase receives the previous one's output

    def __call__(self) -> None:
        value = None
        for _, phase in self.phases:
            value = phase(value)


def autocast(device: torch.device, precision: str) -> Callable[[], AbstractContextManager[Any]]:
    if precision == "32":
        return contextlib.nullcontext
    return lambda: torch.autocast(device.type, dtype=DTYPES[precision])


def synthetic_batch(
    batch_size: int,
    input_size: tuple[int, int, int],
    output_shape: list[int],
    device: torch.device,
    channels_last: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Normal images and uniform labels shaped for the model's output: (N,) for a classifier's
    (classes,), (N, H, W) for a segmenter's (classes, H, W)."""
    x = torch.randn(batch_size, *input_size, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(output_shape[0], (batch_size, *output_shape[1:]), device=device)
    return x, y


def infer_step(model: nn.Module, x: torch.Tensor, precision: str) -> Step:
    model.eval()
    cast = autocast(x.device, precision)

    def forward(_: None) -> torch.Tensor:
        with torch.inference_mode(), cast():
            return model(x)

    return Step([("forward", forward)])


def train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, precision: str) -> Step:
    model.train()
    cast = autocast(x.device, precision)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    scaler = torch.amp.GradScaler(x.device.type, enabled=precision == "16-mixed")

    def forward(_: None) -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        with cast():
            return F.cross_entropy(model(x), y)

    def backward(loss: torch.Tensor) -> None:
        scaler.scale(loss).backward()

    def update(_: None) -> None:
        scaler.step(optimizer)
        scaler.update()

    return Step([("forward", forward), ("backward", backward), ("optimizer", update)])


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels, so a clock read after it covers them (a no-op on CPU)."""
    if device.type != "cpu":
        torch.accelerator.synchronize(device)


class Stamps:
    """Seconds between consecutive `mark()`s. CPU: perf_counter (every kernel has returned when the
    step does). Accelerator: timing events recorded on the stream, read after one synchronise at
    the end, so the host keeps queueing work as in real training."""

    def __init__(self, device: torch.device, marks: int) -> None:
        self.device = device
        self.events = (
            [torch.Event(device=device, enable_timing=True) for _ in range(marks)] if device.type != "cpu" else []
        )
        self.clock: list[float] = []

    def mark(self) -> None:
        if self.events:
            self.events[len(self.clock)].record()
            self.clock.append(0.0)
        else:
            self.clock.append(time.perf_counter())

    def durations(self) -> list[float]:
        if self.events:
            synchronize(self.device)
            return [a.elapsed_time(b) / 1e3 for a, b in zip(self.events, self.events[1 : len(self.clock)])]
        return [b - a for a, b in zip(self.clock, self.clock[1:])]


@dataclass
class StepTimes:
    """Seconds of every timed step, one list per repeat."""

    repeats: list[list[float]]

    def summary(self, per_repeat: Callable[[list[float]], float]) -> tuple[float, float | None, float | None]:
        """(median over repeats, their std, their coefficient of variation) of `per_repeat` of each
        repeat's steps; std and CV are None with a single repeat."""
        values = [per_repeat(r) for r in self.repeats]
        if len(values) == 1:
            return values[0], None, None
        std = statistics.stdev(values)
        return statistics.median(values), std, std / statistics.fmean(values)

    @property
    def mean(self) -> float:
        """Total time over total steps: throughput semantics, timm's figure."""
        return statistics.fmean(t for r in self.repeats for t in r)


def time_steps(
    step: Callable[[], object], device: torch.device, timing: Timing, between: Callable[[float], None] | None = None
) -> StepTimes:
    """`timing.warmup` untimed steps, then `timing.repeats` blocks of stamped steps: `timing.iters`,
    or as many as the warm-up steps (all but the first, which pays for first-call set-up) say fill
    `timing.min_block_s`. Garbage collection is off while timing, as timeit does.
    `between(block_seconds)` runs untimed after each block (the Timer check, interleaved so that
    both see the same machine noise)."""
    stamps = Stamps(device, timing.warmup + 1)
    stamps.mark()
    for _ in range(timing.warmup):
        step()
        stamps.mark()
    warm = stamps.durations()
    warm = warm[1:] or warm
    iters = (
        max(timing.iters, math.ceil(timing.min_block_s / max(statistics.fmean(warm), 1e-6))) if warm else timing.iters
    )
    repeats = []
    gc.collect()
    gc.disable()
    try:
        for _ in range(timing.repeats):
            stamps = Stamps(device, iters + 1)
            stamps.mark()
            for _ in range(iters):
                step()
                stamps.mark()
            repeats.append(stamps.durations())
            if between is not None:
                between(sum(repeats[-1]))
    finally:
        gc.enable()
    return StepTimes(repeats)


class TimerCheck:
    """An independent measurement of the same step by torch.utils.benchmark.Timer (its own block
    sizes and synchronisation), run between the bench's blocks for as long as each block took.
    Timer runs at one thread unless told, hence `threads`."""

    def __init__(self, step: Callable[[], object], threads: int) -> None:
        self.timer = Timer(stmt="step()", globals={"step": step}, num_threads=threads)
        self.times: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.times += self.timer.blocked_autorange(min_run_time=seconds).times

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def time_phases(step: Step, device: torch.device, iters: int) -> dict[str, float]:
    """Mean seconds of each phase over `iters` steps, synchronising after every phase (which the
    whole-step timing does not, so the phases may add up to slightly more than the step)."""
    totals = dict.fromkeys((name for name, _ in step.phases), 0.0)
    for _ in range(iters):
        value = None
        for name, phase in step.phases:
            start = time.perf_counter()
            value = phase(value)
            synchronize(device)
            totals[name] += time.perf_counter() - start
    return {name: total / iters for name, total in totals.items()}


def is_oom(err: BaseException) -> bool:
    """CUDA raises torch.OutOfMemoryError; the CPU allocator a RuntimeError (when the kernel refuses
    the allocation rather than killing the process, which the parent reports instead)."""
    return isinstance(err, torch.OutOfMemoryError) or (
        isinstance(err, RuntimeError) and "can't allocate memory" in str(err)
    )


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def with_halving(
    measure: Callable[[int], T], batch_size: int, on_oom: Callable[[], None] = free_memory
) -> tuple[T, int]:
    """`measure(batch_size)`, halving batch_size after each out-of-memory error; returns the result
    and the batch size that ran. The retry happens outside the except block, so the failed
    attempt's traceback, and the tensors its frames hold, are gone before `on_oom` frees memory."""
    while True:
        try:
            return measure(batch_size), batch_size
        except Exception as err:  # noqa: BLE001 (re-raised unless it is an OOM)
            if not is_oom(err):
                raise
            if batch_size == 1:
                raise UserError(f"out of memory even at batch size 1: {str(err).splitlines()[0]}") from None
        on_oom()
        batch_size //= 2


def build_model(job: ModelJob | DistributedJob, device: torch.device) -> tuple[nn.Module, architectures.Profile]:
    """The job's model on ``device`` (channels_last if asked) and its profile, taken on CPU before the
    move (batch 1, eval); a net that cannot run on the input size is a one-line error."""
    model = architectures.create(job.name, num_classes=job.num_classes, in_chans=job.input_size[0])
    try:
        profile = architectures.profile(model, job.input_size)
    except RuntimeError as err:
        size = "x".join(map(str, job.input_size))
        raise UserError(f"{job.name} cannot run on input {size}: {str(err).splitlines()[0]}") from None
    model.to(device)
    if job.channels_last:
        model.to(memory_format=torch.channels_last)
    return model, profile
