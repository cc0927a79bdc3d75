"""Fixed glibc malloc thresholds, so that every measuring process takes the same allocation path.

glibc adapts its mmap threshold to the program's frees and returns the top of the heap to the
kernel whenever enough of it is free. Depending on the order of frees, a training process then
faults its step's buffers back in on every step or never does: lenet5 train at batch 128 ran 14 ms
a step in some processes and 20 ms (3,000 minor faults a step) in others, on the same code.
Fixed thresholds (which also turn the adaptation off) take the fault-free path every time; the
PyTorch CPU tuning guides get the same effect by swapping in jemalloc or tcmalloc.
"""
from __future__ import annotations

import ctypes
import platform

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's ceiling on 64-bit; larger buffers are still mmapped (always, so evenly)
TRIM_THRESHOLD = 1 << 30  # never give the heap top back between steps


def pin_thresholds() -> bool:
    """True when set (glibc only; other C libraries are left alone)."""
    if platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
