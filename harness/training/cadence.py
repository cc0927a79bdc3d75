"""The logging interval: the only training steps at which the harness reads values back from the
device. Every `trainer.log_every_n_steps` optimiser steps (the steps Lightning itself writes logged
values at) the step loss is fetched and written to the loggers (metrics.csv, W&B), the losses kept
since the last check are tested for divergence and the ranks' preemption flags agreed on, so every
other step runs without a host-device synchronisation (tests/test_hot_path.py counts them)."""

from __future__ import annotations

import pytorch_lightning as pl

STEP_LOSS = "train/loss_step"  # the per-step curve's key in metrics.csv and W&B
UNLOGGED_EVERY = 50  # the interval of the checks when step logging is off (log_every_n_steps=0): Lightning's default


def interval(trainer: pl.Trainer) -> int:
    return trainer.log_every_n_steps or UNLOGGED_EVERY


def logging_step(trainer: pl.Trainer, steps_done: int) -> bool:
    """True for the step that completes optimiser step number `steps_done` (1-based), when it is one
    Lightning logs: in training_step pass `trainer.global_step + 1`, after the step `trainer.global_step`.
    The same steps on every DDP rank: global_step advances in lockstep."""
    return steps_done % interval(trainer) == 0
