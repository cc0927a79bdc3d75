"""harness.hardware: what a record says it ran on, against what this machine says of itself."""

from __future__ import annotations

import dataclasses
import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness import hardware
from tests.helpers import ENV, assert_names_this_machine


def test_this_machine_as_the_records_name_it() -> None:
    torch.set_num_threads(1)
    hw = dataclasses.asdict(hardware.describe("cpu", workers=3))
    assert_names_this_machine(hw, threads=1)
    assert (
        hw["dataloader_workers"] == 3
        and hw["label"] == f"{hw['hosts'][0]['cpu']} {hw['hosts'][0]['cpu_isa']}, 1 thread"
    )


@pytest.mark.skipif(platform.machine() != "x86_64", reason="ATen's AVX2 kernels are x86's")
def test_restricted_kernels_are_named() -> None:
    """A process held to AVX2 kernels (as the demo's 86.41% ran) says so: another ISA, the variables
    that set it, and another label, so the report does not pool its speed with this CPU's own."""
    code = (
        "import dataclasses, json; from harness import hardware; "
        "print(json.dumps(dataclasses.asdict(hardware.describe('cpu'))))"
    )
    env = {**ENV, "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    held = json.loads(
        subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    )
    (host,) = held["hosts"]
    assert host["cpu_isa"] == "AVX2" and host["kernel_env"] == {
        "ATEN_CPU_CAPABILITY": "avx2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
    }
    own = hardware.describe("cpu")
    if own.hosts[0].cpu_isa != "AVX2":  # on an AVX-512 machine the two are told apart
        assert held["label"].rsplit(", ", 1)[0] == f"{own.hosts[0].cpu} AVX2" != own.label.rsplit(", ", 1)[0]


def test_a_gpu_label_names_the_gpus_the_ranks_ran_on() -> None:
    gpu = hardware.Gpu("NVIDIA A100-SXM4-80GB", 85_000_000_000, "8.0", 108)
    hosts = [
        hardware.Host("n1", "cpu", "AVX512", [], 64, [gpu] * 8),
        hardware.Host("n2", "cpu", "AVX512", [], 64, [dataclasses.replace(gpu, name="NVIDIA H100 80GB HBM3")] * 8),
    ]
    a100, h100 = ["NVIDIA A100-SXM4-80GB"] * 8, ["NVIDIA H100 80GB HBM3"] * 8
    assert hardware.label("cuda", hosts, a100 + h100, 8) == "NVIDIA A100-SXM4-80GB + NVIDIA H100 80GB HBM3"
    assert hardware.label("cuda", hosts, h100, 8) == "NVIDIA H100 80GB HBM3"  # the GPUs used, not all of a node's


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (the GPU check runs it where one is lent)")
def test_a_cuda_record_fills_the_gpu_fields(tmp_path: Path) -> None:
    from harness.config.train_config import resolve
    from harness.training.run import train

    config = resolve(
        [
            (
                "test",
                {
                    "arch": "resnet20",
                    "dataset": "synthetic",
                    "epochs": 1,
                    "results": str(tmp_path),
                    "wandb": {"mode": "disabled"},
                    "trainer": {"accelerator": "gpu", "devices": 1, "precision": "bf16-mixed"},
                    "data": {"input_size": [3, 32, 32], "num_samples": 1024, "batch_size": 128},
                },
            )
        ]
    )
    r = train(config)
    assert r is not None and r.status == "completed" and r.hardware is not None
    (host,) = r.hardware.hosts
    assert r.hardware.device == "cuda" and r.hardware.label == torch.cuda.get_device_name(0)
    assert len(host.gpus) == torch.cuda.device_count() and host.gpus[0].memory_bytes > 2**30
    assert host.cuda == torch.version.cuda and host.cudnn == torch.backends.cudnn.version()
    assert host.gpu_driver and host.gpu_driver[0].isdigit()
    assert host.nccl is not None or not torch.distributed.is_nccl_available()
