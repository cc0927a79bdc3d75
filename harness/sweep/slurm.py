"""SLURM backend: one sbatch array per stage and resource shape, array task id = run index.

Stage 0 holds named runs (convbench.runs) and runs without dependencies; stage 1 the runs that need
a named run's checkpoint, submitted with ``--dependency=afterok:<stage-0 array>`` when that run is not
already completed. Runs with a result.json, or pending/running in a job of this sweep, are not
submitted again, so ``sweep run`` after ``sweep cancel`` submits only the rest.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

from harness.errors import UserError
from harness.sweep import store
from harness.sweep.spec import Run, Sweep

TEMPLATES = Path(__file__).resolve().parent / "templates"  # a symlink to slurm/templates, packaged as data
ACTIVE = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "RESIZING", "SUSPENDED", "REQUEUE_HOLD", "REQUEUE_FED"}


def _slurm(cmd: list[str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise UserError(f"{cmd[0]} not found: is Slurm installed and SLURM_CONF set?") from None


def directives(sweep: Sweep, runs: list[Run]) -> list[str]:
    s, t = sweep.slurm, runs[0].config.trainer
    gpus = s.gpus_per_node
    if gpus and t.devices != gpus:
        raise UserError(f"convbench.slurm.gpus_per_node={gpus} but trainer.devices={t.devices}: one rank per GPU, make them equal")
    indices = ",".join(str(r.index) for r in runs)
    lines = [f"--job-name=convbench-{sweep.name}", f"--array={indices}", f"--nodes={t.num_nodes}",
             f"--ntasks-per-node={t.devices}"]
    if gpus:
        lines.append(f"--gres=gpu:{gpus}")
    lines.append(f"--cpus-per-task={s.cpus_per_task}")
    for key in ("mem", "time", "partition", "account", "qos", "constraint"):
        if getattr(s, key):
            lines.append(f"--{key}={getattr(s, key)}")
    lines += [f"--signal={s.signal}", "--requeue", "--open-mode=append",
              f"--output={sweep.dir}/logs/%A_%a.out"]
    lines += s.extra
    return [f"#SBATCH {line}" for line in lines]


def render(sweep: Sweep, runs: list[Run]) -> str:
    text = (TEMPLATES / "array.sbatch").read_text()
    values = {"sweep": sweep.name, "sweep_dir": shlex.quote(str(sweep.dir)), "workdir": shlex.quote(os.getcwd()),
              "directives": "\n".join(directives(sweep, runs)), "setup": "\n".join(sweep.slurm.setup),
              "python": shlex.quote(sys.executable), "signal": sweep.slurm.signal}
    return re.sub(r"\{\{(\w+)\}\}", lambda m: values[m.group(1)], text)


def task_states(sweep: Sweep) -> dict[int, str]:
    """{run index: SLURM state} of this sweep's array tasks, newest submission last (squeue, then sacct)."""
    jobs = store.jobs(sweep)
    if not jobs:
        return {}
    ids = [j["job_id"] for j in jobs]
    states: dict[int, str] = {}
    acct = _slurm(["sacct", "-X", "-n", "-P", "-o", "JobID,State", "-j", ",".join(ids)])
    order = {jid: i for i, jid in enumerate(ids)}
    rows = []
    for line in acct.stdout.splitlines() if acct.returncode == 0 else []:
        jid, _, state = line.partition("|")
        m = re.fullmatch(r"(\d+)_(\d+|\[[^\]]*\])", jid)
        if not m or m.group(1) not in order:
            continue
        rows.append((order[m.group(1)], _expand(m.group(2)), state.split()[0] if state else ""))
    queue = _slurm(["squeue", "-h", "-r", "-o", "%i|%T", "-j", ",".join(ids)])
    if queue.returncode != 0 and "Invalid job id" not in queue.stderr:
        # without the live queue a queued run looks unsubmitted: say so rather than resubmit or misreport it
        lines = (queue.stderr or queue.stdout).strip().splitlines()
        raise UserError(f"squeue failed (exit {queue.returncode}: {lines[-1] if lines else 'no output'}): cannot check this sweep's "
                        "Slurm jobs; is SLURM_CONF set and slurmctld reachable?")
    for line in queue.stdout.splitlines():
        jid, _, state = line.partition("|")
        m = re.fullmatch(r"(\d+)_(\d+)", jid)
        if m and m.group(1) in order:
            rows.append((order[m.group(1)] + 0.5, [int(m.group(2))], state))  # squeue beats sacct for the same job
    for _, tasks, state in sorted(rows, key=lambda r: r[0]):
        for t in tasks:
            states[t] = state
    return states


