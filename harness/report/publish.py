"""The report as a W&B summary run: the aggregated and per-run tables (wandb.Table), native W&B charts
(wandb.plot line/scatter over a table of the from-scratch rows: accuracy and training error vs depth
per family, accuracy vs throughput and vs memory) beside the PNGs (wandb.Image), in the runs' W&B
project and group (their config wandb.*, the most common value), with its files under ``<out>/wandb``.
Offline mode never touches the network."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

from harness.report import Report
from harness.report.tables import chart_variants, main_rows, slug, table
from harness.report.time_to_accuracy import curves
from harness.wandb_run import require_written


def _common(reps: Report, key: str) -> Any:
    values = [(r.config.get("wandb") or {}).get(key) for r in reps.runs if isinstance(r.config.get("wandb"), dict)]
    values = [v for v in values if v]
    return Counter(values).most_common(1)[0][0] if values else None


def log(rep: Report, mode: str) -> Path:
    """Log ``rep`` to a new W&B run; returns the W&B run directory."""
    os.environ.setdefault("WANDB_SILENT", "true")
    if mode == "offline":
        os.environ["WANDB_MODE"] = "offline"
    import wandb

    save_dir = rep.out / "wandb"
    save_dir.mkdir(parents=True, exist_ok=True)
    group = _common(rep, "group")
    name = f"report-{group or rep.roots[0].resolve().name}"
    run = wandb.init(
        project=_common(rep, "project") or "convbench",
        entity=_common(rep, "entity"),
        group=group,
        name=name,
        job_type="report",
        dir=str(rep.out),
        mode=mode,
        reinit="finish_previous",
        config={"source": rep.source, "status_counts": rep.status_counts},
    )
    try:
        cols, cells = table(rep.rows)
        run_cols = list(rep.runs_table[0]) if rep.runs_table else []
        data: dict[str, Any] = {
            "report": wandb.Table(columns=cols, data=cells),
            "runs": wandb.Table(columns=run_cols, data=[[_cell(r[c]) for c in run_cols] for r in rep.runs_table]),
        }
        data.update({f"charts/{k}": wandb.Image(str(p), caption=k) for k, p in rep.charts.items()})
        data.update(native_charts(rep.rows))
        data.update(time_chart(rep))
        run.log(data)
        run.summary.update({f"runs_{s}": n for s, n in rep.status_counts.items()})
        path = Path(run.dir).parent  # .../wandb/<offline-run-...>/files -> the run directory
    finally:
        run.finish()
    return require_written(path, run.id)


def _cell(v: Any) -> Any:
    return v if v is None or isinstance(v, (int, float, str, bool)) else str(v)


CHART_COLUMNS = [
    "arch",
    "series",
    "task",
    "depth",
    "residual",
    "test_acc1_pct",
    "train_error_pct",
    "train_samples_per_s",
    "peak_memory_mib",
    "params",
    "macs",
    "n",
    "hardware",
]


def chart_table(rows: list[dict[str, Any]]) -> list[list[Any]]:
    """One line per from-scratch, full-label row (mean over seeds), sorted by family then depth: the
    series is 'family (plain|residual)', as in the PNGs (a one-off variant gets its own series, in
    brackets), with the task appended when the report has several."""
    main = chart_variants(main_rows(rows))
    several = len({r["task"] for r in main}) > 1
    pct = lambda s: None if s["mean"] is None else 100 * s["mean"]  # noqa: E731
    out = []
    for r in main:
        series = f"{r['family']} ({'residual' if r['residual'] else 'plain'})" + (
            f" [{r['chart_variant']}]" if r["chart_variant"] else ""
        )
        series += f" {r['task']}" if several else ""
        train = r["train_acc1"]["mean"]
        out.append(
            [
                r["arch"],
                series,
                r["task"],
                r["depth"],
                bool(r["residual"]),
                pct(r["test_acc1"]),
                None if train is None else 100 * (1 - train),
                r["train_samples_per_s"]["mean"],
                r["peak_memory_mib"]["mean"],
                r["params"],
                r["macs"],
                r["n"],
                r["hardware"][0] if len(r["hardware"]) == 1 else "several",
            ]
        )
    return out


def native_charts(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """W&B's own charts (Vega specs over one wandb.Table), interactive in the W&B UI."""
    import wandb

    cells = chart_table(rows)
    if not cells:
        return {}
    t = wandb.Table(columns=CHART_COLUMNS, data=cells)
    charts = {
        "native/accuracy_vs_depth": wandb.plot.line(
            t, "depth", "test_acc1_pct", stroke="series", title="test top-1 % vs depth"
        ),
        "native/train_error_vs_depth": wandb.plot.line(
            t, "depth", "train_error_pct", stroke="series", title="training error % vs depth (degradation)"
        ),
    }
    # speed and memory: one chart per kind of hardware, never two machines on one axis
    at = CHART_COLUMNS.index("hardware")
    kinds = sorted({c[at] for c in cells if c[at] != "several"})
    for hw in kinds:
        mine = wandb.Table(columns=CHART_COLUMNS, data=[c for c in cells if c[at] == hw])
        suffix = f"/{slug(hw)}" if len(kinds) > 1 else ""
        charts[f"native/accuracy_vs_throughput{suffix}"] = wandb.plot.scatter(
            mine, "train_samples_per_s", "test_acc1_pct", title=f"test top-1 % vs train samples/s ({hw})"
        )
        charts[f"native/accuracy_vs_memory{suffix}"] = wandb.plot.scatter(
            mine, "peak_memory_mib", "test_acc1_pct", title=f"test top-1 % vs peak memory MiB ({hw})"
        )
    return charts


def time_chart(rep: Report) -> dict[str, Any]:
    """Accuracy against the run's clock, a line per run, one chart per kind of hardware (the PNG's panels)."""
    import wandb

    target = rep.targets[0] if rep.targets else None
    column, timed = curves(main_rows(rep.rows), rep.runs, target)
    panels = sorted({(row["task"], run.hardware) for row, run, _ in timed})
    charts = {}
    for task, hw in panels:
        data = [
            [run.result.run_id, row["arch"], t, v]
            for row, run, points in timed
            if (row["task"], run.hardware) == (task, hw)
            for t, v in points
        ]
        table = wandb.Table(columns=["run", "arch", "clock_s", str(column)], data=data)
        key = "native/accuracy_vs_time" + (f"/{slug(task)}/{slug(hw)}" if len(panels) > 1 else "")
        charts[key] = wandb.plot.line(
            table, "clock_s", str(column), stroke="run", title=f"{column} vs run clock (s): {task}, {hw}"
        )
    return charts
