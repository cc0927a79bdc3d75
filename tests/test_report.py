"""`convbench report`: aggregation (mean ± std over seeds, checked against numbers computed by hand),
runs.json, the charts, W&B offline/disabled, error messages, and a report over two real runs."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from harness.config.train_config import resolve
from harness.report.collect import read_curve
from harness.wandb_run import WandbFile
from tests.helpers import REPO, assert_names_this_machine, convbench, in_process

PNG = b"\x89PNG\r\n\x1a\n"

# arch -> (family, depth, residual, params, macs, samples/s, peak bytes)
ARCHS = {
    "plain20": ("resnet_cifar", 20, False, 269_722, 40_551_040, 900.0, 300 * 2**20),
    "plain56": ("resnet_cifar", 56, False, 853_018, 125_485_312, 320.0, 700 * 2**20),
    "resnet20": ("resnet_cifar", 20, True, 269_722, 40_551_040, 880.0, 310 * 2**20),
    "resnet56": ("resnet_cifar", 56, True, 853_018, 125_485_312, 310.0, 720 * 2**20),
    "vgg11": ("vgg", 11, False, 9_231_114, 153_000_000, 500.0, 500 * 2**20),
    "vgg16": ("vgg", 16, False, 14_728_266, 313_000_000, 300.0, 600 * 2**20),
    "vggp4": ("vgg_pattern", 4, False, 24_458, 2_800_000, 3000.0, 300 * 2**20),
    "vggp13": ("vgg_pattern", 13, False, 170_618, 24_000_000, 1200.0, 350 * 2**20),
    "vggp25": ("vgg_pattern", 25, False, 365_498, 52_300_000, 600.0, 400 * 2**20),
}


def write_run(
    root: Path,
    arch: str,
    seed: int,
    test_acc1: float | None,
    train_acc1: float | None,
    train_loss: float | None,
    status: str = "completed",
    dataset: str = "cifar10",
    transfer: str = "scratch",
    lpc: int | None = None,
    lr: float | None = None,
    epochs: int = 3,
    wall: float = 100.0,
    group: str | None = "study",
    classes: list[int] | None = None,
    devices: int = 1,
    extra: dict[str, Any] | None = None,
) -> Path:
    """A result.json in the real format (config resolved by harness.config.train_config) and a metrics.csv."""
    values: dict[str, Any] = {
        "arch": arch,
        "dataset": dataset,
        "epochs": epochs,
        "seed": seed,
        "results": str(root),
        "wandb": {"mode": "disabled", "group": group},
        "data": {"num_workers": 2},
        **(extra or {}),
    }
    if lpc is not None:
        values["data"]["labels_per_class"] = lpc
    if classes is not None:
        values["data"]["classes"] = classes
    if lr is not None:
        values["optim"] = {"lr": lr}
    if devices > 1:
        values["trainer"] = {"devices": devices}
    if transfer != "scratch":
        values["transfer"] = {"mode": transfer, "checkpoint": f"/ckpts/{arch}-s{seed}/best.ckpt"}
    config = resolve([("test", values)])
    family, depth, residual, params, macs, speed, peak = ARCHS[arch]
    run_id = config.run_id()
    run = root / run_id
    run.mkdir(parents=True)
    result = {
        "run_id": run_id,
        "arch": arch,
        "family": family,
        "residual": residual,
        "dataset": dataset,
        "depth": depth,
        "params": params,
        "macs": macs,
        "input_size": [3, 32, 32],
        "seed": seed,
        "recipe": config.recipe,
        "transfer": transfer,
        "epochs": epochs,
        "epochs_completed": epochs,
        "global_step": 30,
        "status": status,
        "train_acc1": train_acc1,
        "train_loss": train_loss,
        "val_acc1": None,
        "val_loss": None,
        "test_acc1": test_acc1,
        "test_acc5": None if test_acc1 is None else min(1.0, test_acc1 + 0.2),
        "test_loss": 1.0,
        "train_samples_per_s": devices * speed + seed,
        "eval_samples_per_s": 2 * speed,
        "peak_memory_bytes": peak,
        "device": "cpu",
        "world_size": devices,
        "wall_time_s": wall,
        "diverged_at_step": 12 if status == "diverged" else None,
        "error": "RuntimeError: out of memory\nmore" if status == "failed" else None,
        "config": config.to_dict(),
        "versions": {"python": "3.11"},
        "host": "test",
        "argv": ["convbench", "train"],
    }
    (run / "result.json").write_text(json.dumps(result, indent=1))
    if train_acc1 is not None:  # per-step loss every 5 steps and per-epoch train metrics, as CSVLogger writes them
        v0 = run / "metrics" / "version_0"
        v0.mkdir(parents=True)
        with (v0 / "metrics.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["epoch", "step", "train/loss_step", "train/acc1", "train/loss", "time/elapsed_s", "test/acc1"])
            for epoch in range(epochs):
                acc = train_acc1 * (epoch + 1) / epochs
                for step in range(epoch * 10 + 4, epoch * 10 + 10, 5):
                    w.writerow([epoch, step, 2.3 - acc, "", "", "", ""])
                w.writerow([epoch, epoch * 10 + 9, "", acc, 2.3 - acc, (epoch + 1) * wall / (epochs + 1), ""])
            w.writerow([epochs, epochs * 10, "", "", "", "", test_acc1])
    return run


# test top-1 / train top-1 / train loss per seed of the main study (cifar10, from scratch, 3 epochs)
STUDY = {
    "plain20": [(0.80, 0.90, 0.30), (0.82, 0.92, 0.28), (0.84, 0.94, 0.26)],
    "plain56": [(0.76, 0.85, 0.45), (0.78, 0.87, 0.43)],
    "resnet20": [(0.81, 0.91, 0.29), (0.83, 0.93, 0.27), (0.85, 0.95, 0.25)],
    "resnet56": [(0.86, 0.97, 0.12), (0.88, 0.99, 0.10)],
    "vgg11": [(0.70, 0.80, 0.60)],
    "vgg16": [(0.72, 0.82, 0.58), (0.74, 0.84, 0.56)],
}
# (labels/class, mode) -> test top-1 of seeds 0 and 1: resnet20 transferred to cifar100
TRANSFER = {
    (10, "scratch"): (0.10, 0.12),
    (10, "linear-probe"): (0.30, 0.34),
    (10, "finetune"): (0.40, 0.42),
    (100, "scratch"): (0.30, 0.32),
    (100, "linear-probe"): (0.45, 0.47),
    (100, "finetune"): (0.55, 0.59),
}


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("results")
    for arch, seeds in STUDY.items():
        for seed, (test, train, loss) in enumerate(seeds):
            write_run(root, arch, seed, test, train, loss)
    write_run(root, "resnet56", 2, None, None, None, status="failed")
    write_run(root, "plain56", 2, None, 0.1, float("nan"), status="diverged")
    write_run(root, "resnet20", 0, 0.60, 0.70, 0.9, lr=0.01)  # another learning rate: its own row
    for (lpc, mode), accs in TRANSFER.items():
        for seed, acc in enumerate(accs):
            write_run(
                root / "transfer",
                "resnet20",
                seed,
                acc,
                acc + 0.1,
                1.5,
                dataset="cifar100",
                transfer=mode,
                lpc=lpc,
                epochs=2,
            )
    return root


@pytest.fixture(scope="module")
def report(tree: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("out")
    p = convbench("report", tree, "--out", out, env={"MPLBACKEND": "Agg", "WANDB_SILENT": "true"})
    assert p.returncode == 0, p.stderr
    return out, p.stdout


def md_rows(text: str) -> list[dict[str, str]]:
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split(" | ")]
    rows = []
    for line in lines[1:]:
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if len(cells) == len(header):
            rows.append(dict(zip(header, cells)))
    return rows


def test_markdown_rows_are_means_and_stds_over_seeds(report: tuple[Path, str]) -> None:
    out, stdout = report
    text = (out / "report.md").read_text()
    rows = [r for r in md_rows(text) if "arch" in r]
    study = [r for r in rows if r["dataset"] == "cifar10"]
    # sorted by family then depth (plain before residual at a depth); the lr=0.01 resnet20 is its own row
    assert [(r["arch"], r["variant"]) for r in study] == [
        ("plain20", "–"),
        ("resnet20", "optim.lr=0.01"),
        ("resnet20", "optim.lr=0.1"),
        ("plain56", "–"),
        ("resnet56", "–"),
        ("vgg11", "–"),
        ("vgg16", "–"),
    ]
    by = {(r["arch"], r["variant"]): r for r in study}
    # by hand: plain20 test top-1 80, 82, 84 -> 82.00 ± 2.00 (sample std); train loss .30 .28 .26 -> 0.2800 ± 0.0200
    p20 = by["plain20", "–"]
    assert (p20["n"], p20["test top-1 %"], p20["train top-1 %"], p20["train loss"]) == (
        "3",
        "82.00 ± 2.00",
        "92.00 ± 2.00",
        "0.2800 ± 0.0200",
    )
    assert p20["test top-5 %"] == "100.00 ± 0.00" and p20["type"] == "plain" and p20["depth"] == "20"
    assert (p20["params"], p20["MACs"], p20["samples/s"], p20["peak MiB"], p20["wall s"]) == (
        "269.72K",
        "40.55M",
        "901",
        "300",
        "100.0",
    )
    # resnet56: the failed seed is not aggregated; 86, 88 -> 87.00 ± 1.41; loss .12 .10 -> 0.1100 ± 0.0141
    r56 = by["resnet56", "–"]
    assert (r56["n"], r56["test top-1 %"], r56["train loss"], r56["type"]) == (
        "2",
        "87.00 ± 1.41",
        "0.1100 ± 0.0141",
        "residual",
    )
    # plain56: the diverged seed is left out too; one-seed rows have no ±
    assert by["plain56", "–"]["test top-1 %"] == "77.00 ± 1.41"
    assert (by["vgg11", "–"]["n"], by["vgg11", "–"]["test top-1 %"]) == ("1", "70.00")
    # the transfer rows: one per mode and labels/class budget
    transfer = [(r["transfer"], r["labels/class"], r["test top-1 %"]) for r in rows if r["dataset"] == "cifar100"]
    assert transfer == [
        ("scratch", "10", "11.00 ± 1.41"),
        ("scratch", "100", "31.00 ± 1.41"),
        ("linear-probe", "10", "32.00 ± 2.83"),
        ("linear-probe", "100", "46.00 ± 1.41"),
        ("finetune", "10", "41.00 ± 1.41"),
        ("finetune", "100", "57.00 ± 2.83"),
    ]
    assert "28 runs: 26 completed, 1 diverged, 1 failed" in text and "RuntimeError: out of memory |" in text
    assert "| plain20 | resnet_cifar | 20 | plain |" in stdout and str(out / "report.md") in stdout
    assert "chart accuracy_vs_depth_cifar100 not drawn: no from-scratch full-label runs on cifar100" in stdout


def test_report_and_runs_json(tree: Path, report: tuple[Path, str]) -> None:
    out, _ = report
    rep = json.loads((out / "report.json").read_text())
    assert rep["status_counts"] == {"completed": 26, "diverged": 1, "failed": 1}
    r56 = next(r for r in rep["rows"] if r["arch"] == "resnet56")
    assert r56["n"] == 2 and r56["seeds"] == [0, 1] and r56["not_completed"] == {"failed": 1}
    assert r56["test_acc1"]["mean"] == pytest.approx(0.87) and r56["test_acc1"]["std"] == pytest.approx(0.02**0.5 / 10)
    assert next(r for r in rep["rows"] if r["arch"] == "vgg11")["test_acc1"] == {"mean": 0.70, "std": None, "n": 1}
    runs = json.loads((out / "runs.json").read_text())
    assert len(runs) == 28 and len({r["run_id"] for r in runs}) == 28
    keys = {
        "run_id",
        "arch",
        "depth",
        "residual",
        "seed",
        "train_loss",
        "train_acc1",
        "test_acc1",
        "train_samples_per_s",
        "peak_memory_mib",
        "wall_time_s",
        "status",
    }
    assert all(keys <= set(r) for r in runs)
    diverged = next(r for r in runs if r["status"] == "diverged")
    assert diverged["arch"] == "plain56" and diverged["train_loss"] is None  # NaN is not valid JSON: null
    failed = next(r for r in runs if r["status"] == "failed")
    assert (failed["arch"], failed["seed"], failed["error"], failed["test_acc1"]) == (
        "resnet56",
        2,
        "RuntimeError: out of memory",
        None,
    )
    p20 = [r for r in runs if r["arch"] == "plain20"]
    assert [(r["seed"], r["test_acc1"], r["train_acc1"], r["train_loss"], r["peak_memory_mib"]) for r in p20] == [
        (0, 0.80, 0.90, 0.30, 300.0),
        (1, 0.82, 0.92, 0.28, 300.0),
        (2, 0.84, 0.94, 0.26, 300.0),
    ]
    assert (tree / p20[0]["path"] / "result.json").is_file()


def test_findings_state_degradation_and_the_transfer_winner(report: tuple[Path, str]) -> None:
    out, _ = report
    text = (out / "report.md").read_text()
    # by hand: train top-1 plain20 90/92/94 -> error 8.00, plain56 85/87 -> 14.00 (+6.00); resnet20 (lr 0.1) 91/93/95
    # -> 7.00, resnet56 97/99 -> 2.00; the lr=0.01 resnet20 is not the study's configuration and stays out
    assert "| 20 | plain20 | 8.00 ± 2.00 | resnet20 | 7.00 ± 2.00 | 18.00 ± 2.00 | 17.00 ± 2.00 |" in text
    assert "| 56 | plain56 | 14.00 ± 1.41 | resnet56 | 2.00 ± 1.41 | 23.00 ± 1.41 | 13.00 ± 1.41 |" in text
    assert (
        "training error 8.00% at depth 20 -> 14.00% at depth 56 (+6.00 points from depth 20, seeds' spread 2.00): it "
        "rises with depth: degradation reproduced"
    ) in text
    assert (
        "every deeper net trains at least as well as each shallower one within the seeds' spread (worst pair: depth 56 "
        "vs 20, -5.00 points of training error, spread 2.00)"
    ) in text
    # vgg: plain only, one seed at depth 11 (error 20) and two at 16 (17 ± 1.41): no residual verdict
    assert (
        "training error 20.00% at depth 11 -> 17.00% at depth 16 (-3.00 points from depth 11, seeds' spread 1.41): it "
        "does not rise" in text
    )
    # transfer: finetune 41 vs linear probe 32 at 10 labels (+9.00), 57 vs 46 at 100 (+11.00)
    # and each mode over scratch (the seeds' table): linear probe +21 and +15, finetune +30 and +26
    assert (
        "| resnet20 | cifar100 | 10 | 11.00 ± 1.41 | 32.00 ± 2.83 | 41.00 ± 1.41 | +21.00 | +30.00 | finetune | +9.00 |"
        in text
    )
    assert (
        "| resnet20 | cifar100 | 100 | 31.00 ± 1.41 | 46.00 ± 1.41 | 57.00 ± 2.83 | +15.00 | +26.00 | finetune | "
        "+11.00 |" in text
    )
    assert (
        "- resnet20 on cifar100 (labels/class 10, 100): linear probe over scratch +21.00, +15.00; finetune over linear "
        "probe +9.00, +11.00; at 10 labels/class finetune over scratch +30.00 points."
    ) in text
    found = json.loads((out / "report.json").read_text())["findings"]
    deg, vgg = found["degradation"]
    assert deg["plain"]["rise"] == pytest.approx(6.0) and deg["residual"]["rise"] == pytest.approx(-5.0)
    assert deg["residual"]["spread"] == pytest.approx(2.0) and vgg["residual"] is None
    assert [(f["labels_per_class"], f["winner"]) for f in found["transfer"]] == [(10, "finetune"), (100, "finetune")]


def test_budget_along_the_curves_and_variants_against_the_defaults(tmp_path: Path) -> None:
    """Train top-1 grows linearly over 3 epochs of 10 steps (write_run), so the training error at step 10e
    is 1 - acc * e / 3. Paper init: resnet56 ends at 15% against resnet20's 9%, never better. Zero-init
    residual branches: resnet56 at 4%, below resnet20 at every step, and plain56 above plain20 at every
    step: the ordering holds from step 10. bf16 resnet20 trains 1 point better, within the spread (1.41)."""
    from harness.report import build

    zero = {"model": {"zero_init_residual": True}}
    for arch, accs, extra in (
        ("plain20", (0.88, 0.90), None),
        ("plain56", (0.70, 0.72), None),
        ("resnet20", (0.90, 0.92), None),
        ("resnet56", (0.84, 0.86), None),
        ("resnet20", (0.90, 0.92), zero),
        ("resnet56", (0.95, 0.97), zero),
        ("resnet20", (0.91, 0.93), {"trainer": {"precision": "bf16-mixed"}}),
    ):
        for seed, acc in enumerate(accs):
            write_run(tmp_path / ("variant" if extra else "study"), arch, seed, acc - 0.05, acc, 0.3, extra=extra)
    rep = build([tmp_path / "study", tmp_path / "variant"], tmp_path / "out", charts=False)
    assert len(rep.runs) == 14 and rep.source == f"{tmp_path / 'study'}, {tmp_path / 'variant'}"
    text = (tmp_path / "out" / "report.md").read_text()
    paper, zero_init = rep.findings["budget"]
    assert (paper["variant"], paper["holds_from"], paper["holds_at"], paper["steps"]) == ("", None, [], 30)
    assert paper["end"]["worst"] == (20, 56, pytest.approx(6.0), pytest.approx(1.41, abs=0.01))
    assert (zero_init["variant"], zero_init["holds_from"], zero_init["holds_at"]) == (
        "model.zero_init_residual=True",
        10,
        [10, 20, 30],
    )
    assert (
        "does not hold at the last step all the curves logged (step 30). At step 30: worst residual pair depth 56 vs "
        "20, +6.00 points" in text
    )
    assert (
        "(model.zero_init_residual=True): training error resnet20 >= resnet56 (within the seeds' spread), with the "
        "deepest plain net worse than the shallowest, holds from step 10 of 30 on." in text
    )
    found = {(f["arch"], f["variant"]): f for f in rep.findings["variants"]}
    assert set(found) == {
        ("resnet20", "model.zero_init_residual=True"),
        ("resnet56", "model.zero_init_residual=True"),
        ("resnet20", "trainer.precision=bf16-mixed"),
    }
    bf16 = found[("resnet20", "trainer.precision=bf16-mixed")]
    assert (bf16["rise"], bf16["within_spread"]) == (pytest.approx(-1.0), True)
    assert found[("resnet56", "model.zero_init_residual=True")]["rise"] == pytest.approx(-11.0)
    assert (
        "| resnet56 | cifar10 | model.zero_init_residual=True | 4.00 | 15.00 | -11.00 | 1.41 | "
        "lower, beyond the spread |" in text
    )


def test_findings_say_so_when_degradation_is_not_reproduced(tmp_path: Path) -> None:
    from harness.report import build

    # two seeds each: plain56 rises by 1 point, within its 1.41-point spread; resnet56 worse than resnet20
    # by 3 (spread 1.41)
    for arch, trains in (
        ("plain20", (0.90, 0.90)),
        ("plain56", (0.88, 0.90)),
        ("resnet20", (0.96, 0.96)),
        ("resnet56", (0.92, 0.94)),
    ):
        for seed, train in enumerate(trains):
            write_run(tmp_path / "runs", arch, seed, train - 0.05, train, 0.2)
    text = (build(tmp_path / "runs", tmp_path / "out", charts=False).out / "report.md").read_text()
    assert (
        "(+1.00 points from depth 20, seeds' spread 1.41): it does not rise with depth beyond the seeds' spread: "
        "degradation not reproduced" in text
    )
    assert (
        "not every deeper net trains at least as well as each shallower one within the seeds' spread (worst pair: "
        "depth 56 vs 20, +3.00 points of training error, spread 1.41)" in text
    )


def test_a_residual_only_ladder_gets_its_verdict(tmp_path: Path) -> None:
    """A longer-budget sweep of the residual nets alone (no plain twins) still says whether every
    residual net trains at least as well as each shallower one."""
    from harness.report import build

    for arch, trains in (("resnet20", (0.95, 0.95)), ("resnet56", (0.93, 0.93))):
        for seed, train in enumerate(trains):
            write_run(tmp_path / "runs", arch, seed, train - 0.05, train, 0.2)
    rep = build(tmp_path / "runs", tmp_path / "out", charts=True)
    assert {"degradation_vs_depth", "training_curves"} <= set(rep.charts)  # one panel: residual nets only
    (f,) = json.loads((rep.out / "report.json").read_text())["findings"]["degradation"]
    assert f["plain"] is None and f["residual"]["rise"] == pytest.approx(2.0)
    text = (rep.out / "report.md").read_text()
    assert "Plain nets" not in text
    assert (
        "not every deeper net trains at least as well as each shallower one within the seeds' spread (worst pair: "
        "depth 56 vs 20, +2.00 points of training error, spread 0.00)" in text
    )


def test_degradation_past_the_best_depth(tmp_path: Path) -> None:
    """A ladder that first improves with depth and then degrades (the VGG pattern at a short budget): the
    deepest net is compared with the best shallower one, not with the shallowest."""
    from harness.report import build

    for arch, trains in (("vggp4", (0.83, 0.84)), ("vggp13", (0.88, 0.88)), ("vggp25", (0.83, 0.85))):
        for seed, train in enumerate(trains):
            write_run(tmp_path / "runs", arch, seed, train - 0.05, train, 0.2)
    rep = build(tmp_path / "runs", tmp_path / "out", charts=False)
    text = (rep.out / "report.md").read_text()
    assert (
        "training error 16.50% at depth 4 -> 12.00% at depth 13 (the lowest) -> 16.00% at depth 25 (+4.00 points from "
        "depth 13, seeds' spread 1.41): it rises past depth 13: degradation reproduced"
    ) in text
    (vgg,) = json.loads((rep.out / "report.json").read_text())["findings"]["degradation"]
    assert (vgg["plain"]["shallow"], vgg["plain"]["best"], vgg["plain"]["deep"]) == (4, 13, 25)


def test_a_class_subset_is_its_own_task(tmp_path: Path) -> None:
    """Pretraining on classes 0-4 and learning 5-9 from few labels are different tasks: the pretrain
    run is not the transfer comparison's full-label bar, and each task gets its own row and charts."""
    from harness.report import build

    for seed in (0, 1):
        write_run(tmp_path / "runs", "resnet20", seed, 0.90, 0.95, 0.2, classes=[0, 1, 2, 3, 4])
        for mode, acc10, acc100 in (("scratch", 0.30, 0.50), ("finetune", 0.50, 0.505)):
            for lpc, acc in ((10, acc10), (100, acc100)):
                write_run(
                    tmp_path / "runs",
                    "resnet20",
                    seed,
                    acc + seed / 100,
                    acc,
                    1.0,
                    transfer=mode,
                    lpc=lpc,
                    classes=[5, 6, 7, 8, 9],
                )
    rep = build(tmp_path / "runs", tmp_path / "out", charts=True)
    tasks = {(r["task"], r["transfer"], r["labels_per_class"]) for r in rep.rows}
    assert tasks == {
        ("cifar10 classes 0-4", "scratch", None),
        ("cifar10 classes 5-9", "scratch", 10),
        ("cifar10 classes 5-9", "finetune", 10),
        ("cifar10 classes 5-9", "scratch", 100),
        ("cifar10 classes 5-9", "finetune", 100),
    }
    cell, close = json.loads((rep.out / "report.json").read_text())["findings"]["transfer"]
    assert (cell["labels_per_class"], cell["winner"], sorted(cell["test_acc1"])) == (
        10,
        "finetune",
        ["finetune", "scratch"],
    )
    text = (rep.out / "report.md").read_text()
    assert "| resnet20 | cifar10 classes 5-9 | 10 | 30.50 ± 0.71 | 50.50 ± 0.71 | +20.00 | finetune | +20.00 |" in text
    assert cell["spread"] == pytest.approx(0.71, abs=0.01)
    # at 100 labels finetune leads by half a point, less than the seeds' 0.71
    assert (
        "| resnet20 | cifar10 classes 5-9 | 100 | 50.50 ± 0.71 | 51.00 ± 0.71 | +0.50~ | finetune | +0.50 (within the "
        "seeds' spread) |" in text
    )
    assert close["margin"] == pytest.approx(0.5)
    assert set(rep.charts) == {
        "accuracy_vs_cost_cifar10-classes-0-4",
        "accuracy_vs_time_cifar10-classes-0-4",
        "transfer",
    }
    runs = json.loads((rep.out / "runs.json").read_text())
    assert [r["classes"] for r in runs if r["transfer"] == "finetune"] == [[5, 6, 7, 8, 9]] * 4


