"""Local backend: every run a `convbench train --config runs/<i>.yaml --resume` child process,
``parallel`` at a time, the cores split between them (OMP_NUM_THREADS = cores // parallel in the child).

The children are forked from this runner after it has imported the training stack once (torch,
Lightning, W&B, Albumentations: ~4 s, and twice that when two children import at once on two cores),
as gunicorn's --preload does: a run starts training in milliseconds, and a sweep of short runs is not
mostly imports. The runner itself never computes with torch, so no OpenMP pool exists to be forked.
Each child is still its own process: nothing one run changes leaks into the next. (Linux: os.fork.)

Exactly once, whatever is killed when: a run with ``result.json`` is skipped; an interrupted run resumes
from its last checkpoint (train --resume); and each child holds ``locks/<i>.lock`` (flock on a file
descriptor it inherits, and only its own), so a second runner started while a child of a killed runner
still trains waits for it instead of training the same run twice.
"""

from __future__ import annotations

import fcntl
import importlib
import os
import selectors
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness.sweep import store
from harness.sweep.spec import Run, Sweep

PRELOAD = "harness.training.run"  # everything `convbench train` imports


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def child_environ(threads: int) -> None:
    """A run's environment: no Slurm variables (they would make Lightning set up a Slurm job), and
    its share of the cores."""
    for key in [k for k in os.environ if k.startswith(("SLURM_", "SBATCH_", "SRUN_"))]:
        del os.environ[key]
    os.environ.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), NO_ALBUMENTATIONS_UPDATE="1")


def train_args(sweep: Sweep, run: Run) -> list[str]:
    return ["train", "--config", str(sweep.dir / "runs" / f"{run.index}.yaml"), "--resume"]


def fork_run(sweep: Sweep, run: Run, threads: int, close: list[int]) -> int:
    """Fork a child that trains ``run`` (stdout and stderr to logs/<i>.log) and return its pid.
    ``close``: the runner's descriptors the child must not keep (the other runs' locks and pidfds)."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()  # or the child would write the runner's pending output again
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        for fd in close:
            os.close(fd)
        log = os.open(sweep.dir / "logs" / f"{run.index}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        os.close(null)
        child_environ(threads)
        from harness.cli import main

        code = main(train_args(sweep, run))
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    except KeyboardInterrupt:
        code = 130
    except BaseException:  # noqa: BLE001  a crash is the run's, in its log; the runner goes on
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(code)  # never the runner's own exit path (atexit handlers, its finally blocks)


def exited(pid: int) -> int:
    """The exit code of a child that has ended (its pidfd is readable); negative: killed by that signal."""
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


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
        beyond its own training (the one-time import, scheduling and a last run alone make it larger)."""
        busy = sum(self.run_s) / min(self.parallel, len(self.run_s)) if self.run_s else 0.0
        return self.wall_s / busy if busy > 0 else None


def say_now(line: str) -> None:
    """A progress line, flushed: a sweep's log is read while it runs (`tail -f`)."""
    print(line, flush=True)


def run_local(sweep: Sweep, parallel: int = 1, say: Callable[[str], None] = say_now, poll: float = 0.5) -> Outcome:
    """Run every run not yet done.

    Each result.json is read once at the start and once when its run's child exits; between events the
    runner sleeps in ``select`` on the children's pidfds, so its cost does not grow with the number of waiting
    runs. Only runs whose lock another process holds are looked at again, every ``poll`` seconds."""
    start = time.monotonic()
    store.prepare(sweep)
    parallel = max(1, parallel)
    threads = max(1, cores() // parallel)
    final: dict[int, str] = {}
    outcome = Outcome(final, parallel)
    for index, done in store.results(sweep).items():
        if done is not None:
            final[index] = done.status
    dependents: dict[int, list[Run]] = {}
    unmet: dict[int, int] = {}  # run index -> how many of its deps have not completed yet
    ready: deque[Run] = deque()
    for run in sweep.runs:
        if run.index in final:
            continue
        unmet[run.index] = sum(final.get(d) != "completed" for d in run.deps)
        for d in run.deps:
            dependents.setdefault(d, []).append(run)
    busy: list[Run] = []  # ready, but another runner's child trains it: retried every poll
    running: dict[int, tuple[int, int, Run, float]] = {}  # pidfd -> (pid, lock fd, run, start)
    selector = selectors.EpollSelector()  # Linux, like os.fork and os.pidfd_open

    def settle(run: Run, status: str) -> None:
        """Record a run's end; its dependents become ready, or blocked when it did not complete."""
        final[run.index] = status
        for dep in dependents.pop(run.index, []):
            if dep.index in final:
                continue
            if status != "completed":
                say(f"[{dep.index}] {dep.run_id}: blocked (a run it needs ended {status})")
                settle(dep, "blocked")
            else:
                unmet[dep.index] -= 1
                if unmet[dep.index] == 0:
                    ready.append(dep)

    for run in sweep.runs:
        if run.index in final:
            continue
        bad = [final[d] for d in run.deps if final.get(d, "completed") != "completed"]
        if bad:
            say(f"[{run.index}] {run.run_id}: blocked (a run it needs ended {bad[0]})")
            settle(run, "blocked")
        elif unmet[run.index] == 0:
            ready.append(run)

    def start_run(run: Run) -> bool:
        """Fork ``run`` if its lock is free; False when another process holds it."""
        fd = _try_lock(sweep.dir / "locks" / f"{run.index}.lock")
        if fd is None:
            return False
        done = store.result(run)
        if done is not None:  # finished by another runner since we looked
            os.close(fd)
            settle(run, done.status)
            return True
        resumed = store.started(run)
        importlib.import_module(PRELOAD)  # once: what every child would otherwise import itself
        inherited = [fd for pidfd, (_, lock, _, _) in running.items() for fd in (pidfd, lock)] + [selector.fileno()]
        pid = fork_run(sweep, run, threads, close=inherited)
        say(f"[{run.index}] {run.run_id}: {'resuming' if resumed else 'started'} (pid {pid}, {threads} threads)")
        pidfd = os.pidfd_open(pid)
        running[pidfd] = (pid, fd, run, time.time())
        selector.register(pidfd, selectors.EVENT_READ)
        return True

    while ready or busy or running:
        for run in list(busy):
            if len(running) >= parallel:
                break
            done = store.result(run)
            if done is not None:
                busy.remove(run)
                settle(run, done.status)
            elif start_run(run):
                busy.remove(run)
        while ready and len(running) < parallel:
            run = ready.popleft()
            if not start_run(run):
                say(f"[{run.index}] {run.run_id}: being trained by another process; waiting")
                busy.append(run)
        if not running and not busy:
            continue
        for key, _ in selector.select(timeout=poll if busy else None):
            pidfd = key.fd
            pid, fd, run, t0 = running.pop(pidfd)
            selector.unregister(pidfd)
            os.close(pidfd)
            code = exited(pid)
            os.close(fd)
            done = store.result(run)
            status = done.status if done else f"failed (exit {code}, no result.json)"
            if done and done.wall_time_s is not None:
                outcome.run_s.append(done.wall_time_s)
            say(
                f"[{run.index}] {run.run_id}: {status} in {time.time() - t0:.1f}s (log {sweep.dir / 'logs' / f'{run.index}.log'})"
            )
            settle(run, status if done else "failed")
    selector.close()
    outcome.wall_s = time.monotonic() - start
    return outcome
