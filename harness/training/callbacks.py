"""Lightning callbacks for what a benchmark run must record: training throughput without
validation time, evaluation throughput and divergence; the epoch-end checkpoints; and how it shows
progress (a line per epoch, or a bar that reads values only at the logging interval).

Lightning calls every per-batch hook of every callback, whether the callback overrides it or not
(six a training step), and each call costs a profiler context and a state-key string, paid inside
the step where the forward and backward passes have just evicted the caches (docs/measurements.md).
The harness's callbacks are `batch_hooks_as_defined`: the hooks they do not use are skipped."""

from __future__ import annotations

import time
from typing import Any, TypeVar

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint, RichProgressBar
from pytorch_lightning.loggers import Logger
from pytorch_lightning.utilities import rank_zero_only

from harness import hardware
from harness.hardware import Hardware, Host
from harness.run_record import RunDir
from harness.training.cadence import STEP_LOSS, logging_step

BATCH_HOOKS = (
    "on_train_batch_start",
    "on_before_backward",
    "on_after_backward",
    "on_before_optimizer_step",
    "on_before_zero_grad",
    "on_train_batch_end",
    "on_validation_batch_start",
    "on_validation_batch_end",
    "on_test_batch_start",
    "on_test_batch_end",
    "on_predict_batch_start",
    "on_predict_batch_end",
)
C = TypeVar("C", bound=type[pl.Callback])


def batch_hooks_as_defined(cls: C) -> C:
    """Sets the per-batch hooks that `cls` inherits from pl.Callback's no-ops to None, which
    Lightning's dispatch skips (`if callable(fn)` in `_call_callback_hooks`): a callback then costs a
    step only the hooks it defines."""
    for hook in BATCH_HOOKS:
        if getattr(cls, hook) is getattr(pl.Callback, hook):
            setattr(cls, hook, None)
    return cls


