"""What produced a figure: the machines a run or a measurement ran on, and the libraries that chose
its kernels. A throughput measured on an A100 and one on an H100 are different quantities, and so
are accuracies computed by AVX2 and AVX-512 kernels, which round differently; every record carries
this, read with torch and the standard library (no NVML: the driver version is in /proc)."""

from __future__ import annotations

import functools
import os
import platform
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where it is used: the record's types stay importable without it
    import torch

# /proc/cpuinfo flags that decide which kernels (and so which roundings) oneDNN, MKL and ATen pick
NUMERIC_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "avx_vnni",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "asimd",
    "sve",
)
# environment variables that change which kernels run (and so the roundings), recorded when set
KERNEL_ENV = (
    "ATEN_CPU_CAPABILITY",
    "ONEDNN_MAX_CPU_ISA",
    "DNNL_MAX_CPU_ISA",
    "MKL_CBWR",
    "MKL_ENABLE_INSTRUCTIONS",
    "CUBLAS_WORKSPACE_CONFIG",
    "NVIDIA_TF32_OVERRIDE",
)


@dataclass
class Gpu:
    name: str
    memory_bytes: int
    capability: str  # "9.0"
    multiprocessors: int


@dataclass
class Host:
    """One machine of a run, read on that machine."""

    name: str
    cpu: str  # model name, with family and model numbers (a VM may call Zen 4 and Zen 5 both "AMD EPYC")
    cpu_isa: str  # the vector ISA ATen dispatches its CPU kernels to (torch.backends.cpu.get_cpu_capability)
    cpu_flags: list[str]  # NUMERIC_FLAGS present
    cores: int  # this process's (its CPU affinity)
    gpus: list[Gpu] = field(default_factory=list)
    gpu_driver: str | None = None
    cuda: str | None = None
    cudnn: int | None = None
    nccl: str | None = None
    blas: str | None = None  # torch's BLAS build, with its version
    onednn: str | None = None
    kernel_env: dict[str, str] = field(default_factory=dict)  # the KERNEL_ENV variables set


@dataclass
class Hardware:
    """The hosts of a run (distinct, in rank order) and how the run used them."""

    label: str  # what the report groups speed, memory and time by
    device: str  # "cpu" or "cuda": what the model ran on
    hosts: list[Host]
    torch_threads: int  # intra-op, per process
    interop_threads: int
    dataloader_workers: int | None = None  # per process; None where no DataLoader ran
    devices: list[str] = field(default_factory=list)  # each rank's device (a GPU's name, or the CPU's), rank order


def cpu_fields() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo ({} where there is none)."""
    path = Path("/proc/cpuinfo")
    fields: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text().split("\n\n")[0].splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_name(fields: dict[str, str] | None = None) -> str:
    """The CPU model from /proc/cpuinfo (platform.processor() says only 'x86_64' on Linux) with its
    family and model numbers."""
    fields = cpu_fields() if fields is None else fields
    if "model name" in fields:
        numbers = f" (family {fields['cpu family']}, model {fields['model']})" if "cpu family" in fields else ""
        return fields["model name"] + numbers
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    """The GPU's marketing name, or the CPU's model."""
    import torch

    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()


@functools.cache
def _config() -> str:
    import torch

    return torch.__config__.show()


def _build(pattern: str) -> str | None:
    """A library's version from torch's build configuration."""
    m = re.search(pattern, _config())
    return m.group(1).strip() if m else None


def gpu_driver() -> str | None:
    """The NVIDIA kernel module's version, from the driver's own /proc file."""
    try:
        text = Path("/proc/driver/nvidia/version").read_text()
    except OSError:
        return None
    m = re.search(r"Kernel Module\s+(?:for \S+\s+)?([\d.]+)", text)
    return m.group(1) if m else None


def host(device_type: str = "cpu") -> Host:
    """This machine, as this process sees it; its GPUs only for a run on them (querying them starts
    CUDA, which a CPU run on a GPU node must not pay for)."""
    import torch

    fields = cpu_fields()
    flags = set(fields.get("flags", fields.get("Features", "")).split())
    cuda = device_type == "cuda" and torch.cuda.is_available()
    gpus = []
    if cuda:
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            gpus.append(Gpu(p.name, p.total_memory, f"{p.major}.{p.minor}", p.multi_processor_count))
    nccl = None
    if cuda and torch.distributed.is_nccl_available():
        nccl = ".".join(map(str, torch.cuda.nccl.version()))
    blas = _build(r"BLAS_INFO=(\w+)")
    return Host(
        name=socket.gethostname(),
        cpu=cpu_name(fields),
        cpu_isa=torch.backends.cpu.get_cpu_capability(),
        cpu_flags=[f for f in NUMERIC_FLAGS if f in flags],
        cores=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1,
        gpus=gpus,
        gpu_driver=gpu_driver() if cuda else None,
        cuda=torch.version.cuda if cuda else None,
        cudnn=torch.backends.cudnn.version() if cuda else None,
        nccl=nccl,
        blas=" ".join(filter(None, [blas, _build(r"Math Kernel Library Version ([\d.]+)") if blas == "mkl" else None])),
        onednn=_build(r"(?:MKL-DNN|oneDNN) (v[\d.]+)"),
        kernel_env={k: os.environ[k] for k in KERNEL_ENV if k in os.environ},
    )


def describe(
    device: torch.device | str,
    hosts: list[Host] | None = None,
    devices: list[str] | None = None,
    workers: int | None = None,
) -> Hardware:
    """The record of a run on ``device`` over ``hosts`` and each rank's ``devices`` (this host and
    device when not given: one process)."""
    import torch

    device = torch.device(device)
    hosts = hosts if hosts is not None else [host(device.type)]
    distinct: dict[str, Host] = {}
    for h in hosts:
        distinct.setdefault(h.name, h)
    devices = devices if devices is not None else [device_name(device)]
    threads = torch.get_num_threads()
    return Hardware(
        label=label(device.type, list(distinct.values()), devices, threads),
        device=device.type,
        hosts=list(distinct.values()),
        devices=devices,
        torch_threads=threads,
        interop_threads=torch.get_num_interop_threads(),
        dataloader_workers=workers,
    )


def label(device: str, hosts: list[Host], devices: list[str], threads: int) -> str:
    """'NVIDIA H100 80GB HBM3' (the GPUs the ranks ran on, not every GPU of their nodes), or
    'AMD EPYC (family 26, model 2) AVX512, 2 threads': what a speed depends on. Kinds of device or
    host mixed in one run are joined with ' + '."""
    if device == "cuda":
        return " + ".join(dict.fromkeys(devices))
    cpus = " + ".join(dict.fromkeys(f"{h.cpu} {h.cpu_isa}" for h in hosts))
    return f"{cpus}, {threads} thread{'' if threads == 1 else 's'}"
