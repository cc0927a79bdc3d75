"""datamodules: real file formats built small in tmp_path, loaded through the public API."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import os
import pickle
import struct
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import datamodules
from datamodules import AugmentConfig, DataConfig, DataError, create, names
from tests.helpers import REPO

REAL_FMNIST = Path("/usr/share/datasets/fashion-mnist")
PLAIN = dict(crop=False, flip=False, normalize=False)  # items are then exactly image / 255


# ---------------------------------------------------------------- writers of the real formats
def write_idx(path: Path, magic: int, array: np.ndarray, count: int | None = None) -> None:
    """Gzipped IDX; `count` overrides the header's first dimension (to fake a truncated file)."""
    dims = (count if count is not None else array.shape[0],) + array.shape[1:]
    header = struct.pack(">I", magic) + struct.pack(f">{len(dims)}I", *dims)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def class_images(labels: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Images whose pixels all equal 20 * label + 5, so the class can be read back from the image."""
    return np.broadcast_to(
        (20 * labels + 5).astype(np.uint8).reshape(-1, *[1] * len(shape)), (len(labels), *shape)
    ).copy()


def write_fmnist(root: Path, n_train: int = 200, n_test: int = 50) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", 2051, class_images(labels, (28, 28)))
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", 2049, labels)
    return root


def cifar_rows(labels: np.ndarray) -> np.ndarray:
    """N x 3072 channel-planar rows: R = 20 * label + 5, G = row index in the image, B = column index."""
    n = len(labels)
    planes = np.empty((n, 3, 32, 32), np.uint8)
    planes[:, 0] = (20 * labels + 5).astype(np.uint8)[:, None, None]
    planes[:, 1] = np.arange(32, dtype=np.uint8)[None, :, None]
    planes[:, 2] = np.arange(32, dtype=np.uint8)[None, None, :]
    return planes.reshape(n, 3072)


def dump(path: Path, obj: object, protocol: int = 4) -> None:
    """Python 3 at protocol >= 3 writes bytes as bytes, like Python 2's str in the official files."""
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)


def write_cifar10(root: Path, per_batch: int = 20, n_test: int = 20) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for i in range(1, 6):
        labels = np.arange(per_batch) % 10
        dump(
            folder / f"data_batch_{i}",
            {
                b"batch_label": b"training batch",
                b"labels": labels.tolist(),
                b"data": cifar_rows(labels),
                b"filenames": [b"x.png"] * per_batch,
            },
        )
    labels = np.arange(n_test) % 10
    dump(
        folder / "test_batch",
        {
            b"batch_label": b"testing batch",
            b"labels": labels.tolist(),
            b"data": cifar_rows(labels),
            b"filenames": [b"x.png"] * n_test,
        },
    )
    dump(folder / "batches.meta", {b"label_names": [b"c%d" % i for i in range(10)], b"num_vis": 3072})
    return root


