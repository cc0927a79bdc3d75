"""The two data pipelines on a CUDA GPU, for a machine that has one (written without one: no GPU was lent to
the session that wrote it, so it has not run yet). Training samples a second, bf16-mixed, channels_last,
timed from outside the harness as `side_by_side` times them (two runs of different step budgets, their
difference), both paths alternating in one run:

- resnet20 on CIFAR-sized images (synthetic 3 x 32 x 32, 50,000 of them: held on the GPU on the device path)
  at batch 512, pad-4 crop, flip and noise 0.05 on;
- resnet50 on ImageNet-sized JPEGs (an imagefolder of 2,000 500 x 375 files written first) at batch 128,
  RandomResizedCrop 224 and flip on: decoded and cropped in the workers on both paths.

`python -m tests.benchmarks.gpu_pipelines [--rounds N] [--json FILE]`; expected (an estimate) to take about
6 minutes on one GPU of the H100 class with 16 cores (a timeout of 10 minutes leaves room). The
Albumentations path gets every core but one as DataLoader workers, as does the device path's decoding on
imagefolder.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from tests.benchmarks.side_by_side import train_rate

TRAINER = {"precision": "bf16-mixed", "channels_last": True, "accelerator": "gpu", "devices": 1}
PATHS = ("albumentations", "device")


def write_jpegs(root: Path, classes: int = 10, per_class: int = 200) -> None:
    """Smooth random 500 x 375 photos-to-be (upsampled noise), JPEG quality 90, in class folders."""
    rng = np.random.default_rng(0)
    for c in range(classes):
        folder = root / f"class{c}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            small = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
            cv2.imwrite(str(folder / f"{i}.jpg"), cv2.resize(small, (500, 375)), [cv2.IMWRITE_JPEG_QUALITY, 90])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gpu_pipelines: no CUDA device; this check is for a GPU machine")
    workers = max(1, min(15, len(os.sched_getaffinity(0)) - 1))
    with tempfile.TemporaryDirectory() as tmp:
        photos = Path(tmp) / "photos"
        # in a spawned process: OpenCV's thread pool, once started here, deadlocks the forked DataLoader workers
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            pool.submit(write_jpegs, photos).result()
        cases: dict[str, tuple[str, str, tuple[int, int], dict[str, Any]]] = {
            "resnet20 cifar-sized b512": (
                "resnet20",
                "synthetic",
                (10, 110),
                {
                    "input_size": [3, 32, 32],
                    "num_samples": 50_000,
                    "batch_size": 512,
                    "num_classes": 10,
                    "augment": {"crop": True, "flip": True, "noise_std": 0.05},
                },
            ),  # fmt: skip
            "resnet50 imagenet-sized b128": (
                "resnet50",
                "imagefolder",
                (5, 45),
                {"root": str(photos), "batch_size": 128, "val_size": 200},
            ),
        }
        rates: dict[tuple[str, str], list[float]] = {}
        for r in range(args.rounds):
            for name, (arch, dataset, steps, data) in cases.items():
                for pipeline in PATHS if r % 2 == 0 else PATHS[::-1]:
                    options = {**data, "pipeline": pipeline, "num_workers": workers}
                    start = time.perf_counter()
                    rate = train_rate(Path(tmp), arch, dataset, steps, options, TRAINER)
                    rates.setdefault((name, pipeline), []).append(rate)
                    print(
                        f"round {r + 1}: {name} {pipeline}: {rate:.0f} samples/s ({time.perf_counter() - start:.0f} s)"
                    )
    print(f"\n{torch.cuda.get_device_name()}, {workers} workers; medians over {args.rounds} rounds")
    figures = {}
    for name in cases:
        a, d = (statistics.median(rates[(name, p)]) for p in PATHS)
        figures[name] = {"albumentations": a, "device": d}
        print(f"{name:30} albumentations {a:9.0f}  device {d:9.0f}  device / albumentations {d / a:5.2f}x")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
