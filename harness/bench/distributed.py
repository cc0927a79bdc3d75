"""The DDP train step across ranks (`convbench bench --devices N [--nodes M]`): global samples/s at
1, 2, 4, ... N x M ranks, scaling efficiency, the step's all-reduce share and bus bandwidth.

Each rank is a fresh worker process (`python -m harness.bench.worker`, as for every other
measurement) that joins a process group from the environment (env://: RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR, MASTER_PORT), NCCL on GPUs and gloo on CPUs, and wraps the model in
DistributedDataParallel. Locally the parent starts every rank on this machine; under srun each Slurm
task is one rank (Lightning's SLURMEnvironment reads the world from SLURM_PROCID, SLURM_NTASKS,
SLURM_LOCALID and the node list) and starts its own worker when the measured world includes it, so a
world smaller than the allocation runs on the first ranks: one node first, then more.

What is measured, and why it is honest on gloo and NCCL alike:
- Step time: every rank times its own steps as the single-process bench does (warm-up, then repeated
  blocks, device-synchronised stamps, median), blocks started together at a barrier, block length
  agreed (the longest any rank's warm-up asks for) so that every rank runs the same collectives.
- All-reduce share: each block is followed by an equal block of the same step with the gradient
  all-reduce skipped (a DDP comm hook that returns the bucket unreduced), interleaved so that both see
  the same machine. share = 1 - no-comm step / step: the time the step would save without the
  all-reduce, i.e. its exposed (not overlapped with backward) cost, straggler waits included. It uses
  only the step timing, so it holds whatever the backend does asynchronously.
- DDP bus bandwidth: the same comm hook runs DDP's default all-reduce (average the bucket) and stamps
  each bucket's launch and completion: host clocks on gloo (its future completes when the reduced
  data is in host memory), CUDA events on NCCL (recorded on the stream when the bucket is ready and in
  the future's callback, which runs on a stream that waits for the NCCL kernel). allreduce_ms is the
  time per step while any bucket was in flight; busbw is nccl-tests' 2(n-1)/n x bytes / time.
- Raw all-reduce: one torch.distributed.all_reduce of the same number of bytes in one tensor, timed
  alone in the same process group after the step (warm-up, synchronised blocks, median per op),
  the upper bound DDP's bucketed, overlapped all-reduce approaches.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import statistics
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import IO, Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from harness import hardware
from harness.errors import UserError
from harness.hardware import device_name
from harness.memory import peak_bytes, peak_reserved_bytes, reset_peak

from .jobs import WORKER, DistributedJob, to_json, worker_output
from .measure import (
    TRAIN_FLOPS_FACTOR,
    Stamps,
    StepTimes,
    build_model,
    load_average,
    synchronize,
    synthetic_batch,
    train_step,
)
from .results import Result

INIT_TIMEOUT = timedelta(minutes=5)  # a rank that never comes (or died) fails the measurement, not the allocation
RAW_WARMUP = 5


def world_sizes(total: int) -> list[int]:
    """1, 2, 4, ... below `total`, then `total`."""
    sizes = [1]
    while sizes[-1] * 2 < total:
        sizes.append(sizes[-1] * 2)
    return sizes + [total] if total > 1 else sizes


def bus_bandwidth(nbytes: int, seconds: float, world: int) -> float | None:
    """nccl-tests' busbw for all-reduce, 2(n-1)/n x bytes / time: the per-link rate, comparable
    across world sizes (None for one rank, which moves nothing)."""
    return 2 * (world - 1) / world * nbytes / seconds if world > 1 and seconds > 0 else None


# --- the rank's side (inside a worker process) ---


@dataclass
class TimedAllReduce:
    """DDP's default comm hook (average each bucket over the group) with every bucket's launch and
    completion stamped, and a switch that skips the communication for the comm-free baseline."""

    device: torch.device
    communicate: bool = True
    bucket_bytes: int = 0  # all-reduced per step, as counted in the last step that communicated
    _step: list[tuple[Any, Any]] = field(default_factory=list)
    _bytes: int = 0
    steps: list[list[tuple[Any, Any]]] = field(default_factory=list)

    def _stamp(self) -> Any:
        if self.device.type == "cpu":
            return time.perf_counter()
        event = torch.Event(device=self.device, enable_timing=True)
        event.record()
        return event

    def hook(self, _, bucket):  # type: ignore[no-untyped-def]  # DDP checks the annotations against the real
        # classes, and postponed annotations (strings) fail that check: GradBucket -> Future[Tensor]
        buffer = bucket.buffer()
        buffer.div_(dist.get_world_size())
        if not self.communicate:
            skipped: torch.futures.Future[torch.Tensor] = torch.futures.Future()
            skipped.set_result(buffer)
            return skipped
        start = self._stamp()
        stamps = self._step

        def done(fut: torch.futures.Future[list[torch.Tensor]]) -> torch.Tensor:
            stamps.append((start, self._stamp()))
            return fut.value()[0]

        self._bytes += buffer.numel() * buffer.element_size()
        return dist.all_reduce(buffer, async_op=True).get_future().then(done)

    def end_step(self) -> None:
        self.steps.append(self._step)
        if self._bytes:
            self.bucket_bytes = self._bytes
        self._step, self._bytes = [], 0

    def in_flight(self) -> list[float]:
        """Seconds per step during which at least one bucket was being reduced (buckets overlap)."""
        synchronize(self.device)
        out = []
        for stamps in self.steps:
            if not stamps:
                continue
            origin = stamps[0][0]
            spans = sorted((self._offset(origin, a), self._offset(origin, b)) for a, b in stamps)
            total, end = 0.0, float("-inf")
            for a, b in spans:
                total += max(0.0, b - max(a, end))
                end = max(end, b)
            out.append(total)
        return out

    def _offset(self, origin: Any, stamp: Any) -> float:
        return stamp - origin if self.device.type == "cpu" else origin.elapsed_time(stamp) / 1e3


def timed_block(step: Callable[[], None], device: torch.device, iters: int) -> list[float]:
    dist.barrier()
    stamps = Stamps(device, iters + 1)
    stamps.mark()
    for _ in range(iters):
        step()
        stamps.mark()
    return stamps.durations()


def raw_allreduce(nbytes: int, dtype: torch.dtype, device: torch.device, repeats: int, min_block_s: float) -> float:
    """Median seconds of one all_reduce of `nbytes` in one tensor (zeros: a sum that never overflows),
    nccl-tests style: warm-up, then blocks of back-to-back ops ended by a device synchronisation,
    each block's time / its ops."""
    tensor = torch.zeros(max(1, nbytes // torch.empty((), dtype=dtype).element_size()), dtype=dtype, device=device)
    for _ in range(RAW_WARMUP):
        dist.all_reduce(tensor)
    synchronize(device)
    start = time.perf_counter()
    dist.all_reduce(tensor)
    synchronize(device)
    ops = agree_max(max(1, int(min_block_s / 4 / max(time.perf_counter() - start, 1e-6))), device)
    per_op = []
    for _ in range(repeats):
        dist.barrier()
        start = time.perf_counter()
        for _ in range(ops):
            dist.all_reduce(tensor)
        synchronize(device)
        per_op.append((time.perf_counter() - start) / ops)
    return statistics.median(per_op)


def agree_max(value: int, device: torch.device) -> int:
    """The largest `value` over ranks: every rank must run the same number of collectives."""
    t = torch.tensor([value], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def measure_ddp(job: DistributedJob) -> Result | None:
    """Run on every rank; rank 0 returns the row (gathered from all ranks), the others None."""
    rank, world, local_rank = (int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    torch.set_num_threads(job.threads)
    if job.device == "cuda":  # the documented NCCL set-up: one device per rank, set before the group
        torch.cuda.set_device(local_rank)
        device, backend = torch.device("cuda", local_rank), "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    dist.init_process_group(backend, timeout=INIT_TIMEOUT)
    try:
        result = _measure(job, device, backend, rank, world)
        # every rank done with the group before any tears it down: gloo aborts (SIGABRT) a rank whose
        # peer closed its connections first (docs/measurements.md, DDP on one machine)
        dist.barrier()
        return result
    finally:
        dist.destroy_process_group()


def _measure(job: DistributedJob, device: torch.device, backend: str, rank: int, world: int) -> Result | None:
    model, profile = build_model(job, device)
    ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    comm = TimedAllReduce(device)
    ddp.register_comm_hook(None, comm.hook)
    runner = torch.compile(ddp) if job.compile else ddp
    reset_peak(device)
    x, y = synthetic_batch(job.batch_size, job.input_size, profile.output_shape, device, job.channels_last)
    train = train_step(runner, x, y, job.precision)

    def step() -> None:
        train()
        comm.end_step()

    timing = job.timing
    warm = timed_block(step, device, timing.warmup + 1)[1:] if timing.warmup else []
    iters = (
        timing.iters if not warm else max(timing.iters, int(timing.min_block_s / max(statistics.fmean(warm), 1e-6)) + 1)
    )
    iters = agree_max(iters, device)
    comm.steps.clear()
    with_comm, without = [], []
    for _ in range(timing.repeats):
        with_comm.append(timed_block(step, device, iters))
        comm.communicate = False
        without.append(timed_block(step, device, iters))
        comm.communicate = True
    in_flight = comm.in_flight()
    nbytes = comm.bucket_bytes
    dtype = next(p.dtype for p in model.parameters())
    raw = raw_allreduce(nbytes, dtype, device, timing.repeats, timing.min_block_s)
    step_time = StepTimes(with_comm).summary(statistics.median)
    mine = {
        "host": socket.gethostname(),
        "machine": hardware.host(device.type),
        "device_name": device_name(device),
        "step_time": step_time[0],
        "no_comm": StepTimes(without).summary(statistics.median)[0],
        "in_flight": statistics.median(in_flight) if in_flight else 0.0,
        "raw": raw,
    }
    ranks: list[dict[str, Any]] = [{} for _ in range(world)]
    dist.all_gather_object(ranks, mine)
    if rank != 0:
        return None
    rates = [job.batch_size / r["step_time"] for r in ranks]
    mean = lambda key: statistics.fmean(r[key] for r in ranks)  # noqa: E731
    hosts = [r["host"] for r in ranks]
    flops_per_step = 2 * profile.macs * job.batch_size * TRAIN_FLOPS_FACTOR * world
    samples_per_s = sum(rates)
    median, std, cv = step_time
    hw = hardware.describe(device, [r["machine"] for r in ranks], [r["device_name"] for r in ranks])
    return Result(
        name=job.name,
        mode="train",
        batch_size=job.batch_size,
        requested_batch_size=job.batch_size,
        samples_per_s=samples_per_s,
        step_time_ms=median * 1e3,
        step_time_std_ms=None if std is None else std * 1e3,
        step_time_cv=cv,
        step_time_mean_ms=StepTimes(with_comm).mean * 1e3,
        peak_memory_bytes=peak_bytes(device),
        peak_memory_reserved_bytes=peak_reserved_bytes(device),
        params=profile.params,
        macs=profile.macs,
        flops_per_step=flops_per_step,
        flops_per_s=flops_per_step * samples_per_s / (job.batch_size * world),
        mfu=None,
        peak_flops_per_s=None,
        peak_flops_source=None,
        input_size=list(job.input_size),
        device=device.type,
        device_name=hw.devices[0],
        hardware=asdict(hw),
        torch_version=torch.__version__,
        precision=job.precision,
        channels_last=job.channels_last,
        compile=job.compile,
        threads=job.threads,
        load_average=load_average(),
        warmup=timing.warmup,
        iters=iters,
        repeats=timing.repeats,
        world_size=world,
        nodes=len(set(hosts)),
        hosts=hosts,
        backend=backend,
        rank_samples_per_s_min=min(rates),
        rank_samples_per_s_max=max(rates),
        no_comm_step_time_ms=mean("no_comm") * 1e3,
        allreduce_share=1 - mean("no_comm") / mean("step_time"),
        allreduce_bytes=nbytes,
        allreduce_ms=mean("in_flight") * 1e3,
        allreduce_busbw=bus_bandwidth(nbytes, mean("in_flight"), world),
        raw_allreduce_ms=mean("raw") * 1e3,
        raw_allreduce_busbw=bus_bandwidth(nbytes, mean("raw"), world),
    )


# --- the launcher's side (the `convbench bench` process) ---


@dataclass
class Launcher:
    """Where this `convbench bench` process sits: on its own (it starts every rank on this machine)
    or as one Slurm task (it starts its own rank only)."""

    ranks: list[int]  # the global ranks this process starts, when the measured world includes them
    local_ranks: dict[int, int]
    address: str
    base_port: int | None  # Slurm: the job's port, + the measurement's index; locally a free port each time
    is_reporter: bool  # rank 0's launcher prints and writes the results

    @classmethod
    def local(cls, devices: int) -> Launcher:
        return cls(list(range(devices)), {r: r for r in range(devices)}, "127.0.0.1", None, True)

    @classmethod
    def slurm(cls, devices: int, nodes: int) -> Launcher:
        from lightning_fabric.plugins.environments import SLURMEnvironment

        env = SLURMEnvironment()
        tasks, n_nodes = (
            env.world_size(),
            int(os.environ.get("SLURM_NNODES", os.environ.get("SLURM_JOB_NUM_NODES", "1"))),
        )
        if tasks != devices * nodes or n_nodes != nodes:
            raise UserError(
                f"--devices {devices} --nodes {nodes} asks for {devices * nodes} ranks on {nodes} node(s), but this "
                f"Slurm step has {tasks} task(s) on {n_nodes} node(s): run it with srun --nodes {nodes} "
                f"--ntasks-per-node {devices}"
            )
        rank = env.global_rank()
        return cls([rank], {rank: env.local_rank()}, env.main_address, env.main_port, rank == 0)

    def port(self, index: int) -> int:
        if self.base_port is not None:
            return self.base_port + index
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    def run(self, job: DistributedJob, world: int, index: int, label: str) -> Result | None:
        """Start this process's ranks of a `world`-rank measurement and wait for them; rank 0's
        launcher returns the row. A rank that fails stops the others at once (locally) or by the
        process group's timeout (other nodes)."""
        mine = [r for r in self.ranks if r < world]
        if not mine:
            return None
        port, payload = self.port(index), json.dumps(to_json(job))
        procs: dict[int, subprocess.Popen[str]] = {}
        files: dict[int, tuple[IO[str], IO[str]]] = {}
        outputs: dict[int, dict[str, Any]] = {}
        with contextlib.ExitStack() as stack:
            stack.callback(_stop, procs)  # on a rank's failure or Ctrl-C, no rank outlives the measurement
            for r in mine:  # output to files, not pipes: a rank chatty on stderr must never block on a full pipe
                env = {
                    **os.environ,
                    "RANK": str(r),
                    "WORLD_SIZE": str(world),
                    "LOCAL_RANK": str(self.local_ranks[r]),
                    "MASTER_ADDR": self.address,
                    "MASTER_PORT": str(port),
                    "OMP_NUM_THREADS": str(job.threads),
                }
                files[r] = (
                    stack.enter_context(tempfile.TemporaryFile("w+")),
                    stack.enter_context(tempfile.TemporaryFile("w+")),
                )
                procs[r] = subprocess.Popen(
                    WORKER, stdin=subprocess.PIPE, stdout=files[r][0], stderr=files[r][1], text=True, env=env
                )
                procs[r].stdin.write(payload)
                procs[r].stdin.close()
            for r, proc in _as_they_finish(procs):
                out, err = (f.seek(0) or f.read() for f in files[r])
                outputs[r] = worker_output(proc.returncode, out, err, f"{label}, rank {r}")
        return Result(**outputs[0]) if outputs.get(0) else None


def _stop(procs: dict[int, subprocess.Popen[str]]) -> None:
    for proc in procs.values():
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _as_they_finish(procs: dict[int, subprocess.Popen[str]]) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    """(rank, process) in the order they exit, so the first failure is reported, not a peer's hang."""
    pending = dict(procs)
    while pending:
        for r, proc in list(pending.items()):
            if proc.poll() is not None:
                del pending[r]
                yield r, proc
        time.sleep(0.05)


def under_slurm() -> bool:
    """Lightning's test (a Slurm step's SLURM_NTASKS, not in an interactive job), importing Lightning
    (seconds) only when there is a Slurm variable to read."""
    if "SLURM_NTASKS" not in os.environ:
        return False
    from lightning_fabric.plugins.environments import SLURMEnvironment

    with warnings.catch_warnings():  # "srun is available but not used": this process needs no srun when local
        warnings.simplefilter("ignore")
        return SLURMEnvironment.detect()


def with_efficiency(rows: list[Result]) -> list[Result]:
    """Scaling efficiency of one model's rows against its 1-rank row: rate(N) / (N x rate(1))."""
    one = next((r for r in rows if r.world_size == 1), None)
    for r in rows:
        r.scaling_efficiency = (
            None if one is None or r.world_size is None else r.samples_per_s / (r.world_size * one.samples_per_s)
        )
    return rows


def launcher(devices: int, nodes: int) -> Launcher:
    if under_slurm():
        return Launcher.slurm(devices, nodes)
    if nodes > 1:
        raise UserError(
            f"--nodes {nodes}: ranks on other nodes need Slurm; run it under srun --nodes {nodes} "
            f"--ntasks-per-node {devices} (this process is not a Slurm task)"
        )
    return Launcher.local(devices)