@batch_hooks_as_defined
class Throughput(pl.Callback):
    """Train samples/s over the training batches only (data loading included, validation and
    checkpointing excluded), test samples/s over the test loop (summed over ranks), when (wall clock) this attempt's
    first training step began (start-up cost is submit or launch -> first step), and the run's clock.

    Under DDP each rank times its own batches; at the end of fit one gather brings every rank's
    (samples, seconds, host) to every rank, so the record gives the job's rate (the sum over ranks),
    the slowest and fastest rank and where each rank ran, not rank 0's share alone.

    The clock is the run's, not the attempt's: it is saved in every checkpoint and continues on a
    resume, counting from each attempt's first step (start-up and the queue are not counted) to the
    end of training; work an interrupted attempt did after its last checkpoint is redone and counted
    once. Each epoch's row gets ``time/train_s`` (its training batches), ``time/eval_s`` (its
    validation) and ``time/elapsed_s`` (the clock at the end of the epoch, validation included)."""

    def __init__(self) -> None:
        self.first_step_at: float | None = None
        self.train_time = 0.0
        self.train_samples = 0
        self.test_time = 0.0
        self.test_samples = 0
        self._clock = 0.0
        # (train samples, seconds, machine, device name) of each rank, gathered at the end of fit
        self.ranks: list[tuple[int, float, Host, str]] | None = None
        self.machine: Host | None = None  # this rank's, read at the start of fit
        self.device_name = ""
        self.eval_samples_per_s: float | None = None  # the test loop's, over all ranks
        # the run's clock: seconds before this attempt (from the checkpoint), and this attempt's start
        self.run_clock = {"train_s": 0.0, "eval_s": 0.0, "elapsed_s": 0.0, "epoch_train_s": 0.0, "epoch_eval_s": 0.0}
        self._eval_start = 0.0
        self._attempt_start: float | None = None  # while this attempt trains: when its first step began
        self._attempt_elapsed = 0.0  # the clock's elapsed_s then

    def _restart(self, *_: Any) -> None:
        self._clock = time.perf_counter()

    on_train_start = _restart  # a resume mid-epoch starts there: Lightning skips on_train_epoch_start

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restart()
        self.run_clock["epoch_train_s"] = self.run_clock["epoch_eval_s"] = 0.0

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self.first_step_at is None:
            self.first_step_at = time.time()
            self._attempt_start = time.perf_counter()
            self._attempt_elapsed = self.run_clock["elapsed_s"]

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        now = time.perf_counter()
        seconds = now - self._clock
        self.train_time += seconds
        self.run_clock["epoch_train_s"] += seconds
        self.train_samples += len(batch[1])
        self._clock = now

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._eval_start = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.run_clock["epoch_eval_s"] += time.perf_counter() - self._eval_start
        self._restart()  # the next batch's time starts after validation

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """The epoch's times join its row of metrics.csv (this rank's; rank 0 writes the row)."""
        c = self._tick()
        c["train_s"] += c["epoch_train_s"]
        c["eval_s"] += c["epoch_eval_s"]
        pl_module.log_dict(
            {"time/train_s": c["epoch_train_s"], "time/eval_s": c["epoch_eval_s"], "time/elapsed_s": c["elapsed_s"]},
            on_epoch=True,
            rank_zero_only=True,
        )
        c["epoch_train_s"] = c["epoch_eval_s"] = 0.0

    def _tick(self) -> dict[str, float]:
        """The clock, brought up to now."""
        if self._attempt_start is not None:
            self.run_clock["elapsed_s"] = self._attempt_elapsed + time.perf_counter() - self._attempt_start
        return self.run_clock

    def state_dict(self) -> dict[str, float]:
        return dict(self._tick())

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.run_clock.update({k: float(v) for k, v in state_dict.items() if k in self.run_clock})

    def clock_record(self) -> dict[str, float | None]:
        """result.json's clock: training and validation seconds, and the clock at the end of
        training, over all attempts (None where no step ran)."""
        c = self._tick()
        trained = self.first_step_at is not None or c["elapsed_s"] > 0  # this attempt, or one before it
        return {
            "train_time_s": c["train_s"] + c["epoch_train_s"] if trained else None,
            "eval_time_s": c["eval_s"] + c["epoch_eval_s"] if trained else None,
            "elapsed_s": c["elapsed_s"] if trained else None,
        }

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._test_start = time.perf_counter()

    def on_test_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self.test_samples += len(batch[1])

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.test_time += time.perf_counter() - self._test_start

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Each rank tested its shard of the test set: the job's rate is the sum of the ranks' (one gather)."""
        mine = (self.test_samples, self.test_time)
        if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            ranks: list[Any] = [None] * trainer.world_size
            torch.distributed.all_gather_object(ranks, mine)
            rates = [self.rate(samples, seconds) for samples, seconds in ranks]
            self.eval_samples_per_s = sum(rates) if None not in rates else None
        else:
            self.eval_samples_per_s = self.rate(*mine)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._mine(trainer.strategy.root_device)  # before training: a collective comes at its end

    def _mine(self, device: torch.device) -> tuple[int, float, Host, str]:
        """This rank's (train samples, seconds, machine, device name); the machine read once."""
        if self.machine is None:
            self.machine, self.device_name = hardware.host(device.type), hardware.device_name(device)
        return (self.train_samples, self.train_time, self.machine, self.device_name)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._tick()
        self._attempt_start = None  # the clock stops with training: testing is not counted
        mine = self._mine(trainer.strategy.root_device)
        if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            ranks: list[Any] = [None] * trainer.world_size
            torch.distributed.all_gather_object(ranks, mine)
            self.ranks = ranks
        else:
            self.ranks = [mine]

    def ran_on(self, device: torch.device, workers: int) -> Hardware:
        """What the run ran on: every rank's machine and device once gathered at the end of fit;
        before (a failed fit), this rank's."""
        ranks = self.ranks or [self._mine(device)]
        return hardware.describe(device, [r[2] for r in ranks], [r[3] for r in ranks], workers)

    def train_record(self, world_size: int, device: torch.device) -> dict[str, Any]:
        """The train throughput fields of result.json. Before the end-of-fit gather (a failed fit),
        a multi-rank run knows only this rank's figure, and records no job rate rather than a wrong one."""
        ranks = self.ranks or ([self._mine(device)] if world_size == 1 else None)
        if ranks is None:
            return {
                "train_samples_per_s": None,
                "train_samples_per_s_rank_min": None,
                "train_samples_per_s_rank_max": None,
                "num_nodes": None,
                "hosts": None,
            }
        rates = [self.rate(samples, seconds) for samples, seconds, *_ in ranks]
        known = [r for r in rates if r is not None]
        hosts = [machine.name for _, _, machine, _ in ranks]
        return {
            "train_samples_per_s": sum(known) if len(known) == len(rates) else None,
            "train_samples_per_s_rank_min": min(known, default=None),
            "train_samples_per_s_rank_max": max(known, default=None),
            "num_nodes": len(set(hosts)),
            "hosts": hosts,
        }

    @staticmethod
    def rate(samples: int, seconds: float) -> float | None:
        return samples / seconds if seconds > 0 else None


