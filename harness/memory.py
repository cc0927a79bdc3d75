"""Memory of a measuring or training process: glibc's allocation path, fixed so a step runs at one
speed in every process, and the peak: CUDA allocator statistics on GPU, peak RSS on CPU."""

from __future__ import annotations

import ctypes
import platform
import resource
import sys

import torch

# Fixed glibc malloc thresholds, so that every measuring and training process takes the same allocation path.
#
# glibc adapts its mmap threshold to the program's frees and returns the top of the heap to the
# kernel whenever enough of it is free. Depending on the order of frees, a training process then
# faults its step's buffers back in on every step or never does: the same step then runs at two
# speeds in two processes of the same code (docs/measurements.md, the same step in two processes).
# Fixed thresholds (which also turn the adaptation off) take the fault-free path every time; the
# PyTorch CPU tuning guides get the same effect by swapping in jemalloc or tcmalloc.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's ceiling on 64-bit; larger buffers are still mmapped (always, so evenly)
TRIM_THRESHOLD = 1 << 30  # never give the heap top back between steps


def pin_thresholds() -> bool:
    """True when set (glibc only; other C libraries are left alone). The bench's workers and every
    training process call it; a hand-written loop gets the same with the environment variables
    MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824."""
    if platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def reset_peak(device: torch.device) -> None:
    """Start a new peak window. On CPU the kernel's high-water mark cannot be reset, so callers
    that need a clean CPU window measure in a fresh process (as `convbench bench` does)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_bytes(device: torch.device) -> int:
    """Peak allocated bytes on a CUDA device, else the process's peak resident set size."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device))
    return peak_rss_bytes()


def peak_reserved_bytes(device: torch.device) -> int | None:
    """What the CUDA caching allocator reserved at its peak (None on CPU, which has no such pool)."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_reserved(device))
    return None


def peak_rss_bytes() -> int:
    """ru_maxrss is in KiB on Linux and in bytes on macOS."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)
