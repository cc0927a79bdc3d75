"""PNG charts (matplotlib, Agg). Each chart function returns the path it wrote, or raises Skip with
the reason when the runs lack what it needs. Charts 1-3 use only the from-scratch, full-label rows;
with several tasks (datasets, or class subsets of one) each of them is drawn once per task
(``<name>_<task>.png``)."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator  # noqa: E402

from harness.report.collect import Run  # noqa: E402
from harness.report.tables import TRANSFER_ORDER, chart_variants, main_rows, slug  # noqa: E402
from harness.report.time_to_accuracy import Target, curves  # noqa: E402

DPI = 110
MODE_COLORS = {"scratch": "tab:gray", "linear-probe": "tab:blue", "finetune": "tab:orange"}


class Skip(Exception):
    """A chart not drawn: the message says why."""


def _pct(s: dict[str, Any]) -> tuple[float | None, float]:
    return (None if s["mean"] is None else 100 * s["mean"]), (0.0 if s["std"] is None else 100 * s["std"])


def _kind(residual: Any) -> str:
    return "residual" if residual else "plain"


def _series_name(r: dict[str, Any]) -> str:
    name = f"{r['family']} ({_kind(r['residual'])})"
    v = r.get("chart_variant", r["variant_label"])
    return f"{name} [{v}]" if v else name


def _arch_label(r: dict[str, Any]) -> str:
    v = r.get("chart_variant", r["variant_label"])
    return r["arch"] + (f" [{v}]" if v else "")


def _family_styles(rows: list[dict[str, Any]]) -> dict[str, str]:
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return {f: colors[i % len(colors)] for i, f in enumerate(sorted({str(r["family"]) for r in rows}))}


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _title(base: str, dataset: str | None) -> str:
    return f"{base} — {dataset}" if dataset else base


def accuracy_vs_depth(rows: list[dict[str, Any]], path: Path, dataset: str | None = None) -> Path:
    """Test top-1 (mean ± std over seeds) vs depth, one line per family and plain/residual kind."""
    series: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r["depth"] is not None and r["test_acc1"]["mean"] is not None:
            series[_series_name(r)].append(r)
    if not any(len({r["depth"] for r in s}) >= 2 for s in series.values()):
        raise Skip("needs test top-1 at two or more depths of one family")
    colors = _family_styles(rows)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, members in sorted(series.items()):
        members.sort(key=lambda r: r["depth"])
        ys = [_pct(r["test_acc1"]) for r in members]
        ax.errorbar(
            [r["depth"] for r in members],
            [y for y, _ in ys],
            yerr=[e for _, e in ys],
            label=name,
            capsize=3,
            marker="o",
            color=colors[str(members[0]["family"])],
            linestyle="-" if members[0]["residual"] else "--",
        )
    ax.set(
        xlabel="depth (weighted layers)",
        ylabel="test top-1 accuracy (%)",
        title=_title("Accuracy vs depth (mean ± std over seeds)", dataset),
    )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def segmentation_scores(rows: list[dict[str, Any]], path: Path, dataset: str | None = None) -> Path:
    """Test mIoU (solid) and Dice (dashed), mean ± std over seeds, against depth (left) and parameters
    (right): one series per family and variant but its depth (``model.levels``, which the lines follow),
    e.g. a U-Net of one width with or without its skip connections."""
    pts = [r for r in rows if r["test_miou"]["mean"] is not None]
    if len(pts) < 2:
        raise Skip("needs test mIoU of two or more configurations")
    series: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in pts:
        rest = ", ".join(
            f"{k.removeprefix('model.')}={v}" for k, v in sorted(r["variant"].items()) if k != "model.levels"
        )
        series[f"{r['family']}" + (f" [{rest}]" if rest else "")].append(r)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    for (name, members), color in zip(sorted(series.items()), colors):
        for ax, x in zip(axes, ("depth", "params")):
            members.sort(key=lambda r: (r[x] or 0, r["test_miou"]["mean"]))
            for key, style in (("test_miou", "-"), ("test_dice", "--")):
                ys = [_pct(r[key]) for r in members]
                label = f"{name}: {'mIoU' if key == 'test_miou' else 'Dice'}" if ax is axes[0] else None
                ax.errorbar(
                    [r[x] for r in members],
                    [y for y, _ in ys],
                    yerr=[e for _, e in ys],
                    label=label,
                    capsize=3,
                    marker="o",
                    color=color,
                    linestyle=style,
                )
    axes[0].set(xlabel="depth (weighted layers)", ylabel="test score (%)")
    axes[1].set(xlabel="parameters")
    axes[1].set_xscale("log")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(_title("Segmentation: mIoU and Dice vs depth and parameters", dataset))
    return _save(fig, path)


def degradation(rows: list[dict[str, Any]], path: Path, dataset: str | None = None) -> Path:
    """Final training error and training loss vs depth, plain (dashed) vs residual (solid), for the
    families measured at two or more depths: a plain net whose training error grows with depth is
    degrading; a residual ladder should not."""
    fams = defaultdict(set)
    for r in rows:
        if r["depth"] is not None and r["train_acc1"]["mean"] is not None:
            fams[r["family"]].add((bool(r["residual"]), r["depth"]))
    ladders = sorted(str(f) for f, kinds in fams.items() if len(kinds) >= 2)
    if not ladders:
        raise Skip("needs a family at two or more depths whose runs record train top-1")
    colors = _family_styles(rows)
    fig, (ax_err, ax_loss) = plt.subplots(1, 2, figsize=(11, 4.3))
    series: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if str(r["family"]) in ladders and r["depth"] is not None and r["train_acc1"]["mean"] is not None:
            series[_series_name(r)].append(r)
    for name, members in sorted(series.items()):
        members.sort(key=lambda r: r["depth"])
        style = dict(
            label=name,
            capsize=3,
            marker="o",
            color=colors[str(members[0]["family"])],
            linestyle="-" if members[0]["residual"] else "--",
        )
        depth = [r["depth"] for r in members]
        err = [(100 - 100 * r["train_acc1"]["mean"], 100 * (r["train_acc1"]["std"] or 0)) for r in members]
        ax_err.errorbar(depth, [e for e, _ in err], yerr=[s for _, s in err], **style)
        loss = [
            (r["train_loss"]["mean"], r["train_loss"]["std"] or 0)
            for r in members
            if r["train_loss"]["mean"] is not None
        ]
        if len(loss) == len(members):
            ax_loss.errorbar(depth, [m for m, _ in loss], yerr=[s for _, s in loss], **style)
    ax_err.set(
        xlabel="depth (weighted layers)",
        ylabel="final training error (%) = 100 − train top-1",
        title="Training error vs depth",
    )
    ax_loss.set(xlabel="depth (weighted layers)", ylabel="final training loss", title="Training loss vs depth")
    for ax in (ax_err, ax_loss):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(_title("Degradation: plain (dashed) vs residual (solid)", dataset))
    return _save(fig, path)


def _mean_curve(curves: list[list[tuple[float, float]]]) -> list[tuple[float, float]]:
    by_x: dict[float, list[float]] = defaultdict(list)
    for c in curves:
        for x, y in c:
            by_x[x].append(y)
    return [(x, sum(ys) / len(ys)) for x, ys in sorted(by_x.items())]


def training_curves(runs: list[Run], rows: list[dict[str, Any]], path: Path, dataset: str | None = None) -> Path:
    """Training error per epoch against steps (from metrics.csv; the step-level loss when no run has
    per-epoch train top-1), averaged over seeds, one line per depth: plain | residual panels (He et al. Fig. 6)
    for the families that have both kinds, else for any family measured at two or more depths (one
    panel when the study has one kind)."""
    by_id = {r.get("run_id"): r for r in runs if r.completed}
    fams = defaultdict(set)
    for r in rows:
        fams[str(r["family"])].add((bool(r["residual"]), r["depth"]))
    # the families with both kinds (He et al.'s comparison), else any depth ladder; never lone nets
    both = {f for f, ks in fams.items() if {k for k, _ in ks} == {True, False}}
    ladders = both or {f for f, ks in fams.items() if len(ks) >= 2}
    rows = [r for r in rows if str(r["family"]) in ladders]
    if not rows:
        raise Skip("needs a family at two or more depths")
    chosen = [(row, by_id[i]) for row in rows for i in row["run_ids"] if i in by_id]
    metric = next(
        (m for m in ("train_error", "train_loss_step", "train_loss") if any(m in r.curve() for _, r in chosen)), None
    )
    if metric is None:
        raise Skip("needs metrics/version_N/metrics.csv with train/acc1 or train/loss_step in the run directories")
    lines: dict[tuple[bool, Any, str], list[list[tuple[float, float]]]] = defaultdict(list)
    depth_of: dict[tuple[bool, Any, str], Any] = {}
    dashed: dict[
        tuple[bool, Any, str], bool
    ] = {}  # a labelled variant (zero_init_residual) beside its depth's usual line
    for row, r in chosen:
        c = r.curve().get(metric)
        if c:
            k = (bool(row["residual"]), row["depth"] if row["depth"] is not None else math.inf, _arch_label(row))
            lines[k].append(c)
            depth_of[k] = row["depth"]
            dashed[k] = bool(row.get("chart_variant"))
    if not lines:
        raise Skip(f"no {metric} curve in the runs' metrics.csv")
    kinds = sorted({k[0] for k in lines})
    fig, axes = plt.subplots(1, len(kinds), figsize=(5.5 * len(kinds), 4.3), sharey=True, squeeze=False)
    cmap = plt.get_cmap("viridis")
    pct = metric == "train_error"
    for ax, residual in zip(axes[0], kinds):
        mine = sorted(k for k in lines if k[0] == residual)
        depths = sorted({k[1] for k in mine})  # one colour a depth; its variants dashed
        for k in mine:
            curve = _mean_curve(lines[k])
            n = len(lines[k])
            ax.plot(
                [x for x, _ in curve],
                [100 * y if pct else y for _, y in curve],
                marker="o" if len(curve) < 30 else None,
                markersize=3,
                color=cmap(depths.index(k[1]) / max(1, len(depths) - 1) * 0.85),
                linestyle="--" if dashed[k] else "-",
                label=f"{k[2]} (depth {depth_of[k]}{f', n={n}' if n > 1 else ''})",
            )
        ax.set(
            title=f"{'residual' if residual else 'plain'} nets", xlabel="epoch" if metric == "train_loss" else "step"
        )
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel(
        {
            "train_error": "training error (%)",
            "train_loss_step": "training loss (per step)",
            "train_loss": "training loss (per epoch)",
        }[metric]
    )
    fig.suptitle(
        _title(f"Training curves{', plain vs residual' if len(kinds) == 2 else ''} (mean over seeds)", dataset)
    )
    return _save(fig, path)


def accuracy_vs_cost(rows: list[dict[str, Any]], path: Path, dataset: str | None = None) -> Path:
    """Test top-1 vs training samples/s (the job's, over all its ranks; log x) and vs peak memory,
    points labelled by arch (and world size, when a run had more than one rank)."""
    pts = [r for r in rows if r["test_acc1"]["mean"] is not None]
    speed = [r for r in pts if (r["train_samples_per_s"]["mean"] or 0) > 0]
    mem = [r for r in pts if r["peak_memory_mib"]["mean"] is not None]
    if not speed and not mem:
        raise Skip("needs test top-1 with samples/s or peak memory")
    colors = _family_styles(rows)
    fig, (ax_s, ax_m) = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    for ax, members, key, xlabel in (
        (ax_s, speed, "train_samples_per_s", "training throughput (samples/s over all ranks, log scale)"),
        (ax_m, mem, "peak_memory_mib", "peak memory (MiB)"),
    ):
        for r in members:
            y, e = _pct(r["test_acc1"])
            ax.errorbar(
                r[key]["mean"], y, yerr=e, fmt="o" if r["residual"] else "s", color=colors[str(r["family"])], capsize=3
            )
            ranks = f" x{r['world_size']}" if r.get("world_size", 1) > 1 else ""
            ax.annotate(
                _arch_label(r) + ranks, (r[key]["mean"], y), textcoords="offset points", xytext=(5, 4), fontsize=8
            )
        ax.set(xlabel=xlabel)
        ax.grid(alpha=0.3, which="both")
        fams = sorted({str(r["family"]) for r in members})
        kinds = sorted({bool(r["residual"]) for r in members}, reverse=True)
        handles = [Patch(color=colors[f], label=f) for f in fams]
        handles += [
            Line2D([], [], color="black", marker="o" if k else "s", linestyle="", label=_kind(k)) for k in kinds
        ]
        if members:
            ax.legend(handles=handles, fontsize=8)
    if speed:
        ax_s.set_xscale("log")
        ax_s.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax_s.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax_s.tick_params(axis="x", which="minor", labelsize=7)
    ax_s.set_ylabel("test top-1 accuracy (%)")
    ax_s.set_title("Accuracy vs throughput")
    ax_m.set_title("Accuracy vs peak memory")
    fig.suptitle(_title("Accuracy vs cost (mean ± std over seeds)", dataset))
    return _save(fig, path)


def accuracy_vs_time(runs: list[Run], rows: list[dict[str, Any]], path: Path, target: Target | None = None) -> Path:
    """Each run's evaluations against the run's clock (training and validation since the first step,
    over all attempts), one colour per arch, one panel per hardware: a time is the machine's. The
    metric is the first --target's (its level dashed), else validation top-1, else training top-1."""
    column, timed = curves(rows, runs, target)
    if column is None:
        raise Skip(f"no run evaluated {target.metric if target else 'val_acc1 or train_acc1'}")
    if not timed:
        raise Skip("needs runs whose metrics.csv has the run's clock (time/elapsed_s) beside an evaluation")
    hardware = sorted({run.hardware for _, run, _ in timed})
    fig, axes = plt.subplots(1, len(hardware), figsize=(6.5 * len(hardware), 4.5), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    color = {a: colors[i % len(colors)] for i, a in enumerate(sorted({_arch_label(row) for row, _, _ in timed}))}
    scale = 1 if str(column).endswith("loss") else 100
    for ax, hw in zip(axes[0], hardware):
        shown: set[str] = set()
        for row, run, points in timed:
            if run.hardware != hw:
                continue
            arch = _arch_label(row)
            xs, ys = zip(*points)
            ax.plot(xs, [y * scale for y in ys], marker=".", color=color[arch], label=None if arch in shown else arch)
            shown.add(arch)
        if target is not None:
            ax.axhline(target.value * scale, color="black", linestyle="--", linewidth=1, label=str(target))
        ax.set(xlabel="run clock (s): training + validation since the first step", title=hw)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel(f"{column} (%)" if scale == 100 else str(column))
    fig.suptitle("Accuracy against wall-clock time (each line a run)")
    return _save(fig, path)


def transfer_bars(rows: list[dict[str, Any]], path: Path) -> Path:
    """Grouped bars of test top-1 per labels_per_class budget for scratch / linear-probe / finetune,
    one panel per (arch, task) that has transfer runs."""
    panels = sorted({(r["arch"], r["task"]) for r in rows if r["transfer"] != "scratch"}, key=str)
    if not panels:
        raise Skip("no linear-probe or finetune runs")
    fig, axes = plt.subplots(1, len(panels), figsize=(max(6, 5.5 * len(panels)), 4.5), squeeze=False)
    for ax, (arch, task) in zip(axes[0], panels):
        mine = [r for r in rows if (r["arch"], r["task"]) == (arch, task) and r["test_acc1"]["mean"] is not None]
        budgets = sorted({r["labels_per_class"] for r in mine}, key=lambda b: math.inf if b is None else b)
        series = sorted(
            {(r["transfer"], r["variant_label"]) for r in mine}, key=lambda s: (TRANSFER_ORDER.get(s[0], 9), s[1])
        )
        width = 0.8 / max(1, len(series))
        for i, (mode, variant) in enumerate(series):
            xs, ys, es = [], [], []
            for j, b in enumerate(budgets):
                hit = [
                    r for r in mine if (r["transfer"], r["variant_label"], r["labels_per_class"]) == (mode, variant, b)
                ]
                if hit:
                    y, e = _pct(hit[0]["test_acc1"])
                    xs.append(j - 0.4 + width * (i + 0.5))
                    ys.append(y)
                    es.append(e)
            ax.bar(
                xs,
                ys,
                width,
                yerr=es,
                capsize=3,
                label=mode + (f" [{variant}]" if variant else ""),
                color=MODE_COLORS.get(mode) if not variant else None,
                edgecolor="black",
                linewidth=0.5,
            )
        ax.set_xticks(range(len(budgets)), ["all" if b is None else str(b) for b in budgets])
        ax.set(xlabel="labelled training images per class", ylabel="test top-1 accuracy (%)", title=f"{arch} on {task}")
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8)
    fig.suptitle("Transfer: scratch vs linear probe vs finetune (mean ± std over seeds)")
    return _save(fig, path)


def by_hardware(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The rows whose runs share one kind of hardware, by that kind: speed and memory are compared
    only within one."""
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if len(r["hardware"]) == 1:
            out[r["hardware"][0]].append(r)
    return dict(sorted(out.items()))


# the charts drawn for each task, from its from-scratch, full-label rows
PER_TASK = ("accuracy_vs_depth", "degradation_vs_depth", "training_curves", "accuracy_vs_time", "accuracy_vs_cost")


def draw_all(
    runs: list[Run], rows: list[dict[str, Any]], out: Path, targets: Sequence[Target] = ()
) -> tuple[dict[str, Path], dict[str, str]]:
    """Every chart the data allows: ``({name: png}, {name: reason skipped})``. Accuracy against
    cost is drawn once per kind of hardware when the runs ran on several."""
    written: dict[str, Path] = {}
    skipped: dict[str, str] = {}
    if not rows:
        for name in (*PER_TASK, "transfer"):
            skipped[name] = "no completed runs"
        return written, skipped
    tasks = sorted({r["task"] for r in rows})
    for task in tasks:
        mine = chart_variants(main_rows([r for r in rows if r["task"] == task]))
        suffix = "_" + slug(task) if len(tasks) > 1 else ""
        if not mine:
            for name in PER_TASK:
                skipped[name + suffix] = (
                    f"no from-scratch full-label runs on {task} (only transfer or labels_per_class runs)"
                )
            continue
        label = task if len(tasks) > 1 else None
        jobs: list[tuple[str, Callable[[Path], Path]]] = [
            ("accuracy_vs_depth", lambda p: accuracy_vs_depth(mine, p, label)),
            ("degradation_vs_depth", lambda p: degradation(mine, p, label)),
            ("training_curves", lambda p: training_curves(runs, mine, p, label)),
            ("accuracy_vs_time", lambda p: accuracy_vs_time(runs, mine, p, targets[0] if targets else None)),
        ]
        if any(r["test_miou"]["mean"] is not None for r in mine):
            jobs.append(("segmentation_scores", lambda p: segmentation_scores(mine, p, label)))
        kinds = by_hardware(mine)
        if not kinds:
            skipped["accuracy_vs_cost" + suffix] = (
                "every row ran on several kinds of hardware: see the table by hardware"
            )
        jobs += [
            (
                "accuracy_vs_cost" + (f"_{slug(hw)}" if len(kinds) > 1 else ""),
                lambda p, members=members, hw=hw: accuracy_vs_cost(members, p, f"{label}, {hw}" if label else hw),
            )
            for hw, members in kinds.items()
        ]
        for name, draw in jobs:
            try:
                written[name + suffix] = draw(out / f"{name}{suffix}.png")
            except Skip as why:
                skipped[name + suffix] = str(why)
    try:
        written["transfer"] = transfer_bars(rows, out / "transfer.png")
    except Skip as why:
        skipped["transfer"] = str(why)
    return written, skipped