@batch_hooks_as_defined
class AttemptLog(pl.Callback):
    """Marks this attempt in the run directory as lasting until now, at every checkpoint (rank 0):
    an attempt that is killed outright still counts in the device-hours until its last checkpoint."""

    def __init__(self, run: RunDir, started: float, world_size: int) -> None:
        self.run, self.started, self.world_size = run, started, world_size

    def mark(self) -> None:
        self.run.log_attempt(self.started, time.time(), self.world_size)

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if trainer.is_global_zero:
            self.mark()


NEVER = 2**62  # the first non-finite step of a rank whose losses were all finite


@batch_hooks_as_defined
class Divergence(pl.Callback):
    """Stops the run after a non-finite training loss: nothing after it is meaningful.

    Without a host-device sync per step: each step keeps its (detached, on-device) loss, and the
    losses are checked together, one `isfinite` and one read-back, at the logging interval
    (harness.training.cadence) and at the epoch's end. The
    run stops at most `cadence.interval(trainer)` steps after the first non-finite loss, and
    `diverged_at` is that loss's step, exactly as a per-step check would record it. Under DDP the
    ranks agree on it (the earliest over ranks), so all of them stop at the same step."""

    def __init__(self) -> None:
        self.diverged_at: int | None = None
        self._pending: list[tuple[int, torch.Tensor]] = []  # (global_step, loss) not yet checked

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None:  # Lightning passes the step's loss detached
            self._pending.append((trainer.global_step, loss))
        if logging_step(trainer, trainer.global_step):
            self._check(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._check(trainer)

    def _check(self, trainer: pl.Trainer) -> None:
        if not self._pending:
            return
        steps, losses = zip(*self._pending)
        self._pending = []
        finite = torch.stack(losses).isfinite().tolist()  # scalar losses (automatic optimisation); the one read-back
        first = steps[finite.index(False)] if not all(finite) else NEVER
        if trainer.world_size > 1:  # every rank stops at the same step, or the others' next all-reduce waits forever
            first = int(
                trainer.strategy.reduce(torch.tensor(first, device=trainer.strategy.root_device), reduce_op="min")
            )
        if self.diverged_at is None and first != NEVER:
            self.diverged_at = first
            trainer.should_stop = True


@batch_hooks_as_defined
class EpochCheckpoint(ModelCheckpoint):
    """A ModelCheckpoint that saves at epoch ends only (every_n_epochs=1, its default). Its one
    per-batch hook saves every_n_train_steps or every train_time_interval, so here it would only
    return; it is skipped. (Checkpoints on a clock are harness.training.preemption's.)"""

    on_train_batch_end = None  # type: ignore[assignment]

    def __init__(self, **kwargs: Any) -> None:
        if kwargs.get("every_n_train_steps") or kwargs.get("train_time_interval"):
            raise ValueError("EpochCheckpoint saves at epoch ends: use ModelCheckpoint for step or time triggers")
        super().__init__(**kwargs)


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
        self._pending.update(
            {k: float(v) for k, v in metrics.items() if k.startswith(("train/", "val/")) and not k.endswith("_step")}
        )
        if "train/loss" in metrics:
            now = time.perf_counter()
            shown = "  ".join(f"{k} {v:.4f}" for k, v in sorted(self._pending.items()))
            epoch = int(metrics.get("epoch", 0)) + 1
            print(f"epoch {epoch}/{self.max_epochs}  {shown}  ({now - self._clock:.1f} s)", flush=True)
            self._pending, self._clock = {}, now


class LoggingIntervalBar(RichProgressBar):
    """Lightning's rich bar, with the latest logged step loss, whose metrics are read at the logging
    interval and at epoch ends only: reading them fetches every prog_bar value from the device, and
    the stock bar does it every batch."""

    def __init__(self) -> None:
        super().__init__()
        self._shown: dict[str, int | str | float | dict[str, float]] | None = None

    def get_metrics(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule
    ) -> dict[str, int | str | float | dict[str, float]]:
        if self._shown is None or not trainer.training or logging_step(trainer, trainer.global_step):
            self._shown = super().get_metrics(trainer, pl_module)
            loss = getattr(pl_module, "step_loss", None)  # harness.training.module logs it to the loggers itself
            if loss is not None:
                self._shown[STEP_LOSS] = loss
        return self._shown

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._shown = None  # show the epoch's metrics now
        super().on_train_epoch_end(trainer, pl_module)
