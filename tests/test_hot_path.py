"""The training step's hot path (issue 11): no host-device synchronisation except at the logging
interval, the run's record unchanged by taking work off it, divergence still caught in bounded steps,
and the callbacks called for the batch hooks they define only.

On CPU nothing waits, so the sync test counts the calls that would wait for the device under CUDA:
reading a tensor's value (`item`, `tolist`, `numpy`, `bool()`, `float()`, `int()`, `operator.index`,
`.cpu()`: tests.helpers.READS) and the strategy's `reduce` (harness.training.preemption's all-reduce of the
ranks' flags, read back on the host under DDP), during a real `harness.training.run.train` run, per training
step. Validation, epoch starts and ends may read values (the epoch's metrics are fetched there anyway)."""

from __future__ import annotations

import csv
import io
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.profilers import PassThroughProfiler

from harness.config.train_config import merge, resolve
from harness.training.callbacks import BATCH_HOOKS, EpochCheckpoint
from harness.training.run import train
from tests.helpers import READS

EVERY = 5  # trainer.log_every_n_steps (the metrics fold their 16 kept batches at step 16, off the interval)


class SyncCounter(pl.Callback):
    """Counts value reads and collectives per phase: ("step", n) for the step that completes
    optimiser step n, else the phase's name."""

    def __init__(self) -> None:
        self.phase: Any = "setup"
        self.counts: Counter[Any] = Counter()  # phase -> reads
        self.what: Counter[tuple[Any, str]] = Counter()  # (phase, what was called) -> reads

    def count(self, original: Callable[..., Any], what: str) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.counts[self.phase] += 1
            self.what[(self.phase, what)] += 1
            return original(*args, **kwargs)

        return counted

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        strategy = trainer.strategy
        strategy.reduce = self.count(strategy.reduce, "reduce")  # type: ignore[method-assign]

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.phase = "epoch start"  # the first batch is fetched after this hook, before its batch_start

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self.phase = ("step", trainer.global_step + 1)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.phase = "validation"

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.phase = "epoch end"

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        bar = trainer.progress_bar_callback
        self.bar_metrics = bar.get_metrics(trainer, pl_module) if bar is not None else None


def steps_with_reads(counter: SyncCounter) -> dict[int, int]:
    return {phase[1]: n for phase, n in counter.counts.items() if isinstance(phase, tuple) and phase[0] == "step"}


@pytest.mark.parametrize(
    ("tty", "pipeline"),
    [(False, "albumentations"), (True, "albumentations"), (False, "device")],
    ids=["batch-job", "progress-bar", "device-pipeline"],
)
def test_no_host_sync_between_logging_steps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tty: bool, pipeline: str
) -> None:
    """The device pipeline (data held on the device, every random stage drawn there) reads nothing either."""
    c = resolve(
        [
            (
                "test",
                {
                    "arch": "lenet5",
                    "dataset": "synthetic",
                    "epochs": 2,
                    "results": str(tmp_path),
                    "wandb": {"mode": "disabled"},
                    "trainer": {"log_every_n_steps": EVERY},
                    "data": {
                        "input_size": [1, 32, 32],
                        "num_samples": 352,
                        "num_workers": 0,
                        "batch_size": 16,
                        "val_size": 32,
                        "pipeline": pipeline,
                        "augment": {"flip": True, "noise_std": 0.05},
                    },
                },
            )
        ]
    )
    counter = SyncCounter()
    for name in READS:
        monkeypatch.setattr(torch.Tensor, name, counter.count(getattr(torch.Tensor, name), name))
    if tty:  # the run then shows harness.training.callbacks.LoggingIntervalBar
        monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    result = train(c, extra_callbacks=[counter])
    monkeypatch.undo()
    assert result is not None and result.status == "completed" and result.global_step == 40  # 20 steps an epoch
    reads = steps_with_reads(counter)
    off_interval = {
        step: {what: n for (phase, what), n in counter.what.items() if phase == ("step", step)}
        for step in reads
        if step % EVERY
    }
    assert not off_interval, f"host syncs in steps off the logging interval (every {EVERY}): {off_interval}"
    # the counter sees reads where they are expected: the logged step loss, the checks and the epoch's metrics
    assert all(reads.get(step, 0) > 0 for step in range(EVERY, 41, EVERY)), reads
    assert counter.counts["epoch end"] > 0 and counter.what[(("step", EVERY), "reduce")] == 1
    if tty:  # the bar still shows the step loss and the epoch's metrics
        assert (
            counter.bar_metrics is not None
            and {"train/loss_step", "train/acc1", "train/loss"} <= counter.bar_metrics.keys()
        )


