"""Preemption, requeues and time limits on Slurm, and checkpoints on a clock: a requeue keeps the
work done before it.

- SIGUSR1 (`--signal=SIGUSR1@90` in the sbatch script, ahead of a time limit): checkpoint to
  checkpoints/hpc_ckpt_N.ckpt, rank 0 requeues its own array task, stop; the requeued task resumes from it.
- SIGTERM (what `scontrol requeue`, a preemption, `scancel` and the time limit send, KillWait or
  GraceTime seconds before SIGKILL): checkpoint to checkpoints/step.ckpt and stop; Slurm itself
  requeues (or cancels) the job.
- Every `trainer.checkpoint_every_min` minutes of training: checkpoint to checkpoints/step.ckpt and
  go on, so a run killed without warning loses at most that much.

Lightning's own handlers act inside the signal handler, on every rank wherever the signal lands:
with DDP the ranks then reach the checkpoint's barrier (or Lightning's SIGTERM broadcast) at
different points of a step and deadlock (seen under gloo with 2 ranks). Here the handlers only
raise flags; at the logging interval (harness.training.cadence: every trainer.log_every_n_steps steps,
the same steps on every rank; under DDP the all-reduce is a host sync) the ranks sum their flags in one
tiny all-reduce, so all of them checkpoint at the same step boundary, at most that many steps after
the signal (inside Slurm's KillWait or --signal warning unless that many steps take longer). The harness
turns Lightning's requeue off
(`SLURMEnvironment(auto_requeue=False)`) and this callback replaces its SIGTERM handler while training.

Every checkpoint first writes the step's metrics row and flushes the loggers, so metrics.csv on
disk holds the steps the checkpoint holds (harness.run_record.read_metrics merges the attempts).
A mid-epoch checkpoint resumes at the next batch: the data module saves its position (datamodules
`ConvDataModule.state_dict`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import pytorch_lightning as pl
import torch

from harness.training.cadence import logging_step
from harness.training.callbacks import batch_hooks_as_defined

HPC_CHECKPOINT = "hpc_ckpt_{}.ckpt"
STEP_CHECKPOINT = "step.ckpt"  # in the run's checkpoints/: the latest SIGTERM or interval checkpoint
EXIT_PREEMPTED = 4  # `convbench train`'s exit code: checkpointed on the signal, to be resumed
SIGNALS = (signal.SIGUSR1, signal.SIGTERM)


class Preempted(Exception):
    """Raised on every rank after the checkpoint: the run stops here and is continued by the requeued task.
    Also raised by harness.training.run when a rank fails after a SIGTERM (the run was killed, not broken)."""


def slurm_task_id() -> str | None:
    """`<array job>_<task>` for an array task (requeue that task, not the whole array), else the job id."""
    array = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array is not None:
        return f"{array}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID")


def next_hpc_checkpoint(run_dir: Path) -> Path:
    taken = [
        int(p.stem.rsplit("_", 1)[1])
        for p in run_dir.glob(HPC_CHECKPOINT.format("*"))
        if p.stem.rsplit("_", 1)[1].isdigit()
    ]
    return run_dir / HPC_CHECKPOINT.format(max(taken, default=0) + 1)


def seconds_since_launch() -> float | None:
    """How long ago this process was started (Linux /proc), for the start-up cost in each attempt's line."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(
            int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime")
        )
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return time.time() - (boot + start_ticks / os.sysconf("SC_CLK_TCK"))


