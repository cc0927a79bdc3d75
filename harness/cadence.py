"""The logging interval: the only training steps at which the harness reads values back from the
device. Lightning fetches the logged values to write them (metrics.csv, W&B) every
`trainer.log_every_n_steps` optimiser steps; the step loss is logged, the divergence flag read and
the ranks' preemption flags agreed on at those same steps, so every other step runs without a
host-device synchronisation (tests/test_hot_path.py counts them)."""
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
