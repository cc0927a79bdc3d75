"""Local backend: every run a `convbench train --config runs/<i>.yaml --resume` child process,
``parallel`` at a time, the cores split between them (OMP_NUM_THREADS = cores // parallel in the child).

The children are forked from this runner after it has imported the training stack once (torch,
Lightning, W&B, Albumentations: seconds, and twice that when two children import at once on two cores),
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
from graphlib import TopologicalSorter
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


@dataclass
class Child:
    """A run being trained: its process, the lock it holds, and when it started."""

    pid: int
    lock: int
    run: Run
    started: float


def dependency_order(sweep: Sweep, final: dict[int, str]) -> TopologicalSorter[int]:
    """The runs not yet done, each after the runs it needs that are not done either. A run whose needs
    all ended before this invocation is ready at once (and blocked there if one of them did not complete)."""
    order: TopologicalSorter[int] = TopologicalSorter()
    for run in sweep.runs:
        if run.index not in final:
            order.add(run.index, *(d for d in run.deps if d not in final))
    order.prepare()
    return order


@dataclass
class LocalRunner:
    """One invocation's runs: those ready to start (their needs completed), those another process is
    training (retried every ``poll`` seconds) and those this runner's children train (``parallel`` at most).

    Each result.json is read once at the start and once when its run's child exits; between events the
    runner sleeps in ``select`` on the children's pidfds, so its cost does not grow with the number of
    waiting runs."""

    sweep: Sweep
    parallel: int
    say: Callable[[str], None]
    poll: float
    outcome: Outcome
    order: TopologicalSorter[int]
    selector: selectors.BaseSelector
    threads: int
    ready: deque[Run] = field(default_factory=deque)
    busy: list[Run] = field(default_factory=list)
    running: dict[int, Child] = field(default_factory=dict)  # pidfd -> child

    @property
    def final(self) -> dict[int, str]:
        return self.outcome.final

    @property
    def thread_count(self) -> str:
        return f"{self.threads} thread{'s' if self.threads > 1 else ''}"

    def progress(self) -> str:
        return f"{len(self.final)} of {len(self.sweep.runs)} runs done"

    def announce(self) -> None:
        """What this invocation will do, before it does it."""
        total, done = len(self.sweep.runs), len(self.final)
        if done == total:
            self.say(f"sweep {self.sweep.name}: all {total} runs already done")
            return
        slots = f"{self.parallel} at a time" if self.parallel > 1 else "one at a time"
        self.say(
            f"sweep {self.sweep.name}: {total} runs, {done} already done; {total - done} to run, {slots}, "
            f"{self.thread_count} each (logs in {self.sweep.dir / 'logs'})"
        )

    def run(self) -> None:
        while self.order.is_active():
            self.take_ready()
            self.retry_busy()
            self.start_ready()
            if self.running or self.busy:
                self.wait()

    def settle(self, run: Run, status: str) -> None:
        """Record a run's end: the runs that need it become ready (and are blocked there unless it completed)."""
        self.final[run.index] = status
        self.order.done(run.index)

    def take_ready(self) -> None:
        """Queue the runs whose needs have all ended; a run one of whose needs did not complete is blocked."""
        for index in self.order.get_ready():
            run = self.sweep.runs[index]
            failed = next((self.final[d] for d in run.deps if self.final[d] != "completed"), None)
            if failed is None:
                self.ready.append(run)
            else:
                self.settle(run, "blocked")
                self.say(f"[{run.index}] {run.run_id}: blocked (a run it needs ended {failed}); {self.progress()}")

    def retry_busy(self) -> None:
        """Runs another process was training: settled if it finished them, started if it let go."""
        for run in list(self.busy):
            if len(self.running) >= self.parallel:
                return
            done = store.result(run)
            if done is not None:
                self.busy.remove(run)
                self.finished_elsewhere(run, done.status)
            elif self.start(run):
                self.busy.remove(run)

    def finished_elsewhere(self, run: Run, status: str) -> None:
        self.settle(run, status)
        self.say(f"[{run.index}] {run.run_id}: {status} by another process; {self.progress()}")

    def start_ready(self) -> None:
        while self.ready and len(self.running) < self.parallel:
            run = self.ready.popleft()
            if not self.start(run):
                self.say(f"[{run.index}] {run.run_id}: being trained by another process; waiting")
                self.busy.append(run)

    def start(self, run: Run) -> bool:
        """Fork ``run`` if its lock is free; False when another process holds it."""
        fd = _try_lock(self.sweep.dir / "locks" / f"{run.index}.lock")
        if fd is None:
            return False
        done = store.result(run)
        if done is not None:  # finished by another runner since we looked
            os.close(fd)
            self.finished_elsewhere(run, done.status)
            return True
        resumed = store.started(run)
        importlib.import_module(PRELOAD)  # once: what every child would otherwise import itself
        inherited = [fd for pidfd, child in self.running.items() for fd in (pidfd, child.lock)]
        pid = fork_run(self.sweep, run, self.threads, close=[*inherited, self.selector.fileno()])
        self.say(f"[{run.index}] {run.run_id}: {'resuming' if resumed else 'started'} (pid {pid}, {self.thread_count})")
        pidfd = os.pidfd_open(pid)
        self.running[pidfd] = Child(pid, fd, run, time.time())
        self.selector.register(pidfd, selectors.EVENT_READ)
        return True

    def wait(self) -> None:
        """Sleep until a child exits (or ``poll`` seconds, while a run waits for another process), and
        record the runs whose children exited."""
        for key, _ in self.selector.select(timeout=self.poll if self.busy else None):
            self.reap(key.fd)

    def reap(self, pidfd: int) -> None:
        child = self.running.pop(pidfd)
        self.selector.unregister(pidfd)
        os.close(pidfd)
        code = exited(child.pid)
        os.close(child.lock)
        run = child.run
        done = store.result(run)
        status = done.status if done else f"failed (exit {code}, no result.json)"
        if done and done.wall_time_s is not None:
            self.outcome.run_s.append(done.wall_time_s)
        self.settle(run, status if done else "failed")
        log = self.sweep.dir / "logs" / f"{run.index}.log"
        self.say(
            f"[{run.index}] {run.run_id}: {status} in {time.time() - child.started:.1f}s; {self.progress()} (log {log})"
        )


def run_local(sweep: Sweep, parallel: int = 1, say: Callable[[str], None] = say_now, poll: float = 0.5) -> Outcome:
    """Run every run not yet done, each after the runs it needs (a transfer run after the run whose
    checkpoint it loads); a run whose need did not complete is blocked, not run."""
    start = time.monotonic()
    store.prepare(sweep)
    parallel = max(1, parallel)
    outcome = Outcome({i: done.status for i, done in store.results(sweep).items() if done is not None}, parallel)
    with selectors.EpollSelector() as selector:  # Linux, like os.fork and os.pidfd_open
        runner = LocalRunner(
            sweep,
            parallel,
            say,
            poll,
            outcome,
            dependency_order(sweep, outcome.final),
            selector,
            threads=max(1, cores() // parallel),
        )
        runner.announce()
        runner.run()
    outcome.wall_s = time.monotonic() - start
    return outcome
