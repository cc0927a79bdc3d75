"""Timing a step: warm-up, then repeated blocks of steps with a timestamp after every step, taken
without serialising the device (timm's benchmark.py times one synchronised block; per-step stamps
also give the distribution). Plus the phase split and an independent torch.utils.benchmark check."""
from __future__ import annotations

import gc
import math
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch.utils.benchmark import Timer

from .jobs import Timing
from .step import Step


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
        self.events = [torch.Event(device=device, enable_timing=True) for _ in range(marks)] if device.type != "cpu" else []
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
            return [a.elapsed_time(b) / 1e3 for a, b in zip(self.events, self.events[1:len(self.clock)])]
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


def time_steps(step: Callable[[], object], device: torch.device, timing: Timing,
               between: Callable[[float], None] | None = None) -> StepTimes:
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
    iters = max(timing.iters, math.ceil(timing.min_block_s / max(statistics.fmean(warm), 1e-6))) if warm else timing.iters
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
