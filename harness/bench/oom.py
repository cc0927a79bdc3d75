"""Out of memory at the requested batch size: halve it and try again, and report what ran."""
from __future__ import annotations

import gc
from typing import Callable, TypeVar

import torch

from harness.errors import UserError

T = TypeVar("T")


def is_oom(err: BaseException) -> bool:
    """CUDA raises torch.OutOfMemoryError; the CPU allocator a RuntimeError (when the kernel refuses
    the allocation rather than killing the process, which the parent reports instead)."""
    return isinstance(err, torch.OutOfMemoryError) or (isinstance(err, RuntimeError) and "can't allocate memory" in str(err))


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def with_halving(measure: Callable[[int], T], batch_size: int, on_oom: Callable[[], None] = free_memory) -> tuple[T, int]:
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
