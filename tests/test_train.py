"""`convbench train` end to end on small real and synthetic data: the run record, resume,
transfer learning, divergence, hidden noise and the recipes."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch

from harness.config.recipes import OptimConfig
from harness.config.train_config import TrainConfig, merge, resolve
from harness.errors import UserError
from harness.run_record import read_metrics
from harness.training.module import lr_factor
from harness.training.preemption import Preempted
from harness.training.run import build_data, train
from harness.wandb_run import complete_export
from tests.helpers import convbench

FASHION = Path("/usr/share/datasets/fashion-mnist")


def config(tmp_path: Path, **values: Any) -> TrainConfig:
    base = {
        "arch": "lenet5",
        "dataset": "synthetic",
        "epochs": 1,
        "results": str(tmp_path / "results"),
        "wandb": {"mode": "disabled"},
        "trainer": {"log_every_n_steps": 1},
        "data": {"input_size": [1, 32, 32], "num_samples": 512, "num_workers": 0, "batch_size": 64, "val_size": 128},
    }
    return resolve([("test", merge(base, values))])


def test_run_record(tmp_path: Path) -> None:
    c = config(tmp_path, wandb={"mode": "offline"})
    result = train(c)
    run = tmp_path / "results" / c.run_id()
    on_disk = json.loads((run / "result.json").read_text())
    assert on_disk["run_id"] == result.run_id == c.run_id()
    for key in (
        "arch",
        "dataset",
        "depth",
        "params",
        "macs",
        "epochs",
        "status",
        "train_acc1",
        "train_loss",
        "val_acc1",
        "test_acc1",
        "test_acc5",
        "train_samples_per_s",
        "peak_memory_bytes",
        "wall_time_s",
        "first_step_at",
        "versions",
        "host",
    ):
        assert on_disk[key] is not None, key
    assert (on_disk["status"], on_disk["params"], on_disk["depth"]) == ("completed", 61_706, 5)
    assert 0 <= on_disk["test_acc1"] <= on_disk["test_acc5"] <= 1 and on_disk["train_samples_per_s"] > 0
    assert (
        (run / "config.yaml").is_file()
        and (run / "checkpoints" / "last.ckpt").is_file()
        and (run / "checkpoints" / "best.ckpt").is_file()
    )
    assert "train/loss_step" in (run / "metrics" / "version_0" / "metrics.csv").read_text().splitlines()[0]
    wandb_id = (run / "wandb_id").read_text()
    offline = list((run / "wandb").glob("offline-run-*"))
    assert len(offline) == 1 and offline[0].name.endswith(wandb_id) and complete_export(run) == offline[0]
    assert train(c).run_id == c.run_id()  # a finished run is not run again


def test_last_checkpoint_is_every_epoch_end_even_when_validation_does_not_improve(tmp_path: Path) -> None:
    """At lr 1e-12 the weights do not move, so val/acc1 never beats epoch 1's: best.ckpt stays at epoch 1
    while last.ckpt, the resume point, holds the end of training (Lightning 2.6's save_last=True kept
    epoch 1's, and a requeue repeated every later epoch)."""
    c = config(tmp_path, epochs=3, optim={"lr": 1e-12})
    result = train(c)
    ckpts = tmp_path / "results" / c.run_id() / "checkpoints"
    steps = {name: torch.load(ckpts / f"{name}.ckpt", weights_only=False)["global_step"] for name in ("best", "last")}
    assert steps == {"best": result.global_step // 3, "last": result.global_step} and result.global_step == 18


def test_wandb_disabled_writes_no_wandb_files(tmp_path: Path) -> None:
    c = config(tmp_path)
    train(c)
    assert not (tmp_path / "results" / c.run_id() / "wandb").exists()


class InterruptAt(pl.Callback):
    """Ctrl-C at the start of an epoch, after the previous epoch's checkpoint was written."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            raise KeyboardInterrupt


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_gives_the_uninterrupted_result(tmp_path: Path, workers: int) -> None:
    values = dict(
        arch="vggp4",
        epochs=3,
        hidden_noise_std=0.05,
        data={"input_size": [3, 32, 32], "num_workers": workers, "augment": {"flip": True, "noise_std": 0.05}},
    )
    straight = train(config(tmp_path / "a", **values))
    interrupted = config(tmp_path / "b", **values)
    with pytest.raises(SystemExit):
        train(interrupted, extra_callbacks=[InterruptAt(2)])
    run = tmp_path / "b" / "results" / interrupted.run_id()
    assert not (run / "result.json").exists() and (run / "checkpoints" / "last.ckpt").is_file()
    with pytest.raises(Exception, match="--resume"):
        train(interrupted)  # an interrupted run is never overwritten silently
    resumed = train(interrupted, resume=True)
    for key in ("train_loss", "train_acc1", "val_acc1", "test_acc1", "test_acc5", "global_step"):
        assert getattr(resumed, key) == getattr(straight, key), key
    assert len(list((run / "metrics").glob("version_*/metrics.csv"))) == 2
    # the clock from last.ckpt (an epoch end) goes on: the three epochs' times, two attempts
    epochs = [r for r in read_metrics(run) if r.get("time/elapsed_s") is not None]
    assert [r["epoch"] for r in epochs] == [0, 1, 2] and resumed.attempts == 2
    assert epochs[0]["time/elapsed_s"] < epochs[1]["time/elapsed_s"] < epochs[2]["time/elapsed_s"] <= resumed.elapsed_s
    assert resumed.train_time_s == pytest.approx(sum(r["time/train_s"] for r in epochs), rel=1e-6)
    assert resumed.eval_time_s == pytest.approx(sum(r["time/eval_s"] for r in epochs), rel=1e-6)


class SignalAt(pl.Callback):
    """Slurm's --signal=SIGUSR1@90, delivered to this process at one training step."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGUSR1)


def test_preemption_signal_checkpoints_and_the_resume_finishes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Outside Slurm nothing is requeued, but the signal still checkpoints at the step it lands in and
    stops the run without a result; --resume continues from that step (tests/test_sweep_slurm.py
    has the requeue on a real cluster)."""
    c = config(tmp_path, epochs=2)
    with pytest.raises(Preempted, match="SIGUSR1 at step 5"):
        train(c, extra_callbacks=[SignalAt(4)])
    run = tmp_path / "results" / c.run_id()
    hpc = run / "checkpoints" / "hpc_ckpt_1.ckpt"
    assert hpc.is_file() and not (run / "result.json").exists()
    assert torch.load(hpc, weights_only=False)["global_step"] == 5
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL  # the handler is the run's only
    resumed = train(c, resume=True)
    assert f"resuming from {hpc} at step 5 (epoch 1/2, batch 6/6)" in capsys.readouterr().err
    assert resumed.status == "completed" and resumed.global_step >= 5
    v1 = (run / "metrics" / "version_1" / "metrics.csv").read_text().splitlines()
    assert int(v1[1].split(",")[1]) >= 5  # the second attempt logged on from the checkpoint's step


class TerminatedAt(pl.Callback):
    """Slurm's SIGTERM (scontrol requeue, scancel, the time limit) at one training step; with
    ``then_fail``, the step then fails as a DDP rank does whose peer was killed first (gloo:
    "Connection closed by peer")."""

    def __init__(self, step: int, then_fail: bool) -> None:
        self.step, self.then_fail = step, then_fail

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)
            if self.then_fail:
                raise RuntimeError("[gloo/transport/tcp/pair.cc] Connection closed by peer")


@pytest.mark.parametrize("then_fail", [False, True])
def test_sigterm_interrupts_never_fails_the_run(tmp_path: Path, then_fail: bool) -> None:
    """A killed run is interrupted, not failed: no result.json (which would stop the requeued task
    from training it), and --resume finishes it."""
    c = config(tmp_path, epochs=2)
    with pytest.raises(Preempted, match="SIGTERM"):
        train(c, extra_callbacks=[TerminatedAt(8, then_fail)])
    run = tmp_path / "results" / c.run_id()
    assert not (run / "result.json").exists() and (run / "checkpoints" / "last.ckpt").is_file()
    assert train(c, resume=True).status == "completed"


def test_diverged_run_is_recorded(tmp_path: Path) -> None:
    c = config(tmp_path, epochs=2, optim={"lr": 1e12, "schedule": "constant"})
    result = train(c)
    assert result.status == "diverged" and result.diverged_at_step is not None and result.test_acc1 is None
    assert json.loads((tmp_path / "results" / c.run_id() / "result.json").read_text())["status"] == "diverged"


def _pretrained(tmp_path: Path) -> Path:
    c = config(tmp_path / "pre", arch="vggp4", data={"input_size": [3, 32, 32], "num_classes": 5})
    train(c)
    return tmp_path / "pre" / "results" / c.run_id() / "checkpoints" / "last.ckpt"


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def test_linear_probe_and_finetune(tmp_path: Path) -> None:
    ckpt = _pretrained(tmp_path)
    before = _weights(ckpt)
    after = {}
    for mode in ("linear-probe", "finetune"):
        c = config(
            tmp_path / mode,
            arch="vggp4",
            transfer={"mode": mode, "checkpoint": str(ckpt)},
            data={"input_size": [3, 32, 32], "num_classes": 3, "seed": 1},
        )
        assert train(c).transfer == mode
        after[mode] = _weights(tmp_path / mode / "results" / c.run_id() / "checkpoints" / "last.ckpt")
    probe, tuned = after["linear-probe"], after["finetune"]
    backbone = [k for k in before if not k.startswith("model.head.")]
    assert any("running_mean" in k for k in backbone)
    assert [k for k in backbone if not torch.equal(before[k], probe[k])] == []  # frozen, BatchNorm statistics included
    assert not all(torch.equal(before[k], tuned[k]) for k in backbone)  # finetuning moves the backbone
    assert probe["model.head.2.weight"].shape == (3, 64)  # a fresh 3-way classifier


def test_transfer_from_another_architecture_is_refused(tmp_path: Path) -> None:
    ckpt = _pretrained(tmp_path)
    with pytest.raises(Exception, match="holds a vggp4 checkpoint, not vggp7"):
        train(
            config(
                tmp_path / "x",
                arch="vggp7",
                transfer={"mode": "finetune", "checkpoint": str(ckpt)},
                data={"input_size": [3, 32, 32]},
            )
        )


def test_hidden_noise_only_while_training(tmp_path: Path) -> None:
    import architectures
    from harness.training.module import ClassifierModule

    module = ClassifierModule(architectures.create("lenet5"), 10, OptimConfig(), "lenet5", hidden_noise_std=0.1)
    x = torch.randn(4, 1, 32, 32)
    assert not torch.equal(module.train()(x), module(x))
    assert torch.equal(module.eval()(x), module(x))


def test_multistep_schedule_divides_at_half_and_three_quarters() -> None:
    o = OptimConfig(schedule="multistep", milestones=(0.5, 0.75), gamma=0.1)
    factors = [lr_factor(o, step, 64_000, 0) for step in (0, 31_999, 32_000, 47_999, 48_000, 63_999)]
    assert factors == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    assert lr_factor(OptimConfig(schedule="cosine"), 100, 100, 0) == pytest.approx(0.0)
    assert lr_factor(OptimConfig(warmup_epochs=1), 0, 100, 10) == pytest.approx(0.01)


def test_max_steps_is_the_budget_and_the_schedule_spans_it(tmp_path: Path) -> None:
    """384 training images at batch 64 = 6 steps an epoch: 7 steps end one step into epoch 2, with the
    lr divided at 3.5 and 5.25 steps (a schedule over the two epochs' 12 steps would be /10 once), the
    final weights validated. A SIGTERM on epoch 1's last batch, resumed, gives the same run."""
    values = dict(trainer={"max_steps": 7, "log_every_n_steps": 1}, optim={"schedule": "multistep", "lr": 0.1})
    a = config(tmp_path / "a", **values)
    straight = train(a)
    assert (straight.status, straight.global_step, straight.epochs) == (
        "completed",
        7,
        2,
    ) and straight.val_acc1 is not None
    ckpt = torch.load(tmp_path / "a" / "results" / a.run_id() / "checkpoints" / "last.ckpt", weights_only=False)
    assert (ckpt["global_step"], ckpt["lr_schedulers"][0]["_last_lr"]) == (7, pytest.approx([0.1 * 0.01]))
    b = config(tmp_path / "b", **values)
    with pytest.raises(Preempted, match="SIGTERM at step 6"):
        train(b, extra_callbacks=[TerminatedAt(5, then_fail=False)])
    resumed = train(b, resume=True)
    for key in ("global_step", "train_acc1", "train_loss", "val_acc1", "test_acc1", "test_loss"):
        assert getattr(resumed, key) == pytest.approx(getattr(straight, key), rel=1e-6), key
    assert merged_curve(tmp_path / "b" / "results" / b.run_id()) == merged_curve(
        tmp_path / "a" / "results" / a.run_id()
    )
    with pytest.raises(UserError, match=r"epochs=3 and trainer.max_steps=7: give one budget"):
        config(tmp_path, epochs=3, trainer={"max_steps": 7})


@pytest.mark.slow
@pytest.mark.skipif(not FASHION.is_dir(), reason="apt-get install dataset-fashion-mnist")
def test_lenet5_one_epoch_on_real_fashion_mnist(tmp_path: Path) -> None:
    c = resolve(
        [
            (
                "test",
                {
                    "arch": "lenet5",
                    "dataset": "fashion-mnist",
                    "epochs": 1,
                    "results": str(tmp_path),
                    "wandb": {"mode": "disabled"},
                },
            )
        ]
    )
    result = train(c)
    assert result.status == "completed" and result.test_acc1 >= 0.85, result.test_acc1


def test_cpu_threads_leave_cores_to_the_data_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.training.run import cpu_threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: set(range(8)))
    assert cpu_threads(config(tmp_path), workers=2) == 6
    assert cpu_threads(config(tmp_path, trainer={"devices": 2}), workers=1) == 3
    assert cpu_threads(config(tmp_path), workers=12) == 1
    assert cpu_threads(config(tmp_path, trainer={"threads": 5}), workers=2) == 5
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert cpu_threads(config(tmp_path), workers=0) == 2


def test_plain_epoch_lines_when_not_a_terminal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train(config(tmp_path, epochs=2))
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in lines] == ["1/2", "2/2"]
    assert all("train/loss" in line and "val/acc1" in line for line in lines)


class KilledAt(pl.Callback):
    """A kill without warning (SIGKILL, a node lost) just before a training step: nothing more is saved."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step == self.step:
            raise KeyboardInterrupt


def merged_curve(run: Path) -> list[tuple[int, float]]:
    return [(int(r["step"]), r["train/loss_step"]) for r in read_metrics(run) if r.get("train/loss_step") is not None]


MID_EPOCH = dict(
    arch="vggp4", epochs=2, hidden_noise_std=0.05, data={"input_size": [3, 32, 32], "augment": {"flip": True}}
)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    """The run both cases of the mid-epoch resume test compare with, trained once: its result and directory."""
    root = tmp_path_factory.mktemp("uninterrupted")
    a = config(root, **MID_EPOCH)
    return train(a), root / "results" / a.run_id()


@pytest.mark.parametrize("how", ["sigterm", "interval"])
def test_mid_epoch_resume_continues_the_curve_exactly(
    tmp_path: Path, how: str, uninterrupted: tuple[Any, Path]
) -> None:
    """A checkpoint mid-epoch (on SIGTERM, or trainer.checkpoint_every_min) resumes at the next batch
    of the same order: the merged per-step loss curve has every step once and equals the
    uninterrupted run's, and so do the final weights' val/test figures and the interrupted epoch's
    train metrics (6 steps an epoch;
    interrupted in epoch 2 at step 9)."""
    values = MID_EPOCH
    straight, straight_run = uninterrupted
    c = config(
        tmp_path / "b",
        **values,
        trainer={"log_every_n_steps": 1, "checkpoint_every_min": 1e-9 if how == "interval" else 0.0},
    )
    run = tmp_path / "b" / "results" / c.run_id()
    if how == "sigterm":
        with pytest.raises(Preempted, match="SIGTERM at step 9"):
            train(c, extra_callbacks=[TerminatedAt(8, then_fail=False)])
    else:  # interval checkpoints every step; then a kill before step 10 trains
        with pytest.raises(SystemExit):
            train(c, extra_callbacks=[KilledAt(9)])
    ckpt = torch.load(run / "checkpoints" / "step.ckpt", weights_only=False)
    assert (ckpt["global_step"], ckpt[type(build_data(c)).__qualname__]) == (9, {"epoch": 1, "batches": 3})
    resumed = train(c, resume=True)
    for key in ("train_acc1", "train_loss", "val_acc1", "val_loss", "test_acc1", "test_loss", "global_step"):
        assert getattr(resumed, key) == pytest.approx(getattr(straight, key), rel=1e-6), (
            key
        )  # the epoch's train metrics too
    curve = merged_curve(run)
    assert [s for s, _ in curve] == list(range(12))
    assert curve == merged_curve(straight_run)
    assert_the_clock_continued(run, ckpt, resumed)


def assert_the_clock_continued(run: Path, ckpt: dict[str, Any], resumed: Any) -> None:
    """The run's clock (Throughput's state in every checkpoint) goes on from the checkpoint after a
    resume instead of restarting, and the device-hours count both attempts' wall time."""
    (saved,) = [v for k, v in ckpt["callbacks"].items() if k.startswith("Throughput")]
    epochs = [r for r in read_metrics(run) if r.get("time/elapsed_s") is not None]
    assert len(epochs) == 2 and epochs[0]["time/elapsed_s"] < saved["elapsed_s"] < epochs[1]["time/elapsed_s"]
    assert resumed.elapsed_s >= epochs[1]["time/elapsed_s"] and resumed.attempts == 2
    assert resumed.train_time_s == pytest.approx(sum(r["time/train_s"] for r in epochs), rel=1e-6)
    attempts = [json.loads(line) for line in (run / "attempts.jsonl").read_text().splitlines()]
    assert len(attempts) == 2 and resumed.device_hours >= sum(a["ended"] - a["started"] for a in attempts[:1]) / 3600
    assert resumed.device_hours * 3600 > resumed.wall_time_s


