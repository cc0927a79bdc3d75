"""The throughput check's timing: the reference yardstick, the one-thread and allocator pinning, and `Throughput`,
what the fixture hands a test. It imports torch, so only the fixture imports it, when a test asks for it."""

from __future__ import annotations

import functools
import math
import statistics
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import cv2
import pytest
import torch
from torch import nn

import architectures
from harness.bench.measure import infer_step, synthetic_batch, train_step
from harness.bench.peak import DTYPES
from harness.hardware import cpu_name
from harness.memory import pin_thresholds

from .baseline import Machine
from .session import State, shown
from .verdict import REFERENCE_CONV, REFERENCE_GEMM, THREADS, compare, normalised

MAX_ROUNDS = 200


class Reference:
    """The yardstick: two fp32 kernels timed just before every round (pedantic's untimed setup), so that each
    round's rate is divided by what the machine delivered at that moment. A rate measured once per session does
    not track a shared VM: neighbours' jobs come and go within seconds.

    Two kernels, summarised by the geometric mean of their rates, because the machines this runs on differ in
    which library is fast: MKL's GEMM may take an AVX2 path where oneDNN's convolutions use AVX-512, and the nets
    measured spend their time in both kinds of kernel and in plain Python and memory traffic. A GEMM-only
    reference let a 2x slowdown pass on a newer CPU (docs/measurements.md#the-machines)."""

    def __init__(self) -> None:
        n = REFERENCE_GEMM
        batch, c, h, w = REFERENCE_CONV
        self.a, self.b = torch.randn(n, n), torch.randn(n, n)
        self.x, self.k = torch.randn(*REFERENCE_CONV), torch.randn(c, c, 3, 3)
        self.gemm_flops, self.conv_flops = 2 * n**3, 2 * batch * h * w * c * c * 9
        self.rates: list[float] = []
        for _ in range(3):
            self.sample()

    def sample(self) -> None:
        start = time.perf_counter()
        torch.mm(self.a, self.b)
        middle = time.perf_counter()
        torch.nn.functional.conv2d(self.x, self.k, padding=1)
        end = time.perf_counter()
        self.rates.append(math.sqrt(self.gemm_flops / (middle - start) * self.conv_flops / (end - middle)))

    def flops_per_s(self) -> float:
        """The best rate so far: what the machine delivers, for the baseline's record and the messages."""
        return max(self.rates)


@functools.cache
def session_reference() -> Reference:
    """One yardstick for the process (a pytest session), created at its first check, at the checks' thread count."""
    return Reference()


def this_machine(reference: Reference) -> Machine:
    return Machine(cpu_name(), torch.__version__, reference.flops_per_s() / 1e9)


