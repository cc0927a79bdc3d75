"""One measured row: the same fields in the JSON list, the CSV file and the wandb table."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass
class Result:
    """A model in one mode, or a data pipeline (mode "data": model fields are None).

    Each repeat yields one step time: for a model its median step (robust to the scheduler
    preempting a step on a shared machine), for a data pipeline its mean batch time (prefetching
    makes single batches bursty). step_time_ms is the median over repeats, step_time_std_ms and
    step_time_cv their spread (None with one repeat); samples_per_s = batch_size / step_time.
    step_time_mean_ms is total time over all timed steps (throughput semantics, as timm reports).
    peak_memory_bytes: GPU: the allocator's peak allocation; CPU: the worker's peak resident set
    (the kernel's high-water mark, so it includes a larger batch that ran out of memory first);
    for a data pipeline, the loading process's own (DataLoader workers are separate processes).
    FLOPs are model FLOPs, 2 x MACs per image forward, and 3 x forward for a train step
    (backward ~ 2 x forward); mfu = flops_per_s / peak_flops_per_s.
    """

    name: str
    mode: str
    batch_size: int
    requested_batch_size: int
    samples_per_s: float
    step_time_ms: float
    step_time_std_ms: float | None
    step_time_cv: float | None
    step_time_mean_ms: float
    peak_memory_bytes: int
    peak_memory_reserved_bytes: int | None
    params: int | None
    macs: int | None
    flops_per_step: int | None
    flops_per_s: float | None
    mfu: float | None
    peak_flops_per_s: float | None
    peak_flops_source: str | None
    input_size: list[int] | None
    device: str
    device_name: str
    torch_version: str
    precision: str | None
    channels_last: bool | None
    compile: bool | None
    threads: int
    load_average: float  # 1-minute, read when the timing ended
    warmup: int
    iters: int
    repeats: int
    workers: int | None = None
    samples_per_s_per_worker: float | None = None
    forward_ms: float | None = None
    backward_ms: float | None = None
    optimizer_ms: float | None = None
    timer_samples_per_s: float | None = None
    timer_agreement: float | None = None  # samples_per_s / timer_samples_per_s - 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


FIELDS: list[str] = [f.name for f in fields(Result)]
