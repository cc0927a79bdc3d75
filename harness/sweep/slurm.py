"""SLURM backend: sbatch arrays per stage and resource shape; array task id + the array's offset = run index.

Stage 0 holds named runs (convbench.runs) and runs without dependencies; stage 1 the runs that need
a named run's checkpoint, submitted with ``--dependency=afterok:<stage-0 arrays>`` when that run is not
already completed. Runs with a result.json, or pending/running in a job of this sweep, are not
submitted again, so ``sweep run`` after ``sweep cancel`` submits only the rest.

Slurm caps array task ids below the cluster's MaxArraySize (read from ``scontrol show config``, 1001 by
default) and an ``--array`` string at 4,096 characters, so one group of runs becomes as many arrays as
these limits need: each covers a block of at most MaxArraySize run indices (rounded down to two
significant digits, so 1000 at the default: runs 0-999, then 1000-1999, ...), its task ids are the run
indices minus the block's first (the offset, rendered into the script), written as ranges (``0-599``,
``0-9,20-29``) with ``%N`` from ``convbench.slurm.array_parallelism``.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.errors import UserError
from harness.sweep import ranges, store
from harness.sweep.spec import Run, Sweep
from harness.sweep.store import ArrayJob

TEMPLATES = Path(__file__).resolve().parent / "templates"  # a symlink to slurm/templates, packaged as data
ACTIVE = {
    "PENDING",
    "RUNNING",
    "CONFIGURING",
    "COMPLETING",
    "REQUEUED",
    "RESIZING",
    "SUSPENDED",
    "REQUEUE_HOLD",
    "REQUEUE_FED",
}
MAX_ARRAY_SPEC = 4096  # slurmctld refuses a longer --array string ("Pathname ... too long", Slurm 22.05)
SLURM_DEFAULT_MAX_ARRAY_SIZE = 1001


def _slurm(cmd: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise UserError(f"{cmd[0]} not found: is Slurm installed and SLURM_CONF set?") from None
    except subprocess.TimeoutExpired:
        raise UserError(
            f"{' '.join(cmd[:3])} ... gave no answer in {timeout:.0f}s: is slurmctld overloaded or down?"
        ) from None


def _last_line(proc: subprocess.CompletedProcess) -> str:
    lines = (proc.stderr or proc.stdout).strip().splitlines()
    return lines[-1] if lines else "no output"


@dataclass(frozen=True)
class Limits:
    """What the cluster accepts, from ``scontrol show config`` (read once per submission)."""

    max_array_size: int  # array task ids must be < this
    max_job_count: int  # slurmctld holds at most this many job records; every array task is one

    def __post_init__(self) -> None:
        if self.max_array_size < 1:
            raise UserError(
                f"the cluster's MaxArraySize={self.max_array_size}: job arrays are disabled there, and a sweep is "
                "submitted as arrays (ask for MaxArraySize >= 1 in slurm.conf)"
            )

    @property
    def block(self) -> int:
        """Run indices per array: MaxArraySize rounded down to two significant digits (1001 -> 1000, 50 -> 50)."""
        unit = 10 ** max(0, len(str(self.max_array_size)) - 2)
        return self.max_array_size // unit * unit


def limits(dry_run: bool = False, say: Callable[[str], None] = print) -> Limits:
    """The cluster's limits; a dry run without a reachable cluster says it assumes Slurm's defaults."""
    try:
        proc = _slurm(["scontrol", "show", "config"], timeout=30)
        values = dict(re.findall(r"^(\w+)\s*=\s*(\S+)", proc.stdout, re.M)) if proc.returncode == 0 else {}
        why = f"scontrol show config failed: {_last_line(proc)}"
    except UserError as err:
        values, why = {}, str(err)
    if "MaxArraySize" not in values:
        if not dry_run:
            raise UserError(
                f"cannot read the cluster's MaxArraySize ({why}); is SLURM_CONF set and slurmctld reachable?"
            )
        say(f"# {why}: arrays split at Slurm's default MaxArraySize={SLURM_DEFAULT_MAX_ARRAY_SIZE}")
        values = {"MaxArraySize": str(SLURM_DEFAULT_MAX_ARRAY_SIZE)}
    return Limits(int(values["MaxArraySize"]), int(values.get("MaxJobCount", "0")))


def split(indices: list[int], lim: Limits, throttle: str = "") -> list[tuple[int, str]]:
    """Run indices -> [(offset, task ids as ranges)], one per array job: task ids below MaxArraySize, each
    ``--array`` string (with ``throttle``, e.g. "%50") within Slurm's 4,096 characters. An array's offset is
    0 while its runs' indices are below the block size (task id = run index, as in a small sweep), else
    the index of its first run."""
    block, room = lim.block, MAX_ARRAY_SPEC - len(throttle)
    arrays: list[tuple[int, list[str]]] = []
    length = 0
    for first, last in ranges.spans(indices):
        while first <= last:
            if arrays:
                offset = arrays[-1][0]
                end = min(last, offset + block - 1)
                text = ranges.span_text(first - offset, end - offset)
            if not arrays or first >= offset + block or length + 1 + len(text) > room:
                offset = 0 if first < block else first
                end = min(last, offset + block - 1)
                text = ranges.span_text(first - offset, end - offset)
                arrays.append((offset, []))
                length = -1
            arrays[-1][1].append(text)
            length += 1 + len(text)
            first = end + 1
    return [(offset, ",".join(parts)) for offset, parts in arrays]


def directives(sweep: Sweep, runs: list[Run], array: str) -> list[str]:
    s, t = sweep.slurm, runs[0].config.trainer
    gpus = s.gpus_per_node
    if gpus and t.devices != gpus:
        raise UserError(
            f"convbench.slurm.gpus_per_node={gpus} but trainer.devices={t.devices}: one rank per GPU, make them equal"
        )
    lines = [
        f"--job-name=convbench-{sweep.name}",
        f"--array={array}",
        f"--nodes={t.num_nodes}",
        f"--ntasks-per-node={t.devices}",
    ]
    if gpus:
        lines.append(f"--gres=gpu:{gpus}")
    lines.append(f"--cpus-per-task={s.cpus_per_task}")
    for key in ("mem", "time", "partition", "account", "qos", "constraint"):
        if getattr(s, key):
            lines.append(f"--{key}={getattr(s, key)}")
    lines += [f"--signal={s.signal}", "--requeue", "--open-mode=append", f"--output={sweep.dir}/logs/%A_%a.out"]
    lines += s.extra
    return [f"#SBATCH {line}" for line in lines]


def render(sweep: Sweep, runs: list[Run], array: str, offset: int) -> str:
    text = (TEMPLATES / "array.sbatch").read_text()
    values = {
        "sweep": sweep.name,
        "sweep_dir": shlex.quote(str(sweep.dir)),
        "workdir": shlex.quote(os.getcwd()),
        "directives": "\n".join(directives(sweep, runs, array)),
        "setup": "\n".join(sweep.slurm.setup),
        "python": shlex.quote(sys.executable),
        "signal": sweep.slurm.signal,
        "offset": str(offset),
    }
    return re.sub(r"\{\{(\w+)\}\}", lambda m: values[m.group(1)], text)


@dataclass(frozen=True)
class Task:
    state: str
    task: str  # <array job>_<task id>, as squeue/sacct/scontrol name it


def task_states(sweep: Sweep) -> dict[int, Task]:
    """{run index: its newest array task and SLURM state}: one sacct and one squeue call for all of the sweep's
    arrays, newest submission last (sacct, then squeue, which beats sacct for the same job)."""
    jobs = {j.job_id: (n, j) for n, j in enumerate(store.jobs(sweep))}
    if not jobs:
        return {}
    ids = ",".join(jobs)
    rows: list[tuple[float, ArrayJob, str, str]] = []  # (order, job, task ids, state)
    acct = _slurm(["sacct", "-X", "-n", "-P", "-o", "JobID,State", "-j", ids])
    for line in acct.stdout.splitlines() if acct.returncode == 0 else []:
        jid, _, state = line.partition("|")
        m = re.fullmatch(r"(\d+)_(\d+|\[[^\]]*\])", jid)
        if m and m.group(1) in jobs:
            n, job = jobs[m.group(1)]
            rows.append((n, job, m.group(2), state.split()[0] if state else ""))
    queue = _slurm(["squeue", "-h", "-r", "-o", "%i|%T", "-j", ids])
    if queue.returncode != 0 and "Invalid job id" not in queue.stderr:
        # without the live queue a queued run looks unsubmitted: say so rather than resubmit or misreport it
        raise UserError(
            f"squeue failed (exit {queue.returncode}: {_last_line(queue)}): cannot check this sweep's "
            "Slurm jobs; is SLURM_CONF set and slurmctld reachable?"
        )
    for line in queue.stdout.splitlines():
        jid, _, state = line.partition("|")
        m = re.fullmatch(r"(\d+)_(\d+|\[[^\]]*\])", jid)
        if m and m.group(1) in jobs:
            n, job = jobs[m.group(1)]
            rows.append((n + 0.5, job, m.group(2), state))
    states: dict[int, Task] = {}
    for _, job, tasks, state in sorted(rows, key=lambda r: r[0]):
        for t in ranges.expand(tasks):
            states[job.run_index(t)] = Task(state, f"{job.job_id}_{t}")
    return states


def _label(job: ArrayJob) -> str:
    """An array's runs for a message: its ranges, or first-last and a count when they are many."""
    if len(job.runs) <= 24:
        return job.runs
    indices = job.indices()
    return f"{indices[0]}-{indices[-1]}: {len(indices):,} runs"


