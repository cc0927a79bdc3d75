"""What a bench call is doing and what is left, on stderr (stdout carries only the results).

A measurement takes seconds to minutes and a call runs several, one after the other. On a
terminal, rich's live display shows the current one, the count done and the time so far, and a
line for each as it finishes. Where stderr is a file or a pipe (a batch log, `| tee`, a test),
plain lines instead, one when a measurement starts and one when it ends, so that a log read while
the job runs says where it is:

    bench: resnet20 train, 2 ranks (2/2)
    bench: resnet20 train, 2 ranks (2/2) done in 31.2 s
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn


class BenchProgress:
    """`with BenchProgress(total) as progress:` then `with progress.step(label):` around each
    measurement. `enabled=False` says nothing: a Slurm task other than rank 0's, whose log lines
    would repeat rank 0's."""

    def __init__(self, total: int, enabled: bool = True) -> None:
        self.total = total
        self.done = 0
        self.enabled = enabled
        console = Console(stderr=True)
        # a tty (not a log that FORCE_COLOR makes rich call a terminal) that rich finds interactive:
        # not TERM=dumb (an editor's shell buffer), not TTY_INTERACTIVE=0
        self.live = (
            Progress(
                SpinnerColumn(),
                TextColumn("bench: {task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
                transient=True,  # the finished lines stay, the bar goes
                redirect_stdout=False,  # stdout is the results' (a pipe under `--json | jq`), never the display's
            )
            if enabled and sys.stderr.isatty() and console.is_interactive
            else None
        )
        self.task = self.live.add_task("", total=total) if self.live is not None else None
        self.started = time.monotonic()

    def __enter__(self) -> BenchProgress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self.live is not None:
            self.live.stop()
        if self.enabled and error is None and self.total > 1:
            self._say(f"bench: {self.done} measurements done in {time.monotonic() - self.started:.1f} s")

    @contextmanager
    def step(self, label: str) -> Iterator[None]:
        """One measurement: announced when it starts, with its time when it ends (not when it fails:
        the error that follows says why)."""
        counted = f"{label} ({self.done + 1}/{self.total})"
        if self.live is not None and self.task is not None:
            self.live.update(self.task, description=label)  # its columns show the count
            self.live.start()  # at the first measurement (a no-op after), so no bar without a label shows
        elif self.enabled:
            self._say(f"bench: {counted}")
        start = time.monotonic()
        yield
        self.done += 1
        line = f"bench: {counted} done in {time.monotonic() - start:.1f} s"
        if self.live is not None and self.task is not None:
            self.live.console.print(line, highlight=False)
            self.live.advance(self.task)
        elif self.enabled:
            self._say(line)

    @staticmethod
    def _say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)
