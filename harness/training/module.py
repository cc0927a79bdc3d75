"""The LightningModule that trains any registry classifier: the loop, the metrics, the recipe's
optimiser and schedule, the step budget, per-step seeding, hidden-unit noise and the
transfer-learning modes. The architecture stays a plain ``nn.Module``; everything
Lightning-specific is here."""

from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from architectures.unet import center_crop
from harness.config.recipes import OptimConfig
from harness.training.cadence import STEP_LOSS, logging_step
from harness.training.metrics import ClassificationTotals, SegmentationTotals

ACTIVATIONS = (nn.ReLU, nn.Tanh, nn.GELU, nn.SiLU)


def classifier_of(model: nn.Module) -> tuple[str, nn.Linear]:
    """The final linear layer: the classifier a transfer learner replaces."""
    name, layer = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]
    return name, layer


def lr_factor(o: OptimConfig, step: int, total: int, warmup: int) -> float:
    """The lr multiplier at an iteration: linear warm-up from 1/100, then the schedule, whose
    milestones are fractions of the whole run (He et al.'s 32k and 48k of 64k = 0.5 and 0.75)."""
    if step < warmup:
        return 0.01 + 0.99 * step / warmup
    if o.schedule == "multistep":
        return o.gamma ** sum(step >= m * total for m in o.milestones)
    if o.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))
    return 1.0


TRAIN_TOTALS = "convbench_train_totals"  # the checkpoint's key for the epoch's running train metrics


