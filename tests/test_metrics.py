"""harness.training.metrics.ClassificationTotals: deferred updates give the per-batch sums bit for bit, and
folding reads nothing back from the device."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from harness.training.metrics import ClassificationTotals
from tests.helpers import READS


def batches(sizes: list[int], nan_at: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    out = []
    for i, n in enumerate(sizes):
        logits = torch.randn(n, 10, generator=g)
        loss = torch.tensor(float("nan")) if i == nan_at else torch.rand((), generator=g) * 3
        out.append((logits, torch.randint(0, 10, (n,), generator=g), loss))
    return out


def per_batch(data: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], k: int) -> dict[str, torch.Tensor]:
    """The sums as one update per batch adds them (the code before the deferral), in float32 in order."""
    hits1 = hitsk = samples = 0
    loss_sum, weight = torch.tensor(0.0), torch.tensor(0.0)
    for logits, target, loss in data:
        hits1 += int((logits.argmax(1) == target).sum())
        hitsk += int((logits.topk(k, 1).indices == target[:, None]).any(1).sum())
        samples += len(target)
        if not loss.isnan():
            loss_sum += loss * len(target)
            weight += len(target)
    return {"acc1": torch.tensor(hits1 / samples), "acc5": torch.tensor(hitsk / samples), "loss": loss_sum / weight}


@pytest.mark.parametrize("fold_every", [1, 4, 16])
def test_deferred_updates_give_the_per_batch_sums(fold_every: int) -> None:
    sizes = [32] * 9 + [7] + [32] * 3 + [5]  # an epoch's short last batch, twice (two epochs' worth)
    data = batches(sizes, nan_at=3)
    m = ClassificationTotals(top_k=5, fold_every=fold_every)
    for logits, target, loss in data:
        m.update(logits, target, loss)
    assert m.compute() == per_batch(data, 5)  # dict equality of exact float32 values, after a fold of the rest
    assert int(m.samples) == sum(sizes)


def test_fold_then_reset() -> None:
    data = batches([32, 32, 16], nan_at=-1)
    m = ClassificationTotals(top_k=5, fold_every=16)
    for b in data[:2]:
        m.update(*b)
    assert int(m.samples) == 0  # kept, not yet folded
    m.fold()  # what a checkpoint reads (harness.training.module.on_save_checkpoint)
    assert int(m.samples) == 64
    m.update(*data[2])
    m.reset()
    m.update(*data[0])
    assert m.compute() == per_batch(data[:1], 5)  # nothing kept from before the reset


def test_updates_and_folds_read_nothing_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """No host-device sync under CUDA: not per update, and not in the fold either."""
    data = batches([32] * 20 + [9], nan_at=5)
    m = ClassificationTotals(top_k=5, fold_every=8)

    def refuse(name: str) -> Callable[..., Any]:
        def read(*_: Any, **__: Any) -> Any:
            raise AssertionError(f"Tensor.{name} during an update")

        return read

    for name in READS:
        monkeypatch.setattr(torch.Tensor, name, refuse(name))
    for b in data:
        m.update(*b)
    m.fold()
    monkeypatch.undo()
    assert m.compute() == per_batch(data, 5)
