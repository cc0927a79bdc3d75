"""Peak memory of the measuring process: CUDA allocator statistics on GPU, peak RSS on CPU."""

from __future__ import annotations

import resource
import sys

import torch


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
