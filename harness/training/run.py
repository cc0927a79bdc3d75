"""One training run, end to end: data, model, LightningModule, Trainer, test, and the run record.

Order matters for "nothing computed is lost": every user mistake is caught before the first
step (config, data files, architecture, geometry, batch size, checkpoint), and a run directory
that holds an interrupted run is never overwritten unless asked to resume it."""

from __future__ import annotations

import logging
import math
import os
import secrets
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger, Logger
from pytorch_lightning.plugins.environments import SLURMEnvironment
from pytorch_lightning.utilities import rank_zero_only
from pytorch_lightning.utilities.exceptions import SIGTERMException

import architectures
import datamodules
from harness.config.files import check_checkpoint
from harness.config.train_config import TrainConfig
from harness.errors import UserError
from harness.memory import peak_bytes, pin_thresholds
from harness.run_record import RunDir, RunResult, Status
from harness.training.callbacks import (
    AttemptLog,
    Divergence,
    EpochCheckpoint,
    EpochLines,
    LoggingIntervalBar,
    Throughput,
)
from harness.training.module import ClassifierModule, SegmenterModule, classifier_of
from harness.training.preemption import HPC_CHECKPOINT, STEP_CHECKPOINT, Preempted, Preemption

EXIT_DIVERGED = 3


def build_data(config: TrainConfig) -> datamodules.ConvDataModule:
    """The data module; small-image nets get their reference size unless data.image_size is set
    (Fashion-MNIST's 28x28 is zero-padded to LeNet's and the CIFAR nets' 32x32; U-Nets, at 256 and 572,
    take the data's own size). Grey data stays
    one channel: the net is built with in_chans=1 unless data.in_chans=3 replicates it."""
    options = {"seed": config.seed, **config.data}
    dm = datamodules.create(config.dataset, **options)
    size = architectures.info(config.arch).input_size[1]
    if "image_size" not in options and size <= 64 and dm.input_size[1] != size:
        dm = datamodules.create(config.dataset, **options, image_size=size)
    return dm


def load_data(config: TrainConfig, dm: datamodules.ConvDataModule) -> None:
    """Read the training split (the first file I/O) and check the batch fits in it."""
    dm.setup("fit")
    n_train = len(dm.train_pipeline())
    if dm.config.batch_size > n_train:
        raise UserError(
            f"data.batch_size={dm.config.batch_size} is larger than the training set of {config.dataset}"
            f" ({n_train} images)"
        )


def cpu_threads(config: TrainConfig, workers: int) -> int:
    """Torch threads for a CPU run: the cores not feeding the DataLoader, shared by the local
    ranks. Oversubscribing is costly: OpenMP threads spin at every barrier, so a thread that
    another process holds off the core stalls all the others (docs/measurements.md). OMP_NUM_THREADS, when set (the
    local sweep backend sets it), and trainer.threads win."""
    if config.trainer.threads:
        return config.trainer.threads
    if os.environ.get("OMP_NUM_THREADS"):
        return int(os.environ["OMP_NUM_THREADS"])
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // config.trainer.devices - workers)


def steps_per_epoch(config: TrainConfig, dm: datamodules.ConvDataModule) -> int:
    """Optimiser steps per epoch on each rank: the data module pads every rank's shard to equal length."""
    t = config.trainer
    steps = math.ceil(len(dm.train_pipeline()) / (dm.config.batch_size * t.devices * t.num_nodes))
    limit = t.limit_train_batches
    return max(1, int(steps * limit) if limit <= 1 else min(steps, int(limit)))


def planned_epochs(config: TrainConfig, steps_per_epoch: int) -> int:
    """The epochs the run trains: `epochs`, or as many as trainer.max_steps takes (the last one partly)."""
    return math.ceil(config.trainer.max_steps / steps_per_epoch) if config.trainer.max_steps else config.epochs


def build_model(config: TrainConfig, dm: datamodules.ConvDataModule) -> tuple[torch.nn.Module, architectures.Profile]:
    info = architectures.info(config.arch)
    if info.task != dm.task:
        same = ", ".join(n for n in datamodules.names() if _task_of(n) == info.task)
        raise UserError(
            f"{config.arch} is a {info.task} network but dataset {config.dataset} is for {dm.task}; "
            f"{info.task} datasets: {same or 'none registered'}"
        )
    if info.task == "segmentation" and config.transfer.mode != "scratch":
        raise UserError(
            f"transfer.mode={config.transfer.mode}: transfer replaces a classifier's head; {config.arch} has none"
        )
    try:
        model = architectures.create(config.arch, num_classes=dm.num_classes, in_chans=dm.input_size[0], **config.model)
    except (TypeError, ValueError) as err:
        if isinstance(err, architectures.ArchitectureError):
            raise
        raise UserError(f"model overrides {config.model} rejected by {config.arch}: {err}") from None
    try:
        profile = architectures.profile(model, dm.input_size)
    except RuntimeError as err:
        size = "x".join(map(str, dm.input_size))
        raise UserError(
            f"{config.arch} cannot run on {config.dataset} images of {size}: {str(err).splitlines()[0]}"
            " (set data.image_size or pick another architecture)"
        ) from None
    if config.transfer.mode != "scratch":
        load_backbone(model, config.transfer.checkpoint, config.arch)
    return model, profile


