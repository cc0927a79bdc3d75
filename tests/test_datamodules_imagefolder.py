"""datamodules: the imagefolder dataset on real JPEG and PNG files written here (one colour a class, so a net
learns them in a few steps): both layouts, the splits, the pipelines, every bad input, and `convbench train`."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from datamodules import DataError, create
from tests.helpers import convbench

COLOURS = {"blue": (20, 20, 230), "green": (20, 230, 20), "red": (230, 20, 20)}  # RGB; sorted: labels 0, 1, 2
CLASSES = sorted(COLOURS)
EXTENSIONS = (".jpg", ".PNG", ".jpeg", ".png", ".JPG")  # every accepted extension, in both cases
PLAIN = {"normalize": False}  # pixels in [0, 1]: the class colour can be read back


def write_tree(folder: Path, per_class: int, seed: int = 0) -> Path:
    """`folder/<class>/*`: per class, images of its colour with a little noise, of varied sizes, written by
    OpenCV as JPEG or PNG by turns."""
    rng = np.random.default_rng(seed)
    for name, rgb in COLOURS.items():
        (folder / name).mkdir(parents=True)
        for i in range(per_class):
            shape = (40 + 3 * (i % 4), 48 + 5 * (i % 3), 3)
            bgr = np.array(rgb[::-1]) + rng.integers(-10, 11, shape)
            cv2.imwrite(str(folder / name / f"{name}_{i}{EXTENSIONS[i % len(EXTENSIONS)]}"), bgr.astype(np.uint8))
    return folder


def write_split(root: Path, train: int = 8, val: int = 3) -> Path:
    write_tree(root / "train", train, seed=1)
    write_tree(root / "val", val, seed=2)
    return root


def items(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    pairs = [dataset[i] for i in range(len(dataset))]
    return torch.stack([p[0] for p in pairs]), torch.tensor([p[1] for p in pairs])


def assert_class_colours(x: torch.Tensor, y: torch.Tensor) -> None:
    """Each image's centre is its class's colour (RGB order; labels = sorted folder names)."""
    for image, label in zip(x, y):
        rgb = torch.tensor(COLOURS[CLASSES[label]], dtype=torch.float32) / 255
        assert torch.allclose(image[:, 16, 16], rgb, atol=0.06), (image[:, 16, 16], CLASSES[label])


def image_of(dm, path: bytes) -> torch.Tensor:
    """One file through its split's pipeline, whichever split the seeded carve put it in."""
    for dataset in (dm.train_pipeline(), dm.val_dataloader().dataset):
        paths = dataset.paths.tolist()
        if path in paths:
            return dataset[paths.index(path)][0]
    raise AssertionError(f"{path!r} is in no split")


def carve(dm) -> list[bytes]:
    return sorted(dm.val_dataloader().dataset.paths.tolist())


# ---------------------------------------------------------------- layouts, splits, pipelines
def test_train_and_val_folders(tmp_path: Path) -> None:
    root = write_split(tmp_path / "data")
    dm = create("imagefolder", root=str(root), num_workers=0, image_size=32, batch_size=4, augment=PLAIN)
    assert dm.num_classes == 3 and dm.input_size == (3, 32, 32) and dm.config.val_size == 0
    assert dm.mean == (0.0,) * 3 and dm.config.augment.flip is True
    dm.setup()
    train, val, test = dm.train_pipeline(), dm.val_dataloader().dataset, dm.test_dataloader().dataset
    assert len(train) == 24 and len(val) == len(test) == 9  # val_size 0: val/ validates and tests
    assert all(p.startswith(b"val/") for p in test.paths)
    for dataset in (train, test):  # the train pipeline (random resized crop, flip) and the eval one
        x, y = items(dataset)
        assert x.shape == (len(y), 3, 32, 32) and x.dtype == torch.float32
        assert_class_colours(x, y)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64

    carved = create("imagefolder", root=str(root), num_workers=0, val_size=6)
    carved.setup()
    assert len(carved.train_pipeline()) == 18 and len(carved.val_dataloader().dataset) == 6
    assert all(p.startswith(b"train/") for p in carved.val_dataloader().dataset.paths)
    x, _ = items(carved.test_dataloader().dataset)
    assert x.shape == (9, 3, 224, 224)  # the default size: ImageNet's 224, evaluated from a 256 resize


def test_one_tree_is_carved_by_val_size_and_seed(tmp_path: Path) -> None:
    root = str(write_tree(tmp_path / "tree", per_class=10))
    dm = create("imagefolder", root=root, num_workers=0, image_size=32, augment=PLAIN)
    assert dm.config.val_size == 3  # default: a tenth of the 30 images
    dm.setup()
    assert len(dm.train_pipeline()) == 27 and len(dm.val_dataloader().dataset) == 3
    test = dm.test_dataloader().dataset
    assert sorted(test.paths.tolist()) == carve(dm)  # one tree: the test split is the validation carve
    assert not set(carve(dm)) & set(dm.train_pipeline().paths.tolist())
    assert_class_colours(*items(test))

    again = create("imagefolder", root=root, num_workers=0, val_size=5)
    other = create("imagefolder", root=root, num_workers=0, val_size=5, seed=1)
    assert carve(again) == carve(create("imagefolder", root=root, num_workers=0, val_size=5)) != carve(other)

    subset = create("imagefolder", root=root, num_workers=0, classes=(2, 0), image_size=32, augment=PLAIN)
    assert subset.num_classes == 2 and subset.config.val_size == 2  # a tenth of the 20 images kept
    x, y = items(subset.train_pipeline())
    assert len(y) == 18 and sorted(set(y.tolist())) == [0, 1]
    for image, label in zip(x, y):  # relabelled in the given order: 0 is red, 1 is blue
        rgb = torch.tensor(COLOURS["red" if label == 0 else "blue"], dtype=torch.float32) / 255
        assert torch.allclose(image[:, 16, 16], rgb, atol=0.06)


