"""Harness overhead: what `harness.training.run.train` (Lightning, the module's metrics and logging, the
callbacks, the loggers, checkpoints) costs per training step over a hand-written PyTorch loop doing
the same work: same model, in-memory data and loader, SGD, label smoothing and lr schedule.

Measured from outside both: the wall time of a whole call for E and E + K epochs, so start-up,
profiling, the test pass and teardown cancel and the difference is K epochs of steady training
(with what the harness does per epoch: epoch metrics, checkpoints). The runners take turns,
PAIRS times, in one session at one thread, after one warm-up call of each; within a pair the
short calls run back to back, then the long ones, so the marginals are taken over the same
stretch of a shared machine's noise. A pair's ratio is the hand loop's marginal step time over
the harness's. CPU time (time.process_time, less disturbed by other jobs on a shared machine) is
recorded alongside. For lenet5 a third runner, the hand loop as the smallest LightningModule in a
bare Trainer, shows Lightning's own per-step cost, the floor under the harness's (`make bench` only: a
figure for its JSON, which nothing checks).

Goals (issue 11): lenet5 at batch 32 (a step of a few ms, where per-step Python shows) >= 0.95 and
resnet20 at batch 128 >= 0.99 of the hand loop's rate, as the median of the pairs; they are printed
and kept in the benchmark JSON (`extra_info`). The check fails only when even the best pair is
below a noise margin: a harness that became slower drags every pair down, host noise only some."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

import architectures
from harness.config.train_config import TrainConfig, resolve
from harness.throughput_check.verdict import THREADS
from harness.training.module import lr_factor
from harness.training.run import build_data, load_data, steps_per_epoch, train

E = 1
PAIRS = int(os.environ.get("CONVBENCH_OVERHEAD_PAIRS", "3"))  # `make bench`: 10
FULL = os.environ.get("CONVBENCH_BENCH") == "full"  # `make bench`: also the cases that only confirm the others


@dataclass(frozen=True)
class Case:
    arch: str
    batch: int
    samples: int  # per epoch
    chans: int
    goal: float  # hand-loop rate fraction the harness should reach (issue 11)
    margin: float  # the check fails when the best pair is below this: noise on a shared 2-core machine
    more: int  # K, the epochs the long call adds: a few seconds of steps, well above the calls' noise
    # also time a bare Lightning Trainer (where a step is short enough for its loop to show), under `make bench`
    floor: bool = False
    # `make bench` only: a per-step regression shows far more in lenet5's short steps than in resnet20's long
    # ones, whose few marginal steps the host's noise bounds anyway
    full_only: bool = False


CASES = {
    # the margins catch a regression, not the goal: on this shared 2-core host one pair's ratio moves by
    # +-0.2 between runs (the CPU's own speed varies: CPU-time ratios move with the wall-time ones)
    "lenet5-b32": Case("lenet5", 32, 4096, 1, goal=0.95, margin=0.60, more=3, floor=True),
    "resnet20-b128": Case("resnet20", 128, 512, 3, goal=0.99, margin=0.90, more=2, full_only=True),
}


def config(case: Case, epochs: int, results: Path) -> TrainConfig:
    return resolve(
        [
            (
                "benchmark",
                {
                    "arch": case.arch,
                    "dataset": "synthetic",
                    "epochs": epochs,
                    "results": str(results),
                    "wandb": {"mode": "disabled"},
                    "trainer": {"threads": THREADS},  # the hand loop's thread count
                    "data": {
                        "num_samples": case.samples,
                        "input_size": [case.chans, 32, 32],
                        "batch_size": case.batch,
                        "num_workers": 0,
                        "val_size": 0,
                    },
                },
            )
        ]
    )


class Loop:
    """The work both reference loops do, set up exactly as a user would: the same data module, model,
    optimiser and per-step schedule as the harness builds from the config."""

    def __init__(self, c: TrainConfig) -> None:
        torch.manual_seed(c.seed)
        self.dm = build_data(c)
        load_data(c, self.dm)
        self.model = architectures.create(c.arch, num_classes=self.dm.num_classes, in_chans=self.dm.input_size[0])
        self.c, o = c, c.optim
        self.opt = torch.optim.SGD(
            self.model.parameters(), lr=o.lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=o.weight_decay
        )
        steps = steps_per_epoch(c, self.dm)
        total, warmup = steps * c.epochs, int(o.warmup_epochs * steps)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda step: lr_factor(o, step, total, warmup))

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.model(x), y, label_smoothing=self.c.optim.label_smoothing)


def hand_loop(c: TrainConfig) -> None:
    """What a user would write without convbench or Lightning."""
    w = Loop(c)
    loader = w.dm.train_dataloader()
    w.model.train()
    for epoch in range(c.epochs):
        loader.sampler.set_epoch(epoch)
        for x, y in loader:
            loss = w.loss(x, y)
            w.opt.zero_grad(set_to_none=True)
            loss.backward()
            w.opt.step()
            w.sched.step()


class LightningLoop(pl.LightningModule):
    """The hand loop as the smallest LightningModule, in a Trainer with no callbacks, loggers or
    checkpoints: Lightning's own per-step cost, the floor under the harness's."""

    def __init__(self, w: Loop) -> None:
        super().__init__()
        self.w, self.model = w, w.model

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self.w.loss(*batch)

    def configure_optimizers(self) -> Any:
        return {"optimizer": self.w.opt, "lr_scheduler": {"scheduler": self.w.sched, "interval": "step"}}


def lightning_loop(c: TrainConfig) -> None:
    w = Loop(c)
    trainer = pl.Trainer(
        max_epochs=c.epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,
    )
    trainer.fit(LightningLoop(w), train_dataloaders=w.dm.train_dataloader())


def timed(run: Callable[[], object]) -> tuple[float, float]:
    """(wall, CPU) seconds of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=pytest.mark.skipif(case.full_only and not FULL, reason="make bench only"))
        for name, case in CASES.items()
    ],
)
def test_harness_step_vs_hand_loop(name: str, tmp_path: Path, benchmark, one_thread: None) -> None:  # type: ignore[no-untyped-def]
    case = CASES[name]
    floor = case.floor and FULL
    runners: dict[str, Callable[[int, Path], object]] = {
        "hand": lambda epochs, d: hand_loop(config(case, epochs, d)),
        **({"lightning": lambda epochs, d: lightning_loop(config(case, epochs, d))} if floor else {}),
        "harness": lambda epochs, d: train(config(case, epochs, d)),
    }
    K = case.more
    steps = K * -(-case.samples // case.batch)
    for who in runners:  # first-call costs (lazy imports, the allocator's first blocks) stay out of pair 0
        runners[who](E, tmp_path / f"{who}-warm-up")
    step_s: dict[str, list[tuple[float, float]]] = {who: [] for who in runners}  # marginal (wall, CPU) s per step
    for i in range(PAIRS):
        order = list(runners) if i % 2 == 0 else list(runners)[::-1]
        calls = {}
        for epochs in (E, E + K):  # the short calls, then the long ones: the marginals span the same minute
            for who in order:
                calls[who, epochs] = timed(lambda: runners[who](epochs, tmp_path / f"{who}{i}-{epochs}"))
        for who in order:
            (short_wall, short_cpu), (long_wall, long_cpu) = calls[who, E], calls[who, E + K]
            step_s[who].append(((long_wall - short_wall) / steps, (long_cpu - short_cpu) / steps))
    hand, harness = step_s["hand"], step_s["harness"]
    ratios = [h[0] / x[0] for h, x in zip(hand, harness)]
    cpu_ratios = [h[1] / x[1] for h, x in zip(hand, harness)]
    overhead_us = [1e6 * (x[0] - h[0]) for h, x in zip(hand, harness)]
    ratio, overhead = median(ratios), median(overhead_us)
    hand_ms = 1e3 * median(h[0] for h in hand)
    benchmark.extra_info.update(
        harness_over_hand_loop=ratio,
        pairs=ratios,
        goal=case.goal,
        cpu_time_ratio=median(cpu_ratios),
        cpu_time_pairs=cpu_ratios,
        overhead_us_per_step=overhead,
        overhead_us_pairs=overhead_us,
        hand_loop_ms_per_step=hand_ms,
    )
    figures = lambda values, fmt: ", ".join(format(v, fmt) for v in values)  # noqa: E731
    line = (
        f"\n{name}: convbench train / hand loop {ratio:.3f} (goal >= {case.goal}; pairs {figures(ratios, '.3f')}), "
        f"CPU time {median(cpu_ratios):.3f} ({figures(cpu_ratios, '.3f')}); overhead {overhead:.0f} us/step "
        f"({figures(overhead_us, '.0f')}) on a {hand_ms:.2f} ms hand-loop step"
    )
    if floor:
        bare = step_s["lightning"]
        floor_ratios = [h[0] / f[0] for h, f in zip(hand, bare)]
        over_lightning_us = [1e6 * (x[0] - f[0]) for f, x in zip(bare, harness)]
        benchmark.extra_info.update(
            lightning_over_hand_loop=median(floor_ratios),
            lightning_pairs=floor_ratios,
            overhead_over_lightning_us_per_step=median(over_lightning_us),
            overhead_over_lightning_us_pairs=over_lightning_us,
        )
        line += (
            f"; a bare Lightning Trainer / hand loop {median(floor_ratios):.3f} ({figures(floor_ratios, '.3f')}), "
            f"the harness {median(over_lightning_us):.0f} us/step over it ({figures(over_lightning_us, '.0f')})"
        )
    benchmark.pedantic(lambda: None, rounds=1)  # the figures are the ones above, kept in the JSON
    print(line)
    assert max(ratios) >= case.margin, (
        f"harness overhead too high: at best {max(ratios):.3f} of a hand-written loop's rate "
        f"(median {ratio:.3f}, goal {case.goal})"
    )