def test_sigterm_to_the_process_group_with_workers_checkpoints(tmp_path: Path) -> None:
    """Slurm signals every process of the job (proctrack/pgid): with DataLoader workers in the group
    the run still checkpoints at a step and exits as preempted (4): the workers ignore SIGTERM."""
    args = [
        sys.executable,
        "-m",
        "harness.cli",
        "train",
        "--arch",
        "lenet5",
        "--data",
        "synthetic",
        "--epochs",
        "50",
        "--results",
        str(tmp_path),
        "--set",
        "data.input_size=[1,32,32]",
        "--set",
        "data.num_samples=4096",
        "--set",
        "data.num_workers=2",
        "--set",
        "wandb.mode=disabled",
        "--set",
        "trainer.accelerator=cpu",
    ]
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, start_new_session=True)
    for line in proc.stderr:  # the attempt's first line: training has begun
        if "starting at step 0" in line:
            break
    # well into training, not as the workers appear: signalled while they started (just forked), one of them
    # died of it in 1 of 3 tries and the run stopped on that error, preempted but without its step checkpoint
    time.sleep(2)
    os.killpg(proc.pid, signal.SIGTERM)
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 4, err
    assert re.search(r"SIGTERM at step \d+: saved \S+/checkpoints/step\.ckpt", err), err
    (run,) = tmp_path.iterdir()
    assert (run / "checkpoints" / "step.ckpt").is_file() and not (run / "result.json").exists()


