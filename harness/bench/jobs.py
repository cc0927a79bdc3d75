"""What a worker is asked to measure (plain dataclasses that travel to it as JSON on stdin), and the
parent's side: one worker process per job, its JSON result back, its failure as one line."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.errors import UserError

MODES = ("infer", "train")
PRECISIONS = ("32", "bf16-mixed", "16-mixed")
SMALL_INPUT = 64  # px: CIFAR/MNIST-sized nets below this, ImageNet-sized above


def default_batch_size(input_size: tuple[int, int, int], device: str) -> int:
    """128 for inputs up to 64 px (the CIFAR recipes' batch); above that 32 on a GPU and 8 on a CPU,
    where a 224-px VGG/ResNet train step at batch 32 is too slow for a benchmark's many steps."""
    if max(input_size[1:]) <= SMALL_INPUT:
        return 128
    return 8 if device == "cpu" else 32


@dataclass
class Timing:
    """How long to measure: `warmup` untimed steps, then `repeats` blocks of at least `iters` timed
    steps, more when needed for a block to last `min_block_s` (as Timer.blocked_autorange does: a
    block of a few short steps is too short to average out a busy machine's bursts)."""

    warmup: int = 10
    iters: int = 20
    repeats: int = 5
    min_block_s: float = 1.0


# `--devices`' defaults: fewer steps, because a DDP measurement runs at every world size, runs each
# timed block twice (with and without the all-reduce) and, on a CPU, gives each rank cores / N
# threads; still three repeats, for a median and a spread, of at least 5 steps and 1 s each.
DISTRIBUTED_TIMING = Timing(warmup=3, iters=5, repeats=3)


@dataclass
class ModelJob:
    name: str
    mode: str  # infer | train
    batch_size: int
    input_size: tuple[int, int, int]
    num_classes: int | None
    device: str
    precision: str
    channels_last: bool
    compile: bool
    threads: int
    timing: Timing = field(default_factory=Timing)
    detail: bool = False  # also time forward / backward / optimizer separately
    verify: bool = False  # also time the same step with torch.utils.benchmark.Timer, interleaved
    kind: str = "model"


@dataclass
class DataJob:
    dataset: str
    batch_size: int
    workers: int
    root: str | None
    input_size: tuple[int, int, int] | None  # synthetic only
    threads: int
    timing: Timing = field(default_factory=Timing)
    pipeline: str = "albumentations"  # data.pipeline; "device": augmented on `device`, no workers
    device: str = "cpu"
    kind: str = "data"


@dataclass
class DistributedJob:
    """The DDP train step of one model at one world size. Every rank's worker gets the same job and
    finds its place in the environment, as torchrun and Lightning set it: RANK, WORLD_SIZE,
    LOCAL_RANK, MASTER_ADDR, MASTER_PORT. `batch_size` is per rank (weak scaling)."""

    name: str
    batch_size: int
    input_size: tuple[int, int, int]
    num_classes: int | None
    device: str
    precision: str
    channels_last: bool
    compile: bool
    threads: int
    timing: Timing = field(default_factory=Timing)
    kind: str = "distributed"


@dataclass
class PeakJob:
    """The device's dense peak FLOP/s for `precision`: Lightning's table for known GPUs, else the
    faster of a GEMM and a convolution measured in this run."""

    device: str
    precision: str
    threads: int
    kind: str = "peak"


Job = ModelJob | DataJob | DistributedJob | PeakJob


def to_json(job: Job) -> dict[str, Any]:
    """The job, and the user's modules this process imported (`--import`): the worker imports them first."""
    from harness.imports import loaded

    return {**asdict(job), "imports": loaded()}


def from_json(data: dict[str, Any]) -> Job:
    """The job; the modules it names under ``imports`` are imported first."""
    from harness.imports import load

    data = dict(data)
    load(data.pop("imports", []), "--import")
    kind = data.pop("kind")
    cls = {"model": ModelJob, "data": DataJob, "distributed": DistributedJob, "peak": PeakJob}[kind]
    if "timing" in data:
        data["timing"] = Timing(**data["timing"])
    if data.get("input_size") is not None:
        data["input_size"] = tuple(data["input_size"])
    return cls(**data)


class WorkerError(UserError):
    """A measurement that crashed in its worker (not the user's mistake, but still one line)."""

    exit_code = 1


WORKER = [sys.executable, "-m", "harness.bench.worker"]


def run_job(job: Job, label: str) -> dict:
    proc = subprocess.run(WORKER, input=json.dumps(to_json(job)), capture_output=True, text=True)
    return worker_output(proc.returncode, proc.stdout, proc.stderr, label)


def worker_output(returncode: int, stdout: str, stderr: str, label: str) -> dict:
    """A finished worker's result, or its failure as one line."""
    if returncode == 0:
        return json.loads(stdout)
    if returncode == 2 and stdout:
        raise UserError(f"{label}: {json.loads(stdout)['error']}")
    if returncode < 0:
        name = signal.Signals(-returncode).name
        hint = " (out of host memory? try a smaller --batch-size)" if name == "SIGKILL" else ""
        raise WorkerError(f"{label}: worker killed by {name}{hint}")
    lines = [line for line in stderr.splitlines() if line.strip()]
    raise WorkerError(f"{label}: worker failed (exit {returncode}): {lines[-1] if lines else 'no output'}")