def test_grey_and_rgba_files_and_in_chans(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "tree", per_class=4)
    cv2.imwrite(str(root / "green" / "grey.png"), np.full((40, 40), 200, np.uint8))
    cv2.imwrite(str(root / "green" / "rgba.png"), np.full((40, 40, 4), (30, 60, 90, 0), np.uint8))  # BGRA
    rgb = create("imagefolder", root=str(root), num_workers=0, image_size=32, val_size=1, augment=PLAIN)
    grey = image_of(rgb, b"green/grey.png")
    assert grey.shape == (3, 32, 32) and torch.allclose(grey, torch.full_like(grey, 200 / 255), atol=0.01)
    rgba = image_of(rgb, b"green/rgba.png")
    assert torch.allclose(rgba[:, 16, 16], torch.tensor([90, 60, 30]) / 255, atol=0.01)  # alpha dropped, RGB order

    one = create("imagefolder", root=str(root), num_workers=0, image_size=32, val_size=3, in_chans=1)
    assert one.input_size == (1, 32, 32) and one.mean == (0.449,) and one.std == (0.226,)
    for dataset in (one.train_pipeline(), one.test_dataloader().dataset):
        x, y = items(dataset)
        assert x.shape == (len(y), 1, 32, 32) and x.dtype == torch.float32
    x, y = next(iter(one.train_dataloader()))
    assert x.shape[1:] == (1, 32, 32) and y.dtype == torch.int64


# ---------------------------------------------------------------- bad input: one line naming the path
def loose_images(p: Path) -> None:
    (p / "t").mkdir()
    cv2.imwrite(str(p / "t" / "a.jpg"), np.zeros((8, 8, 3), np.uint8))  # images, but no class folder


def val_lacks_classes(p: Path) -> None:
    write_tree(p / "t" / "train", 2)
    (p / "t" / "val" / "blue").mkdir(parents=True)


def val_has_another_class(p: Path) -> None:
    write_split(p / "t")
    write_tree(p / "other", 1)
    (p / "other" / "red").rename(p / "t" / "val" / "purple")


def class_without_images(p: Path) -> None:
    write_tree(p / "t", 2)
    (p / "t" / "grey").mkdir()
    (p / "t" / "grey" / "notes.txt").write_text("other files are ignored\n")
    cv2.imwrite(str(p / "t" / "grey" / "a.bmp"), np.zeros((8, 8, 3), np.uint8))  # and other image formats


def empty_val_class(p: Path) -> None:
    write_split(p / "t")
    for f in (p / "t" / "val" / "red").iterdir():
        f.unlink()


BAD = [
    (None, {"root": None}, "imagefolder: no data root given; set data.root (--data-root) to its folder"),
    (None, {"root": "nothing"}, "data root {p}/nothing does not exist; accepted: {p}/nothing/train/<class>/* with"),
    (lambda p: (p / "t").mkdir(), {"root": "t"}, "imagefolder: no class folders in {p}/t; accepted: {p}/t/train/"),
    (loose_images, {"root": "t"}, "imagefolder: no class folders in {p}/t; accepted:"),
    (lambda p: write_tree(p / "t" / "train", 2), {"root": "t"}, "imagefolder: {p}/t has train/ but no val/; accepted:"),
    (lambda p: write_tree(p / "t" / "val", 2), {"root": "t"}, "imagefolder: {p}/t has val/ but no train/; accepted:"),
    (
        val_lacks_classes,
        {"root": "t"},
        "imagefolder: the class folders of {p}/t/train and {p}/t/val differ: missing from val/: green, red; "
        "missing from train/: none; accepted: the same class folders in both",
    ),
    (val_has_another_class, {"root": "t"}, "differ: missing from val/: none; missing from train/: purple; accepted"),
    (
        class_without_images,
        {"root": "t"},
        "imagefolder: no images in class folder {p}/t/grey; accepted: files ending .jpg, .jpeg or .png (any case)",
    ),
    (empty_val_class, {"root": "t"}, "imagefolder: no images in class folder {p}/t/val/red; accepted:"),
    (
        lambda p: write_tree(p / "t", 2),
        {"root": "t", "val_size": 0},
        "imagefolder: val_size=0 leaves {p}/t, one tree of class folders, no images to validate and test on; "
        "accepted: val_size >= 1",
    ),
    (lambda p: write_tree(p / "t", 2), {"root": "t", "val_size": 6}, "val_size=6 leaves no training images"),
    (lambda p: write_tree(p / "t", 2), {"root": "t", "in_chans": 2}, "in_chans=2: accepted is 1 (decoded grey) or 3"),
]


