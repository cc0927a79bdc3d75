"""The machine-normalised regression check, as pure functions (no timing here, so it can be tested).

A benchmark's rate (items/s) is divided by a reference rate (GFLOP/s: a GEMM's and a convolution's,
geometric mean) measured at the same thread count (THREADS) just before each round (conftest.Reference):
"items per reference GFLOP" moves with the code, far less with the machine or how busy it is. That figure
is compared with the committed baseline.
"""

from __future__ import annotations

from dataclasses import dataclass

# A benchmark fails when it runs at less than 1/TOLERANCE of its baseline rate: wide enough for the
# spread of unchanged code on a shared VM, narrow enough that a 2x slowdown fails
# (docs/measurements.md#regression-tolerance).
TOLERANCE = 1.5
UPDATE_ENV = "CONVBENCH_UPDATE_BASELINE"
THREADS = 1  # torch's and OpenCV's threads in every benchmark and its reference (see conftest's docstring)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    ratio: float | None  # measured / baseline; None without a baseline
    message: str


def normalised(items_per_s: float, reference_flops_per_s: float) -> float:
    """Items per GFLOP of the reference."""
    return items_per_s / (reference_flops_per_s / 1e9)


def compare(key: str, measured: float, baseline: float | None, tolerance: float = TOLERANCE) -> Verdict:
    if baseline is None:
        return Verdict(True, None, f"{key}: no baseline yet; record one with {UPDATE_ENV}=1")
    ratio = measured / baseline
    if ratio < 1 / tolerance:
        return Verdict(
            False,
            ratio,
            f"{key}: {1 / ratio:.2f}x slower than its baseline (normalised {measured:.4g} vs "
            f"{baseline:.4g}; fails below 1/{tolerance:g} of it)",
        )
    if ratio > tolerance:
        return Verdict(True, ratio, f"{key}: {ratio:.2f}x faster than its baseline; refresh it with {UPDATE_ENV}=1")
    return Verdict(True, ratio, f"{key}: {ratio:.2f}x its baseline")
