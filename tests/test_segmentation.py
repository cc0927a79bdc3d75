"""Segmentation end to end: U-Nets trained on real PNG files written here (segfolder) and on the shapes set,
the image and its mask moved together by the augmentation, the valid U-Net's target aligned with its output,
a mid-epoch SIGTERM resume equal to the straight run, the metrics equal to torchmetrics', and every bad
input as one line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch

import architectures
import datamodules
from datamodules.config import AugmentConfig
from datamodules.samples import Samples
from datamodules.segmentation import ArrayPairs, draw_shapes
from datamodules.transforms import Geometry, train_pipeline
from harness.config.train_config import TrainConfig, merge, resolve
from harness.run_record import read_metrics
from harness.training.metrics import SegmentationTotals
from harness.training.module import target_for
from harness.training.preemption import Preempted
from harness.training.run import train
from tests.helpers import in_process
from tests.test_train import TerminatedAt, merged_curve

# the smallest U-Nets: 2 levels of width 4 (unet: 32x32 in, 16x16 out)
TINY = {"levels": 2, "base_width": 4}


def write_pairs(root: Path, n: int, size: int = 32, seed: int = 0) -> None:
    """`n` grey images with a bright square on a dark noisy background, as PNG and JPEG, and their masks
    (class 1 inside the square) as PNG, under root/images and root/masks."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        mask = np.zeros((size, size), np.uint8)
        x, y, side = (int(v) for v in rng.integers(2, size // 2, 3))
        mask[y : y + side, x : x + side] = 1
        image = (40 + 160 * mask + rng.normal(0, 10, mask.shape)).clip(0, 255).astype(np.uint8)
        cv2.imwrite(str(root / "images" / f"{i:03d}.{'png' if i % 2 else 'jpg'}"), image)
        cv2.imwrite(str(root / "masks" / f"{i:03d}.png"), mask)


def test_both_unets_train_on_files_and_record_dice_and_miou(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`convbench train --arch unet_padded --data segfolder` (in this process) and `unet` (valid convs, its
    target the mask's centre) train on PNG/JPEG files written here and record Dice and mIoU."""
    write_pairs(tmp_path / "data", 24)
    common = ["--data", "segfolder", "--data-root", str(tmp_path / "data"), "--results", str(tmp_path / "results")]
    sets = ["data.image_size=32", "data.in_chans=1", "data.batch_size=8", "data.num_workers=0", "trainer.max_steps=3"]
    sets += ["trainer.log_every_n_steps=1", "optim.optimizer=adamw", "optim.lr=0.01", "dice_weight=0.5"]
    for arch in ("unet_padded", "unet"):
        args = [
            "train",
            "--arch",
            arch,
            *common,
            *[f"--set={s}" for s in sets + [f"model.{k}={v}" for k, v in TINY.items()]],
        ]
        code, out, err = in_process(capsys, *args)
        assert code == 0, err
        assert f"{arch}-segfolder" in out and "test Dice" in out and "mIoU" in out, out
    for run in sorted((tmp_path / "results").iterdir()):
        record = record_of(run)
        assert record["global_step"] == 3 and record["status"] == "completed"
        for key in ("val_dice", "val_miou", "test_dice", "test_miou", "test_acc1"):
            assert 0 <= record[key] <= 1, (run.name, key)
        assert record["test_acc5"] is None  # top-5 of a pixel's 2 classes says nothing: not recorded
        epochs = [r for r in read_metrics(run) if r.get("val/miou") is not None]
        assert epochs and {"train/dice", "train/miou", "val/dice"} <= set(epochs[-1])
    valid = next(r for r in (tmp_path / "results").iterdir() if r.name.startswith("unet-"))
    assert record_of(valid)["input_size"] == [1, 32, 32]


def record_of(run: Path) -> dict[str, Any]:
    return json.loads((run / "result.json").read_text())


def test_image_and_mask_stay_aligned_under_flip_and_crop() -> None:
    """An asymmetric mask (an L in the left half) whose image is the mask times 80: after the train
    pipeline's pad, random crop and flip, the image is still exactly the mask times 80, and both flips and
    crop offsets occurred."""
    size = 16
    mask = np.zeros((size, size), np.uint8)
    mask[3:12, 2:5] = 1
    mask[9:12, 2:8] = 2  # the L's foot: an asymmetric shape in the left half
    stored = np.stack([mask * 80, mask], axis=-1)[None]
    augment = AugmentConfig(crop=True, flip=True, normalize=False, crop_padding=3)
    pipeline = train_pipeline(Geometry("small", out=(size, size), native=(size, size)), augment, True, (0,), (1,), 0)
    dataset = ArrayPairs(Samples(stored, np.zeros(1, np.int64)), pipeline, in_chans=1, augment_seed=0)
    flips, shifts = set(), set()
    for epoch in range(24):
        ((image, target),) = dataset.__getitems__([epoch])  # epoch-encoded index: reseeded per epoch
        assert target.dtype == torch.int64 and target.shape == (size, size)
        assert torch.equal((image[0] * 255).round().long(), target * 80)
        foot = (target == 2).nonzero()
        flips.add(bool(foot[:, 1].float().mean() > size / 2))  # the foot in the right half: flipped
        shifts.add((int(foot[:, 0].min()), int(foot[:, 1].min())))
    assert flips == {False, True} and len(shifts) > 4


def test_valid_unet_target_pixels_line_up_with_its_output() -> None:
    """Each output pixel of the valid U-Net is scored against the mask pixel at the centre of its receptive
    field (found from the gradients of that output pixel over random inputs): target_for's centre crop."""
    size = 32
    torch.manual_seed(0)
    net = architectures.create("unet", **TINY)
    coords = torch.arange(size * size).view(1, size, size)  # each mask pixel holds its own position
    for i, j in ((0, 0), (15, 3)):
        support = torch.zeros(size, size, dtype=torch.bool)
        for _ in range(8):
            x = torch.randn(1, 1, size, size, requires_grad=True)
            out = net(x)
            out[0, 0, i, j].backward()
            support |= x.grad[0, 0] != 0
        ys, xs = support.nonzero(as_tuple=True)
        centre = ((ys.min() + ys.max()).item() / 2, (xs.min() + xs.max()).item() / 2)
        row, col = divmod(int(target_for(out, coords)[0, i, j]), size)
        assert out.shape[-2:] == (16, 16)
        assert abs(row - centre[0]) <= 0.5 and abs(col - centre[1]) <= 0.5, ((i, j), (row, col), centre)


def shapes_config(tmp_path: Path, **values: Any) -> TrainConfig:
    """The padded U-Net on 16x16 shapes, 4 steps an epoch, 2 epochs, the step loss at every step; `values` on top."""
    base = {
        "arch": "unet_padded",
        "dataset": "shapes",
        "epochs": 2,
        "model": TINY,
        "results": str(tmp_path / "results"),
        "wandb": {"mode": "disabled"},
        "trainer": {"log_every_n_steps": 1},
        "optim": {"optimizer": "adamw", "lr": 0.01},
        "data": {"image_size": 16, "num_samples": 96, "val_size": 32, "batch_size": 16, "num_workers": 0},
    }
    return resolve([("test", merge(base, values))])


def test_mid_epoch_sigterm_resume_equals_the_straight_run(tmp_path: Path) -> None:
    """A SIGTERM in epoch 2 (4 steps an epoch, at step 6) checkpoints; --resume ends with the straight run's
    per-step curve, train/val/test figures, Dice and mIoU."""
    straight = train(shapes_config(tmp_path / "a"))
    c = shapes_config(tmp_path / "b")
    with pytest.raises(Preempted, match="SIGTERM at step 6"):
        train(c, extra_callbacks=[TerminatedAt(5, then_fail=False)])
    resumed = train(c, resume=True)
    assert resumed.attempts == 2
    keys = ("train_acc1", "train_loss", "val_acc1", "val_dice", "val_miou", "test_acc1", "test_dice", "test_miou")
    for key in (*keys, "global_step"):
        assert getattr(resumed, key) == pytest.approx(getattr(straight, key), rel=1e-6), key
    curve = merged_curve(tmp_path / "b" / "results" / c.run_id())
    assert [s for s, _ in curve] == list(range(8))
    assert curve == merged_curve(tmp_path / "a" / "results" / c.run_id())


def test_totals_equal_torchmetrics_dice_and_mean_iou() -> None:
    """Summed over batches folded two at a time, Dice and mIoU equal torchmetrics' DiceScore (foreground,
    micro) and MeanIoU (per class, then their mean) over the same images, an image without foreground
    included; acc1 is pixel accuracy."""
    from torchmetrics.segmentation import DiceScore, MeanIoU

    torch.manual_seed(0)
    totals = SegmentationTotals(3, fold_every=2)
    dice = DiceScore(3, include_background=False, average="micro", input_format="index")
    miou = MeanIoU(3, include_background=True, per_class=True, input_format="index")
    hits = pixels = 0
    for b in range(5):
        logits, target = torch.randn(4, 3, 8, 8), torch.randint(0, 3, (4, 8, 8))
        target[0] = 0 if b == 0 else target[0]
        totals.update(logits, target, torch.tensor(1.0))
        dice.update(logits.argmax(1), target)
        miou.update(logits.argmax(1), target)
        hits, pixels = hits + int((logits.argmax(1) == target).sum()), pixels + target.numel()
    out = totals.compute()
    assert out["dice"] == pytest.approx(float(dice.compute()), rel=1e-6)
    assert out["miou"] == pytest.approx(float(miou.compute().mean()), rel=1e-6)
    assert out["acc1"] == pytest.approx(hits / pixels) and out["loss"] == pytest.approx(1.0)


def test_shapes_statistics_and_classes() -> None:
    """The shapes set's stated mean and std are its default train images', every class occurs, and its
    images are what its seed draws."""
    dm = datamodules.create("shapes")
    stored = dm._load("train").images
    image = stored[..., 0] / 255
    assert (round(image.mean(), 4), round(image.std(), 4)) == (dm.dataset_mean[0], dm.dataset_std[0])
    assert set(np.unique(stored[..., 1])) == {0, 1, 2}
    assert np.array_equal(stored[0], draw_shapes(np.random.default_rng((0, 0)), 64))


def bad(root: Path, case: str) -> str:
    """Damage a good 4-pair folder one way; the expected message's part."""
    write_pairs(root, 4)
    if case == "image without mask":
        (root / "masks" / "001.png").unlink()
        return "no mask for image " + str(root / "images" / "001.png")
    if case == "mask without image":
        (root / "images" / "002.jpg").unlink()
        return "no image for mask " + str(root / "masks" / "002.png")
    if case == "sizes differ":
        cv2.imwrite(str(root / "masks" / "003.png"), np.zeros((30, 32), np.uint8))
        return f"mask {root / 'masks' / '003.png'} is 32x30 but its image {root / 'images' / '003.png'} is 32x32"
    if case == "value out of range":
        mask = np.zeros((32, 32), np.uint8)
        mask[5, 7] = 255
        cv2.imwrite(str(root / "masks" / "000.png"), mask)
        return f"mask {root / 'masks' / '000.png'} has value 255 at x=7, y=5; accepted: class indices 0..1"
    if case == "colour mask":
        cv2.imwrite(str(root / "masks" / "000.png"), np.zeros((32, 32, 3), np.uint8))
        return "has 3 channels; accepted: a single-channel PNG of class indices"
    assert case == "undecodable image"
    (root / "images" / "001.png").write_bytes(b"not a png")
    return f"cannot decode image {root / 'images' / '001.png'}"


@pytest.mark.parametrize(
    "case",
    [
        "image without mask",
        "mask without image",
        "sizes differ",
        "value out of range",
        "colour mask",
        "undecodable image",
    ],
)
def test_bad_segmentation_files_are_one_line(tmp_path: Path, case: str) -> None:
    expected = bad(tmp_path / "data", case)
    dm = datamodules.create("segfolder", root=str(tmp_path / "data"), image_size=32, val_size=1)
    with pytest.raises(datamodules.DataError) as err:
        dm.setup("fit")
    message = str(err.value)
    assert message.startswith("segfolder: ") and expected in message and "\n" not in message, message


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--arch", "unet_padded", "--data", "synthetic"],
            "unet_padded is a segmentation network but dataset synthetic",
        ),
        (["--arch", "lenet5", "--data", "shapes"], "lenet5 is a classification network but dataset shapes"),
        (["--arch", "unet_padded", "--data", "shapes", "--set", "data.labels_per_class=2"], "shapes: labels_per_class"),
        (["--arch", "unet", "--data", "shapes"], "unet cannot run on shapes images of 1x64x64"),
        (
            ["--arch", "unet_padded", "--data", "shapes", "--set", "data.pipeline=device"],
            "shapes: pipeline='device' augments images alone",
        ),
    ],
)
def test_task_mismatches_exit_2_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], expected: str
) -> None:
    code, _, err = in_process(capsys, "train", *args, "--results", str(tmp_path))
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1, err


def test_no_host_read_in_a_segmentation_step_off_the_logging_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """tests/test_hot_path.py's count for the segmenter: between logging steps (every 5) no step reads a value
    back, step 16 included, where the kept batches' Dice and IoU are folded into the sums."""
    from tests.helpers import READS
    from tests.test_hot_path import EVERY, SyncCounter, steps_with_reads

    # 320 train images: 20 steps; SGD, as there: AdamW reads its step count, a CPU tensor (no device sync), per step
    c = shapes_config(
        tmp_path, epochs=1, optim={"optimizer": "sgd"}, trainer={"log_every_n_steps": EVERY}, data={"num_samples": 352}
    )
    counter = SyncCounter()
    for name in READS:
        monkeypatch.setattr(torch.Tensor, name, counter.count(getattr(torch.Tensor, name), name))
    result = train(c, extra_callbacks=[counter])
    monkeypatch.undo()
    assert result is not None and result.global_step == 20 and result.val_miou is not None
    reads = steps_with_reads(counter)
    assert not {s: n for s, n in reads.items() if s % EVERY}, reads
    assert all(reads.get(step, 0) > 0 for step in range(EVERY, 21, EVERY)), reads
