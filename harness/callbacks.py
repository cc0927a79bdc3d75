"""Lightning callbacks for what a benchmark run must record: training throughput without
validation time, evaluation throughput, divergence, and per-epoch seeding for exact resume."""
from __future__ import annotations

import time
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import Logger
from pytorch_lightning.utilities import rank_zero_only


class Throughput(pl.Callback):
    """Train samples/s over the training batches only (data loading included, validation and
    checkpointing excluded), test samples/s over the test loop, and when (wall clock) this attempt's
    first training step began: start-up cost is submit or launch -> first step."""

    def __init__(self) -> None:
        self.first_step_at: float | None = None
        self.train_time = 0.0
        self.train_samples = 0
        self.test_time = 0.0
        self.test_samples = 0
        self._clock = 0.0

    def _restart(self, *_: Any) -> None:
        self._clock = time.perf_counter()

    on_train_epoch_start = _restart
    on_validation_end = _restart  # the next batch's time starts after validation

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        if self.first_step_at is None:
            self.first_step_at = time.time()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        now = time.perf_counter()
        self.train_time += now - self._clock
        self.train_samples += len(batch[1])
        self._clock = now

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._test_start = time.perf_counter()

    def on_test_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self.test_samples += len(batch[1])

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.test_time += time.perf_counter() - self._test_start

    @staticmethod
    def rate(samples: int, seconds: float) -> float | None:
        return samples / seconds if seconds > 0 else None


class Divergence(pl.Callback):
    """Stops the run at the first non-finite training loss: nothing after it is meaningful."""

    def __init__(self) -> None:
        self.diverged_at: int | None = None

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None and not torch.isfinite(loss).all():
            self.diverged_at = trainer.global_step
            trainer.should_stop = True


class StepSeed(pl.Callback):
    """Reseeds torch, numpy and random from (seed, step, rank) before every training step, so dropout
    and hidden-unit noise at step k do not depend on whether (or mid-epoch where) the run was
    resumed before it. The data order and augmentation are seeded by the data module's sampler."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        seed = (self.seed * 100_003 + trainer.global_step * 7_919 + trainer.global_rank) % 2**32
        pl.seed_everything(seed, workers=False, verbose=False)



class EpochLines(Logger):
    """One plain line per epoch for logs and batch jobs, where a live progress bar is noise. A
    logger rather than a callback: it receives the epoch's metrics after the module has logged
    them (validation first, then training)."""

    def __init__(self, max_epochs: int) -> None:
        super().__init__()
        self.max_epochs = max_epochs
        self._pending: dict[str, float] = {}
        self._clock = time.perf_counter()

    name = "epoch-lines"
    version = 0

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass  # the resolved config is in the run directory

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self._pending.update({k: float(v) for k, v in metrics.items() if k.startswith(("train/", "val/")) and not k.endswith("_step")})
        if "train/loss" in metrics:
            now = time.perf_counter()
            shown = "  ".join(f"{k} {v:.4f}" for k, v in sorted(self._pending.items()))
            epoch = int(metrics.get("epoch", 0)) + 1
            print(f"epoch {epoch}/{self.max_epochs}  {shown}  ({now - self._clock:.1f} s)", flush=True)
            self._pending, self._clock = {}, now