def test_a_ddp_run_is_its_own_row_with_its_world_size_and_job_rate(tmp_path: Path) -> None:
    """The same net on 1 and on 2 ranks: two rows (trainer.devices differs), the throughput column
    is the job's rate (result.json's sum over ranks) and the ranks column says over how many."""
    from harness.report import build

    for devices in (1, 2):
        write_run(tmp_path / "runs", "resnet20", 0, 0.90, 0.95, 0.2, devices=devices)
    rep = build(tmp_path / "runs", tmp_path / "out", charts=True)
    cells = {
        (r["variant"], r["ranks"], r["samples/s"])
        for r in md_rows((rep.out / "report.md").read_text())
        if r.get("arch") == "resnet20"
    }
    assert cells == {("trainer.devices=1", "1", "880"), ("trainer.devices=2", "2", "1,760")}
    assert [r["world_size"] for r in json.loads((rep.out / "runs.json").read_text())] == [1, 2]
    assert "accuracy_vs_cost" in rep.charts


def test_charts_are_png_files(report: tuple[Path, str]) -> None:
    out, stdout = report
    import matplotlib.image

    names = [
        "accuracy_vs_depth_cifar10",
        "degradation_vs_depth_cifar10",
        "training_curves_cifar10",
        "accuracy_vs_time_cifar10",
        "accuracy_vs_cost_cifar10",
        "transfer",
    ]
    for name in names:
        png = out / f"{name}.png"
        assert png.read_bytes()[:8] == PNG and png.stat().st_size > 20_000, name
        h, w, _ = matplotlib.image.imread(png).shape
        assert w > 500 and h > 300
        assert f"![{name}]({name}.png)" in (out / "report.md").read_text()
    rep = json.loads((out / "report.json").read_text())
    assert set(rep["charts"]) == set(names) and "accuracy_vs_depth_cifar100" in rep["charts_skipped"]