def write_cifar100(root: Path, n_train: int = 200, n_test: int = 100) -> Path:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, n in (("train", n_train), ("test", n_test)):
        fine = np.arange(n) % 100
        dump(
            folder / name,
            {
                b"filenames": [b"x.png"] * n,
                b"batch_label": name.encode(),
                b"fine_labels": fine.tolist(),
                b"coarse_labels": (fine // 5).tolist(),
                b"data": cifar_rows(fine % 12),
            },
        )
    dump(folder / "meta", {b"fine_label_names": [b"f"] * 100, b"coarse_label_names": [b"c"] * 20})
    return root


WNIDS = ["n02000000", "n01000000", "n03000000"]  # written unsorted on purpose
COLOURS = {"n01000000": (250, 10, 10), "n02000000": (10, 250, 10), "n03000000": (10, 10, 250)}  # RGB


def write_imagenet(root: Path, per_class: int = 3) -> Path:
    for split, n in (("train", per_class), ("val", 2)):
        for wnid in WNIDS:
            (root / split / wnid).mkdir(parents=True)
            bgr = np.array(COLOURS[wnid][::-1], np.uint8)
            for i in range(n):
                image = np.broadcast_to(bgr, (48 + 8 * i, 64, 3))
                cv2.imwrite(str(root / split / wnid / f"{wnid}_{i}.JPEG"), image)
    return root


def items(dataset, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    pairs = [dataset[i] for i in range(len(dataset) if n is None else n)]
    return torch.stack([p[0] for p in pairs]), torch.tensor([p[1] for p in pairs])


# ---------------------------------------------------------------- API and config errors
def test_names_and_cheap_import():
    assert names() == [
        "cifar10",
        "cifar100",
        "fashion-mnist",
        "imagefolder",
        "imagenet",
        "segfolder",
        "shapes",
        "synthetic",
    ]
    code = "import sys, datamodules; print(sorted({'torch', 'pytorch_lightning', 'albumentations'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(
    "call, fragment",
    [
        (
            lambda: create("cifar"),
            "accepted: cifar10, cifar100, fashion-mnist, imagefolder, imagenet, segfolder, shapes, synthetic",
        ),
        (lambda: create("synthetic", batchsize=3), "unknown DataConfig field batchsize; accepted: root, batch_size"),
        (lambda: create("synthetic", augment={"flipp": True}), "unknown augment field flipp"),
        (lambda: create("synthetic", batch_size=0), "batch_size=0: must be >= 1"),
        (lambda: create("synthetic", batch_size=True), "batch_size=True: expected int"),
        (lambda: create("synthetic", input_size=(3, 32)), "input_size=[3, 32]: wrong number of items"),
        (lambda: DataConfig(batch_size=-1).validate(), "batch_size=-1: must be >= 1"),
        (lambda: create("synthetic", augment={"noise_std": 2.0}), "noise_std=2.0"),
        (lambda: DataConfig(classes=(1, 1)), "each class may appear once"),
        (lambda: create("cifar10", coarse_labels=True), "coarse_labels=True applies only to cifar100"),
        (lambda: create("fashion-mnist", download=True), "download=True applies only to cifar10, cifar100"),
        (lambda: create("cifar10", num_samples=5), "num_samples=5 applies only to synthetic"),
        (lambda: create("fashion-mnist", in_chans=2), "in_chans=2: accepted is 1 or 3"),
        (lambda: create("cifar10", in_chans=1), "in_chans=1: accepted is 3"),
        (lambda: create("cifar10", classes=(3, 10)), "names [10], but the labels are 0..9"),
    ],
)
def test_config_errors_are_early_and_named(call, fragment):
    with pytest.raises(DataError) as err:
        call()
    assert fragment in str(err.value)


def test_resolved_config_shapes_and_stats():
    fm = create("fashion-mnist", image_size=32, in_chans=3)
    assert fm.config.root == str(REAL_FMNIST) and fm.config.val_size == 5000
    assert fm.config.augment.flip is False and fm.input_size == (3, 32, 32) and fm.num_classes == 10
    assert fm.mean == (0.2860406,) * 3
    c100 = create("cifar100", DataConfig(coarse_labels=True, augment=AugmentConfig(normalize=False)))
    assert c100.num_classes == 20 and c100.config.augment.flip is True and c100.config.root == "data"
    assert c100.mean == (0.0,) * 3 and c100.std == (1.0,) * 3
    assert create("imagenet", image_size=160).input_size == (3, 160, 160)
    assert create("synthetic", input_size=(2, 8, 16), num_classes=4).input_size == (2, 8, 16)
    assert create("synthetic", classes=(3, 1)).num_classes == 2


# ---------------------------------------------------------------- Fashion-MNIST
def test_fmnist_loads_pads_and_replicates(tmp_path):
    root = write_fmnist(tmp_path / "fm")
    dm = create("fashion-mnist", root=str(root), num_workers=0, val_size=40, image_size=32, in_chans=3, augment=PLAIN)
    dm.setup("fit")
    assert len(dm.train_pipeline()) == 160 and len(dm.val_dataloader().dataset) == 40
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (128, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])  # channel replicated
    assert (x[:, :, :2] == 0).all() and (x[:, :, -2:] == 0).all() and (x[:, :, :, :2] == 0).all()  # 2 px pad
    centre = x[:, 0, 2:30, 2:30]
    assert torch.allclose(centre, ((20 * y + 5) / 255).float()[:, None, None].expand_as(centre))
    dm.setup("test")
    assert len(dm.test_dataloader().dataset) == 50


