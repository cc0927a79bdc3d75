"""Per-run status of a sweep: from the results store first, then SLURM (squeue/sacct), then local locks."""

from __future__ import annotations

import fcntl
import os
import shutil
from typing import Any

from harness.sweep import store
from harness.sweep.spec import Sweep

SLURM_FAILED = {"FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "PREEMPTED", "COMPLETED"}


def _locked(path: Any) -> bool:
    if not path.is_file():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def statuses(sweep: Sweep) -> list[dict[str, Any]]:
    """One row per run. Each run's result.json is read once and the Slurm state of every array of the sweep
    comes from one sacct and one squeue call, so a 10,000-run sweep answers in seconds."""
    slurm: dict[int, Any] = {}
    if store.jobs(sweep) and shutil.which("squeue"):
        from harness.sweep.slurm import task_states

        slurm = task_states(sweep)
    rows = []
    for run in sweep.runs:
        done = store.result(run)
        task = slurm.get(run.index)
        state = task.state if task else ""
        if done is not None:
            status = done.status
        elif state in ("RUNNING", "COMPLETING", "CONFIGURING"):
            status = "running"
        elif state in ("REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED") or (state == "PENDING" and store.started(run)):
            status = "requeued"
        elif state in ("PENDING", "SUSPENDED"):
            status = "pending"
        elif state == "CANCELLED":
            status = "cancelled"
        elif state in SLURM_FAILED:  # the job ended without a result; a checkpoint means `sweep run` resumes it
            status = "interrupted" if store.started(run) else "failed"
        elif _locked(sweep.dir / "locks" / f"{run.index}.lock"):
            status = "running"
        elif store.started(run):
            status = "interrupted"
        else:
            status = "pending"
        rows.append(
            {
                "index": run.index,
                "run_id": run.run_id,
                "status": status,
                "slurm": state or None,
                "slurm_task": task.task if task else None,
                "test_acc1": done.test_acc1 if done is not None else None,
            }
        )
    return rows
