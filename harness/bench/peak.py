"""The device's dense peak FLOP/s, the denominator of MFU.

Known GPUs: Lightning's table of datasheet figures (`get_available_flops`). CPUs and GPUs missing
from it: the best rate of a large square GEMM in the precision's dtype, measured in this run at the
bench's thread count, so MFU reads "fraction of what this machine's matmul achieves right now".
"""
from __future__ import annotations

import torch
from torch.utils.benchmark import Timer

DTYPES = {"32": torch.float32, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}
GEMM_SIZE = 2048  # saturates fp32 and bf16 GEMM on a modern CPU core; 4096 gains < 3% for 8x the time
SAMPLING = 2.0  # s; with 1 s, a busy VM's best block still came out up to 15% low


def gemm_flops_per_s(device: torch.device, dtype: torch.dtype, threads: int) -> float:
    """2 n^3 / the fastest n x n matmul in SAMPLING seconds: the best block, since a neighbour's
    burst can only slow a block down."""
    n = GEMM_SIZE
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    timer = Timer(stmt="torch.mm(a, b)", globals={"torch": torch, "a": a, "b": b}, num_threads=threads)
    return 2 * n**3 / min(timer.blocked_autorange(min_run_time=SAMPLING).times)


def device_peak(device: torch.device, precision: str, threads: int) -> tuple[float, str]:
    """(FLOP/s, where the figure comes from)."""
    dtype = DTYPES[precision]
    if device.type != "cpu":
        from lightning_fabric.utilities.throughput import get_available_flops  # 3 s to import; CPUs never need it

        table = get_available_flops(device, dtype)
        if table:
            return float(table), "lightning-table"
    return gemm_flops_per_s(device, dtype, threads), f"measured {str(dtype).removeprefix('torch.')} GEMM {GEMM_SIZE}^3"