def test_fmnist_normalised_default_pipeline(tmp_path):
    dm = create("fashion-mnist", root=str(write_fmnist(tmp_path)), num_workers=0, val_size=0)
    assert (dm.config.augment.crop, dm.config.augment.flip) == (False, False)  # centred garments: no crop by default
    x, _ = items(dm.train_pipeline(), 20)
    assert x.shape == (20, 1, 28, 28)
    assert dm.val_dataloader() == []  # val_size 0: Lightning skips validation
    cropped = create(
        "fashion-mnist", root=str(write_fmnist(tmp_path)), num_workers=0, val_size=0, augment={"crop": True}
    )
    x, _ = items(cropped.train_pipeline(), 20)
    zero = (0 - 0.2860406) / 0.3530242  # crop padding is zero pixels, normalised
    assert np.isclose(x.min().item(), zero, atol=1e-4)


def test_fmnist_missing_root_lists_expected_files(tmp_path):
    dm = create("fashion-mnist", root=str(tmp_path / "nowhere"), num_workers=0)
    with pytest.raises(DataError) as err:
        dm.setup("fit")
    msg = str(err.value)
    for name in (
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
        "apt-get install dataset-fashion-mnist",
        str(tmp_path / "nowhere"),
    ):
        assert name in msg


@pytest.mark.parametrize(
    "damage, fragment",
    [
        ("truncated", "train-images-idx3-ubyte.gz: 15696 bytes after decompression, but its header"),
        ("magic", "train-images-idx3-ubyte.gz: IDX magic number 2049, expected 2051"),
        ("gzip", "train-images-idx3-ubyte.gz: cannot read as a gzipped IDX file"),
        ("count", "train-labels-idx1-ubyte.gz: 199 labels for 200 images"),
        ("label", "train-labels-idx1-ubyte.gz: label 12 out of range 0..9"),
    ],
)
def test_fmnist_bad_files(tmp_path, damage, fragment):
    root = write_fmnist(tmp_path)
    images, labels = root / "train-images-idx3-ubyte.gz", root / "train-labels-idx1-ubyte.gz"
    if damage == "truncated":
        write_idx(images, 2051, class_images(np.arange(20) % 10, (28, 28)), count=200)
    elif damage == "magic":
        write_idx(images, 2049, class_images(np.arange(200) % 10, (28, 28)))
    elif damage == "gzip":
        images.write_bytes(images.read_bytes()[:-100])
    elif damage == "count":
        write_idx(labels, 2049, np.arange(199) % 10)
    else:
        write_idx(labels, 2049, np.full(200, 12))
    with pytest.raises(DataError) as err:
        create("fashion-mnist", root=str(root), num_workers=0).setup("fit")
    assert fragment in str(err.value) and str(root) in str(err.value)


@pytest.mark.skipif(
    not (REAL_FMNIST / "train-images-idx3-ubyte.gz").exists(), reason="dataset-fashion-mnist not installed"
)
def test_real_fashion_mnist():
    start = time.perf_counter()
    dm = create("fashion-mnist", num_workers=0)
    dm.setup("fit")
    dm.setup("test")
    elapsed = time.perf_counter() - start
    train, val, test = dm.train_pipeline(), dm.val_dataloader().dataset, dm.test_dataloader().dataset
    assert (len(train), len(val), len(test)) == (55000, 5000, 10000)
    everything = np.concatenate([train.labels, val.labels])
    assert (np.bincount(everything) == 6000).all() and (np.bincount(test.labels) == 1000).all()
    pixels = np.concatenate([train.images, val.images]) / 255.0
    assert np.isclose(pixels.mean(), dm.mean[0], atol=1e-6) and np.isclose(pixels.std(), dm.std[0], atol=1e-6)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (128, 1, 28, 28) and y.max() < 10
    assert elapsed < 10, f"loading took {elapsed:.1f} s"


