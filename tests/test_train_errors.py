"""Every user mistake `convbench train` can meet: one line on stderr naming the fault and what is
accepted, exit code 2, no traceback, and nothing already computed lost. The CLI's `main` runs
in-process (a subprocess per case would spend most of the suite importing torch); an exception
escaping it fails the test just as a traceback would."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main

SYNTH = [
    "--data",
    "synthetic",
    "--set",
    "data.num_samples=64",
    "--set",
    "data.input_size=[1,32,32]",
    "--workers",
    "0",
    "--batch-size",
    "32",
    "--wandb",
    "disabled",
]


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def train(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Outcome]:
    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> Outcome:
        code = main(["train", "--results", str(tmp_path / "results"), *args])
        out = capsys.readouterr()
        return Outcome(code, out.out, out.err)

    return run


def assert_one_line(r: Outcome, *fragments: str) -> None:
    assert r.returncode == 2, r.stderr[-2000:]
    lines = [line for line in r.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    for f in fragments:
        assert f in lines[0], lines[0]


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--arch", "resnet21", *SYNTH], ["unknown architecture 'resnet21'", "resnet20"]),
        (["--arch", "lenet5", "--data", "mnist"], ["unknown dataset 'mnist'", "fashion-mnist"]),
        (["--arch", "lenet5", *SYNTH, "--epochs", "0"], ["epochs=0", ">= 1"]),
        (
            ["--arch", "lenet5", *SYNTH, "--set", "optim.lrr=0.1"],
            ["unknown config key optim.lrr", "accepted under optim", "lr"],
        ),
        (["--arch", "lenet5", *SYNTH, "--set", "optim.lr=fast"], ["optim.lr='fast'", "expected float"]),
        (["--arch", "lenet5", *SYNTH, "--set", "nosuch=1"], ["unknown config key nosuch"]),
        (
            ["--arch", "lenet5", *SYNTH, "--batch-size", "1000"],
            ["data.batch_size=1000 is larger than the training set", "64 images"],
        ),
        (["--arch", "lenet5", *SYNTH, "--set", "data.crop=true"], ["crop"]),
        (["--arch", "lenet5", *SYNTH, "--set", "model.width=3"], ["does not take override", "width"]),
        (["--arch", "lenet5", *SYNTH, "--transfer", "finetune"], ["needs --from"]),
        (["--arch", "unet", *SYNTH], ["segmentation"]),
        (["--arch", "alexnet", *SYNTH], ["cannot run on synthetic images of 1x32x32"]),
        (["--arch", "lenet5", *SYNTH, "--config", "missing.yaml"], ["missing.yaml does not exist"]),
        (
            ["--arch", "lenet5", *SYNTH, "--set", "trainer.checkpoint_every_min=-1"],
            ["trainer.checkpoint_every_min=-1", ">= 0"],
        ),
    ],
)
def test_bad_input(train: Callable[..., Outcome], tmp_path: Path, args: list[str], fragments: list[str]) -> None:
    assert_one_line(train(*args), *fragments)


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda p: p.write_text(""), "is empty"),
        (lambda p: p.write_text("\n# only a comment\n"), "is empty"),
        (lambda p: p.mkdir(), "is a directory"),
        (lambda p: p.write_bytes(bytes(range(256)) * 4), "not a text file"),
        (lambda p: p.write_text("- just\n- a list\n"), "expected a mapping of config keys"),
    ],
)
def test_unusable_config_file(
    train: Callable[..., Outcome], tmp_path: Path, make: Callable[[Path], object], fragment: str
) -> None:
    make(tmp_path / "c.yaml")
    assert_one_line(train("--arch", "lenet5", *SYNTH, "--config", str(tmp_path / "c.yaml")), "c.yaml", fragment)


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda p: p.write_bytes(b""), "is empty"),
        (lambda p: p.mkdir(), "is a directory"),
        (lambda p: p.write_bytes(os.urandom(4096)), "truncated or not a torch checkpoint"),
    ],
)
def test_unusable_transfer_checkpoint(
    train: Callable[..., Outcome], tmp_path: Path, make: Callable[[Path], object], fragment: str
) -> None:
    make(tmp_path / "w.ckpt")
    assert_one_line(
        train("--arch", "lenet5", *SYNTH, "--transfer", "finetune", "--from", str(tmp_path / "w.ckpt")),
        "--from",
        "w.ckpt",
        fragment,
    )


def test_fashion_mnist_root_that_is_a_file_or_empty_or_truncated(train: Callable[..., Outcome], tmp_path: Path) -> None:
    fm = ["--arch", "lenet5", "--data", "fashion-mnist", "--wandb", "disabled", "--data-root"]
    (tmp_path / "afile").write_text("x")
    assert_one_line(train(*fm, str(tmp_path / "afile")), "afile is a file, not a directory")
    (tmp_path / "empty").mkdir()
    assert_one_line(train(*fm, str(tmp_path / "empty")), "missing", "train-images-idx3-ubyte.gz")
    root = tmp_path / "fm"
    root.mkdir()
    for split, n in (("train", 64), ("t10k", 16)):
        with gzip.open(root / f"{split}-images-idx3-ubyte.gz", "wb") as f:
            f.write(struct.pack(">IIII", 2051, n, 28, 28) + bytes(n * 784))
        with gzip.open(root / f"{split}-labels-idx1-ubyte.gz", "wb") as f:
            f.write(struct.pack(">II", 2049, n) + bytes(n))
    whole = (root / "train-images-idx3-ubyte.gz").read_bytes()
    (root / "train-images-idx3-ubyte.gz").write_bytes(whole[: len(whole) // 2])  # a download cut short
    assert_one_line(train(*fm, str(root)), "train-images-idx3-ubyte.gz", "cannot read as a gzipped IDX file")


def test_bad_yaml_names_the_line(train: Callable[..., Outcome], tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("arch: lenet5\noptim:\n  lr: [0.1\n")
    assert_one_line(train("--config", "bad.yaml", *SYNTH), "bad.yaml line", "not valid YAML")


def test_missing_data_root_lists_expected_files(train: Callable[..., Outcome], tmp_path: Path) -> None:
    r = train(
        "--arch", "lenet5", "--data", "fashion-mnist", "--data-root", str(tmp_path / "nowhere"), "--wandb", "disabled"
    )
    assert_one_line(r, "nowhere", "train-images-idx3-ubyte.gz")


def test_wrong_magic_idx(train: Callable[..., Outcome], tmp_path: Path) -> None:
    root = tmp_path / "fm"
    root.mkdir()
    for split, n in (("train", 64), ("t10k", 16)):
        with gzip.open(root / f"{split}-images-idx3-ubyte.gz", "wb") as f:
            f.write(struct.pack(">IIII", 2049, n, 28, 28) + bytes(n * 784))  # 2049 is the labels' magic
        with gzip.open(root / f"{split}-labels-idx1-ubyte.gz", "wb") as f:
            f.write(struct.pack(">II", 2049, n) + bytes(n))
    r = train("--arch", "lenet5", "--data", "fashion-mnist", "--data-root", str(root), "--wandb", "disabled")
    assert_one_line(r, "train-images-idx3-ubyte.gz", "magic")


class Exploit:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, ("touch pwned",))


def test_malicious_cifar_pickle_is_rejected_unexecuted(train: Callable[..., Outcome], tmp_path: Path) -> None:
    root = tmp_path / "data" / "cifar-10-batches-py"
    root.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (root / name).write_bytes(pickle.dumps({b"data": Exploit(), b"labels": [0]}))
    (root / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"x"] * 10}))
    r = train("--arch", "resnet20", "--data", "cifar10", "--data-root", str(tmp_path / "data"), "--wandb", "disabled")
    assert_one_line(r, "data_batch_1", "system")
    assert not (tmp_path / "pwned").exists()


def test_cifar_pickle_with_wrong_keys(train: Callable[..., Outcome], tmp_path: Path) -> None:
    root = tmp_path / "data" / "cifar-10-batches-py"
    root.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (root / name).write_bytes(pickle.dumps({b"images": np.zeros((10, 3072), np.uint8), b"labels": [0] * 10}))
    (root / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"x"] * 10}))
    r = train("--arch", "resnet20", "--data", "cifar10", "--data-root", str(tmp_path / "data"), "--wandb", "disabled")
    assert_one_line(r, "data_batch_1", "data")


def test_imagenet_without_class_folders(train: Callable[..., Outcome], tmp_path: Path) -> None:
    (tmp_path / "inet" / "train").mkdir(parents=True)
    (tmp_path / "inet" / "val").mkdir()
    r = train("--arch", "resnet18", "--data", "imagenet", "--data-root", str(tmp_path / "inet"), "--wandb", "disabled")
    assert_one_line(r, "class folder")


def test_transfer_from_another_architecture(train: Callable[..., Outcome], tmp_path: Path) -> None:
    ok = train("--arch", "lenet5", *SYNTH)
    assert ok.returncode == 0, ok.stderr[-2000:]
    ckpt = next((tmp_path / "results").glob("lenet5-*/checkpoints/last.ckpt"))
    assert_one_line(
        train("--arch", "vggp4", *SYNTH, "--transfer", "linear-probe", "--from", str(ckpt)),
        "holds a lenet5 checkpoint, not vggp4",
    )
    assert_one_line(
        train("--arch", "lenet5", *SYNTH, "--transfer", "finetune", "--from", str(tmp_path / "nope.ckpt")),
        "no such checkpoint",
    )
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(ckpt.read_bytes()[:-1000])  # a copy that did not finish
    assert_one_line(
        train("--arch", "lenet5", *SYNTH, "--transfer", "finetune", "--from", str(cut)), "cut.ckpt", "truncated"
    )


def test_interrupted_run_is_not_overwritten(train: Callable[..., Outcome], tmp_path: Path) -> None:
    run = tmp_path / "results"
    ok = train("--arch", "lenet5", *SYNTH)
    assert ok.returncode == 0
    result = next(run.glob("lenet5-*/result.json"))
    result.unlink()  # as if the run had been killed after its last checkpoint
    ckpt = result.parent / "checkpoints" / "last.ckpt"
    before = ckpt.read_bytes()
    assert_one_line(train("--arch", "lenet5", *SYNTH), "interrupted run", "--resume")
    assert ckpt.read_bytes() == before
    ckpt.write_bytes(before[: len(before) // 2])  # the node died while the checkpoint was written
    assert_one_line(train("--arch", "lenet5", *SYNTH, "--resume"), "last.ckpt", "truncated")
    assert (
        ckpt.stat().st_size == len(before) // 2 and not result.exists()
    )  # left as it was: nothing decided for the user
    ckpt.write_bytes(before)
    resumed = train("--arch", "lenet5", *SYNTH, "--resume")
    assert resumed.returncode == 0 and result.is_file()


def test_diverged_exit_code(train: Callable[..., Outcome], tmp_path: Path) -> None:
    r = train("--arch", "lenet5", *SYNTH, "--set", "optim.lr=1e12", "--set", "optim.schedule=constant", "--epochs", "2")
    assert r.returncode == 3 and "diverged" in r.stdout
