"""The device's dense peak FLOP/s, the denominator of MFU.

Known GPUs: Lightning's table of datasheet figures (`get_available_flops`). CPUs and GPUs missing
from it: the best rate of two dense kernels in the precision's dtype, measured in this run at the
bench's thread count, so MFU reads "fraction of what this machine's fastest dense kernel achieves
right now". Two, because no single library is fastest everywhere: on AMD CPUs MKL's GEMM (torch.mm)
takes its AVX2 path while oneDNN's convolutions use AVX-512, so a GEMM-only peak can put a conv net's
MFU above 100% (docs/measurements.md, the peak behind MFU).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.benchmark import Timer

DTYPES = {"32": torch.float32, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}
GEMM_SIZE = 2048  # saturates fp32 and bf16 GEMM on a modern CPU core; larger costs far more time for little rate
CONV_SHAPE = (8, 256, 32, 32)  # N, C, H, W of a 3x3, C -> C convolution: ~10 GFLOP a call, a ResNet stage's shape
SAMPLING = 2.0  # s per kernel: long enough that a busy VM still gives one undisturbed block


def best_rate(stmt: str, flops: float, threads: int, **tensors: torch.Tensor) -> float:
    """flops / the fastest block in SAMPLING seconds: a neighbour's burst can only slow a block down."""
    timer = Timer(stmt=stmt, globals={"torch": torch, "F": F, **tensors}, num_threads=threads)
    return flops / min(timer.blocked_autorange(min_run_time=SAMPLING).times)


def kernel_rates(device: torch.device, dtype: torch.dtype, threads: int) -> dict[str, float]:
    """FLOP/s of a square GEMM and of a 3x3 convolution."""
    n = GEMM_SIZE
    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
    batch, c, h, w = CONV_SHAPE
    x = torch.randn(*CONV_SHAPE, device=device).to(dtype)
    k = torch.randn(c, c, 3, 3, device=device).to(dtype)
    with torch.inference_mode():
        return {
            f"GEMM {n}^3": best_rate("torch.mm(a, b)", 2 * n**3, threads, a=a, b=b),
            f"3x3 conv {c}ch {h}px": best_rate(
                "F.conv2d(x, k, padding=1)", 2 * batch * h * w * c * c * 9, threads, x=x, k=k
            ),
        }


def device_peak(device: torch.device, precision: str, threads: int) -> tuple[float, str]:
    """(FLOP/s, where the figure comes from)."""
    dtype = DTYPES[precision]
    if device.type != "cpu":
        from lightning_fabric.utilities.throughput import get_available_flops  # a slow import; CPUs never need it

        table = get_available_flops(device, dtype)
        if table:
            return float(table), "lightning-table"
    rates = kernel_rates(device, dtype, threads)
    measured = ", ".join(f"{name} {rate / 1e9:.1f}" for name, rate in rates.items())
    return max(rates.values()), f"measured {str(dtype).removeprefix('torch.')}, the best of {measured} GFLOP/s"
