"""One epoch's top-1/top-k accuracy and mean loss as a single torchmetrics Metric.

Why not MulticlassAccuracy x2 + MeanMetric: their per-batch updates do far more than the step needs
(argument validation, one-hot confusion statistics, a NaN check that branches on a tensor, i.e. a
host-device sync under CUDA) for what is four running sums. Here an update never reads a value back;
the states are sums reduced over DDP ranks by torchmetrics itself, so `compute()` gives exactly what
those metrics gave: micro accuracy = hits / samples (top-1 by argmax, top-k = the label among the k
largest logits), and the sample-weighted mean loss with NaN losses left out (MeanMetric's default
nan_strategy).

Updates are deferred: `update` keeps the batch's (detached) logits, targets and loss, and every
`fold_every` batches, and before anything reads the sums (`compute`, the DDP sync, `fold`), they
are folded in with one batched pass. Inside a training loop each tiny tensor op costs several times
what it costs in isolation, and one pass over 16 batches costs about what one batch's does
(docs/measurements.md). The losses are still added one batch at a time, in order, so the float sums
are the same as per-batch updates give.
"""

from __future__ import annotations

import warnings
from itertools import groupby
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

# said on every call, though `average` is passed explicitly (the warning says it may then be ignored)
warnings.filterwarnings("ignore", message=r"dice_score metric currently defaults to `average=micro`")


class ClassificationTotals(Metric):
    full_state_update = False

    hits1: Tensor
    hitsk: Tensor
    samples: Tensor
    loss_sum: Tensor
    loss_weight: Tensor

    def __init__(self, top_k: int = 5, fold_every: int = 16) -> None:
        """`top_k`: the k of "acc5" (fewer when there are fewer classes; the key stays "acc5").
        `fold_every`: how many batches are kept before they are folded into the sums."""
        super().__init__()
        self.top_k, self.fold_every = top_k, fold_every
        self._pending: list[tuple[Tensor, Tensor, Tensor]] = []
        for name in ("hits1", "hitsk", "samples"):
            self.add_state(name, default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        for name in ("loss_sum", "loss_weight"):
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.get_default_dtype()), dist_reduce_fx="sum")

    def update(self, logits: Tensor, target: Tensor, loss: Tensor) -> None:
        """`logits`, `loss` detached; `loss`: the batch's mean loss, weighted by the batch size in the epoch's mean."""
        self._pending.append((logits, target, loss))
        if len(self._pending) >= self.fold_every:
            self.fold()

    def fold(self) -> None:
        """Add the kept batches to the sums (in place: `self.state += x` would also go through
        nn.Module.__setattr__)."""
        if not self._pending:
            return
        batches, self._pending = self._pending, []
        logits = torch.cat([b[0] for b in batches])
        target = torch.cat([b[1] for b in batches])
        self.hits1.add_((logits.argmax(dim=1) == target).sum())
        self.hitsk.add_((logits.topk(self.top_k, dim=1).indices == target[:, None]).any(dim=1).sum())
        self.samples.add_(target.numel())
        loss = torch.stack([b[2] for b in batches]).to(self.loss_sum.dtype)
        # each batch's weight, filled on the device (a list copied from the host would be a sync under CUDA)
        sizes = torch.cat(
            [loss.new_full((len(list(run)),), float(n)) for n, run in groupby(b[1].numel() for b in batches)]
        )
        kept = loss.isnan().logical_not_()
        for weighted in torch.where(kept, loss * sizes, 0.0):
            self.loss_sum.add_(weighted)
        self.loss_weight.add_((kept * sizes).sum())

    def sync(self, *args: Any, **kwargs: Any) -> None:
        self.fold()  # this rank's kept batches belong to what is reduced (and to what compute reads)
        super().sync(*args, **kwargs)

    def reset(self) -> None:
        self._pending = []
        super().reset()

    def compute(self) -> dict[str, Tensor]:
        samples = self.samples.clamp(min=1).float()  # no samples: accuracy 0, as torchmetrics' safe division
        return {
            "acc1": self.hits1.float() / samples,
            "acc5": self.hitsk.float() / samples,
            "loss": self.loss_sum / self.loss_weight,
        }


class SegmentationTotals(ClassificationTotals):
    """One epoch's pixel accuracy (``acc1``), mean per-pixel loss, Dice and mean IoU, as sum states.

    Dice and IoU are torchmetrics' own functionals on each image (``dice_score``: over the foreground
    classes, micro-averaged, as ``DiceScore(include_background=False)``; ``mean_iou`` per class), summed
    here: Dice as (sum over images, images with any foreground), IoU per class as (sum over images, images
    in whose prediction or target the class occurs), so the epoch's figures do not depend on the batch
    size or the ranks, and are reduced over ranks by summing like the classification totals. ``miou`` is the
    mean over the classes that occurred of their mean IoU (``MeanIoU(per_class=True)``, then the mean of
    its classes). Folded with the pixel sums, 16 batches at a time: no update reads a value back."""

    dice_sum: Tensor
    dice_images: Tensor
    iou_sum: Tensor
    iou_images: Tensor

    def __init__(self, num_classes: int, fold_every: int = 16) -> None:
        super().__init__(top_k=1, fold_every=fold_every)
        self.num_classes = num_classes
        self.add_state("dice_sum", default=torch.tensor(0.0, dtype=torch.get_default_dtype()), dist_reduce_fx="sum")
        self.add_state("dice_images", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state(
            "iou_sum", default=torch.zeros(num_classes, dtype=torch.get_default_dtype()), dist_reduce_fx="sum"
        )
        self.add_state("iou_images", default=torch.zeros(num_classes, dtype=torch.long), dist_reduce_fx="sum")

    def fold(self) -> None:
        """Dice and IoU of the kept batches, then the pixel sums of the base class on them flattened."""
        if not self._pending:
            return
        from torchmetrics.functional.segmentation import dice_score, mean_iou

        preds = torch.cat([b[0].argmax(dim=1) for b in self._pending])
        target = torch.cat([b[1] for b in self._pending])
        k = self.num_classes
        dice = dice_score(preds, target, k, include_background=False, average="micro", input_format="index")
        found = dice.isnan().logical_not_()
        self.dice_sum.add_(torch.where(found, dice, 0.0).sum().to(self.dice_sum.dtype))
        self.dice_images.add_(found.sum())
        iou = mean_iou(preds, target, k, include_background=True, per_class=True, input_format="index")
        occurs = iou >= 0  # -1: the class is in neither the prediction nor the target
        self.iou_sum.add_(torch.where(occurs, iou, 0.0).sum(dim=0).to(self.iou_sum.dtype))
        self.iou_images.add_(occurs.sum(dim=0))
        # per pixel: (N x C x H x W, N x H x W) -> (N H W) x C rows, the batch's loss weighted by its pixels
        self._pending = [(logits.movedim(1, -1).flatten(0, -2), y.flatten(), loss) for logits, y, loss in self._pending]
        super().fold()

    def compute(self) -> dict[str, Tensor]:
        out = super().compute()
        per_class = self.iou_sum / self.iou_images.clamp(min=1)
        occurred = self.iou_images > 0
        return {
            "acc1": out["acc1"],
            "loss": out["loss"],
            "dice": self.dice_sum / self.dice_images.clamp(min=1),
            "miou": torch.where(occurred, per_class, 0.0).sum() / occurred.sum().clamp(min=1),
        }
