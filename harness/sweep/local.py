"""Local backend: every run a `convbench train --config runs/<i>.yaml --resume` subprocess, ``parallel``
at a time, the cores split between them (OMP_NUM_THREADS = cores // parallel in the child).

Exactly once, whatever is killed when: a run with ``result.json`` is skipped; an interrupted run resumes
from its last checkpoint (train --resume); and each child holds ``locks/<i>.lock`` (flock on a file
descriptor it inherits), so a second runner started while a child of a killed runner still trains waits
for it instead of training the same run twice.
"""
from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from harness.sweep import store
from harness.sweep.spec import Run, Sweep


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def child_env(threads: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_"))}
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), NO_ALBUMENTATIONS_UPDATE="1")
    return env


def command(sweep: Sweep, run: Run) -> list[str]:
    return [sys.executable, "-m", "harness.cli", "train", "--config", str(sweep.dir / "runs" / f"{run.index}.yaml"), "--resume"]


def _try_lock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


@dataclass
class Outcome:
    """Final status of every run, and what the overhead figure needs: this invocation's wall time and
    the runs' own wall times (result.json wall_time_s) of the runs trained by it."""

    final: dict[int, str]
    parallel: int
    wall_s: float = 0.0
    run_s: list[float] = field(default_factory=list)

    @property
    def overhead(self) -> float | None:
        """wall / (sum of run times / slots): 1.0 when the slots never idle and a run costs nothing
        beyond its own training (imports, scheduling and a last run alone make it larger)."""
        busy = sum(self.run_s) / min(self.parallel, len(self.run_s)) if self.run_s else 0.0
        return self.wall_s / busy if busy > 0 else None


def run_local(sweep: Sweep, parallel: int = 1, say: Callable[[str], None] = print, poll: float = 0.2) -> Outcome:
    """Run every run not yet done."""
    start = time.monotonic()
    store.prepare(sweep)
    parallel = max(1, parallel)
    threads = max(1, cores() // parallel)
    env = child_env(threads)
    final: dict[int, str] = {}
    outcome = Outcome(final, parallel)
    waiting = list(sweep.runs)
    running: dict[int, tuple[subprocess.Popen, int, Run, float]] = {}
    announced_busy: set[int] = set()
    while waiting or running:
        for run in list(waiting):
            done = store.result(run)
            if done is not None:
                final[run.index] = done["status"]
                waiting.remove(run)
                continue
            dep_status = [final.get(d) or (store.result(sweep.runs[d]) or {}).get("status") for d in run.deps]
            if any(s not in (None, "completed") for s in dep_status):
                final[run.index] = "blocked"
                say(f"[{run.index}] {run.run_id}: blocked (a run it needs ended {[s for s in dep_status if s != 'completed'][0]})")
                waiting.remove(run)
                continue
            if any(s is None for s in dep_status) or len(running) >= parallel:
                continue
            fd = _try_lock(sweep.dir / "locks" / f"{run.index}.lock")
            if fd is None:  # another runner's child trains it: check again later
                if run.index not in announced_busy:
                    say(f"[{run.index}] {run.run_id}: being trained by another process; waiting")
                    announced_busy.add(run.index)
                continue
            if store.result(run) is not None:  # finished between the check and the lock
                os.close(fd)
                continue
            log = open(sweep.dir / "logs" / f"{run.index}.log", "a")
            resumed = store.started(run)
            proc = subprocess.Popen(command(sweep, run), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env, pass_fds=(fd,))
            log.close()
            say(f"[{run.index}] {run.run_id}: {'resuming' if resumed else 'started'} (pid {proc.pid}, {threads} threads)")
            running[run.index] = (proc, fd, run, time.time())
            waiting.remove(run)
        for index, (proc, fd, run, t0) in list(running.items()):
            code = proc.poll()
            if code is None:
                continue
            os.close(fd)
            del running[index]
            done = store.result(run)
            status = done["status"] if done else f"failed (exit {code}, no result.json)"
            final[index] = status if done else "failed"
            if done and isinstance(done.get("wall_time_s"), (int, float)):
                outcome.run_s.append(done["wall_time_s"])
            say(f"[{index}] {run.run_id}: {status} in {time.time() - t0:.1f}s (log {sweep.dir / 'logs' / f'{index}.log'})")
        if waiting or running:
            time.sleep(poll)
    outcome.wall_s = time.monotonic() - start
    return outcome