# ---------------------------------------------------------------- splits and subsets
def test_val_split_is_seeded_and_deterministic(tmp_path):
    root = str(write_fmnist(tmp_path))

    def val_images(seed: int) -> np.ndarray:
        dm = create("fashion-mnist", root=root, num_workers=0, val_size=50, seed=seed)
        dm.setup("fit")
        train, val = dm.train_pipeline(), dm.val_dataloader().dataset
        assert len(train) == 150 and len(val) == 50
        return val.labels.copy()

    assert np.array_equal(val_images(1), val_images(1))
    assert not np.array_equal(val_images(1), val_images(2))


def test_split_plan_is_disjoint_and_stable():
    from datamodules.samples import plan_train

    labels = np.arange(1000) % 10
    train, val = plan_train(labels, 10, 100, None, None, seed=3, what="t")
    assert len(val) == 100 and len(train) == 900 and not set(train) & set(val)
    few, val2 = plan_train(labels, 10, 100, 7, 50, seed=3, what="t")
    assert np.array_equal(val, val2) and len(few) == 50 and set(few) <= set(train)
    with pytest.raises(DataError, match="val_size=1000 leaves no training images"):
        plan_train(labels, 10, 1000, None, None, seed=0, what="t")


def test_classes_subset_relabels_in_given_order(tmp_path):
    dm = create(
        "fashion-mnist", root=str(write_fmnist(tmp_path)), num_workers=0, val_size=0, classes=(7, 2), augment=PLAIN
    )
    assert dm.num_classes == 2
    dm.setup()
    for dataset in (dm.train_pipeline(), dm.test_dataloader().dataset):
        x, y = items(dataset)
        assert set(y.tolist()) == {0, 1} and len(y) in (40, 10)
        original = torch.where(y == 0, 7, 2)
        assert torch.allclose(x[:, 0, 0, 0], (20 * original + 5) / 255)


def test_labels_per_class_and_train_limit(tmp_path):
    root = str(write_fmnist(tmp_path))
    dm = create("fashion-mnist", root=root, num_workers=0, val_size=20, labels_per_class=3)
    assert np.bincount(dm.train_pipeline().labels).tolist() == [3] * 10
    assert len(dm.val_dataloader().dataset) == 20
    assert len(create("fashion-mnist", root=root, num_workers=0, val_size=0, train_limit=17).train_pipeline()) == 17
    with pytest.raises(DataError, match="labels_per_class=30 but class"):
        create("fashion-mnist", root=root, num_workers=0, val_size=20, labels_per_class=30).setup("fit")


# ---------------------------------------------------------------- augmentation
def test_flip_defaults_per_dataset(tmp_path):
    from tests.test_segmentation import write_pairs

    write_pairs(tmp_path / "seg", 2)
    # imagefolder and segfolder have no default root: ImageNet's layout, and a folder of image/mask pairs
    roots = {"imagefolder": str(write_imagenet(tmp_path)), "segfolder": str(tmp_path / "seg")}
    assert {n: create(n, root=roots.get(n)).config.augment.flip for n in names()} == {
        "cifar10": True,
        "cifar100": True,
        "fashion-mnist": False,
        "imagefolder": True,
        "imagenet": True,
        "segfolder": True,
        "shapes": True,
        "synthetic": False,
    }
    assert create("cifar10", augment={"flip": False}).config.augment.flip is False


def test_noise_in_train_only_in_pixel_units(tmp_path):
    root = str(write_fmnist(tmp_path))
    dm = create("fashion-mnist", root=root, num_workers=0, val_size=100, augment={**PLAIN, "noise_std": 0.1})
    dm.setup("fit")
    train, val = dm.train_pipeline(), dm.val_dataloader().dataset
    x, _ = items(train, 50)
    clean = torch.from_numpy(train.images[:50]).permute(0, 3, 1, 2).float() / 255
    residual = x - clean
    assert 0.08 < residual.std().item() < 0.12 and x.min() >= 0 and x.max() <= 1
    xv, _ = items(val, 50)
    assert torch.equal(xv, torch.from_numpy(val.images[:50]).permute(0, 3, 1, 2).float() / 255)


