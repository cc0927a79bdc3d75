"""The sweep directory, ``<results>/sweeps/<name>/``::

    sweep.yaml          copy of the sweep file as last run/submitted
    runs.json           [{index, run_id, name, deps, values, config, run_dir}]
    runs/<index>.yaml   the run's resolved config: `convbench train --config runs/<index>.yaml --resume`
    locks/<index>.lock  local backend: flock held by the process training the run
    logs/               local: <index>.log; SLURM: <array job>_<task>.out
    scripts/            rendered sbatch scripts (SLURM)
    jobs.json           SLURM submissions: [{job_id, script, runs, offset, dependency, submitted}], ``runs`` the
                        run indices as ranges ("1000-1099"); array task t of the job is run t + offset

A run is done when ``<results>/<run_id>/result.json`` exists (the only source of truth); nothing in the
sweep dir decides whether a run is run again.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.run_record import RESULT, RunResult, write_atomic
from harness.sweep import ranges
from harness.sweep.spec import Run, Sweep

# libyaml's emitter where PyYAML has it: a submission writes one config per run, and the pure-Python
# emitter's cost per node is most of that at thousands of runs (docs/measurements.md)
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


@dataclass
class ArrayJob:
    """One submitted sbatch array. Its task ids are run indices minus ``offset`` (Slurm caps task ids below
    MaxArraySize, so the array of runs 1000-1099 runs tasks 0-99 with offset 1000)."""

    job_id: str
    script: str
    runs: str  # run indices, ranges
    offset: int = 0
    dependency: str | None = None
    submitted: float = 0.0

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ArrayJob:
        if "indices" in d:  # jobs.json written before ranges: a list of run indices, task id = run index
            d = {**{k: v for k, v in d.items() if k != "indices"}, "runs": ranges.compact(d["indices"]), "offset": 0}
        return cls(**{k: d[k] for k in ("job_id", "script", "runs", "offset", "dependency", "submitted") if k in d})

    def indices(self) -> list[int]:
        return ranges.expand(self.runs)

    def run_index(self, task: int) -> int:
        return task + self.offset


def _write_text(path: Path, text: str) -> None:
    """Temp file + rename without fsync: a reader never sees half a file, and 10,000 run configs are not
    10,000 disk flushes (they are rewritten from the sweep file whenever needed)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def prepare(sweep: Sweep) -> Path:
    d = sweep.dir
    for sub in ("runs", "locks", "logs", "scripts"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    write_atomic(d / "sweep.yaml", sweep.path.read_text())
    for run in sweep.runs:
        text = yaml.dump(run.layer(), Dumper=_DUMPER, sort_keys=False)
        p = d / "runs" / f"{run.index}.yaml"
        try:
            same = p.read_text() == text
        except OSError:
            same = False
        if not same:
            _write_text(p, text)
    table = [
        {
            "index": r.index,
            "run_id": r.run_id,
            "name": r.name,
            "deps": r.deps,
            "run_dir": str(r.run_dir),
            "config": str(d / "runs" / f"{r.index}.yaml"),
            "values": r.values,
        }
        for r in sweep.runs
    ]
    write_atomic(d / "runs.json", json.dumps(table, indent=1, default=str) + "\n")
    return d


def result(run: Run) -> RunResult | None:
    """The run's record, None while it has none; a malformed one is a one-line error naming it."""
    p = run.run_dir / RESULT
    return RunResult.read(p) if p.exists() else None


def results(sweep: Sweep) -> dict[int, RunResult | None]:
    """{run index: its record or None}: every run's file read once."""
    return {run.index: result(run) for run in sweep.runs}


def status(run: Run) -> str | None:
    """completed | diverged | failed once the run has its record, None before."""
    done = result(run)
    return done.status if done is not None else None


def jobs(sweep: Sweep) -> list[ArrayJob]:
    p = sweep.dir / "jobs.json"
    return [ArrayJob.from_json(j) for j in json.loads(p.read_text())] if p.is_file() else []


def add_job(sweep: Sweep, job: ArrayJob) -> ArrayJob:
    job.submitted = time.time()
    write_atomic(sweep.dir / "jobs.json", json.dumps([asdict(j) for j in jobs(sweep) + [job]], indent=1) + "\n")
    return job


def started(run: Run) -> bool:
    """The run has trained before (a checkpoint exists): a restart resumes it."""
    return any((run.run_dir / "checkpoints").glob("*.ckpt"))