def test_ddp_record_gives_the_job_rate_and_each_rank(tmp_path: Path) -> None:
    """`convbench train` on two ranks (Lightning's ddp launcher re-runs the command as rank 1; gloo,
    1 thread each): result.json's train_samples_per_s is the sum of the ranks' rates, not rank 0's,
    with the spread, world size and hosts. (ddp_fork would not
    do here: its ranks are children, and the parent's callbacks never see their figures.)"""
    results = tmp_path / "results"
    r = convbench(
        "train",
        "--arch",
        "lenet5",
        "--data",
        "synthetic",
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--devices",
        "2",
        "--strategy",
        "ddp",
        "--accelerator",
        "cpu",
        "--workers",
        "0",
        "--wandb",
        "disabled",
        "--results",
        results,
        "--set",
        "trainer.threads=1",
        "--set",
        "data.input_size=[1, 32, 32]",
        "--set",
        "data.num_samples=512",
    )
    assert r.returncode == 0, r.stderr[-2000:]
    (record,) = results.glob("*/result.json")
    result = json.loads(record.read_text())
    assert (result["world_size"], result["num_nodes"], result["hosts"]) == (2, 1, [socket.gethostname()] * 2)
    low, high = result["train_samples_per_s_rank_min"], result["train_samples_per_s_rank_max"]
    assert 0 < low <= high
    assert 2 * low <= result["train_samples_per_s"] <= 2 * high  # a sum of two rates, each within [min, max]
    assert f"{result['train_samples_per_s']:.0f} samples/s over 2 ranks" in r.stdout