def test_augmentation_is_seeded_and_flip_crop_work():
    def first(seed: int) -> torch.Tensor:
        return items(create("synthetic", num_samples=16, seed=seed, augment={"flip": True}).train_pipeline())[0]

    a, b, c = first(0), first(0), first(1)
    assert torch.equal(a, b) and not torch.equal(a, c)
    dm = create("synthetic", num_samples=64, augment={"crop": False, "flip": True, "normalize": False})
    x, _ = items(dm.train_pipeline())
    source = torch.from_numpy(dm.train_pipeline().images).permute(0, 3, 1, 2).float() / 255
    flipped = torch.tensor([torch.equal(x[i], source[i].flip(-1)) for i in range(64)])
    same = torch.tensor([torch.equal(x[i], source[i]) for i in range(64)])
    assert (flipped | same).all() and 10 < flipped.sum() < 54


# ---------------------------------------------------------------- CIFAR
def test_cifar10_channel_planar_decoding(tmp_path):
    dm = create("cifar10", root=str(write_cifar10(tmp_path)), num_workers=0, val_size=10, augment=PLAIN)
    dm.setup()
    assert len(dm.train_pipeline()) == 90 and len(dm.test_dataloader().dataset) == 20
    x, y = next(iter(dm.test_dataloader()))
    assert x.shape == (20, 3, 32, 32) and y.tolist() == list(np.arange(20) % 10)
    rows, cols = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    assert torch.allclose(x[:, 0], ((20 * y + 5) / 255).float()[:, None, None].expand(20, 32, 32))
    assert torch.allclose(x[:, 1], rows / 255) and torch.allclose(x[:, 2], cols / 255)  # G = row, B = column


