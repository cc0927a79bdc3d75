"""datamodules: exact resume (epoch-seeded order and augmentation) and self-sharding loaders."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from datamodules import DataError, create
from datamodules.sampler import EpochSampler, ShardSampler

# crop + flip + noise: every random stage on; 100 items in batches of 16 (a short last batch)
AUGMENTED = dict(
    num_samples=100,
    input_size=(3, 12, 12),
    batch_size=16,
    seed=7,
    augment={"crop": True, "flip": True, "noise_std": 0.1},
)


def epoch_batches(loader, epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    loader.sampler.set_epoch(epoch)  # what Lightning's fit loop does at every epoch start
    return list(loader)


def assert_same(a, b) -> None:
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


@pytest.mark.parametrize("workers", [0, 2])
def test_resumed_epoch_repeats_uninterrupted_run(workers):
    uninterrupted = create("synthetic", num_workers=workers, **AUGMENTED).train_dataloader()
    for epoch in (0, 1):
        epoch_batches(uninterrupted, epoch)
    expected = epoch_batches(uninterrupted, 2)
    resumed = create("synthetic", num_workers=workers, **AUGMENTED).train_dataloader()  # a new process's module
    assert_same(epoch_batches(resumed, 2), expected)
    assert_same(epoch_batches(resumed, 2), expected)  # the same epoch again: same augmentations
    assert [len(y) for _, y in expected] == [16] * 6 + [4]


def test_augmentation_independent_of_workers_and_varies_by_epoch():
    one = create("synthetic", num_workers=0, **AUGMENTED).train_dataloader()
    two = create("synthetic", num_workers=2, **AUGMENTED).train_dataloader()
    e1 = epoch_batches(one, 1)
    assert_same(epoch_batches(two, 1), e1)
    e0 = epoch_batches(one, 0)
    assert not torch.equal(e0[0][1], e1[0][1])  # another order
    # the same image in two epochs is augmented differently
    dm = create("synthetic", num_workers=0, **AUGMENTED)
    images = {}
    for epoch, batches in ((0, e0), (1, e1)):
        order = EpochSampler(100, seed=7).shard(epoch)
        images[epoch] = torch.cat([x for x, _ in batches])[np.argsort(order)]
    assert not torch.equal(images[0], images[1])
    labels = torch.from_numpy(dm.train_pipeline().labels)
    assert torch.equal(torch.cat([y for _, y in e0]), labels[EpochSampler(100, seed=7).shard(0)])


def test_epoch_sampler_order_is_a_function_of_seed_and_epoch():
    a, b = EpochSampler(50, seed=3), EpochSampler(50, seed=3)
    b.set_epoch(4)
    a.set_epoch(4)
    assert list(a) == list(b) and sorted(i - 4 * 50 for i in a) == list(range(50))  # epoch-encoded
    assert not np.array_equal(a.shard(4), a.shard(5))
    assert not np.array_equal(a.shard(4), EpochSampler(50, seed=4).shard(4))


@pytest.mark.parametrize("size, world", [(101, 2), (100, 4), (10, 3), (2, 3)])
def test_train_shards_equal_length_and_cover(size, world):
    shards = [EpochSampler(size, seed=1, rank=r, world_size=world) for r in range(world)]
    for s in shards:
        s.set_epoch(3)
    items = [[i - 3 * size for i in s] for s in shards]
    per_rank = -(-size // world)
    assert all(len(s) == len(i) == per_rank for s, i in zip(shards, items))
    flat = np.concatenate(items)
    assert set(flat) == set(range(size)) and len(flat) - len(set(flat)) == per_rank * world - size  # padding only
    whole = EpochSampler(size, seed=1).shard(3)  # world 1: the unsharded permutation
    assert np.array_equal(np.stack(items, 1).ravel()[:size], whole)  # rank r holds whole[r::world]


@pytest.mark.parametrize("size, world", [(101, 2), (100, 4), (10, 3), (2, 3)])
def test_eval_shards_partition_in_order(size, world):
    shards = [list(ShardSampler(size, rank=r, world_size=world)) for r in range(world)]
    assert all(
        s == sorted(s) and len(s) == len(ShardSampler(size, rank=r, world_size=world)) for r, s in enumerate(shards)
    )
    flat = sorted(i for s in shards for i in s)
    assert flat == list(range(size))  # no padding, no duplicates
    with pytest.raises(DataError, match="0 <= rank < world_size"):
        ShardSampler(size, rank=world, world_size=world)


def test_plain_int_indexing_is_epoch_zero_and_strict():
    train = create("synthetic", num_workers=0, **AUGMENTED).train_pipeline()
    x, y = train[5]
    assert x.shape == (3, 12, 12) and y == int(train.labels[5])
    with pytest.raises(IndexError):
        train[len(train)]  # epoch-encoded indices are for batches only (__getitems__)
    batch = train.__getitems__([5, 6])
    assert [b[1] for b in batch] == [int(train.labels[5]), int(train.labels[6])]


def test_lightning_resume_repeats_batches_and_weights(tmp_path):
    # num_workers=2 matters: on resume Lightning creates the (prefetching) iterator before set_epoch
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import ModelCheckpoint

    class Recorder(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(3 * 12 * 12, 10)
            self.seen: dict[int, list[torch.Tensor]] = {}

        def training_step(self, batch, _):
            self.seen.setdefault(self.current_epoch, []).append(batch[0].clone())
            return torch.nn.functional.cross_entropy(self.fc(batch[0].flatten(1)), batch[1])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)

    def fit(max_epochs: int, ckpt_path: str | None = None) -> Recorder:
        torch.manual_seed(0)
        model = Recorder()
        trainer = pl.Trainer(
            max_epochs=max_epochs,
            accelerator="cpu",
            logger=False,
            enable_progress_bar=False,
            default_root_dir=tmp_path / ("resumed" if ckpt_path else "uninterrupted"),
            enable_model_summary=False,
            use_distributed_sampler=False,
            callbacks=[ModelCheckpoint(save_top_k=-1, filename="{epoch}")],
        )
        trainer.fit(model, datamodule=create("synthetic", num_workers=2, **AUGMENTED), ckpt_path=ckpt_path)
        return model

    uninterrupted = fit(3)
    resumed = fit(3, ckpt_path=str(tmp_path / "uninterrupted/checkpoints/epoch=1.ckpt"))
    assert sorted(resumed.seen) == [2]
    assert all(torch.equal(a, b) for a, b in zip(resumed.seen[2], uninterrupted.seen[2], strict=True))
    assert not torch.equal(uninterrupted.seen[1][0], uninterrupted.seen[2][0])
    assert torch.equal(resumed.fc.weight, uninterrupted.fc.weight)


def test_a_distributed_trainer_keeps_our_samplers(tmp_path):
    """Lightning leaves a DistributedSampler in place, so even use_distributed_sampler=True (its default)
    trains and validates on the data module's own shards, never on a reshuffled reshard of them."""
    import pytorch_lightning as pl

    class Probe(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(3 * 12 * 12, 10)

        def training_step(self, batch, _):
            return torch.nn.functional.cross_entropy(self.fc(batch[0].flatten(1)), batch[1])

        def validation_step(self, batch, _):
            pass

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        strategy="ddp",
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    try:
        trainer.fit(Probe(), datamodule=create("synthetic", num_workers=0, val_size=20, **AUGMENTED))
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    assert type(trainer.train_dataloader.sampler) is EpochSampler
    assert type(trainer.val_dataloaders.sampler) is ShardSampler
