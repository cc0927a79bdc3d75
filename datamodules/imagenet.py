"""ImageNet (ILSVRC-2012) in the ImageFolder layout, its wnids the classes: read and decoded as imagefolder's are."""

from __future__ import annotations

from functools import cached_property
from typing import ClassVar

from .base import Split
from .errors import DataError
from .imagefolder import EXTENSIONS, FOLDERS, FolderDataModule, class_folders, folder_samples
from .samples import Samples


class ImageNetDataModule(FolderDataModule):
    """`root/train/<wnid>/*.JPEG` and `root/val/<wnid>/*.JPEG`; class index = position in the sorted
    wnid list of train/. The official val/ is the test split; with the default val_size 0 it is also
    the validation split (val_size > 0 carves validation from train instead). The pipelines: FolderDataModule.
    """

    name: ClassVar[str] = "imagenet"
    default_root: ClassVar[str] = "data/imagenet"

    @cached_property
    def wnids(self) -> list[str]:
        """Sorted class folder names of train/; their positions are the labels."""
        train = self.root / FOLDERS["train"]
        if not train.is_dir():
            raise DataError(f"imagenet: no folder {train}; expected {self.root}/train/<wnid>/*.JPEG")
        wnids = class_folders(train)
        if not wnids:
            raise DataError(f"imagenet: no class folders in {train}; expected {train}/<wnid>/*.JPEG")
        return wnids

    def native_num_classes(self) -> int:
        return len(self.wnids)

    def _load(self, split: Split) -> Samples:
        folder = self.root / FOLDERS[split]
        if not folder.is_dir():
            raise DataError(f"imagenet: no folder {folder}; expected {folder}/<wnid>/*.JPEG")
        label_of = {wnid: i for i, wnid in enumerate(self.wnids)}
        present = class_folders(folder)
        for wnid in present:
            if wnid not in label_of:
                raise DataError(f"imagenet: class folder {folder / wnid} is not among the train/ classes")
        samples = folder_samples(self.root, FOLDERS[split], present, [label_of[wnid] for wnid in present])
        if not len(samples):
            raise DataError(f"imagenet: no images ({', '.join(EXTENSIONS)}) in {folder}/<wnid>/")
        return samples