def _expand(spec: str) -> list[int]:
    spec = spec.strip("[]").split("%")[0]
    out: list[int] = []
    for part in spec.split(","):
        if "-" in part:
            a, b = part.split("-")
            out += range(int(a), int(b) + 1)
        elif part:
            out.append(int(part))
    return out


def submit(sweep: Sweep, dry_run: bool = False, say: Callable[[str], None] = print) -> list[dict[str, Any]]:
    store.prepare(sweep) if not dry_run else None
    active = {i for i, s in task_states(sweep).items() if s in ACTIVE} if not dry_run else set()
    todo = [r for r in sweep.runs if store.result(r) is None and r.index not in active]
    blocked = [r for r in todo if any(store.status(sweep.runs[d]) not in (None, "completed") for d in r.deps)]
    for r in blocked:
        say(f"[{r.index}] {r.run_id}: blocked: a run it needs did not complete")
    todo = [r for r in todo if r not in blocked]
    groups: dict[tuple, list[Run]] = {}
    for r in todo:
        t = r.config.trainer
        groups.setdefault((1 if r.deps else 0, t.devices, t.num_nodes), []).append(r)
    submitted: list[dict[str, Any]] = []
    stage0_jobs: dict[int, str] = {}  # run index -> job id of its array (this call or an active earlier one)
    for j in store.jobs(sweep):
        for i in j["indices"]:
            if i in active:
                stage0_jobs[i] = j["job_id"]
    for n, (key, runs) in enumerate(sorted(groups.items())):
        script = render(sweep, runs)
        dep_jobs = sorted({stage0_jobs[d] for r in runs for d in r.deps if store.result(sweep.runs[d]) is None and d in stage0_jobs})
        dependency = f"afterok:{':'.join(dep_jobs)}" if dep_jobs else None
        if dry_run:
            say(f"# ---- array {n}: runs {','.join(str(r.index) for r in runs)}" + (f" (after stage 0)" if key[0] else ""))
            say(script)
            continue
        path = sweep.dir / "scripts" / f"{len(store.jobs(sweep)):03d}-stage{key[0]}.sbatch"
        path.write_text(script)
        cmd = ["sbatch", "--parsable"] + ([f"--dependency={dependency}"] if dependency else []) + [str(path)]
        proc = _slurm(cmd)
        if proc.returncode != 0:
            raise UserError(f"sbatch {path} failed: {proc.stderr.strip() or proc.stdout.strip()}")
        job_id = proc.stdout.strip().split(";")[0]
        job = {"job_id": job_id, "script": str(path), "indices": [r.index for r in runs], "dependency": dependency}
        store.add_job(sweep, job)
        submitted.append(job)
        for r in runs:
            stage0_jobs[r.index] = job_id
        say(f"submitted array job {job_id}: runs {','.join(str(r.index) for r in runs)}" + (f" ({dependency})" if dependency else ""))
    if not todo and not dry_run:
        say("nothing to submit: every run is completed, blocked or already queued")
    return submitted


def cancel(sweep: Sweep, say: Callable[[str], None] = print) -> int:
    ids = [j["job_id"] for j in store.jobs(sweep)]
    if not ids:
        say(f"no jobs recorded in {sweep.dir / 'jobs.json'}")
        return 0
    proc = _slurm(["scancel", *ids])
    if proc.returncode != 0:
        raise UserError(f"scancel failed: {proc.stderr.strip()}")
    say(f"cancelled jobs {' '.join(ids)}")
    return 0