def _task_of(dataset: str) -> str | None:
    """A dataset's task for an error message; None for one whose module does not import."""
    try:
        return datamodules.task(dataset)
    except datamodules.DataError:
        return None


def load_backbone(model: torch.nn.Module, path: str | None, arch: str) -> None:
    """Copy a convbench checkpoint's weights into ``model``, all but the classifier."""
    if path is None or not Path(path).exists():
        raise UserError(f"--from {path}: no such checkpoint")
    check_checkpoint(path, "--from")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        trained_as = ckpt["hyper_parameters"]["arch"]
        state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    except Exception as err:  # a torch file that is not a convbench checkpoint
        first = (str(err).splitlines() or [""])[0][:120]
        raise UserError(
            f"--from {path}: not a convbench checkpoint ({type(err).__name__}{': ' + first if first else ''})"
        ) from None
    if trained_as != arch:
        raise UserError(
            f"--from {path} holds a {trained_as} checkpoint, not {arch}: transfer needs the same architecture"
        )
    head = classifier_of(model)[0]
    backbone = {k: v for k, v in state.items() if not k.startswith(head + ".")}
    missing, unexpected = model.load_state_dict(backbone, strict=False)
    if unexpected or any(not k.startswith(head + ".") for k in missing):
        raise UserError(
            f"--from {path}: its {arch} weights do not fit this {arch} (overrides differ?): "
            f"missing {missing[:3]}, unexpected {unexpected[:3]}"
        )


def checkpoints(run: RunDir) -> list[Path]:
    """last.ckpt (epoch ends), checkpoints/step.ckpt (SIGTERM, trainer.checkpoint_every_min) and the
    checkpoints/hpc_ckpt_N.ckpt that harness.training.preemption saves on the requeue signal."""
    step = run.checkpoints / STEP_CHECKPOINT
    found = [run.last_checkpoint, step if step.is_file() else None, *run.checkpoints.glob(HPC_CHECKPOINT.format("*"))]
    return [p for p in found if p is not None]


def resume_checkpoint(run: RunDir) -> str | None:
    """The newest checkpoint, so a requeued SLURM job continues from the signal or the last interval
    checkpoint, not the last epoch end."""
    found = checkpoints(run)
    return str(max(found, key=lambda p: p.stat().st_mtime)) if found else None


def build_loggers(config: TrainConfig, run: RunDir) -> list[Logger]:
    """CSV always; a live WandbLogger only online (resumed by id). Offline, the W&B run is written
    once from the run record when the run finishes (harness.wandb_run): a live offline logger would
    leave one offline run per attempt, which `wandb sync` cannot merge."""
    # metrics/version_N/metrics.csv: one version per attempt, so a resume never overwrites the curve so far
    loggers: list[Logger] = [CSVLogger(save_dir=str(run.path), name="metrics")]
    if config.wandb.mode == "disabled":
        return loggers
    if os.environ.get("WANDB_SWEEP_ID") and os.environ.get("WANDB_RUN_ID"):  # started by `wandb agent`: its run id
        run.set_wandb_id(os.environ["WANDB_RUN_ID"])
    wandb_id = run.wandb_id(secrets.token_hex(4))
    if config.wandb.mode == "online":
        from pytorch_lightning.loggers import WandbLogger

        loggers.append(
            WandbLogger(
                project=config.wandb.project,
                entity=config.wandb.entity,
                group=config.wandb.group,
                tags=list(config.wandb.tags),
                name=run.path.name,
                id=wandb_id,
                resume="allow",
                mode="online",
                save_dir=str(run.path),
                config=config.to_dict(),
            )
        )
    return loggers