class ClassifierModule(pl.LightningModule):
    def __init__(
        self,
        model: nn.Module,
        num_classes: int,
        optim: OptimConfig,
        arch: str,
        transfer: str = "scratch",
        hidden_noise_std: float = 0.0,
        channels_last: bool = False,
        plateau_monitor: str = "val/acc1",
        steps_per_epoch: int = 1,
        max_steps: int = 0,
        seed: int = 0,
    ) -> None:
        """``max_steps``: stop after that many optimiser steps (0: the epochs decide). ``seed``: the
        run's seed, from which every training step reseeds (see on_train_batch_start)."""
        super().__init__()
        self.save_hyperparameters(ignore=["model", "optim"])
        self.hparams["optim"] = vars(optim)
        self.model = model.to(memory_format=torch.channels_last) if channels_last else model
        self.optim = optim
        self.channels_last = channels_last
        self.hidden_noise_std = hidden_noise_std
        if hidden_noise_std > 0:
            for m in model.modules():
                if isinstance(m, ACTIVATIONS):
                    m.register_forward_hook(self._add_noise)
        self.step_loss: float | None = None  # the latest logged training step's loss
        # keyed "<stage>_totals": a ModuleDict key may not shadow nn.Module.train
        self.metrics = nn.ModuleDict({f"{s}_totals": self._totals(num_classes) for s in ("train", "val", "test")})
        if transfer == "linear-probe":
            self.freeze_backbone()

    def _totals(self, num_classes: int) -> ClassificationTotals:
        """One stage's epoch metrics."""
        return ClassificationTotals(top_k=min(5, num_classes))

    # ---- transfer learning ----------------------------------------------------------------
    def backbone_parameters(self) -> list[nn.Parameter]:
        head = set(map(id, classifier_of(self.model)[1].parameters()))
        return [p for p in self.model.parameters() if id(p) not in head]

    def freeze_backbone(self) -> None:
        for p in self.backbone_parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True) -> ClassifierModule:
        """A linear probe keeps the whole backbone in eval mode: frozen features include the
        BatchNorm running statistics (and no dropout in front of the new classifier's inputs)."""
        super().train(mode)
        if mode and self.hparams.transfer == "linear-probe":
            head = classifier_of(self.model)[1]
            for m in self.model.modules():
                if m is not head and not list(m.children()):
                    m.train(False)
        return self

    def on_train_epoch_start(self) -> None:
        self.train()  # Lightning 2.x keeps module modes as they are; apply the probe's modes itself

    # ---- steps ---------------------------------------------------------------------------
    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """Reseed torch from (seed, step, rank) before every training step, so dropout and
        hidden-unit noise at step k do not depend on whether (or mid-epoch where) the run was resumed
        before it. The data order and augmentation have their own generators, seeded by the data
        module per batch; nothing in a step draws from numpy's or Python's global ones.

        Seeds the generators a step draws from (the CPU one, the rank's CUDA device's) directly:
        `torch.manual_seed` / `seed_everything` also walk every CUDA, MPS and XPU device, and reseeding
        numpy's and Python's generators would be paid every step for nothing (docs/measurements.md)."""
        seed = (self.hparams.seed * 100_003 + self.trainer.global_step * 7_919 + self.trainer.global_rank) % 2**32
        torch.default_generator.manual_seed(seed)
        if self.device.type == "cuda":
            torch.cuda.manual_seed(seed)  # the current device: Lightning sets it to this rank's

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """The step budget. Not Lightning's own max_steps, which makes training iteration-based: a
        resume then takes other restart paths and the last, partial epoch is never validated;
        should_stop ends that epoch as an epoch (its end hooks, validation and last.ckpt) and the run
        is epoch-based throughout."""
        if self.hparams.max_steps and self.trainer.global_step >= self.hparams.max_steps:  # in lockstep on every rank
            self.trainer.should_stop = True

    def _add_noise(self, module: nn.Module, _inputs: Any, out: torch.Tensor) -> torch.Tensor | None:
        if module.training:
            return out + torch.randn_like(out) * self.hidden_noise_std
        return None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out = self.model(x)
        return out[0] if isinstance(out, tuple) else out

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        x, y = batch
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        logits, y, loss = self._loss(self.model(x), y, stage)
        self.metrics[f"{stage}_totals"].update(logits.detach(), y, loss.detach())
        if stage == "train" and logging_step(self.trainer, self.trainer.global_step + 1):
            self._log_step_loss(loss.detach())
        return loss

    def _loss(self, out: Any, y: torch.Tensor, stage: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logits, targets, loss) of a batch: the metrics' inputs and what is minimised."""
        logits, aux = (out[0], out[1:]) if isinstance(out, tuple) else (out, ())
        loss = F.cross_entropy(logits, y, label_smoothing=self.optim.label_smoothing if stage == "train" else 0.0)
        if aux:  # GoogLeNet's side heads, weighted 0.3 as in the paper
            loss = loss + 0.3 * sum(F.cross_entropy(a, y) for a in aux)
        return logits, y, loss

    def _log_step_loss(self, loss: torch.Tensor) -> None:
        """The step loss, at the logging interval only, straight to the loggers as Lightning's logger
        connector writes a step's row (the epoch added, each logger flushed: the row is on disk before
        any checkpoint of this step). Not self.log: every call moves Lightning's result object to the
        value's device, and Lightning then keeps per-batch bookkeeping of logged values, both paid
        inside the step (docs/measurements.md). The interval's one read-back; rank 0's loggers write."""
        if not self.trainer.is_global_zero:
            return
        self.step_loss = loss.item()  # what harness.training.callbacks.LoggingIntervalBar shows
        row = {STEP_LOSS: self.step_loss, "epoch": self.current_epoch}
        for logger in self.loggers:
            logger.log_metrics(row, step=self.global_step)
            logger.save()

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "test")

    def _log_epoch(self, stage: str) -> None:
        """Epoch metrics from torchmetrics, synced across DDP ranks by the metrics themselves."""
        values = {f"{stage}/{k}": v for k, v in self.metrics[f"{stage}_totals"].compute().items()}
        self.log_dict(values, prog_bar=stage != "test")
        self._reset(stage)

    def _reset(self, stage: str) -> None:
        self.metrics[f"{stage}_totals"].reset()

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    # ---- checkpoints ---------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """The epoch's running train totals so far, summed over the ranks: a mid-epoch resume ends the
        epoch with the uninterrupted run's train metrics. A collective: every checkpoint here is saved
        by all ranks (ModelCheckpoint, harness.training.preemption); a rank-0-only save would hang."""
        totals = self.metrics["train_totals"]
        totals.fold()
        checkpoint[TRAIN_TOTALS] = {
            name: self.trainer.strategy.reduce(getattr(totals, name).clone(), reduce_op="sum")
            for name in totals._defaults
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Rank 0 takes the sums, the other ranks start at zero: the sum over ranks is the saved one.
        Not from a checkpoint of an epoch's last batch: Lightning resumes it at the next epoch, skipping
        that epoch's end (its validation and epoch rows), and the sums would leak into the next epoch."""
        progress = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_loop.batch_progress", {})
        if progress.get("is_last_batch"):
            return
        totals = self.metrics["train_totals"]
        for name, value in checkpoint.get(TRAIN_TOTALS, {}).items():
            getattr(totals, name).copy_(value if self.trainer.is_global_zero else torch.zeros_like(value))

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self._log_epoch("val")
        else:
            self._reset("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    # ---- optimisation --------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        o = self.optim
        if self.hparams.transfer == "finetune":
            head = list(classifier_of(self.model)[1].parameters())
            groups = [
                {"params": self.backbone_parameters(), "lr": o.lr * o.backbone_lr_scale},
                {"params": head, "lr": o.lr},
            ]
        else:
            groups = [{"params": [p for p in self.model.parameters() if p.requires_grad], "lr": o.lr}]
        if o.optimizer == "adamw":
            opt: torch.optim.Optimizer = torch.optim.AdamW(groups, lr=o.lr, weight_decay=o.weight_decay)
        else:
            opt = torch.optim.SGD(
                groups, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=o.weight_decay
            )
        # not trainer.estimated_stepping_batches: it builds the train loader before a resumed run's
        # epoch is restored, and Lightning then keeps that loader (epoch 0's order)
        steps_per_epoch = self.hparams.steps_per_epoch
        total = max(1, self.hparams.max_steps or steps_per_epoch * (self.trainer.max_epochs or 1))
        warmup = int(o.warmup_epochs * steps_per_epoch)
        if o.schedule == "plateau":
            plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=o.gamma, patience=o.patience)
            return {
                "optimizer": opt,
                "lr_scheduler": {"scheduler": plateau, "monitor": self.hparams.plateau_monitor, "interval": "epoch"},
            }

        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(o, step, total, warmup))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class SegmenterModule(ClassifierModule):
    """The classifier's loop, budget, seeding, checkpoints and optimisation, for per-pixel targets:
    cross-entropy over the pixels (plus ``dice_weight`` x the soft Dice loss), and the epoch's pixel
    accuracy, Dice and mean IoU (metrics.SegmentationTotals). A net whose output is smaller than its
    input (the valid-convolution U-Net) is scored against the centre of the mask, the pixels its output
    covers (the paper's overlap-tile scheme); ``target_for`` is that crop."""

    def __init__(self, *args: Any, dice_weight: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.dice_weight = dice_weight

    def _totals(self, num_classes: int) -> ClassificationTotals:
        return SegmentationTotals(num_classes)

    def _loss(self, out: Any, y: torch.Tensor, stage: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        y = target_for(out, y)
        loss = F.cross_entropy(out, y, label_smoothing=self.optim.label_smoothing if stage == "train" else 0.0)
        if self.dice_weight:
            loss = loss + self.dice_weight * soft_dice_loss(out, y)
        return out, y, loss


def target_for(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The mask's pixels that the output's pixels stand for: all of it for a size-keeping net, its centre
    for a net with valid convolutions (each output pixel is the centre of its receptive field)."""
    height, width = logits.shape[-2:]
    return mask if mask.shape[-2:] == (height, width) else center_crop(mask, height, width)


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - the soft Dice of the softmax over the foreground classes (Milletari et al. 2016), over the batch's
    pixels: a loss that weighs a small foreground as much as the large background."""
    probs = logits.softmax(dim=1)[:, 1:]
    onehot = F.one_hot(target, logits.shape[1]).movedim(-1, 1)[:, 1:].to(probs.dtype)
    return 1 - (2 * (probs * onehot).sum() + 1) / (probs.sum() + onehot.sum() + 1)