def test_a_batch_log_holds_only_lines_for_a_person(tmp_path: Path) -> None:
    """`convbench train` with its output in a file (not a terminal): convbench's start line, one line an
    epoch and the result, nothing else. Epochs of 8 batches under the default logging interval of 10
    drew Lightning's "smaller than the logging interval" warning (the interval counts steps across
    epochs, so the step curve loses nothing), no validation split its empty-loader warning, and each
    interval checkpoint (here every step) a "`weights_only` was not set" line."""
    proc = convbench(
        "train",
        "--arch",
        "lenet5",
        "--data",
        "synthetic",
        "--epochs",
        "2",
        "--batch-size",
        "32",
        "--workers",
        "0",
        "--results",
        tmp_path / "results",
        "--set",
        "data.num_samples=256",
        "--set",
        "data.input_size=[1, 32, 32]",
        "--set",
        "trainer.checkpoint_every_min=1e-9",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    own = re.compile(
        r"convbench: starting at step 0 \(epoch 1/2\), no checkpoint; .* after launch"
        r"|epoch [12]/2  train/acc1 .*"
        r"|lenet5-synthetic-s0-\w+: completed  test top-1 .*"
    )
    lines = (proc.stderr + proc.stdout).splitlines()
    assert [line for line in lines if not own.fullmatch(line)] == [], proc.stderr + proc.stdout
    assert len(lines) == 4, lines


def test_a_run_shorter_than_the_logging_interval_says_it_has_no_step_curve(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Step losses are logged every log_every_n_steps steps counted across epochs: only a run with fewer
    steps in all than that goes without a step curve, and only then is it told so."""
    from harness.training.run import warn_if_no_step_curve

    c = config(tmp_path, epochs=2, trainer={"log_every_n_steps": 10})
    warn_if_no_step_curve(c, 5)  # 2 epochs of 5: step 10 is logged
    assert capsys.readouterr().err == ""
    warn_if_no_step_curve(c, 4)
    assert capsys.readouterr().err == (
        "convbench: this run's 8 optimiser steps are fewer than trainer.log_every_n_steps=10: "
        "metrics.csv will have epoch figures but no per-step loss\n"
    )
    warn_if_no_step_curve(config(tmp_path, trainer={"log_every_n_steps": 10, "max_steps": 12}), 4)
    assert capsys.readouterr().err == ""


def test_a_resume_mid_epoch_times_only_its_own_batches(tmp_path: Path) -> None:
    """Lightning skips on_train_epoch_start when it resumes mid-epoch: the resumed attempt's first batch
    is timed from the start of training, so its training time fits in its wall time (it was timed
    from the clock's zero, and the record said a fraction of a sample a second)."""
    c = config(tmp_path, epochs=2, trainer={"log_every_n_steps": 1, "checkpoint_every_min": 1e-9})
    with pytest.raises(SystemExit):
        train(c, extra_callbacks=[KilledAt(9)])  # interval checkpoints every step: step.ckpt at step 9
    resumed = train(c, resume=True)
    samples = (resumed.global_step - 9) * 64  # the steps this attempt trained, at batch 64
    assert resumed.global_step == 12 and resumed.train_samples_per_s * resumed.wall_time_s >= samples
