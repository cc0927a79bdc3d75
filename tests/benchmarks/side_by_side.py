"""The two data pipelines side by side, in one run, alternating, timed from outside the harness: training
samples a second of lenet5 at batch 32 and resnet20 at batch 128 on the real Fashion-MNIST with every
augmentation stage on (pad-4 crop, flip, noise 0.1, normalisation), and the data path alone, per path.

`python -m tests.benchmarks.side_by_side [--rounds N] [--json FILE]` (`make bench-pipelines`). A rate is the
wall-clock difference of two `train(config)` runs of `short` and `long` optimiser steps (everything else
they do, set-up, loading, the test pass, is the same in both and cancels): (long - short) x batch / (t_long -
t_short). Both paths train on one torch thread; the Albumentations path in this process (0 workers, its
whole cost in the step) and with one DataLoader worker on the other core. Rounds alternate the paths' order,
and the medians over rounds are printed with the data path's share of a step (its ms a batch alone, timed
the same way: one batch fetched, and augmented on the device, as the step receives it; also with
Fashion-MNIST's default augmentation, normalisation only, as its studies train). Figures go in the
README ("Choosing the data pipeline"); nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

import datamodules
from harness.config.train_config import resolve
from harness.training.run import train

FASHION = "/usr/share/datasets/fashion-mnist"
AUGMENT = {"crop": True, "flip": True, "noise_std": 0.1}
# (arch, batch, short, long): the step budgets of the two timed runs
MODELS = [("lenet5", 32, 40, 440), ("resnet20", 128, 5, 35)]
# name -> (data.pipeline, data.num_workers)
PATHS = {
    "albumentations-0w": ("albumentations", 0),
    "albumentations-1w": ("albumentations", 1),
    "device": ("device", 0),
}
DATA_BATCHES = 200


@dataclass
class Row:
    arch: str
    batch: int
    path: str
    train_samples_per_s: float
    data_ms_per_batch: float
    step_ms: float
    data_share: float
    data_ms_default_augment: float


def timed_run(
    results: Path, arch: str, dataset: str, steps: int, data: dict[str, Any], trainer: dict[str, Any]
) -> float:
    """Seconds of wall clock for one whole `train(config)` of `steps` optimiser steps."""
    config = resolve(
        [
            (
                "side-by-side",
                {
                    "arch": arch,
                    "dataset": dataset,
                    "results": str(results / f"{arch}-{steps}-{time.monotonic_ns()}"),
                    "wandb": {"mode": "disabled"},
                    "trainer": {"max_steps": steps, "log_every_n_steps": 50, **trainer},
                    "data": {"val_size": 0, **data},
                },
            )
        ]
    )
    start = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        train(config)
    return time.perf_counter() - start


def train_rate(
    results: Path,
    arch: str,
    dataset: str,
    steps: tuple[int, int],
    data: dict[str, Any],
    trainer: dict[str, Any] | None = None,
) -> float:
    """Training samples a second: the difference of a run of `steps[1]` and one of `steps[0]` steps."""
    short, long = steps
    t_short = timed_run(results, arch, dataset, short, data, trainer or {})
    t_long = timed_run(results, arch, dataset, long, data, trainer or {})
    return (long - short) * data["batch_size"] / (t_long - t_short)


def data_ms(batch: int, path: str, augment: dict[str, object]) -> float:
    """ms a batch of the data path alone, in this process on one thread: the loader's next batch and the
    device pipeline's batch transform (on the CPU here), 0 workers on both paths; Fashion-MNIST zero-padded
    to 32 x 32 as the nets receive it."""
    pipeline, _ = PATHS[path]
    dm = datamodules.create(
        "fashion-mnist",
        root=FASHION,
        batch_size=batch,
        num_workers=0,
        pipeline=pipeline,
        augment=augment,
        image_size=32,
    )
    batches = iter(dm.train_dataloader())
    for _ in range(10):
        dm.on_after_batch_transfer(next(batches), 0)
    start = time.perf_counter()
    for _ in range(DATA_BATCHES):
        dm.on_after_batch_transfer(next(batches), 0)
    return (time.perf_counter() - start) / DATA_BATCHES * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rates: dict[tuple[str, str], list[float]] = {}
    datas: dict[tuple[int, str, bool], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = list(PATHS) if r % 2 == 0 else list(reversed(PATHS))
            for arch, batch, short, long in MODELS:
                for path in order:
                    pipeline, workers = PATHS[path]
                    data = {"root": FASHION, "batch_size": batch, "num_workers": workers, "pipeline": pipeline}
                    data["augment"] = AUGMENT
                    rate = train_rate(Path(tmp), arch, "fashion-mnist", (short, long), data, {"threads": 1})
                    rates.setdefault((arch, path), []).append(rate)
                    print(f"round {r + 1}: {arch} b{batch} {path}: {rate:.0f} samples/s", flush=True)
            for batch in sorted({b for _, b, _, _ in MODELS}):
                for path in order:
                    if path != "albumentations-1w":  # the same in-process cost as 0 workers
                        for full, augment in ((True, AUGMENT), (False, {})):  # {}: Fashion-MNIST's default
                            datas.setdefault((batch, path, full), []).append(data_ms(batch, path, augment))
    rows = []
    for arch, batch, _, _ in MODELS:
        for path in PATHS:
            rate = statistics.median(rates[(arch, path)])
            timed = path if path != "albumentations-1w" else "albumentations-0w"
            data, default = (statistics.median(datas[(batch, timed, full)]) for full in (True, False))
            step = batch / rate * 1e3
            rows.append(Row(arch, batch, path, rate, data, step, data / step, default))
    print(
        f"\n{'arch':9} {'batch':>5} {'path':18} {'train samples/s':>15} {'step ms':>8} {'data ms':>8} {'data/step':>9}"
        f" {'data ms, default augment':>24}"
    )
    for row in rows:
        print(
            f"{row.arch:9} {row.batch:5} {row.path:18} {row.train_samples_per_s:15.0f} {row.step_ms:8.2f}"
            f" {row.data_ms_per_batch:8.2f} {row.data_share:9.1%} {row.data_ms_default_augment:24.2f}"
        )
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1) + "\n")


if __name__ == "__main__":
    main()
