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

from itertools import groupby
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric


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
