"""Which images go where: class subsetting, the seeded validation split, few-label and size limits.

Pure numpy on label arrays; every choice comes from one permutation of the train set drawn from
`seed`, so the same config always selects the same images whatever the dataset's storage.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import DataError


@dataclass(frozen=True)
class Samples:
    """One split: `images` (uint8 N x H x W x C, or N encoded relative file paths) and int64 labels."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, index: np.ndarray) -> Samples:
        return Samples(self.images[index], self.labels[index])


def select_classes(samples: Samples, classes: tuple[int, ...] | None, num_classes: int) -> Samples:
    """Keep `classes` (checked < num_classes by the module) only, relabelled 0..k-1 in the given order."""
    if classes is None:
        return samples
    relabel = np.full(num_classes, -1, dtype=np.int64)
    relabel[list(classes)] = np.arange(len(classes))
    new = relabel[samples.labels]
    keep = np.flatnonzero(new >= 0)
    return Samples(samples.images[keep], new[keep])


def plan_train(
    labels: np.ndarray,
    num_classes: int,
    val_size: int,
    labels_per_class: int | None,
    train_limit: int | None,
    seed: int,
    what: str,
) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices into `labels`, each sorted (cheap sequential reads).

    Validation takes the first `val_size` of a seeded permutation, so it does not move when
    labels_per_class or train_limit change; those then keep the first images in permutation order.
    """
    order = np.random.default_rng(seed).permutation(len(labels))
    if val_size >= len(labels):
        raise DataError(f"{what}: val_size={val_size} leaves no training images: the train set has {len(labels)}")
    val, train = order[:val_size], order[val_size:]
    if labels_per_class is not None:
        counts = np.bincount(labels[train], minlength=num_classes)
        short = [c for c in range(num_classes) if counts[c] < labels_per_class]
        if short:
            raise DataError(
                f"{what}: labels_per_class={labels_per_class} but class {short[0]} has only "
                f"{counts[short[0]]} train images after the validation split"
            )
        # rank of each image within its class, in permutation order
        train_labels = labels[train]
        by_class = np.argsort(train_labels, kind="stable")
        starts = np.searchsorted(train_labels[by_class], train_labels[by_class])
        rank = np.empty(len(train), dtype=np.int64)
        rank[by_class] = np.arange(len(train)) - starts
        train = train[rank < labels_per_class]
    if train_limit is not None:
        train = train[:train_limit]
    return np.sort(train), np.sort(val)
