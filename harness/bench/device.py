"""Which device a row was measured on, named as a reader would look it up, and how busy the machine was."""
from __future__ import annotations

import os
import platform
from pathlib import Path

import torch


def device_name(device: torch.device) -> str:
    """The GPU's marketing name, or the CPU model from /proc/cpuinfo (platform.processor() says
    only 'x86_64' on Linux)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def load_average() -> float:
    """The 1-minute load average (this worker included): above the core count, neighbours were
    competing for the cores while it measured."""
    return os.getloadavg()[0]