@batch_hooks_as_defined
class Preemption(pl.Callback):
    def __init__(self, run_dir: Path, every_min: float = 0.0, resumed_from: str | None = None) -> None:
        self.run_dir, self.every_s, self.resumed_from = run_dir, every_min * 60, resumed_from
        self.received = {s: False for s in SIGNALS}
        self.fired: str | None = None  # the message, once the run checkpointed on a signal
        self._previous: dict[signal.Signals, Any] = {}
        self._last_save = time.monotonic()

    @property
    def terminated(self) -> bool:
        """SIGTERM arrived while training: whatever fails after it, the run was killed, not broken."""
        return self.received[signal.SIGTERM]

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        self.received[signal.Signals(signum)] = True

    # installed once training starts, after Lightning has captured the process's handlers (it puts
    # those back at its teardown), and removed when training ends or fails
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if threading.current_thread() is threading.main_thread():  # Python delivers signals to the main thread only
            self._previous = {s: signal.signal(s, self._handler) for s in SIGNALS}
        self._last_save = time.monotonic()
        if trainer.is_global_zero:
            age = seconds_since_launch()
            print(
                self.start_line(trainer) + (f"; {age:.1f} s after launch" if age is not None else ""),
                file=sys.stderr,
                flush=True,
            )

    def start_line(self, trainer: pl.Trainer) -> str:
        """One line per attempt: where it starts."""
        if self.resumed_from is None:
            return f"convbench: starting at step 0 (epoch 1/{trainer.max_epochs}), no checkpoint"
        # from the step count: Lightning's epoch and batch counters after a restore depend on where the
        # checkpoint was taken (an epoch end from validation had advanced current_epoch, a step.ckpt had not)
        epoch, done = divmod(trainer.global_step, max(1, trainer.num_training_batches))
        within = f", batch {done + 1}/{trainer.num_training_batches}" if done else ""
        where = f"step {trainer.global_step} (epoch {epoch + 1}/{trainer.max_epochs}{within})"
        return f"convbench: resuming from {self.resumed_from} at {where}"

    def _restore(self) -> None:
        for s, previous in self._previous.items():
            if previous is not None:
                signal.signal(s, previous)
        self._previous = {}

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._restore()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not logging_step(trainer, trainer.global_step):
            return  # the ranks agree only at the logging interval
        due = bool(self.every_s) and time.monotonic() - self._last_save >= self.every_s
        flags = torch.tensor(
            [self.received[signal.SIGUSR1], self.received[signal.SIGTERM], due],
            dtype=torch.int32,
            device=trainer.strategy.root_device,
        )
        usr1, term, due = (bool(v) for v in trainer.strategy.reduce(flags, reduce_op="sum").tolist())
        if not (usr1 or term or due):
            return
        for logger in trainer.loggers:  # the step's row is logged (harness.training.module); flush the rest
            logger.save()
        if usr1:
            # not in the run dir (Lightning's default_root_dir): under Slurm Lightning would load an
            # hpc_ckpt_N.ckpt found there into trainer.test, testing the signal's weights, not the final ones
            path = next_hpc_checkpoint(self.run_dir / "checkpoints")
            trainer.save_checkpoint(
                path, weights_only=False
            )  # every rank: the strategy writes on rank 0 and waits for all
        else:
            path = self.save_step_checkpoint(trainer)
        self._last_save = time.monotonic()
        if not (usr1 or term):
            return
        name = "SIGUSR1" if usr1 else "SIGTERM"
        message = f"convbench: {name} at step {trainer.global_step}: saved {path}"
        task = slurm_task_id()
        if usr1 and trainer.is_global_zero and task is not None:
            requeue = subprocess.run(["scontrol", "requeue", task], capture_output=True, text=True)
            message += (
                f"; requeued {task}"
                if requeue.returncode == 0
                else f"; scontrol requeue {task} failed: {requeue.stderr.strip()}"
            )
        if trainer.is_global_zero:
            print(message, file=sys.stderr, flush=True)
        self.fired = message  # the requeue kills this job: whatever fails from here on, the run is preempted
        raise Preempted(message)

    def save_step_checkpoint(self, trainer: pl.Trainer) -> Path:
        """checkpoints/step.ckpt, replaced atomically: a kill during the save leaves the previous one."""
        path = self.run_dir / "checkpoints" / STEP_CHECKPOINT
        tmp = path.with_name(f".{STEP_CHECKPOINT}.tmp")
        trainer.save_checkpoint(tmp, weights_only=False)  # rank 0 writes, then all ranks pass a barrier
        if trainer.is_global_zero:
            os.replace(tmp, path)
        return path