def test_cifar100_fine_and_coarse(tmp_path):
    root = str(write_cifar100(tmp_path))
    train = Path(root) / "cifar-100-python" / "train"
    dump(train, pickle.loads(train.read_bytes()), protocol=5)  # numpy's other array encoding
    fine = create("cifar100", root=root, num_workers=0, val_size=0)
    assert fine.num_classes == 100 and set(fine.train_pipeline().labels.tolist()) == set(range(100))
    coarse = create("cifar100", root=root, num_workers=0, val_size=0, coarse_labels=True)
    assert np.array_equal(coarse.train_pipeline().labels, fine.train_pipeline().labels // 5)
    x, y = next(iter(coarse.train_dataloader()))
    assert x.shape == (128, 3, 32, 32) and x.dtype == torch.float32 and int(y.max()) < 20


def test_cifar_missing_files_suggest_download(tmp_path):
    with pytest.raises(DataError) as err:
        create("cifar10", root=str(tmp_path), num_workers=0).setup("fit")
    assert "data_batch_1" in str(err.value) and "download=True" in str(err.value)


def test_cifar_wrong_keys(tmp_path):
    root = write_cifar10(tmp_path)
    bad = root / "cifar-10-batches-py" / "data_batch_3"
    dump(bad, {b"data": cifar_rows(np.zeros(4, int)), b"fine_labels": [0] * 4})
    with pytest.raises(DataError) as err:
        create("cifar10", root=str(root), num_workers=0).setup("fit")
    assert str(bad) in str(err.value) and "missing key b'labels'" in str(err.value)
    dump(bad, {b"data": np.zeros((4, 1024), np.uint8), b"labels": [0] * 4})
    with pytest.raises(DataError, match="b'data' must be a uint8 N x 3072 array"):
        create("cifar10", root=str(root), num_workers=0).setup("fit")


class Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    root = write_cifar10(tmp_path / "data")
    marker = tmp_path / "pwned"
    bad = root / "cifar-10-batches-py" / "data_batch_1"
    dump(bad, {b"data": Exploit(marker), b"labels": [0]})
    with pytest.raises(DataError) as err:
        create("cifar10", root=str(root), num_workers=0).setup("fit")
    assert str(bad) in str(err.value) and "refusing to load global posix.system" in str(err.value)
    assert not marker.exists()
    bad.write_bytes(b"\x80\x02}q\x00(U")  # truncated pickle
    with pytest.raises(DataError, match="not a readable CIFAR pickle"):
        create("cifar10", root=str(root), num_workers=0).setup("fit")


# ---------------------------------------------------------------- CIFAR download
@pytest.fixture
def http_dir(tmp_path):
    """A directory served over HTTP on 127.0.0.1 (loopback only); yields (dir, base url)."""
    served = tmp_path / "served"
    served.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def make_tarball(tmp_path: Path, served: Path, evil_member: bool = False) -> str:
    src = write_cifar10(tmp_path / "src")
    tarball = served / "cifar-10-python.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(src / "cifar-10-batches-py", arcname="cifar-10-batches-py")
        if evil_member:
            tar.add(src / "cifar-10-batches-py" / "batches.meta", arcname="cifar-10-batches-py/../../escaped")
    return hashlib.md5(tarball.read_bytes()).hexdigest()


def test_download_happy_path(tmp_path, http_dir, monkeypatch):
    from datamodules import cifar
    from datamodules.download import Archive

    served, url = http_dir
    md5 = make_tarball(tmp_path, served)
    monkeypatch.setenv("CONVBENCH_CIFAR_MIRROR", url)
    monkeypatch.setitem(cifar.ARCHIVES, "cifar10", Archive(cifar.ARCHIVES["cifar10"].url, md5, "cifar-10-batches-py"))
    root = tmp_path / "root"
    dm = create("cifar10", root=str(root), num_workers=0, download=True, val_size=10)
    dm.prepare_data()
    dm.setup()
    assert len(dm.train_pipeline()) == 90
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-batches-py"]  # no temp dir, no tarball left


def test_download_wrong_md5_leaves_nothing(tmp_path, http_dir, monkeypatch):
    served, url = http_dir
    make_tarball(tmp_path, served)  # not the official archive, so the official MD5 cannot match
    monkeypatch.setenv("CONVBENCH_CIFAR_MIRROR", url)
    root = tmp_path / "root"
    dm = create("cifar10", root=str(root), num_workers=0, download=True)
    with pytest.raises(DataError) as err:
        dm.prepare_data()
    assert "expected c58f30108f718f92721af3b95e74349a" in str(err.value) and url in str(err.value)
    assert list(root.iterdir()) == []


def test_download_rejects_unsafe_members(tmp_path, http_dir, monkeypatch):
    from datamodules import cifar
    from datamodules.download import Archive

    served, url = http_dir
    md5 = make_tarball(tmp_path, served, evil_member=True)
    monkeypatch.setenv("CONVBENCH_CIFAR_MIRROR", url)
    monkeypatch.setitem(cifar.ARCHIVES, "cifar10", Archive(cifar.ARCHIVES["cifar10"].url, md5, "cifar-10-batches-py"))
    root = tmp_path / "root"
    with pytest.raises(DataError, match="unsafe or unexpected archive member 'cifar-10-batches-py/../../escaped'"):
        create("cifar10", root=str(root), num_workers=0, download=True).prepare_data()
    assert list(root.iterdir()) == [] and not (tmp_path / "escaped").exists()


# ---------------------------------------------------------------- ImageNet
def test_imagenet_folder_layout(tmp_path):
    root = write_imagenet(tmp_path / "inet")
    dm = create("imagenet", root=str(root), num_workers=0, image_size=32, batch_size=4, augment={"normalize": False})
    assert dm.num_classes == 3 and dm.input_size == (3, 32, 32)
    dm.setup()
    train, val, test = dm.train_pipeline(), dm.val_dataloader().dataset, dm.test_dataloader().dataset
    assert len(train) == 9 and len(val) == len(test) == 6  # val_size 0: validation = val/
    for dataset in (train, test):
        x, y = items(dataset)
        assert x.shape == (len(y), 3, 32, 32) and x.dtype == torch.float32
        sorted_wnids = sorted(WNIDS)
        for image, label in zip(x, y):
            rgb = torch.tensor(COLOURS[sorted_wnids[label]]) / 255
            assert torch.allclose(image[:, 16, 16], rgb, atol=0.03)  # RGB order, label = sorted wnid index
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 32, 32) and y.dtype == torch.int64