# Lightning's banners (accelerators, tips, "Initializing distributed", restore paths, the
# checkpoint connector's "`weights_only` was not set" at each interval checkpoint) and warnings
# that do not apply here: the metrics are torchmetrics objects synced by themselves, checkpoints
# are our own, the data module resumes mid-epoch itself, and the logging interval counts optimiser
# steps across epochs (harness.training.cadence), so an epoch shorter than it loses no step logs
# (train says so itself when the whole run is shorter).
BANNER_LOGGERS = (
    "pytorch_lightning.utilities.rank_zero",
    "pytorch_lightning.accelerators.cuda",
    "lightning_fabric.utilities.distributed",
    "lightning_fabric.utilities.seed",
    "pytorch_lightning.trainer.connectors.checkpoint_connector",
)
NOT_APPLICABLE = (
    r"You're resuming from a checkpoint that ended before the epoch ended",
    r"`weights_only` was not set",
    r"It is recommended to use `self.log\(",
    r"Checkpoint directory .* exists and is not empty",
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    r"The `srun` command is available on your system",
    r"The number of training batches \(\d+\) is smaller than the logging interval",
)


def quiet_batch_logs() -> None:
    """A batch job's log is read by a person: the epoch lines and convbench's own lines, not banners."""
    for name in BANNER_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for message in NOT_APPLICABLE:
        warnings.filterwarnings("ignore", message=message)


def validates(dm: datamodules.ConvDataModule) -> bool:
    """Whether the run has a validation split (ImageNet's val/ stands in for one at val_size 0)."""
    return bool(dm.config.val_size) or dm.validate_on_test


def resume_point(run: RunDir, resume: bool) -> str | None:
    """The checkpoint this attempt starts from; a run directory holding an interrupted run is never
    trained over unless asked to resume it."""
    if checkpoints(run) and not resume:
        raise UserError(f"{run.path} holds an interrupted run (checkpoints/*.ckpt): pass --resume to continue it")
    ckpt = resume_checkpoint(run) if resume else None
    if ckpt is not None:
        check_checkpoint(ckpt, "--resume: the run's newest checkpoint")  # the run itself is left as it is
    return ckpt


def prepare(config: TrainConfig) -> tuple[datamodules.ConvDataModule, torch.nn.Module, architectures.Profile]:
    """The seeded data module and model, with every user mistake about them caught before the first step."""
    pl.seed_everything(config.seed, verbose=False)
    pin_thresholds()  # the allocation path the bench measures: a step at one speed in every process
    dm = build_data(config)
    if config.trainer.accelerator == "cpu" or not torch.cuda.is_available():
        torch.set_num_threads(cpu_threads(config, dm.loader_workers))
    model, profile = build_model(config, dm)
    load_data(config, dm)
    return dm, model, profile


def build_module(
    config: TrainConfig, dm: datamodules.ConvDataModule, model: torch.nn.Module, spe: int
) -> ClassifierModule:
    """The LightningModule; the LR plateau schedule watches validation accuracy, or training
    accuracy when there is no validation split."""
    segmenter = dm.task == "segmentation"
    extra = {"dice_weight": config.dice_weight} if segmenter else {}
    return (SegmenterModule if segmenter else ClassifierModule)(
        model,
        dm.num_classes,
        config.optim,
        config.arch,
        config.transfer.mode,
        config.hidden_noise_std,
        config.trainer.channels_last,
        plateau_monitor=monitored(dm),
        steps_per_epoch=spe,
        max_steps=config.trainer.max_steps,
        seed=config.seed,
        **extra,
    )


def monitored(dm: datamodules.ConvDataModule) -> str:
    """What best.ckpt and the plateau schedule go by: validation accuracy on a split of its own, never
    ImageNet's test split standing in for one (choosing by it would select on the test set); a
    segmenter's, its mean IoU."""
    metric = "miou" if dm.task == "segmentation" else "acc1"
    return f"val/{metric}" if dm.config.val_size else f"train/{metric}"


def epoch_checkpoints(run: RunDir, monitor: str) -> list[pl.Callback]:
    return [
        EpochCheckpoint(
            dirpath=run.checkpoints,
            filename="best",
            monitor=monitor,
            mode="max",
            save_top_k=1,
            enable_version_counter=False,
        ),
        # last.ckpt at every epoch end, the resume point; not save_last=True, which Lightning 2.6 writes
        # only at the epochs whose monitored metric improved (a requeue then repeated the other epochs)
        EpochCheckpoint(dirpath=run.checkpoints, filename="last", save_top_k=1, enable_version_counter=False),
    ]


