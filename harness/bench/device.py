"""Which device a row was measured on, named as a reader would look it up, and how busy the machine was."""
from __future__ import annotations

import os
import platform
from pathlib import Path

import torch


def device_name(device: torch.device) -> str:
    """The GPU's marketing name, or the CPU model from /proc/cpuinfo (platform.processor() says
    only 'x86_64' on Linux) with its family and model numbers: a VM may call both a Zen 4 and a
    Zen 5 host just "AMD EPYC", and they differ 2x in convolution speed."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        fields: dict[str, str] = {}
        for line in cpuinfo.read_text().split("\n\n")[0].splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
        if "model name" in fields:
            numbers = f" (family {fields['cpu family']}, model {fields['model']})" if "cpu family" in fields else ""
            return fields["model name"] + numbers
    return platform.processor() or platform.machine()


def load_average() -> float:
    """The 1-minute load average (this worker included): above the core count, neighbours were
    competing for the cores while it measured."""
    return os.getloadavg()[0]
