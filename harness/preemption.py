"""Preemption and time limits on Slurm: on the signal (`--signal=SIGUSR1@90` in the sbatch script)
the run checkpoints and requeues its own array task; the requeued task resumes from that checkpoint.

Lightning's SLURMEnvironment does this from inside the signal handler, on every rank wherever the
signal lands: with DDP the ranks then reach the checkpoint's barrier at different points of a step
and deadlock (seen under gloo with 2 ranks). Here the handler only raises a flag; at the
logging interval (harness.cadence: every trainer.log_every_n_steps steps, the same steps on every
rank) the ranks OR their flags with one tiny all-reduce, so all of them checkpoint at the same step
boundary, at most that many steps after the signal (inside Slurm's 90 s warning unless that many
steps take longer); then rank 0 requeues the task and the run stops without a result (it is not
finished). The harness turns Lightning's own handler off (`SLURMEnvironment(auto_requeue=False)`).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import pytorch_lightning as pl

from harness.cadence import logging_step

HPC_CHECKPOINT = "hpc_ckpt_{}.ckpt"
EXIT_PREEMPTED = 4  # `convbench train`'s exit code: checkpointed on the signal, to be resumed


class Preempted(Exception):
    """Raised on every rank after the checkpoint: the run stops here and is continued by the requeued task.
    Also raised by harness.train when a rank fails after a SIGTERM (the run was killed, not broken)."""


def slurm_task_id() -> str | None:
    """`<array job>_<task>` for an array task (requeue that task, not the whole array), else the job id."""
    array = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array is not None:
        return f"{array}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID")


def next_hpc_checkpoint(run_dir: Path) -> Path:
    taken = [int(p.stem.rsplit("_", 1)[1]) for p in run_dir.glob(HPC_CHECKPOINT.format("*")) if p.stem.rsplit("_", 1)[1].isdigit()]
    return run_dir / HPC_CHECKPOINT.format(max(taken, default=0) + 1)


class Preemption(pl.Callback):
    def __init__(self, run_dir: Path, signum: signal.Signals = signal.SIGUSR1) -> None:
        self.run_dir, self.signum = run_dir, signum
        self.signalled = False
        self.fired: str | None = None  # the message, once the run checkpointed on the signal
        self._previous: Any = None

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        self.signalled = True

    # installed once training starts, after Lightning has captured the process's handlers (it puts
    # those back at its teardown), and removed when training ends or fails
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if threading.current_thread() is threading.main_thread():  # Python delivers signals to the main thread only
            self._previous = signal.signal(self.signum, self._handler)

    def _restore(self) -> None:
        if self._previous is not None:
            signal.signal(self.signum, self._previous)
            self._previous = None

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._restore()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if not logging_step(trainer, trainer.global_step):
            return  # the ranks agree only at the logging interval: under DDP the all-reduce is a host sync
        if not trainer.strategy.reduce_boolean_decision(self.signalled, all=False):
            return
        path = next_hpc_checkpoint(self.run_dir)
        trainer.save_checkpoint(path)  # every rank: the strategy writes on rank 0 and waits for all
        task = slurm_task_id()
        message = f"convbench: {self.signum.name} at step {trainer.global_step}: saved {path}"
        if trainer.is_global_zero and task is not None:
            requeue = subprocess.run(["scontrol", "requeue", task], capture_output=True, text=True)
            message += f"; requeued {task}" if requeue.returncode == 0 else f"; scontrol requeue {task} failed: {requeue.stderr.strip()}"
        if trainer.is_global_zero:
            print(message, file=sys.stderr, flush=True)
        self.fired = message  # the requeue kills this job: whatever fails from here on, the run is preempted
        raise Preempted(message)