@pytest.mark.parametrize("make, options, message", BAD)
def test_bad_input_is_one_line_naming_the_path(tmp_path: Path, make, options, message: str) -> None:
    if make is not None:
        make(tmp_path)
    root = options["root"]
    options = {**options, "root": None if root is None else str(tmp_path / root)}
    with pytest.raises(DataError) as err:
        create("imagefolder", num_workers=0, **options).setup()
    text = str(err.value)
    assert message.format(p=tmp_path) in text and "\n" not in text, text


def test_broken_images_are_named_at_setup(tmp_path: Path) -> None:
    root = write_split(tmp_path / "data")
    page = root / "val" / "red" / "red_0.jpg"
    page.write_bytes(b"<html>404 not found</html>")  # a web page saved as an image
    with pytest.raises(DataError) as err:
        create("imagefolder", root=str(root), num_workers=0).setup("fit")  # val_size 0: val/ validates
    assert str(err.value) == (
        f"imagefolder: cannot decode image {page}; accepted: .jpg, .jpeg or .png files that OpenCV decodes "
        "(remove or replace the broken files)"
    )
    carved = create("imagefolder", root=str(root), num_workers=0, val_size=3)
    carved.setup("fit")  # a split is checked when it is set up: val/ is the test split only
    with pytest.raises(DataError, match=f"cannot decode image {page};"):
        carved.setup("test")

    png = root / "train" / "green" / "green_1.PNG"
    png.write_bytes(png.read_bytes()[:100])  # truncated: libpng gives up
    (root / "train" / "blue" / "blue_2.jpeg").write_bytes(b"")
    with pytest.raises(DataError) as err:
        create("imagefolder", root=str(root), num_workers=0, val_size=3).setup("fit")
    assert f"cannot decode 2 images {root}/train/blue/blue_2.jpeg, {png}; accepted:" in str(err.value)


# ---------------------------------------------------------------- `convbench train` end to end
def train(root: Path, results: Path, *extra: str):
    return convbench(
        "train",
        "--arch",
        "lenet5",  # at its 32 px: the harness sets data.image_size
        "--data",
        "imagefolder",
        "--data-root",
        root,
        "--epochs",
        "4",
        "--batch-size",
        "8",
        "--workers",
        "0",
        "--results",
        results,
        "--wandb",
        "disabled",
        *extra,
    )


def result_of(results: Path) -> dict:
    (path,) = results.glob("*/result.json")
    return json.loads(path.read_text())


@pytest.mark.slow
def test_train_on_train_and_val_folders(tmp_path: Path) -> None:
    proc = train(write_split(tmp_path / "data"), tmp_path / "results")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = result_of(tmp_path / "results")
    assert result["status"] == "completed" and result["dataset"] == "imagefolder"
    assert result["input_size"] == [3, 32, 32] and result["epochs_completed"] == 4
    # 24 train images, 9 in val/: validation and test both read val/; colours are learnt in a few steps
    assert result["val_acc1"] == result["test_acc1"] >= 0.9, result
    assert result["test_acc5"] == 1.0 and result["test_loss"] < 1.0


@pytest.mark.slow
def test_train_on_one_tree(tmp_path: Path) -> None:
    proc = train(write_tree(tmp_path / "tree", per_class=12), tmp_path / "results", "--set", "data.val_size=6")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = result_of(tmp_path / "results")
    assert result["status"] == "completed" and result["train_acc1"] is not None
    # the test split is the validation carve, so the final model's figures on it are the same
    assert result["val_acc1"] == result["test_acc1"] >= 0.8 and result["val_loss"] == result["test_loss"], result


def test_a_broken_image_is_one_line_and_exit_2(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "tree", per_class=4)
    png = root / "red" / "red_3.png"
    png.write_bytes(png.read_bytes()[:60])  # truncated
    proc = train(root, tmp_path / "results")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.splitlines() == [
        f"convbench train: error: imagefolder: cannot decode image {png}; accepted: .jpg, .jpeg or .png files "
        "that OpenCV decodes (remove or replace the broken files)"
    ]
    assert not list((tmp_path / "results").glob("*/result.json"))


def test_the_folder_is_part_of_the_run_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.config.train_config import resolve

    def run_id(dataset: str, root: str) -> str:
        return resolve([("test", {"arch": "lenet5", "dataset": dataset, "data": {"root": root}})]).run_id()

    monkeypatch.chdir(tmp_path)
    assert run_id("imagefolder", "cats") != run_id("imagefolder", "dogs")  # two folders of images, two runs
    assert run_id("imagefolder", "cats") == run_id("imagefolder", str(tmp_path / "cats"))  # one folder, one run
    # where a fixed dataset is kept is not part of it: the published runs keep their ids
    assert run_id("fashion-mnist", "/usr/share/datasets/fashion-mnist") == run_id("fashion-mnist", "elsewhere")