def submit(sweep: Sweep, dry_run: bool = False, say: Callable[[str], None] = print) -> list[ArrayJob]:
    store.prepare(sweep) if not dry_run else None
    lim = limits(dry_run, say)
    active = {i for i, t in task_states(sweep).items() if t.state in ACTIVE} if not dry_run else set()
    done = store.results(sweep)
    todo = [r for r in sweep.runs if done[r.index] is None and r.index not in active]
    blocked = [r for r in todo if any(done[d] is not None and done[d].status != "completed" for d in r.deps)]
    for r in blocked:
        say(f"[{r.index}] {r.run_id}: blocked: a run it needs did not complete")
    todo = [r for r in todo if r not in blocked]
    if not dry_run and lim.max_job_count and len(todo) > lim.max_job_count:
        raise UserError(
            f"{len(todo):,} runs to submit, but the cluster's MaxJobCount is {lim.max_job_count:,} "
            "(every array task is a job record): split the sweep into smaller files, or ask for a larger MaxJobCount"
        )
    groups: dict[tuple, list[Run]] = {}
    for r in todo:
        t = r.config.trainer
        groups.setdefault((1 if r.deps else 0, t.devices, t.num_nodes), []).append(r)
    submitted: list[ArrayJob] = []
    stage0_jobs: dict[int, str] = {}  # run index -> job id of its array (this call or an active earlier one)
    for j in store.jobs(sweep):
        for i in j.indices():
            if i in active:
                stage0_jobs[i] = j.job_id
    throttle = f"%{sweep.slurm.array_parallelism}" if sweep.slurm.array_parallelism else ""
    n = 0
    for key, runs in sorted(groups.items()):
        dep_jobs = sorted({stage0_jobs[d] for r in runs for d in r.deps if done[d] is None and d in stage0_jobs})
        dependency = f"afterok:{':'.join(dep_jobs)}" if dep_jobs else None
        group: list[ArrayJob] = []
        for offset, tasks in split([r.index for r in runs], lim, throttle):
            script = render(sweep, runs, tasks + throttle, offset)
            runs_text = ranges.compact(t + offset for t in ranges.expand(tasks))
            if dry_run:
                say(
                    f"# ---- array {n}: runs {runs_text}"
                    + (" (after stage 0)" if key[0] else "")
                    + (f", task id + {offset} = run index" if offset else "")
                )
                say(script)
                n += 1
                continue
            path = sweep.dir / "scripts" / f"{len(store.jobs(sweep)):03d}-stage{key[0]}.sbatch"
            path.write_text(script)
            cmd = ["sbatch", "--parsable"] + ([f"--dependency={dependency}"] if dependency else []) + [str(path)]
            proc = _slurm(cmd)
            if proc.returncode != 0:
                raise UserError(
                    f"sbatch {path} failed: {_last_line(proc)}"
                    + (f" (submitted before it: {', '.join(j.job_id for j in submitted)})" if submitted else "")
                )
            job = store.add_job(
                sweep, ArrayJob(proc.stdout.strip().split(";")[0], str(path), runs_text, offset, dependency)
            )
            group.append(job)
            for i in job.indices():
                stage0_jobs[i] = job.job_id
        if group:
            count = sum(ranges.count(j.runs) for j in group)
            say(
                f"submitted {count:,} run{'s' * (count != 1)} as {len(group)} array job{'s' * (len(group) != 1)} "
                f"({', '.join(_label(j) for j in group)}): {'job' if len(group) == 1 else 'jobs'} "
                f"{', '.join(j.job_id for j in group)}" + (f" ({dependency})" if dependency else "")
            )
            submitted += group
    if not todo and not dry_run:
        say("nothing to submit: every run is completed, blocked or already queued")
    return submitted


def cancel(sweep: Sweep, say: Callable[[str], None] = print) -> int:
    ids = [j.job_id for j in store.jobs(sweep)]
    if not ids:
        say(f"no jobs recorded in {sweep.dir / 'jobs.json'}")
        return 0
    proc = _slurm(["scancel", *ids])
    if proc.returncode != 0:
        raise UserError(f"scancel failed: {_last_line(proc)}")
    say(f"cancelled {len(ids)} array job{'s' * (len(ids) != 1)}: {' '.join(ids)}")
    return 0
