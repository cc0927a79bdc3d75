"""Benchmarks with a machine-normalised regression check against baseline.json.

`make test` runs them briefly (pytest-benchmark's defaults: about a second, at least 5 rounds each);
`make bench` runs them longer and writes the JSON report. Everything here runs at one thread: on a shared 2-core VM a
two-thread kernel waits at every barrier for whichever thread was descheduled, while one thread degrades
gracefully (docs/measurements.md#threads).

Reuse in a new benchmark module of this folder:

    def test_my_step(regression_check):
        regression_check("my/step/key", step_callable, items=batch_size)

Refresh the baseline (after an intended speed change, or on a new reference machine):
    CONVBENCH_UPDATE_BASELINE=1 make bench
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import pytest
import torch

from harness.hardware import device_name
from harness.memory import pin_thresholds
from tests.benchmarks.regression import THREADS, TOLERANCE, UPDATE_ENV, compare, normalised

BASELINE = Path(__file__).with_name("baseline.json")
REFERENCE_GEMM = 1024  # n of the fp32 n x n reference matmul (MKL): long enough to time, short beside a round
REFERENCE_CONV = (8, 128, 32, 32)  # N, C, H, W of the fp32 3x3, C -> C reference convolution (oneDNN)
MAX_ROUNDS = 200
RATIOS = pytest.StashKey[dict[str, float]]()


class Baseline:
    """The committed normalised figures; in update mode, collects new ones and writes them at the end."""

    def __init__(self, path: Path, update: bool) -> None:
        self.path = path
        self.update = update
        self.figures: dict[str, float] = json.loads(path.read_text())["normalised"] if path.is_file() else {}
        self.recorded: dict[str, float] = {}

    def save(self, reference_flops: float) -> None:
        figures = {**self.figures, **self.recorded}
        self.path.write_text(
            json.dumps(
                {
                    "what": "median over rounds of items/s per reference GFLOP/s (the geometric mean of an fp32 "
                    f"{REFERENCE_GEMM}^3 GEMM's and a 3x3 convolution's rates, timed just before), "
                    f"at {THREADS} thread; "
                    f"a benchmark fails below 1/{TOLERANCE:g} of its figure (tests/benchmarks/regression.py)",
                    "recorded_on": {
                        "cpu": device_name(torch.device("cpu")),
                        "torch": torch.__version__,
                        "reference_gflops": round(reference_flops / 1e9, 2),
                    },
                    "normalised": {k: float(f"{v:.4g}") for k, v in sorted(figures.items())},
                },
                indent=1,
            )
            + "\n"
        )


@pytest.fixture(scope="session", autouse=True)
def steady_malloc() -> None:
    """Same allocation path in every session (harness.memory.pin_thresholds): without it glibc's
    adaptive thresholds decide per process whether a step faults its buffers back in
    (docs/measurements.md#the-same-step-in-two-processes). It stays so for the rest of the pytest session,
    where it only saves page faults."""
    pin_thresholds()


@pytest.fixture(scope="session", autouse=True)
def one_thread() -> Iterator[None]:
    """torch and OpenCV at THREADS for the session (see the module docstring), restored after."""
    torch_threads, cv2_threads = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(THREADS)
    cv2.setNumThreads(THREADS)
    yield
    torch.set_num_threads(torch_threads)
    cv2.setNumThreads(cv2_threads)


class Reference:
    """The yardstick: two fp32 kernels timed just before every benchmark round (pedantic's untimed
    setup), so that each round's rate is divided by what the machine delivered at that moment.
    A rate measured once per session does not track a shared VM: neighbours' jobs come and go
    within seconds.

    Two kernels, summarised by the geometric mean of their rates, because the VMs this runs on
    differ in which library is fast: MKL's GEMM may take an AVX2 path where oneDNN's convolutions
    use AVX-512, and the nets measured here spend their time in both kinds of kernel and in plain
    Python and memory traffic. A GEMM-only reference let a 2x slowdown pass on a newer CPU
    (docs/measurements.md#the-machines)."""

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
        """The best rate so far, for the record in baseline.json and the benchmark JSON."""
        return max(self.rates)


@pytest.fixture(scope="session")
def reference(one_thread: None) -> Reference:
    return Reference()


@pytest.fixture(scope="session")
def baseline(reference: Reference) -> Iterator[Baseline]:
    b = Baseline(BASELINE, update=os.environ.get(UPDATE_ENV) == "1")
    yield b
    if b.update and b.recorded:
        b.save(reference.flops_per_s())


@pytest.fixture
def regression_check(
    benchmark,
    reference: Reference,
    baseline: Baseline,  # type: ignore[no-untyped-def]
    request: pytest.FixtureRequest,
) -> Callable[[str, Callable[[], object], int], None]:
    """`check(key, fn, items)`: benchmark `fn` (which processes `items` items per call) in rounds
    of one call, each after a reference sample; the figure is the median over rounds of (items/s) /
    (reference GFLOP/s). Rounds: enough for --benchmark-max-time, at least --benchmark-min-rounds.
    Fails when the figure is too far below the baseline; warns when much above it or when there
    is no baseline yet."""

    def check(key: str, fn: Callable[[], object], items: int) -> None:
        fn()  # first call: lazy initialisation, allocator growth, oneDNN primitive creation
        start = time.perf_counter()
        reference.sample()
        fn()
        once = time.perf_counter() - start
        option = request.config.getoption  # pytest-benchmark may leave its defaults as strings
        rounds = max(
            int(option("benchmark_min_rounds")), min(MAX_ROUNDS, int(float(option("benchmark_max_time")) / once))
        )
        done = len(reference.rates)
        benchmark.pedantic(fn, setup=reference.sample, rounds=rounds, iterations=1)
        if benchmark.disabled:  # --benchmark-disable: fn ran once, nothing was timed
            return
        figure = statistics.median(
            normalised(items / t, rate) for t, rate in zip(benchmark.stats.stats.data, reference.rates[done:])
        )
        benchmark.extra_info.update(
            items=items,
            items_per_s=items / benchmark.stats.stats.median,
            normalised=figure,
            reference_gflops=reference.flops_per_s() / 1e9,
        )
        if baseline.update:
            baseline.recorded[key] = figure
            return
        verdict = compare(key, figure, baseline.figures.get(key))
        benchmark.extra_info["baseline_ratio"] = verdict.ratio
        if verdict.ratio is not None:
            request.config.stash.setdefault(RATIOS, {})[key] = verdict.ratio
        if not verdict.ok:
            pytest.fail(verdict.message)
        if verdict.ratio is None or verdict.ratio > TOLERANCE:
            warnings.warn(verdict.message, stacklevel=2)

    return check


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:  # type: ignore[no-untyped-def]
    ratios = config.stash.get(RATIOS, {})
    if ratios:
        key = min(ratios, key=ratios.__getitem__)
        terminalreporter.write_line(
            f"benchmarks vs baseline: {len(ratios)} checked, worst {ratios[key]:.2f}x ({key}), "
            f"best {max(ratios.values()):.2f}x; fails below {1 / TOLERANCE:.2f}x"
        )
