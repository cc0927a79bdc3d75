"""The throughput check's figure and decision, as pure functions (no timing, no torch), so it can be tested on
figures alone.

A rate (items/s) is divided by a reference rate (GFLOP/s: the geometric mean of a GEMM's and a convolution's)
measured at the same thread count (THREADS) just before each round (`measure.Reference`): "items per reference
GFLOP" moves with the code, far less with the machine or how busy it is. That figure is compared with a baseline.
"""

from __future__ import annotations

from dataclasses import dataclass

# A check fails when it runs at less than 1/TOLERANCE of its baseline rate: wide enough for the spread of
# unchanged code on a shared VM, narrow enough that a 2x slowdown fails (docs/measurements.md#regression-tolerance).
TOLERANCE = 1.5
THREADS = 1  # torch's and OpenCV's threads in every check and its reference (docs/measurements.md#threads)
REFERENCE_GEMM = 1024  # n of the fp32 n x n reference matmul (MKL): long enough to time, short beside a round
REFERENCE_CONV = (8, 128, 32, 32)  # N, C, H, W of the fp32 3x3, C -> C reference convolution (oneDNN)
RECORD = "--throughput-record"  # how to (re-)record a baseline, named in the messages


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
        return Verdict(True, None, f"{key}: no baseline yet; record one with {RECORD}")
    ratio = measured / baseline
    if ratio < 1 / tolerance:
        return Verdict(
            False,
            ratio,
            f"{key}: {1 / ratio:.2f}x slower than its baseline (normalised {measured:.4g} vs "
            f"{baseline:.4g} items/s per reference GFLOP/s; fails below 1/{tolerance:g} of it)",
        )
    if ratio > tolerance:
        return Verdict(True, ratio, f"{key}: {ratio:.2f}x faster than its baseline; refresh it with {RECORD}")
    return Verdict(True, ratio, f"{key}: {ratio:.2f}x its baseline")


# what a baseline's figures are, written into every baseline file
WHAT = (
    "median over rounds of items/s per reference GFLOP/s (the geometric mean of an fp32 "
    f"{REFERENCE_GEMM}^3 GEMM's and a 3x3 convolution's rates, timed just before), at {THREADS} thread; "
    f"a check fails below 1/TOLERANCE of its figure (--throughput-tolerance, {TOLERANCE:g} unless set; "
    "convbench's harness/throughput_check)"
)
