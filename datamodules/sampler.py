"""Samplers that make a run resumable and shard it across processes without Lightning's help.

`EpochSampler` (train): the epoch's order is a permutation drawn from (seed, epoch) alone, so a run
resumed at epoch k (Lightning calls `set_epoch(k)` on `dataloader.sampler` at every epoch start)
sees the same order as an uninterrupted one. It yields *epoch-encoded* indices `epoch * n + i`, so
that the dataset, in whichever process or worker it runs, knows the epoch of every item and can
seed its augmentation from it (`datasets.AugmentedDataset`). Under torch.distributed each rank
takes every world-th index of the epoch's permutation, padded by wrapping around (like
DistributedSampler) so every rank has as many items, hence as many batches.

`ShardSampler` (eval): rank r takes indices r, r + world, ... in order, with no padding and no
duplicates, so metrics summed over ranks (torchmetrics' sync) equal the single-process ones exactly.
Shard lengths may then differ by one item (and so by one batch) across ranks.

rank / world_size default to torch.distributed's when it is initialised, else 0 / 1; they are read
once, at construction (Lightning builds dataloaders after initialising the process group). Both are
DistributedSamplers, which Lightning's documented rule leaves in place ("if a distributed sampler was
already added, Lightning will not replace the existing one"), so a distributed Trainer never shards
these loaders a second time, whatever its ``use_distributed_sampler``.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch.distributed as dist
from torch.utils.data import DistributedSampler

from .errors import DataError

# Tags keeping the shuffle and augmentation streams apart from other uses of the same seed.
SHUFFLE_STREAM = 1
AUGMENT_STREAM = 2
DEVICE_AUGMENT_STREAM = 3  # the device pipeline's draws (datamodules.device)


def distributed_shard(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """(rank, world_size): the given ones, else torch.distributed's when initialised, else (0, 1)."""
    initialised = dist.is_available() and dist.is_initialized()
    if world_size is None:
        world_size = dist.get_world_size() if initialised else 1
    if rank is None:
        rank = dist.get_rank() if initialised else 0
    if not (isinstance(world_size, int) and world_size >= 1 and isinstance(rank, int) and 0 <= rank < world_size):
        raise DataError(f"rank={rank!r}, world_size={world_size!r}: accepted is 0 <= rank < world_size")
    return rank, world_size


def epoch_permutation(size: int, seed: int, epoch: int) -> np.ndarray:
    """The whole (unsharded) train order of `epoch`: a function of (seed, epoch) only."""
    return np.random.default_rng([seed, SHUFFLE_STREAM, epoch]).permutation(size)


class EpochSampler(DistributedSampler):
    """Train order for `size` items: this rank's shard of the (seed, epoch) permutation, as
    epoch-encoded indices `epoch * size + i` (decode with `divmod(index, size)`)."""

    def __init__(self, size: int, seed: int, *, rank: int | None = None, world_size: int | None = None) -> None:
        if size < 1:
            raise DataError(f"EpochSampler: size={size}: nothing to sample")
        rank, world_size = distributed_shard(rank, world_size)
        super().__init__(range(size), num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
        self.size, self.world_size = size, world_size  # num_samples: per rank, after padding
        self._resume: tuple[int, int] | None = None  # (epoch, items of this rank's shard already trained)

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning's fit loop before every epoch (and by hand to resume without it)."""
        if epoch < 0:
            raise DataError(f"EpochSampler.set_epoch({epoch}): accepted is an epoch >= 0")
        self.epoch = epoch

    def resume_at(self, epoch: int, items: int) -> None:
        """Start the first iteration of `epoch` after its first `items` (a mid-epoch resume: those
        batches were trained before the checkpoint). The length stays the whole epoch's, as the
        fit loop counts the batches already done."""
        if not 0 <= items <= self.num_samples:
            raise DataError(f"EpochSampler.resume_at({epoch}, {items}): accepted is 0 <= items <= {self.num_samples}")
        self._resume = (epoch, items)

    def shard(self, epoch: int) -> np.ndarray:
        """This rank's plain (not encoded) indices for `epoch`, in order."""
        order = epoch_permutation(self.size, self.seed, epoch)
        padding = self.num_samples * self.world_size - self.size
        if padding:
            order = np.concatenate([order, np.resize(order, padding)])  # wraps around if padding > size
        return order[self.rank :: self.world_size]

    def epoch_order(self) -> np.ndarray:
        """This rank's plain indices for the epoch set, after the items a mid-epoch resume skips
        (consumed: the next call gives the whole epoch)."""
        skip = 0
        if self._resume is not None and self._resume[0] == self.epoch:
            skip, self._resume = self._resume[1], None
        return self.shard(self.epoch)[skip:]

    def __iter__(self) -> Iterator[int]:
        # eagerly, so the epoch is the one set when iteration starts
        return iter((self.epoch_order() + self.epoch * self.size).tolist())

    def __len__(self) -> int:
        return self.num_samples


class ShardSampler(DistributedSampler):
    """Eval order: indices rank, rank + world_size, ... < size; shards partition 0..size-1."""

    def __init__(self, size: int, *, rank: int | None = None, world_size: int | None = None) -> None:
        rank, world_size = distributed_shard(rank, world_size)
        super().__init__(range(size), num_replicas=world_size, rank=rank, shuffle=False)
        self.size, self.world_size = size, world_size

    def indices(self) -> np.ndarray:
        """This rank's indices, in order."""
        return np.arange(self.rank, self.size, self.world_size)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.size, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.size, self.world_size))