@contextmanager
def pinned() -> Iterator[None]:
    """torch and OpenCV at THREADS, restored after: on a shared 2-core VM a two-thread kernel waits at every barrier
    for whichever thread was descheduled, while one thread degrades gracefully (docs/measurements.md#threads).

    And glibc's malloc thresholds fixed (harness.memory.pin_thresholds), for the rest of the process, as glibc's
    adaptation cannot be switched back on: without them glibc decides per process whether a step faults its
    buffers back in (docs/measurements.md#the-same-step-in-two-processes); later tests only save page faults."""
    pin_thresholds()
    torch_threads, cv2_threads = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(THREADS)
    cv2.setNumThreads(THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(torch_threads)
        cv2.setNumThreads(cv2_threads)


@dataclass(frozen=True)
class Measurement:
    """What one check measured (pytest-benchmark's JSON holds it too, as extra_info)."""

    key: str
    items_per_s: float  # at the median round
    normalised: float  # items/s per reference GFLOP/s, the median over rounds: what the baseline holds
    ratio: float | None  # normalised / the baseline's figure; None when recording or without one


@dataclass
class Throughput:
    """The `throughput` fixture's value: one measurement per test (pytest-benchmark times one thing a test)."""

    benchmark: Any  # pytest-benchmark's BenchmarkFixture
    state: State
    request: pytest.FixtureRequest

    def train_step(
        self,
        model: nn.Module | str,
        batch_size: int,
        input_size: tuple[int, int, int] | None = None,
        *,
        key: str | None = None,
        precision: str = "32",
    ) -> Measurement | None:
        """`convbench bench`'s train step (zero_grad, forward, cross-entropy, backward, SGD with momentum) on a
        synthetic batch; key `train_step/<architecture or class name>` unless given."""
        return self._step("train", model, batch_size, input_size, key, precision)

    def infer_step(
        self,
        model: nn.Module | str,
        batch_size: int,
        input_size: tuple[int, int, int] | None = None,
        *,
        key: str | None = None,
        precision: str = "32",
    ) -> Measurement | None:
        """`convbench bench`'s infer step (a forward in eval mode under inference_mode) on a synthetic batch;
        key `infer_step/<architecture or class name>` unless given."""
        return self._step("infer", model, batch_size, input_size, key, precision)

    def _step(
        self,
        mode: str,
        model: nn.Module | str,
        batch_size: int,
        input_size: tuple[int, int, int] | None,
        key: str | None,
        precision: str,
    ) -> Measurement | None:
        """A registered architecture is built at its own input size unless given one; a module needs one. The
        labels are shaped by the model's output on one sample (classes, or classes x H x W for a segmenter)."""
        if precision not in DTYPES:
            pytest.fail(f"precision={precision!r}: one of {', '.join(DTYPES)}", pytrace=False)
        if isinstance(model, str):
            try:
                info = architectures.info(model)
            except architectures.ArchitectureError as err:
                raise pytest.fail.Exception(str(err), pytrace=False) from None
            input_size = input_size or info.input_size
            torch.manual_seed(0)
            name, model = info.name, architectures.create(info.name, in_chans=input_size[0])
        elif input_size is None:
            pytest.fail(
                "input_size=(C, H, W) is needed for a module (a registered architecture knows its own)", pytrace=False
            )
        else:
            name = type(model).__name__
        torch.manual_seed(0)
        with torch.no_grad():
            output_shape = list(model.eval()(torch.zeros(1, *input_size)).shape[1:])
        x, y = synthetic_batch(batch_size, tuple(input_size), output_shape, torch.device("cpu"), channels_last=False)
        step = train_step(model, x, y, precision) if mode == "train" else infer_step(model, x, precision)
        default = f"{mode}_step/{name}" + ("" if precision == "32" else f"/{precision}")
        return self(key or default, step, items=batch_size)

    def __call__(self, key: str, fn: Callable[[], object], items: int) -> Measurement | None:
        """Times `fn`, which processes `items` items a call, in rounds of one call, each after a reference sample;
        the figure is the median over rounds of (items/s) / (reference GFLOP/s). Rounds: enough for
        --benchmark-max-time, at least --benchmark-min-rounds. Fails when the figure is below 1/tolerance of the
        baseline's; warns when far above it or when there is none. None under --benchmark-disable."""
        state, node = self.state, self.request.node.nodeid
        if state.measured.setdefault(key, node) != node:
            pytest.fail(
                f"{key}: already timed by {state.measured[key]}; give each measurement its own key=", pytrace=False
            )
        reference = session_reference()
        fn()  # first call: lazy initialisation, allocator growth, oneDNN primitive creation
        start = time.perf_counter()
        reference.sample()
        fn()
        once = time.perf_counter() - start
        option = self.request.config.getoption  # pytest-benchmark may leave its defaults as strings
        rounds = max(
            int(option("benchmark_min_rounds")), min(MAX_ROUNDS, int(float(option("benchmark_max_time")) / once))
        )
        done = len(reference.rates)
        self.benchmark.pedantic(fn, setup=reference.sample, rounds=rounds, iterations=1)
        if self.benchmark.disabled:  # --benchmark-disable: fn ran once, nothing was timed
            return None
        times = self.benchmark.stats.stats.data
        figure = statistics.median(normalised(items / t, rate) for t, rate in zip(times, reference.rates[done:]))
        rate = items / self.benchmark.stats.stats.median
        self.benchmark.extra_info.update(
            items=items, items_per_s=rate, normalised=figure, reference_gflops=reference.flops_per_s() / 1e9
        )
        state.machine = this_machine(reference)
        if state.record:
            state.recorded[key] = figure
            return Measurement(key, rate, figure, None)
        baseline = state.baseline
        verdict = compare(key, figure, baseline.figures.get(key), state.tolerance)
        self.benchmark.extra_info["baseline_ratio"] = verdict.ratio
        if verdict.ratio is None:
            state.missing.add(key)
        else:
            state.ratios[key] = verdict.ratio
        if not verdict.ok:
            recorded = baseline.recorded_on or "a machine it does not name"
            pytest.fail(
                f"{verdict.message}\n"
                f"  baseline: {shown(baseline.path, self.request.config)}, recorded on {recorded}\n"
                f"  this run: {state.machine}",
                pytrace=False,
            )
        if verdict.ratio is None or verdict.ratio > state.tolerance:
            warnings.warn(verdict.message, stacklevel=2)
        return Measurement(key, rate, figure, verdict.ratio)
