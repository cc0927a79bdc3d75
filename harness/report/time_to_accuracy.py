"""Time-to-accuracy: which configuration reaches a target soonest, and after how many steps.

Per run, DAWNBench's rule: the first evaluation (an epoch end) whose metric reaches the target,
its step and the run's clock then (harness.training.callbacks.Throughput: training and validation
since the first step, over all attempts; start-up and queueing not counted). Per configuration
and hardware, the median over seeds, and with 5 or more seeds MLPerf's figure: the fastest and
the slowest dropped, the mean of the rest. A seed that never reached the target counts as
infinitely slow, so a median or an MLPerf figure that includes it is "not reached"."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

from harness.errors import UserError
from harness.report.collect import EVALUATED, Run

# the --target metrics: the per-epoch evaluations in metrics.csv, val/acc1 named val_acc1
METRICS = tuple(column.replace("/", "_") for column in EVALUATED)
MLPERF_MIN_SEEDS = 5


@dataclass(frozen=True)
class Target:
    metric: str  # e.g. val_acc1
    value: float

    @property
    def column(self) -> str:
        """Its metrics.csv column: val_acc1 -> val/acc1."""
        return self.metric.replace("_", "/", 1)

    @property
    def lower_is_better(self) -> bool:
        return self.metric.endswith("loss")

    def reached(self, value: float) -> bool:
        return value <= self.value if self.lower_is_better else value >= self.value

    def __str__(self) -> str:
        return f"{self.metric} {'<=' if self.lower_is_better else '>='} {self.value:g}"


def parse_target(text: str) -> Target:
    """``val_acc1=0.90`` as a Target, or a one-line UserError saying what is accepted."""
    metric, sep, value = text.partition("=")
    metric = metric.strip().replace("/", "_")
    if not sep or metric not in METRICS:
        raise UserError(f"--target {text!r}: expected METRIC=VALUE with METRIC one of {', '.join(METRICS)}")
    try:
        number = float(value)
    except ValueError:
        raise UserError(f"--target {text!r}: {value!r} is not a number") from None
    if not math.isfinite(number) or number < 0 or ("acc" in metric and number > 1):
        raise UserError(
            f"--target {text!r}: accuracies are fractions from 0 to 1 (e.g. {metric}=0.90), losses non-negative"
        )
    return Target(metric, number)


def reach(run: Run, target: Target) -> dict[str, Any]:
    """The run's first evaluation at the target: ``step`` (optimiser steps trained), ``epoch``
    (counted from 1) and ``time_s`` (None for a record without the run's clock); all None when
    no evaluation reached it."""
    for e in run.evaluations():
        value = e.get(target.column)
        if value is not None and target.reached(value):
            return {"step": int(e["step"]) + 1, "epoch": int(e.get("epoch", 0)) + 1, "time_s": e.get("time/elapsed_s")}
    return {"step": None, "epoch": None, "time_s": None}


def summary(values: list[float | None]) -> dict[str, Any]:
    """Median and (with 5 or more seeds) MLPerf's mean over seeds; a seed that never reached the
    target is infinitely slow, and a figure that includes one is None."""
    xs = sorted(math.inf if v is None else v for v in values)
    if not xs:
        return {"median": None, "mlperf": None}
    median = statistics.median(xs)
    mlperf = statistics.fmean(xs[1:-1]) if len(xs) >= MLPERF_MIN_SEEDS else math.inf
    return {"median": None if math.isinf(median) else median, "mlperf": None if math.isinf(mlperf) else mlperf}


def compute(target: Target, runs: list[Run]) -> dict[str, Any]:
    """``{"target", "runs": [per run], "configs": [per configuration and hardware]}`` over the
    completed and the diverged runs (a seed that diverged before the target counts as not reaching
    it; a failed run is left out: it measured nothing). A configuration is the report's group."""
    from harness.report.tables import group, task, variant_label

    trained = [r for r in runs if r.result.status in ("completed", "diverged")]
    per_run, configs = [], []
    for variant, members in group(trained):
        for hw in sorted({r.hardware for r in members}):
            mine = sorted(
                ((r, reach(r, target)) for r in members if r.hardware == hw),
                key=lambda x: (x[0].result.seed or 0, x[0].result.run_id),
            )
            for r, hit in mine:
                per_run.append(
                    {"run_id": r.result.run_id, "arch": r.result.arch, "seed": r.result.seed, "hardware": hw, **hit}
                )
            hits = [hit for _, hit in mine]
            clock = all(h["time_s"] is not None for h in hits if h["step"] is not None)
            times = summary([h["time_s"] for h in hits]) if clock else {"median": None, "mlperf": None}
            first = mine[0][0]
            setting = [
                first.transfer if first.transfer != "scratch" else "",
                f"labels/class={first.labels_per_class}" if first.labels_per_class is not None else "",
                variant_label(variant),
            ]
            configs.append(
                {
                    "arch": first.result.arch,
                    "task": task(first.result.dataset, first.classes),
                    "variant": ", ".join(filter(None, setting)),  # all that tells it from the arch's other groups
                    "hardware": hw,
                    "n": len(mine),
                    "diverged": sum(r.result.status == "diverged" for r, _ in mine),
                    "reached": sum(h["step"] is not None for h in hits),
                    "median_s": times["median"],
                    "mlperf_s": times["mlperf"],
                    "median_step": summary([h["step"] for h in hits])["median"],
                    "clock_recorded": clock,
                }
            )
    configs.sort(key=lambda c: (str(c["arch"]), c["task"], c["variant"], c["hardware"]))
    return {"target": str(target), "metric": target.metric, "value": target.value, "runs": per_run, "configs": configs}


def _seconds(v: float | None) -> str:
    return "not reached" if v is None else f"{v:,.1f}"


RULE = (
    "The first evaluation (epoch end) that reaches the target, DAWNBench's rule: the run's clock then "
    "(training and validation since the first step, over all attempts; start-up and queueing excluded) "
    f"and its step. Per configuration: the median over seeds, and with {MLPERF_MIN_SEEDS} or more seeds "
    "MLPerf's figure (fastest and slowest dropped, the rest averaged). Times are per hardware."
)


def curves(
    rows: list[dict[str, Any]], runs: list[Run], target: Target | None
) -> tuple[str | None, list[tuple[dict[str, Any], Run, list[tuple[float, float]]]]]:
    """``(column, [(row, run, [(clock s, value)])])``: each completed run's evaluations against its
    clock, for the accuracy-against-time charts. The column is the target's, else validation top-1,
    else training top-1 (None: no run evaluated it); runs without the clock are left out."""
    by_id = {r.result.run_id: r for r in runs if r.completed}
    chosen = [(row, by_id[i]) for row in rows for i in row["run_ids"] if i in by_id]
    evaluated = {c for _, run in chosen for e in run.evaluations() for c in e}
    options = [target.column] if target else ["val/acc1", "train/acc1"]
    column = next((c for c in options if c in evaluated), None)
    out = []
    for row, run in chosen:
        points = [(e["time/elapsed_s"], e[column]) for e in run.evaluations() if "time/elapsed_s" in e and column in e]
        if points:
            out.append((row, run, points))
    return column, out


def markdown(found: dict[str, Any]) -> str:
    """A section of report.md: the configurations' table, then every run's first evaluation at the target."""
    lines = [f"### {found['target']}", "", configs_table(found), "", "<details><summary>Every run</summary>", ""]
    lines += ["| run | seed | step | epoch | s |", "|---|---:|---:|---:|---:|"]
    for r in found["runs"]:
        if r["step"] is None:
            lines.append(f"| {r['run_id']} | {r['seed']} | not reached | | |")
        else:
            time_s = "–" if r["time_s"] is None else f"{r['time_s']:,.1f}"
            lines.append(f"| {r['run_id']} | {r['seed']} | {r['step']:,} | {r['epoch']} | {time_s} |")
    return "\n".join([*lines, "", "</details>"])


def configs_table(found: dict[str, Any]) -> str:
    """Each configuration's time and step to the target (per hardware), as a markdown table."""
    lines = [
        "| arch | dataset | variant | hardware | reached | median s | median step | MLPerf s |",
        "|---|---|---|---|---:|---:|---:|---:|",
    ]
    for c in found["configs"]:
        unknown = "clock not recorded"
        median = _seconds(c["median_s"]) if c["clock_recorded"] else unknown
        step = "not reached" if c["median_step"] is None else f"{c['median_step']:,.0f}"
        mlperf = "–" if c["n"] < MLPERF_MIN_SEEDS else _seconds(c["mlperf_s"]) if c["clock_recorded"] else unknown
        reached = f"{c['reached']}/{c['n']}" + (f" ({c['diverged']} diverged)" if c["diverged"] else "")
        lines.append(
            f"| {c['arch']} | {c['task']} | {c['variant'] or '–'} | {c['hardware']} | {reached} "
            f"| {median} | {step} | {mlperf} |"
        )
    return "\n".join(lines)
