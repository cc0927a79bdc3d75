"""The LightningDataModule every dataset shares: config resolution, splits, transforms, loaders.

A dataset subclass says where its files are and how to read one split (`_load`); everything else
(class subsetting, the seeded validation split, few-label limits, augmentation, batching) is here so
that all datasets behave alike.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .config import DataConfig, check_applicable
from .datasets import ArrayDataset, collate_keyed, init_worker
from .device import DeviceAugment, ResidentImages, ResidentLoader
from .errors import DataError
from .sampler import EpochSampler, ShardSampler
from .samples import Samples, plan_train, select_classes
from .transforms import Geometry, decode_pipeline, eval_pipeline, fit_images, train_pipeline

Split = Literal["train", "test"]


class ConvDataModule(pl.LightningDataModule, ABC):
    """Batches of (float32 N x C x H x W, int64 N) for one dataset.

    After construction (no I/O except ImageNet's class listing, and imagefolder's: its layout and classes,
    and for one tree of class folders the image count its default val_size needs): `name`, `config` (with the
    dataset defaults filled in: root, val_size, augment.crop, augment.flip), `num_classes` (after `classes`),
    `input_size` (C, H, W), and `mean`/`std`, the per-channel values the pipeline subtracts/divides in pixel/255
    units (zeros/ones when normalisation is off), so `x * std + mean` is always the [0, 1] image.

    Exact resume and sharding (the contract with the Trainer):

    - These loaders shard themselves: their samplers are DistributedSamplers, which a distributed
      Trainer leaves in place (see `sampler`). Rank and world size are read from torch.distributed
      when the loaders are built.
    - Train (`sampler.EpochSampler`): the order of epoch e is a permutation drawn from (seed, e)
      alone; each rank takes every world-th item, padded by wrapping around so that all ranks run
      the same number of batches. Lightning's fit loop calls `set_epoch(e)` on the sampler before
      every epoch; without Lightning, call `loader.sampler.set_epoch(e)` yourself. A loader built
      under a Trainer already starts at the fit loop's next epoch, since on resume Lightning creates
      the (prefetching) train iterator before it calls set_epoch.
    - Augmentation of a train batch is seeded from (seed, e, the batch's first index) when the batch
      is fetched, so it does not depend on num_workers, on which worker runs it, or on the process's
      history. A resumed run therefore repeats the uninterrupted one batch for batch (same images,
      same augmentations) from epoch k + 1 on, provided the config (seed, batch_size, the data
      selection) and the world size are unchanged; num_workers may differ.
    - Val/test (`sampler.ShardSampler`): rank r takes items r, r + world, ... in order, without
      padding or duplicates, so metrics with sum states synced over ranks (torchmetrics) equal the
      single-process values exactly. Shards, and so batch counts, may differ by one across ranks:
      no per-step collectives in validation_step/test_step (log per epoch, or use torchmetrics).
    - Loaders draw worker seeds from their own generator and never touch the global torch RNG.

    `pipeline: device` (datamodules.device): loaders yield (uint8 images, labels, key) and
    `on_after_batch_transfer` augments them on the device, seeded from the same (seed, e, first index);
    the small datasets are held there whole (`ResidentLoader`: the same samplers, no workers).
    """

    name: ClassVar[str]
    # what a batch's targets are: "classification" (int64 N labels) or "segmentation" (int64 N x H x W masks)
    task: ClassVar[str] = "classification"
    native_shape: ClassVar[tuple[int, int, int]]  # (C, H, W) as stored; ImageNet: the standard crop
    default_root: ClassVar[str | None]
    default_val_size: ClassVar[int] = 5000
    default_flip: ClassVar[bool]
    default_crop: ClassVar[bool] = True
    dataset_mean: ClassVar[tuple[float, ...]]
    dataset_std: ClassVar[tuple[float, ...]]
    # True: with val_size 0 the validation loader reads the test split (ImageNet's val/ folder).
    validate_on_test: ClassVar[bool] = False
    # True: `root` chooses the images (any folder of the user's), not where one fixed dataset is kept, so
    # its absolute path is part of the run id (datamodules.root_is_data).
    root_is_data: ClassVar[bool] = False

    def __init__(self, config: DataConfig) -> None:
        super().__init__()
        config.validate()
        check_applicable(config, self.name)
        self.config = dataclasses.replace(
            config,
            root=config.root if config.root is not None else self.default_root,
            augment=dataclasses.replace(
                config.augment,
                flip=config.augment.flip if config.augment.flip is not None else self.default_flip,
                crop=config.augment.crop if config.augment.crop is not None else self.default_crop,
            ),
        )
        stored_chans, height, width = self.stored_shape()
        chans = config.in_chans if config.in_chans is not None else stored_chans
        if chans not in (stored_chans, 3 if stored_chans == 1 else stored_chans):
            accepted = f"{stored_chans} or 3 (replicates the grey channel)" if stored_chans == 1 else str(stored_chans)
            raise DataError(f"{self.name}: in_chans={chans}: accepted is {accepted}")
        if config.image_size is not None:
            height = width = config.image_size
        self.input_size: tuple[int, int, int] = (chans, height, width)
        self._resume_at: tuple[int, int] | None = None  # (epoch, batches done) from a checkpoint
        normalize = self.config.augment.normalize
        self.mean = _per_channel(self.dataset_mean if normalize else (0.0,), chans)
        self.std = _per_channel(self.dataset_std if normalize else (1.0,), chans)
        if config.classes is not None:
            _check_classes(config.classes, self.native_num_classes(), self.name)
        if config.val_size is None:  # last: a default may count the selected images (imagefolder)
            self.config = dataclasses.replace(self.config, val_size=self._default_val_size())
        self._datasets: dict[str, Dataset | ResidentImages | None] = {}
        self._augments: dict[bool, DeviceAugment] = {}  # the device pipeline's, train and eval
        # where `pipeline: device` holds the data without a Trainer (with one: the Trainer's device); None: the CPU
        self.resident_device: torch.device | None = None

    # ---- what a dataset provides -------------------------------------------------------------
    def stored_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the stored images before any resizing (synthetic: from the config)."""
        return self.native_shape

    def _default_val_size(self) -> int:
        """val_size when the config leaves it null."""
        return self.default_val_size

    @abstractmethod
    def native_num_classes(self) -> int:
        """Classes in the stored labels, before `classes` subsetting."""

    @abstractmethod
    def _load(self, split: Split) -> Samples:
        """Read one official split; raise DataError naming the file at fault."""

    def _dataset(self, samples: Samples, train: bool) -> Dataset | ResidentImages:
        if self.on_device:
            return ResidentImages(fit_images(self._geometry(), samples.images), samples.labels)
        return ArrayDataset(samples, self._pipeline(train), self.input_size[0], self._augment_seed(train))

    @property
    def on_device(self) -> bool:
        """Whether batches are augmented on the training device (`pipeline: device`)."""
        return self.config.pipeline == "device"

    @property
    def loader_workers(self) -> int:
        """DataLoader worker processes the loaders start: none where the data is held on the device."""
        return 0 if self.on_device else self.config.num_workers

    def _augment_seed(self, train: bool) -> int | None:
        """Train datasets reseed their augmentation per batch from this (see AugmentedDataset)."""
        return self.config.seed if train else None

    def _geometry(self) -> Geometry:
        return Geometry("small", out=self.input_size[1:], native=self.stored_shape()[1:])

    # ---- Lightning hooks -----------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        classes = self.config.classes
        return len(classes) if classes is not None else self.native_num_classes()

    @property
    def root(self) -> Path:
        """The data directory; a file given as one is named as such, not as 'files missing in it'."""
        if self.config.root is None:  # a dataset without a default root (imagefolder)
            raise DataError(f"{self.name}: no data root given; set data.root (--data-root) to its folder")
        root = Path(self.config.root)
        if root.exists() and not root.is_dir():
            raise DataError(f"{self.name}: data root {root} is a file, not a directory")
        return root

    def setup(self, stage: str | None = None) -> None:
        """Load what `stage` needs (fit/validate: train + val, test: test; None: all), once."""
        if stage in (None, "fit", "validate") and "train" not in self._datasets:
            train, val = self._train_and_val()
            self._datasets["train"] = self._dataset(train, train=True)
            self._datasets["val"] = self._dataset(val, train=False) if val is not None else None
        if stage in (None, "test") and "test" not in self._datasets:
            self._datasets["test"] = self._dataset(self._official("test"), train=False)

    def train_pipeline(self) -> Dataset | ResidentImages:
        """The augmented train Dataset (items: (C x H x W float32 tensor, int)), e.g. to time the
        data pipeline alone. Plain indices 0..n-1 address epoch 0; see AugmentedDataset. `pipeline: device`:
        the images held for the device (ResidentImages), or uint8 items for the device to augment."""
        self.setup("fit")
        return self._datasets["train"]

    def train_dataloader(self) -> DataLoader:
        """This rank's shuffled, augmented batches of the epoch last given to `loader.sampler.set_epoch`
        (0 for a new loader): see the class docstring."""
        dataset = self.train_pipeline()
        sampler = EpochSampler(len(dataset), self.config.seed)
        sampler.set_epoch(self._trainer_epoch())
        if self._resume_at is not None:
            epoch, batches = self._resume_at
            self._resume_at = None
            if epoch == sampler.epoch and batches:
                sampler.resume_at(epoch, min(batches * self.config.batch_size, len(sampler)))
        return self._loader(dataset, self.config.batch_size, sampler)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """`pipeline: device`: the batch, now on the training device, augmented there (train batches: those
        with a key) or normalised (evaluation), as (float32 images, labels). Lightning calls it after every
        transfer; without a Trainer, call it on each batch yourself."""
        if not self.on_device:
            return batch
        images, labels, key = batch
        train = key is not None
        if train not in self._augments:
            self._augments[train] = self.device_augment(train)
        return self._augments[train](images, key), labels

    def device_augment(self, train: bool) -> DeviceAugment:
        """The device pipeline's batch transform: the train augmentation, or the evaluation one (normalisation)."""
        augment = self.config.augment
        stored_chans = self.stored_shape()[0]
        small = self._geometry().kind == "small"
        return DeviceAugment(
            seed=self.config.seed,
            crop_padding=augment.crop_padding if train and small and augment.crop else None,
            flip=train and bool(augment.flip),
            noise_std=augment.noise_std if train else 0.0,
            mean=_per_channel(self.dataset_mean, stored_chans) if augment.normalize else None,
            std=_per_channel(self.dataset_std, stored_chans) if augment.normalize else None,
            out_chans=self.input_size[0],
        )

    def state_dict(self) -> dict[str, Any]:
        """Saved in every checkpoint by Lightning: the epoch and the batches of it trained so far
        (0 once the epoch's batches are all done), so that a mid-epoch checkpoint resumes with the
        next batch of the same order rather than the epoch's first."""
        trainer = self._trainer
        if trainer is None:
            return {}
        done = trainer.fit_loop.epoch_loop.batch_progress.current.ready
        return {
            "epoch": trainer.fit_loop.epoch_progress.current.processed,
            "batches": done if done < trainer.num_training_batches else 0,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict:
            self._resume_at = (int(state_dict["epoch"]), int(state_dict["batches"]))

    def val_dataloader(self) -> DataLoader | list:
        """The validation loader; [] (Lightning skips validation) when val_size is 0."""
        self.setup("validate")
        val = self._datasets["val"]
        if val is None:
            return []
        return self._eval_loader(val)

    def test_dataloader(self) -> DataLoader:
        self.setup("test")
        return self._eval_loader(self._datasets["test"])

    # ---- internals -----------------------------------------------------------------------------
    def _official(self, split: Split) -> Samples:
        samples = self._load(split)
        return select_classes(samples, self.config.classes, self.native_num_classes())

    def _train_and_val(self) -> tuple[Samples, Samples | None]:
        config = self.config
        samples = self._official("train")
        train, val = plan_train(
            samples.labels,
            self.num_classes,
            config.val_size,
            config.labels_per_class,
            config.train_limit,
            config.seed,
            self.name,
        )
        if len(val):
            return samples.take(train), samples.take(val)
        return samples.take(train), (self._official("test") if self.validate_on_test else None)

    def _pipeline(self, train: bool):
        augment = self.config.augment
        if self.on_device:
            return decode_pipeline(self._geometry(), bool(augment.crop), train, self.config.seed)
        stored_chans = self.stored_shape()[0]
        mean, std = _per_channel(self.dataset_mean, stored_chans), _per_channel(self.dataset_std, stored_chans)
        if train:
            return train_pipeline(self._geometry(), augment, augment.flip, mean, std, self.config.seed)
        return eval_pipeline(self._geometry(), augment.normalize, mean, std)

    def _eval_batch_size(self) -> int:
        return self.config.eval_batch_size or self.config.batch_size

    def _eval_loader(self, dataset: Dataset) -> DataLoader:
        return self._loader(dataset, self._eval_batch_size(), ShardSampler(len(dataset)))

    def _trainer_epoch(self) -> int:
        """The epoch the attached Trainer's fit loop will pass to `set_epoch` next; 0 without one.

        Needed on resume: Lightning (2.6) then creates the train iterator, whose workers start
        prefetching at once, *before* calling set_epoch, and does not recreate it afterwards, so the
        sampler must already hold the resumed epoch when the loader is built."""
        progress = getattr(getattr(self._trainer, "fit_loop", None), "epoch_progress", None)
        return progress.current.processed if progress is not None else 0

    @property
    def _trainer(self) -> Any:
        return getattr(self, "trainer", None)

    def _device(self) -> torch.device:
        """The training device: the attached Trainer's, else `resident_device`, else the CPU."""
        trainer = self._trainer
        if trainer is not None:
            return trainer.strategy.root_device
        return self.resident_device or torch.device("cpu")

    def _loader(
        self, dataset: Dataset | ResidentImages, batch_size: int, sampler: Sampler
    ) -> DataLoader | ResidentLoader:
        if isinstance(dataset, ResidentImages):
            return ResidentLoader(dataset, batch_size, sampler, self._device())
        workers = self.config.num_workers
        return DataLoader(
            dataset,
            collate_fn=collate_keyed if self.on_device else None,
            batch_size=batch_size,
            sampler=sampler,
            # worker seeds come from here, not from (and so not advancing) the global torch RNG
            generator=torch.Generator().manual_seed(self.config.seed),
            num_workers=workers,
            persistent_workers=workers > 0,
            worker_init_fn=init_worker if workers > 0 else None,
            pin_memory=torch.cuda.is_available(),
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, input_size={self.input_size}, root={self.config.root!r})"

    __str__ = __repr__  # Lightning's __str__ would load the data to report loader sizes


def _check_classes(classes: tuple[int, ...], num_classes: int, what: str) -> None:
    bad = [c for c in classes if c >= num_classes]
    if bad:
        raise DataError(f"{what}: classes={classes!r} names {bad}, but the labels are 0..{num_classes - 1}")


def _per_channel(values: tuple[float, ...], chans: int) -> tuple[float, ...]:
    """Stats for `chans` channels: a grey statistic is replicated like the channel itself."""
    return tuple(values) * chans if len(values) == 1 else tuple(values)