def build_trainer(
    config: TrainConfig, run: RunDir, dm: datamodules.ConvDataModule, epochs: int, callbacks: list[pl.Callback]
) -> pl.Trainer:
    """On a terminal a progress bar; in a batch log (not a tty) one line per epoch and no banners."""
    tty = sys.stdout.isatty()
    if not tty:
        quiet_batch_logs()
    t = config.trainer
    return pl.Trainer(
        max_epochs=epochs,
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=t.strategy,
        precision=t.precision,
        deterministic=t.deterministic,
        limit_train_batches=t.limit_train_batches,
        # without a validation split Lightning skips the loop before asking for its (empty) loader
        limit_val_batches=1.0 if validates(dm) else 0,
        logger=build_loggers(config, run) + ([] if tty else [EpochLines(epochs)]),
        callbacks=callbacks + ([LoggingIntervalBar()] if tty else []),
        default_root_dir=str(run.path),
        enable_progress_bar=tty,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=t.log_every_n_steps,
        use_distributed_sampler=False,  # the data module shards by rank itself, deterministically per epoch
        # under Slurm, DDP comes from the environment;
        # requeue on the signal is harness.training.preemption's, not Lightning's
        plugins=[SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else None,
    )


@rank_zero_only
def warn_if_no_step_curve(config: TrainConfig, spe: int) -> None:
    """The per-step loss is logged every trainer.log_every_n_steps optimiser steps, counted across
    epochs: only a run shorter than that has no step curve."""
    planned = config.trainer.max_steps or planned_epochs(config, spe) * spe
    every = config.trainer.log_every_n_steps
    if planned < every:
        print(
            f"convbench: this run's {planned} optimiser steps are fewer than trainer.log_every_n_steps={every}: "
            "metrics.csv will have epoch figures but no per-step loss",
            file=sys.stderr,
        )


@dataclass
class Attempt:
    """One attempt at a run (a resume is another): its Trainer, the callbacks whose figures go into
    the record, and the rest of what its result() builds the record from."""

    run: RunDir
    config: TrainConfig
    profile: architectures.Profile
    trainer: pl.Trainer
    throughput: Throughput
    divergence: Divergence
    preemption: Preemption
    started: float  # time.time() at the start of train(): result.json's wall_time_s counts from it
    dataloader_workers: int  # per rank
    fit_metrics: dict[str, Any] = field(default_factory=dict)  # the callback metrics at the end of fit

    @property
    def metrics(self) -> dict[str, float]:
        """Fit's metrics, with test's over them (trainer.test replaces the trainer's callback metrics)."""
        return {k: float(v) for k, v in {**self.fit_metrics, **self.trainer.callback_metrics}.items()}

    def fit_and_test(self, module: ClassifierModule, dm: datamodules.ConvDataModule, ckpt: str | None) -> Status:
        """Train, then test unless the loss diverged. An interruption (preemption, SIGTERM, Ctrl-C)
        raises and leaves the checkpoints for --resume; any other error is recorded as a failed run
        (on rank 0) and raised."""
        trainer, preemption = self.trainer, self.preemption
        try:
            trainer.fit(module, datamodule=dm, ckpt_path=ckpt)
            self.fit_metrics = dict(trainer.callback_metrics)  # trainer.test replaces them with its own
            if self.divergence.diverged_at is not None:
                return "diverged"
            trainer.test(module, datamodule=dm, verbose=False)
            return "completed"
        except SIGTERMException as err:  # Lightning stops at a step boundary after SIGTERM (a SystemExit with code 0)
            raise Preempted("SIGTERM: resume from the last checkpoint") from err
        except (KeyboardInterrupt, SystemExit, Preempted):
            raise  # interrupted, not finished: the checkpoint stays for --resume and no result is written
        except Exception as err:  # recorded as a failed run, then reported
            if preemption.fired:  # e.g. the other rank, killed by the requeue, closed the gloo connection
                raise Preempted(preemption.fired) from err
            if preemption.terminated or trainer.received_sigterm:
                # Slurm's requeue, cancel or time limit: a DDP peer went first, its gloo connection
                # closed under this rank; interrupted, not failed: --resume continues it
                raise Preempted(f"SIGTERM ({type(err).__name__} after it): resume from the last checkpoint") from err
            if trainer.is_global_zero:
                self.record("failed", f"{type(err).__name__}: {err}")
            raise
        finally:
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                torch.distributed.destroy_process_group()  # a clean gloo/NCCL teardown: no SIGABRT at exit

    def result(self, status: Status, error: str | None = None) -> RunResult:
        """The record of the run, once it has ended: the config, the model's profile, the Trainer's
        counters and metrics, and the Throughput callback's figures."""
        config, profile, trainer, m = self.config, self.profile, self.trainer, self.metrics
        info = architectures.info(config.arch)
        device = trainer.strategy.root_device
        now = time.time()
        before = [a for a in self.run.attempts() if a["started"] != self.started]
        device_seconds = sum((a["ended"] - a["started"]) * a["world_size"] for a in before)
        return RunResult(
            run_id=self.run.path.name,
            arch=config.arch,
            family=info.family,
            residual=info.residual,
            dataset=config.dataset,
            depth=profile.depth,
            params=profile.params,
            macs=profile.macs,
            input_size=list(profile.input_size),
            seed=config.seed,
            recipe=config.recipe,
            transfer=config.transfer.mode,
            epochs=trainer.max_epochs,
            epochs_completed=trainer.current_epoch,
            global_step=trainer.global_step,
            status=status,
            train_acc1=m.get("train/acc1"),
            train_loss=m.get("train/loss"),
            val_acc1=m.get("val/acc1"),
            val_loss=m.get("val/loss"),
            test_acc1=m.get("test/acc1"),
            test_acc5=m.get("test/acc5"),
            test_loss=m.get("test/loss"),
            val_dice=m.get("val/dice"),
            val_miou=m.get("val/miou"),
            test_dice=m.get("test/dice"),
            test_miou=m.get("test/miou"),
            # the sum over ranks, their spread, num_nodes, hosts
            **self.throughput.train_record(trainer.world_size, device),
            eval_samples_per_s=self.throughput.eval_samples_per_s,
            peak_memory_bytes=peak_bytes(device),
            device=str(device),
            world_size=trainer.world_size,
            wall_time_s=now - self.started,
            **self.throughput.clock_record(),
            attempts=len(before) + 1,
            device_hours=(device_seconds + (now - self.started) * trainer.world_size) / 3600,
            hardware=self.throughput.ran_on(device, self.dataloader_workers),
            first_step_at=self.throughput.first_step_at,
            diverged_at_step=self.divergence.diverged_at,
            error=error,
            config=config.to_dict(),
        )

    def record(self, status: Status, error: str | None = None) -> RunResult:
        """Write result.json (and give W&B its summary): rank 0's, once the run has ended."""
        result = self.result(status, error)
        for logger in self.trainer.loggers:
            if type(logger).__name__ == "WandbLogger":
                record = result.to_dict()
                logger.experiment.summary.update(
                    {k: v for k, v in record.items() if isinstance(v, (int, float, str)) or k == "hosts"}
                )
                logger.experiment.config.update({"hardware": record["hardware"]}, allow_val_change=True)
                logger.experiment.finish()
        self.run.write_result(result)
        if self.config.wandb.mode == "offline":
            export_wandb(self.run)
        return result


def train(config: TrainConfig, resume: bool = False, extra_callbacks: Sequence[pl.Callback] = ()) -> RunResult | None:
    """Run ``config`` and return its result (None on DDP ranks other than 0).
    ``extra_callbacks`` join the Trainer's own (for library users and tests)."""
    started = time.time()
    run = RunDir.create(config.results, config.run_id())
    done = run.result()
    if done is not None:
        print(
            f"{run.result_path} exists: run {done.run_id} already {done.status}; delete it to run again",
            file=sys.stderr,
        )
        return done
    ckpt = resume_point(run, resume)
    dm, model, profile = prepare(config)
    run.write_config(config.to_dict())
    spe = steps_per_epoch(config, dm)
    module = build_module(config, dm, model, spe)
    throughput, divergence = Throughput(), Divergence()
    preemption = Preemption(run.path, config.trainer.checkpoint_every_min, resumed_from=ckpt)
    callbacks = [*extra_callbacks, throughput, divergence, preemption, *epoch_checkpoints(run, monitored(dm))]
    trainer = build_trainer(config, run, dm, planned_epochs(config, spe), callbacks)
    warn_if_no_step_curve(config, spe)
    attempt = Attempt(run, config, profile, trainer, throughput, divergence, preemption, started, dm.loader_workers)
    attempt_log = AttemptLog(run, started, trainer.world_size)  # needs the world size, which the Trainer settles
    trainer.callbacks.append(attempt_log)
    if trainer.is_global_zero:
        attempt_log.mark()
    try:
        status = attempt.fit_and_test(module, dm, ckpt)
        return attempt.record(status) if trainer.is_global_zero else None
    finally:
        if trainer.is_global_zero:
            attempt_log.mark()


def export_wandb(run: RunDir) -> None:
    """The offline W&B run, from the record just written; a failed export loses nothing (the result
    is on disk) and `convbench sync` redoes it."""
    from harness.wandb_run import export

    try:
        export(run.path)
    except Exception as err:  # noqa: BLE001 - the run itself finished and is recorded
        print(
            f"convbench: W&B export of {run.path} failed ({type(err).__name__}: {err}); "
            f"`convbench sync {run.path}` retries it",
            file=sys.stderr,
        )