def test_imagenet_eval_resize_and_classes(tmp_path):
    root = write_imagenet(tmp_path)
    dm = create("imagenet", root=str(root), num_workers=0, classes=(2, 0), val_size=2)
    assert dm.num_classes == 2 and dm.input_size == (3, 224, 224)
    dm.setup()
    assert len(dm.train_pipeline()) == 4 and len(dm.val_dataloader().dataset) == 2
    x, y = items(dm.test_dataloader().dataset)
    assert x.shape == (4, 3, 224, 224) and sorted(y.tolist()) == [0, 0, 1, 1]
    mean, std = torch.tensor(dm.mean), torch.tensor(dm.std)
    for image, label in zip(x, y):  # label 0 is original class 2 (n03: blue)
        wnid = "n03000000" if label == 0 else "n01000000"
        assert torch.allclose(image[:, 100, 100] * std + mean, torch.tensor(COLOURS[wnid]) / 255, atol=0.03)


def test_imagenet_errors(tmp_path):
    (tmp_path / "empty" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match="no class folders in .*empty/train"):
        create("imagenet", root=str(tmp_path / "empty"), num_workers=0).setup("fit")
    with pytest.raises(DataError, match="no folder .*nothing/train"):
        create("imagenet", root=str(tmp_path / "nothing"), num_workers=0).setup("fit")
    root = write_imagenet(tmp_path / "inet")
    corrupt = root / "train" / "n01000000" / "n01000000_0.JPEG"
    corrupt.write_bytes(b"\xff\xd8 this is not a JPEG")
    dm = create("imagenet", root=str(root), num_workers=0, val_size=0)
    with pytest.raises(DataError) as err:
        items(dm.train_pipeline())
    assert f"cannot decode image {corrupt}" in str(err.value)
    (root / "val" / "n09999999").mkdir()
    with pytest.raises(DataError, match="n09999999 is not among the train/ classes"):
        dm.setup("test")


# ---------------------------------------------------------------- synthetic and loaders
def test_synthetic_is_deterministic_any_shape():
    a = create("synthetic", input_size=(5, 12, 20), num_classes=7, num_samples=30, seed=4, augment={"crop": False})
    b = create("synthetic", input_size=(5, 12, 20), num_classes=7, num_samples=30, seed=4, augment={"crop": False})
    assert np.array_equal(a.train_pipeline().images, b.train_pipeline().images)
    assert np.array_equal(a.train_pipeline().labels, b.train_pipeline().labels)
    x, y = next(iter(a.train_dataloader()))
    assert x.shape == (30, 5, 12, 20) and y.max() < 7
    padded = create("synthetic", input_size=(3, 12, 20), num_samples=8)
    assert items(padded.train_pipeline())[0].shape == (8, 3, 12, 20)


def test_worker_processes_and_lightning_fit():
    import pytorch_lightning as pl

    dm = create("synthetic", num_samples=64, batch_size=16, num_workers=2, val_size=16)
    batches = list(dm.train_dataloader())
    assert len(batches) == 3 and batches[0][0].shape == (16, 3, 32, 32)

    class Linear(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(3 * 32 * 32, 10)

        def training_step(self, batch, _):
            return torch.nn.functional.cross_entropy(self.fc(batch[0].flatten(1)), batch[1])

        def validation_step(self, batch, _):
            self.log("val_loss", torch.nn.functional.cross_entropy(self.fc(batch[0].flatten(1)), batch[1]))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    trainer = pl.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(Linear(), datamodule=create("synthetic", num_samples=64, batch_size=16, num_workers=0, val_size=16))
    assert "val_loss" in trainer.callback_metrics


def test_convdatamodule_is_exported():
    assert issubclass(type(create("synthetic")), datamodules.ConvDataModule)
