"""The sweep directory, ``<results>/sweeps/<name>/``::

    sweep.yaml          copy of the sweep file as last run/submitted
    runs.json           [{index, run_id, name, deps, values, config, run_dir}], index = SLURM array task id
    runs/<index>.yaml   the run's resolved config: `convbench train --config runs/<index>.yaml --resume`
    locks/<index>.lock  local backend: flock held by the process training the run
    logs/               local: <index>.log; SLURM: <array job>_<task>.out
    scripts/            rendered sbatch scripts (SLURM)
    jobs.json           SLURM submissions: [{job_id, script, indices, dependency, submitted}]

A run is done when ``<results>/<run_id>/result.json`` exists (the only source of truth); nothing in the
sweep dir decides whether a run is run again.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import yaml

from harness.run_record import RESULT, RunResult, write_atomic
from harness.sweep.spec import Run, Sweep


def prepare(sweep: Sweep) -> Path:
    d = sweep.dir
    for sub in ("runs", "locks", "logs", "scripts"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    write_atomic(d / "sweep.yaml", sweep.path.read_text())
    for run in sweep.runs:
        text = yaml.safe_dump(run.layer(), sort_keys=False)
        p = d / "runs" / f"{run.index}.yaml"
        if not p.is_file() or p.read_text() != text:
            write_atomic(p, text)
    table = [{"index": r.index, "run_id": r.run_id, "name": r.name, "deps": r.deps, "run_dir": str(r.run_dir),
              "config": str(d / "runs" / f"{r.index}.yaml"), "values": r.values} for r in sweep.runs]
    write_atomic(d / "runs.json", json.dumps(table, indent=1, default=str) + "\n")
    return d


def result(run: Run) -> RunResult | None:
    """The run's record, None while it has none; a malformed one is a one-line error naming it."""
    p = run.run_dir / RESULT
    return RunResult.read(p) if p.exists() else None


def status(run: Run) -> str | None:
    """completed | diverged | failed once the run has its record, None before."""
    done = result(run)
    return done.status if done is not None else None


def jobs(sweep: Sweep) -> list[dict[str, Any]]:
    p = sweep.dir / "jobs.json"
    return json.loads(p.read_text()) if p.is_file() else []


def add_job(sweep: Sweep, job: dict[str, Any]) -> None:
    write_atomic(sweep.dir / "jobs.json", json.dumps(jobs(sweep) + [{**job, "submitted": time.time()}], indent=1) + "\n")


def started(run: Run) -> bool:
    """The run has trained before (a checkpoint exists): a restart resumes it."""
    return any((run.run_dir / "checkpoints").glob("*.ckpt"))