# metrics.csv of the run below, written by the code before issue 11 (main at 14bbbbc): per-step
# torchmetrics updates, the step loss logged every step, the divergence check reading every loss.
BEFORE = """\
epoch,step,test/acc1,test/acc5,test/loss,train/acc1,train/acc5,train/loss,train/loss_step,val/acc1,val/acc5,val/loss
0,2,,,,,,,2.2871832847595215,,,
0,5,,,,,,,2.2739646434783936,,,
0,8,,,,,,,2.310563802719116,,,
0,11,,,,,,,2.3215136528015137,,,
0,11,,,,,,,,0.140625,0.4765625,2.3035712242126465
0,11,,,,0.0989583358168602,0.5364583134651184,2.3004355430603027,,,,
1,14,,,,,,,2.2201240062713623,,,
1,17,,,,,,,2.330626964569092,,,
1,20,,,,,,,2.3068275451660156,,,
1,23,,,,,,,2.315018892288208,,,
1,23,,,,,,,,0.140625,0.4921875,2.310131072998047
1,23,,,,0.1302083283662796,0.5755208134651184,2.28393816947937,,,,
2,24,0.107421875,0.509765625,2.3138809204101562,,,,,,,
"""


def small_run(tmp_path: Path, **values: Any):  # type: ignore[no-untyped-def]
    base = {
        "arch": "lenet5",
        "dataset": "synthetic",
        "epochs": 2,
        "seed": 3,
        "results": str(tmp_path),
        "wandb": {"mode": "disabled"},
        "trainer": {"log_every_n_steps": 3},
        "data": {"input_size": [1, 32, 32], "num_samples": 512, "num_workers": 0, "batch_size": 32, "val_size": 128},
    }
    return resolve([("test", merge(base, values))])


def test_the_run_records_what_it_did_before(tmp_path: Path) -> None:
    """Epoch metrics (train, val, test: top-1, top-5, loss) and the step-loss curve, bit for bit;
    the run's clock (time/*, added since) on each epoch's training row."""
    c = small_run(tmp_path)
    result = train(c)
    with next((tmp_path / c.run_id() / "metrics").glob("version_*/metrics.csv")).open(newline="") as f:
        rows = list(csv.DictReader(f))
    clock = ["time/elapsed_s", "time/eval_s", "time/train_s"]
    timed = [r for r in rows if r["time/elapsed_s"]]
    assert len(timed) == 2 and all(r["train/acc1"] and all(float(r[k]) > 0 for k in clock) for r in timed)
    assert float(timed[0]["time/elapsed_s"]) < float(timed[1]["time/elapsed_s"])
    before = io.StringIO()
    columns = [k for k in rows[0] if k not in clock]
    writer = csv.DictWriter(before, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(r for r in rows if any(r[k] for k in columns))
    assert before.getvalue() == BEFORE
    assert (result.train_acc1, result.val_loss, result.test_acc5) == (
        0.1302083283662796,
        2.310131072998047,
        0.509765625,
    )


def test_divergence_stops_within_the_logging_interval(tmp_path: Path) -> None:
    """The first non-finite loss is recorded at its own step, as a check of every step records it,
    and the run stops at the next logging step (or epoch end) at the latest."""
    diverging = {"optim": {"lr": 1e12, "schedule": "constant"}, "data": {"val_size": 0}}
    every_step = train(small_run(tmp_path / "every", **diverging, trainer={"log_every_n_steps": 1}))
    deferred = train(small_run(tmp_path / "deferred", **diverging, trainer={"log_every_n_steps": 5}))
    first = every_step.diverged_at_step
    assert every_step.status == deferred.status == "diverged" and first is not None
    assert deferred.diverged_at_step == first and every_step.global_step == first
    assert first < deferred.global_step <= first + 5 and deferred.global_step % 5 == 0


def test_callbacks_get_only_the_batch_hooks_they_define(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lightning dispatches every per-batch hook to every callback, each call inside a profiler
    context (named "[Callback]<state key>.<hook>"); the harness's get only the hooks they define.
    A training step: Throughput's two, Divergence's and Preemption's one each, none of the two
    checkpoints'; a validation batch: none; a test batch: Throughput's."""
    actions: Counter[str] = Counter()
    monkeypatch.setattr(PassThroughProfiler, "start", lambda self, action_name: actions.update([action_name]))
    result = train(small_run(tmp_path))
    monkeypatch.undo()
    assert result is not None and result.global_step == 24
    batch_calls = {
        action: n
        for action, n in actions.items()
        if action.startswith("[Callback]") and action.rsplit(".", 1)[1] in BATCH_HOOKS
    }
    assert batch_calls == {
        "[Callback]Throughput.on_train_batch_start": 24,
        "[Callback]Throughput.on_train_batch_end": 24,
        "[Callback]Divergence.on_train_batch_end": 24,
        "[Callback]Preemption.on_train_batch_end": 24,
        "[Callback]Throughput.on_test_batch_end": 16,
    }  # 512 test images in batches of 32
    assert any(action.startswith("[Callback]EpochCheckpoint") for action in actions)  # its epoch-end hooks still run


def test_epoch_checkpoint_refuses_step_and_time_triggers() -> None:
    with pytest.raises(ValueError, match="epoch ends"):
        EpochCheckpoint(every_n_train_steps=5)