def test_metrics_of_a_resumed_run_latest_version_wins(tmp_path: Path) -> None:
    for version, rows in (
        (0, [(0, 4, 2.0, ""), (0, 9, "", 0.5), (1, 14, 1.9, ""), (1, 15, 1.8, "")]),
        (1, [(1, 14, 1.5, ""), (1, 19, "", 0.7)]),
    ):
        d = tmp_path / "metrics" / f"version_{version}"
        d.mkdir(parents=True)
        with (d / "metrics.csv").open("w", newline="") as f:
            csv.writer(f).writerows([("epoch", "step", "train/loss_step", "train/acc1"), *rows])
    curve = read_curve(tmp_path)
    assert curve["train_loss_step"] == [(4, 2.0), (14, 1.5)]  # step 15 of the interrupted attempt is gone
    assert curve["train_error"] == [(10, 0.5), (20, pytest.approx(0.3))]  # at the steps trained by each epoch's end


def test_wandb_offline_writes_a_run_under_out_and_disabled_none(
    tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sub = tmp_path / "transfer"
    shutil.copytree(tree / "transfer", sub)
    assert main(["report", str(sub), "--out", str(tmp_path / "off"), "--wandb", "offline"]) == 0
    runs = list((tmp_path / "off" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb")), list((tmp_path / "off").rglob("*"))
    w = WandbFile.read(next(runs[0].glob("*.wandb")))  # the tables, PNGs and native charts, read from the records
    (row,) = w.history
    assert (
        row["report/_type"] == "table-file" and row["runs/nrows"] == 12 and row["charts/transfer/_type"] == "image-file"
    )
    assert w.summary["runs_completed"] == 12 and w.exit_code == 0
    assert "W&B offline" in capsys.readouterr().out
    assert main(["report", str(sub), "--out", str(tmp_path / "none")]) == 0
    assert not (tmp_path / "none" / "wandb").exists() and (tmp_path / "none" / "transfer.png").is_file()
    # the default --out is DIR/report, and a second report does not read the first one's files
    assert main(["report", str(sub)]) == 0 and main(["report", str(sub)]) == 0
    assert len(json.loads((sub / "report" / "runs.json").read_text())) == 12
    capsys.readouterr()


def test_malformed_result_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_run(tmp_path / "r", "vgg11", 0, 0.7, 0.8, 0.6)
    bad = tmp_path / "r" / "broken" / "result.json"
    bad.parent.mkdir()
    bad.write_text('{"run_id": "x", "arch": ')
    code, _, err = in_process(capsys, "report", str(tmp_path / "r"))
    assert (
        code == 2
        and err.count("\n") == 1
        and err.startswith("convbench report: error: ")
        and str(bad) in err
        and "malformed" in err
    ), err
    bad.write_text(json.dumps({"run_id": "x", "arch": "vgg11", "status": "completed", "test_acc1": "high"}))
    code, _, err = in_process(capsys, "report", str(tmp_path / "r"))
    assert code == 2 and err.count("\n") == 1 and str(bad) in err and "test_acc1" in err, err
    for text, fragment in (
        ("", "not valid JSON"),
        ("[1]", "expected a JSON object"),
        ('{"run_id": "x", "arch": "vgg11"}', "'status' missing"),
        (json.dumps({"run_id": "x", "arch": "vgg11", "status": "done"}), "status='done'"),
    ):
        bad.write_text(text)
        code, _, err = in_process(capsys, "report", str(tmp_path / "r"))
        assert code == 2 and err.count("\n") == 1 and str(bad) in err and fragment in err, err
    assert not (tmp_path / "r" / "report").exists()  # nothing written on an error


def test_older_and_newer_result_files_load(tmp_path: Path) -> None:
    """A result.json lacking fields added since (residual, first_step_at, world_size) or holding one this
    version does not know reads as the same RunResult, the missing fields None."""
    from harness.run_record import RunResult

    p = tmp_path / "result.json"
    p.write_text(
        json.dumps(
            {
                "run_id": "vgg11-cifar10-s0-0123456789",
                "arch": "vgg11",
                "status": "completed",
                "depth": 11,
                "test_acc1": 0.9,
                "train_loss": float("nan"),
                "from_the_future": [1, 2],
            }
        )
    )
    r = RunResult.read(p)
    assert (r.depth, r.test_acc1, r.residual, r.world_size, r.config) == (
        11,
        0.9,
        None,
        None,
        {},
    ) and r.train_loss != r.train_loss
    assert (r.hardware, r.elapsed_s, r.device_hours, r.attempts) == (None, None, None, None)


def test_published_runs_name_relative_paths() -> None:
    """docs/results/*/runs.json name every run relative to its results root, never by a machine's absolute path."""
    for f in sorted((REPO / "docs" / "results").glob("*/runs.json")):
        rows = json.loads(f.read_text())
        assert rows and all(not Path(r["path"]).is_absolute() and r["path"] == r["run_id"] for r in rows), f


def test_empty_or_missing_dir_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    code, _, err = in_process(capsys, "report", str(tmp_path / "empty"))
    assert code == 2 and err.count("\n") == 1 and "no result.json found" in err, err
    code, _, err = in_process(capsys, "report", str(tmp_path / "nowhere"))
    assert code == 2 and err.count("\n") == 1 and "no such directory" in err, err


def test_sweep_dir_listing_run_ids(tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A sweep directory that only lists run ids (results/sweeps/<name>/runs.json) finds them in the results root."""
    sweep = tree / "sweeps" / "depth"
    sweep.mkdir(parents=True)
    ids = sorted(p.parent.name for p in tree.glob("resnet56-*/result.json"))
    (sweep / "runs.json").write_text(json.dumps({"name": "depth", "runs": [{"run_id": i} for i in ids]}))
    try:
        assert main(["report", str(sweep), "--out", str(tmp_path / "o"), "--no-charts"]) == 0
    finally:
        (sweep / "runs.json").unlink()
        sweep.rmdir()
        sweep.parent.rmdir()
    rows = json.loads((tmp_path / "o" / "runs.json").read_text())
    assert sorted(r["run_id"] for r in rows) == ids
    assert all(
        r["path"] == r["run_id"] for r in rows
    )  # outside the sweep dir: relative to their results root, never absolute
    capsys.readouterr()


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """resnet20 and plain20 trained for real: 3 epochs of 3 steps, validated after each."""
    from harness.training.run import train

    results = tmp_path_factory.mktemp("real") / "results"
    for arch in ("resnet20", "plain20"):
        config = resolve(
            [
                (
                    "test",
                    {
                        "arch": arch,
                        "dataset": "synthetic",
                        "epochs": 3,
                        "results": str(results),
                        "wandb": {"mode": "disabled"},
                        "trainer": {"log_every_n_steps": 1, "threads": 2},
                        "data": {
                            "input_size": [3, 32, 32],
                            "num_samples": 256,
                            "num_workers": 0,
                            "batch_size": 64,
                            "val_size": 64,
                        },
                    },
                )
            ]
        )
        assert train(config).status == "completed"
    return results


def test_report_of_two_real_runs(real_runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(real_runs), "--out", str(tmp_path / "out")]) == 0
    stdout = capsys.readouterr().out
    assert "| plain20 | resnet_cifar | 20 | plain | synthetic | scratch |" in stdout
    assert "| resnet20 | resnet_cifar | 20 | residual | synthetic | scratch |" in stdout
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    assert "training_curves" in rep["charts"] and "degradation_vs_depth" in rep["charts"]
    assert "accuracy_vs_time" in rep["charts"] and "accuracy_vs_cost" in rep["charts"]
    assert rep["charts_skipped"]["accuracy_vs_depth"].startswith("needs test top-1 at two or more depths")
    for chart in ("training_curves", "accuracy_vs_time"):
        assert (tmp_path / "out" / f"{chart}.png").read_bytes()[:8] == PNG
    runs = json.loads((tmp_path / "out" / "runs.json").read_text())
    assert {r["arch"] for r in runs} == {"resnet20", "plain20"} and all(r["status"] == "completed" for r in runs)
    hours = sum(r["device_hours"] for r in runs)
    assert rep["device_hours"]["total"] == pytest.approx(hours) and 0 < hours * 3600 < 600
    assert f"Device-hours: {hours:.3g} in all" in stdout


def test_a_real_record_names_this_machine_and_its_clock(real_runs: Path) -> None:
    """result.json read back through RunResult: the CPU, its flags and the threads the run used; the
    clock: training and validation time within the run's clock, within the attempt's wall time."""
    from harness.run_record import RunResult

    for path in real_runs.glob("*/result.json"):
        r = RunResult.read(path)
        assert r.hardware is not None and r.attempts == 1
        assert_names_this_machine(dataclasses.asdict(r.hardware), threads=2)
        assert r.hardware.dataloader_workers == 0
        assert 0 < r.train_time_s + r.eval_time_s <= r.elapsed_s < r.wall_time_s
        assert r.device_hours == pytest.approx(r.wall_time_s / 3600, rel=0.05)


def evaluations(run_dir: Path) -> list[dict[str, str]]:
    with next(run_dir.glob("metrics/version_0/metrics.csv")).open(newline="") as f:
        return list(csv.DictReader(f))


def first_reaching(run_dir: Path, column: str, value: float, lower: bool) -> tuple[int, float] | None:
    """The CSV read by hand: the first epoch row of ``column`` at ``value`` or better, and the run's
    clock on the row of the same step (Lightning writes validation and training as two rows)."""
    rows = evaluations(run_dir)
    for row in rows:
        if row[column] and (float(row[column]) <= value if lower else float(row[column]) >= value):
            (clock,) = [r["time/elapsed_s"] for r in rows if r["step"] == row["step"] and r["time/elapsed_s"]]
            return int(row["step"]) + 1, float(clock)
    return None


def a_later_target(dirs: list[Path]) -> tuple[str, float]:
    """A validation figure some run first reaches after its first evaluation (its best so far,
    bettered): accuracy if one improved, else the loss."""
    for metric, lower in (("val_acc1", False), ("val_loss", True)):
        for d in dirs:
            values = [float(r[metric.replace("_", "/", 1)]) for r in evaluations(d) if r["val/acc1"]]
            for i in range(1, len(values)):
                if (values[i] < min(values[:i])) if lower else (values[i] > max(values[:i])):
                    return metric, values[i]
    raise AssertionError("no run improved on its first evaluation")


def test_time_to_accuracy_agrees_with_the_csv(
    real_runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--target per run: the step and clock of the first evaluation that reaches it, as the CSV read
    by hand says; one target some run reaches only after its first evaluation, one (a loss of 0)
    none reaches."""
    dirs = sorted(p.parent for p in real_runs.glob("*/result.json"))
    metric, value = a_later_target(dirs)
    lower = metric == "val_loss"
    args = ["report", str(real_runs), "--out", str(tmp_path), "--no-charts"]
    assert main([*args, "--target", f"{metric}={value!r}", "--target", "val_loss=0"]) == 0
    out = capsys.readouterr().out
    assert f"time to accuracy, {metric} {'<=' if lower else '>='} {value:g}:" in out and "val_loss <= 0:" in out
    found, never = json.loads((tmp_path / "report.json").read_text())["time_to_accuracy"]
    steps: list[bool] = []
    for run in found["runs"]:
        hit = first_reaching(real_runs / run["run_id"], metric.replace("_", "/", 1), value, lower)
        step, clock = hit if hit else (None, None)
        assert (run["step"], run["time_s"]) == (step, clock if clock is None else pytest.approx(clock)), run
        config = next(c for c in found["configs"] if c["arch"] == run["arch"])
        assert (config["reached"], config["median_s"], config["median_step"]) == (int(hit is not None), clock, step)
        first_evaluation = int(next(r for r in evaluations(real_runs / run["run_id"]) if r["val/acc1"])["step"]) + 1
        steps.append((step or 0) > first_evaluation)
    assert any(steps)  # one run got there after its first evaluation
    assert all(r["step"] is None for r in never["runs"]) and all(c["median_s"] is None for c in never["configs"])
    assert "| not reached | not reached |" in (tmp_path / "report.md").read_text()


def test_medians_and_mlperf_over_seeds() -> None:
    """A seed that never reached the target is infinitely slow; MLPerf's figure drops the fastest and
    the slowest of 5 or more seeds and averages the rest."""
    from harness.report.time_to_accuracy import summary

    assert summary([5.0, 1.0, 3.0, 2.0, 4.0]) == {"median": 3.0, "mlperf": 3.0}
    assert summary([10.0, 1.0, 2.0, 3.0, None]) == {"median": 3.0, "mlperf": 5.0}  # None is the slowest, dropped
    assert summary([1.0, 2.0, None, None, None]) == {"median": None, "mlperf": None}
    assert summary([2.0, 4.0]) == {"median": 3.0, "mlperf": None} and summary([]) == {"median": None, "mlperf": None}


@pytest.mark.parametrize(
    "target, message",
    [
        ("val_acc1", "expected METRIC=VALUE with METRIC one of val_acc1, val_acc5, val_loss"),
        ("test_acc1=0.9", "expected METRIC=VALUE with METRIC one of"),
        ("val_acc1=high", "'high' is not a number"),
        ("val_acc1=90", "accuracies are fractions from 0 to 1 (e.g. val_acc1=0.90)"),
        ("val_loss=-1", "losses non-negative"),
    ],
)
def test_a_bad_target_is_one_line(
    tree: Path, tmp_path: Path, target: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = in_process(capsys, "report", str(tree), "--out", str(tmp_path / "r"), "--target", target)
    assert code == 2 and err.count("\n") == 1 and f"--target {target!r}" in err and message in err, err
    assert not (tmp_path / "r").exists()  # nothing written on an error


def test_time_to_accuracy_names_transfer_and_label_budget(
    tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A configuration's line names all that tells it from the arch's others: its transfer mode and
    label budget, then its variant; the diverged seed of a config counts as not reaching the target."""
    assert main(["report", str(tree), "--out", str(tmp_path), "--no-charts", "--target", "train_acc1=0.5"]) == 0
    capsys.readouterr()
    (found,) = json.loads((tmp_path / "report.json").read_text())["time_to_accuracy"]
    names = {(c["arch"], c["task"], c["variant"]) for c in found["configs"]}
    assert ("resnet20", "cifar100", "finetune, labels/class=10") in names
    assert ("resnet20", "cifar10", "optim.lr=0.01") in names and ("plain20", "cifar10", "") in names
    assert len(names) == len(found["configs"])  # no two lines alike
    assert sum(c["diverged"] for c in found["configs"]) == 1  # the tree's one diverged run


def test_a_report_keeps_two_machines_apart(real_runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two seeds of one config, one rewritten to have run on a GPU at 50x the samples a second:
    accuracy pools them, the throughput is given per machine and never averaged."""
    tree = tmp_path / "tree"
    shutil.copytree(real_runs, tree)
    (cpu_run,) = tree.glob("resnet20-*")
    record = json.loads((cpu_run / "result.json").read_text())
    record["config"]["seed"] = 1
    gpu_id = resolve([("test", record["config"])]).run_id()
    gpu = {"name": "NVIDIA H100 80GB HBM3", "memory_bytes": 85_000_000_000, "capability": "9.0", "multiprocessors": 132}
    record.update(
        run_id=gpu_id,
        seed=1,
        device="cuda:0",
        train_samples_per_s=50 * record["train_samples_per_s"],
        hardware={**record["hardware"], "label": gpu["name"], "device": "cuda"},
    )
    record["hardware"]["hosts"][0]["gpus"] = [gpu]
    shutil.copytree(cpu_run, tree / gpu_id)
    (tree / gpu_id / "result.json").write_text(json.dumps(record))
    cpu_rate = json.loads((cpu_run / "result.json").read_text())["train_samples_per_s"]
    cpu_label = json.loads((cpu_run / "result.json").read_text())["hardware"]["label"]

    assert main(["report", str(tree), "--out", str(tmp_path / "out")]) == 0
    capsys.readouterr()
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    (row,) = [r for r in rep["rows"] if r["arch"] == "resnet20"]
    assert row["n"] == 2 and row["test_acc1"]["n"] == 2  # accuracy pools the two
    assert row["hardware"] == sorted([cpu_label, gpu["name"]]) and row["train_samples_per_s"]["mean"] is None
    by = row["by_hardware"]
    assert by[cpu_label]["train_samples_per_s"]["mean"] == pytest.approx(cpu_rate)
    assert by[gpu["name"]]["train_samples_per_s"]["mean"] == pytest.approx(50 * cpu_rate)
    md = (tmp_path / "out" / "report.md").read_text()
    hw_rows = md_rows(md.split("## Speed, memory and time by hardware")[1])
    assert {(r["hardware"], r["samples/s"]) for r in hw_rows} == {
        (cpu_label, f"{cpu_rate:,.0f}"),
        (gpu["name"], f"{50 * cpu_rate:,.0f}"),
    }
    (main_row,) = [r for r in md_rows(md) if r.get("arch") == "resnet20" and "type" in r]
    assert main_row["samples/s"] == "–" and main_row["hardware"] == "2 kinds: see below"
    assert "accuracy_vs_cost" in rep["charts"]  # plain20 alone: one machine, one chart
    assert [p.name for p in (tmp_path / "out").glob("accuracy_vs_cost*.png")] == ["accuracy_vs_cost.png"]


def test_wandb_native_charts_over_the_report_table(
    tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """accuracy and training error vs depth per family (lines), accuracy vs throughput and vs memory
    (scatter): W&B's own chart specs over one table of the from-scratch rows, in the offline records."""
    assert main(["report", str(tree), "--out", str(tmp_path), "--wandb", "offline", "--no-charts"]) == 0
    capsys.readouterr()
    (run,) = (tmp_path / "wandb").glob("offline-run-*")
    w = WandbFile.read(next(run.glob("*.wandb")))
    (row,) = w.history
    charts = {
        "accuracy_vs_depth": ("line", "depth", "test_acc1_pct"),
        "train_error_vs_depth": ("line", "depth", "train_error_pct"),
        "accuracy_vs_throughput": ("scatter", "train_samples_per_s", "test_acc1_pct"),
        "accuracy_vs_memory": ("scatter", "peak_memory_mib", "test_acc1_pct"),
        "accuracy_vs_time": ("line", "clock_s", "train/acc1"),  # no validation in these runs
    }
    for name, (kind, x, y) in charts.items():
        assert row[f"native/{name}_table/_type"] == "table-file", name
        spec = w.config[f"_wandb/visualize/native/{name}"]["panel_config"]
        assert spec["panelDefId"] == f"wandb/{kind}/v0" and (
            spec["fieldSettings"]["x"],
            spec["fieldSettings"]["y"],
        ) == (x, y)
        if kind == "line":
            assert spec["fieldSettings"]["stroke"] == ("run" if name == "accuracy_vs_time" else "series")
    table_file = run / "files" / row["native/accuracy_vs_depth_table/path"]
    table = json.loads(table_file.read_text())
    rows = [dict(zip(table["columns"], r)) for r in table["data"]]
    by_arch = {(r["arch"], r["task"]): r for r in rows}
    plain20 = by_arch[("plain20", "cifar10")]
    assert plain20["series"] == "resnet_cifar (plain)" and plain20["depth"] == 20 and plain20["n"] == 3
    assert plain20["test_acc1_pct"] == pytest.approx(82.0) and plain20["train_error_pct"] == pytest.approx(8.0)
    assert by_arch[("resnet56", "cifar10")]["series"] == "resnet_cifar (residual)"
    assert sorted(r["series"] for r in rows if r["arch"] == "resnet20") == [
        "resnet_cifar (residual)",
        "resnet_cifar (residual) [optim.lr=0.01]",
    ]
    assert {r["task"] for r in rows} == {
        "cifar10"
    }  # from scratch with all labels only: the transfer rows are not on these charts
    timed = json.loads((run / "files" / row["native/accuracy_vs_time_table/path"]).read_text())
    points = [dict(zip(timed["columns"], r)) for r in timed["data"]]
    (run_id,) = {p["run"] for p in points if p["arch"] == "plain20" and "-s0-" in p["run"]}  # a line per run
    plain20_s0 = [x for p in points if p["run"] == run_id for x in (p["clock_s"], p["train/acc1"])]
    assert plain20_s0 == pytest.approx([25.0, 0.3, 50.0, 0.6, 75.0, 0.9])  # write_run's 3 epochs of seed 0
