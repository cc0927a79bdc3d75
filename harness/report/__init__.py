"""Reports over finished runs: ``report.md`` (one row per config, mean ± std over seeds),
``report.json`` (those rows and the findings), ``runs.json`` (every run's final metrics) and PNG
charts, optionally logged to a W&B summary run. ``build(roots, out)`` does it all, over one or several
results roots or sweep directories (a study and its labelled variant, two splits); the CLI verb is
`convbench report`.

Modules: collect (find and check result.json files, read metrics.csv curves), tables (grouping,
mean ± std, costs per hardware, markdown), findings (degradation and transfer verdicts),
time_to_accuracy (`--target`), charts (matplotlib PNGs), publish (W&B)."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.report import findings, time_to_accuracy
from harness.report.collect import Run, collect
from harness.report.tables import aggregate, device_hours, hardware_table, markdown, run_rows, table

STATUS_ORDER = ("completed", "diverged", "failed")


@dataclass
class Report:
    roots: list[Path]
    out: Path
    runs: list[Run]
    rows: list[dict[str, Any]]
    runs_table: list[dict[str, Any]]
    status_counts: dict[str, int]
    markdown_table: str
    findings_md: str = ""
    findings: dict[str, Any] = field(default_factory=dict)
    charts: dict[str, Path] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    wandb_dir: Path | None = None
    targets: list[time_to_accuracy.Target] = field(default_factory=list)
    time_to_accuracy: list[dict[str, Any]] = field(default_factory=list)  # one per target
    device_hours: dict[str, Any] = field(default_factory=dict)
    hardware_md: str = ""  # speed, memory and time of the rows that ran on several kinds of hardware

    @property
    def source(self) -> str:
        return ", ".join(str(r) for r in self.roots)


def _clean(v: Any) -> Any:
    """JSON-safe: NaN/inf -> None, paths -> str, tuples -> lists."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, Path):
        return str(v)
    return v


def _dump(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(_clean(data), indent=1, allow_nan=False) + "\n")
    return path


def status_line(counts: dict[str, int]) -> str:
    total = sum(counts.values())
    parts = ", ".join(f"{n} {s}" for s, n in counts.items())
    return f"{total} run{'s' if total != 1 else ''}: {parts}"


def device_hours_line(hours: dict[str, Any]) -> str:
    """'Device-hours: 1.23 in all (...)': what the runs cost, all statuses and attempts."""
    parts = [f"{h:.3g} on {hw}" for hw, h in hours["by_hardware"].items()]
    line = f"Device-hours: {hours['total']:.3g} in all, every recorded run and all its attempts"
    line += " (world size x attempt wall time)"
    line += f": {'; '.join(parts)}" if len(parts) > 1 else ""
    unrecorded = hours["unrecorded"]
    return line + (
        f". {unrecorded} run{'s' if unrecorded != 1 else ''} recorded none (older records)." if unrecorded else "."
    )


def _markdown_doc(rep: Report) -> str:
    lines = [
        f"# convbench report: {rep.source}",
        "",
        status_line(rep.status_counts) + ". Only completed runs are aggregated.",
        "",
        "Each row is one configuration (arch, dataset, transfer mode, labels/class and any other differing config key, "
        "shown as variant); metrics are mean ± sample std over its n seeds (no ± when n = 1). Accuracies in %; "
        "samples/s (training throughput), peak MiB (peak memory) and wall s (the wall time of a run's last "
        "attempt, start-up included) are means.",
        "",
    ]
    if len({hw for r in rep.rows for hw in r["hardware"]}) > 1:
        lines += [
            "Accuracy pools a configuration's seeds whatever hardware they ran on; speed, memory and time "
            "never do: a row whose runs ran on several kinds shows them per hardware below the table.",
            "",
        ]
    lines.append(rep.markdown_table if rep.rows else "_no completed runs_")
    if rep.hardware_md:
        lines += ["", "## Speed, memory and time by hardware", "", rep.hardware_md]
    lines += ["", device_hours_line(rep.device_hours)]
    if rep.time_to_accuracy:
        lines += ["", "## Time to accuracy", "", time_to_accuracy.RULE]
    for found in rep.time_to_accuracy:
        lines += ["", time_to_accuracy.markdown(found)]
    if rep.findings_md:
        lines += ["", rep.findings_md.rstrip()]
    bad = [r for r in rep.runs_table if r["status"] != "completed"]
    if bad:
        lines += ["", "## Runs not aggregated", "", "| run | status | error |", "|---|---|---|"]
        lines += [f"| {r['run_id']} | {r['status']} | {(r['error'] or '–').replace('|', '/')} |" for r in bad]
    lines += ["", "## Charts", ""]
    lines += [f"![{name}]({p.name})" for name, p in rep.charts.items()]
    lines += [f"- {name}: not drawn ({why})" for name, why in rep.skipped.items()]
    return "\n".join(lines) + "\n"


def build(
    roots: Path | Sequence[Path],
    out: Path | None = None,
    charts: bool = True,
    targets: Sequence[time_to_accuracy.Target] = (),
) -> Report:
    """Collect the runs under ``roots`` (a run found under two of them counts once) and write report.md,
    report.json, runs.json and the charts to ``out`` (default ``<first root>/report``), with the
    time to each of ``targets``."""
    roots = [Path(roots)] if isinstance(roots, (str, Path)) else [Path(r) for r in roots]
    out = Path(out) if out is not None else roots[0] / "report"
    found: dict[str, Run] = {}
    for root in roots:
        for run in collect(root, exclude=out):
            found.setdefault(run.result.run_id, run)
    runs = list(found.values())
    out.mkdir(parents=True, exist_ok=True)
    rows = aggregate(runs)
    counts = Counter(r.get("status") for r in runs)
    status_counts = {s: counts[s] for s in STATUS_ORDER if counts[s]} | {
        s: n for s, n in sorted(counts.items()) if s not in STATUS_ORDER
    }
    cols, cells = table(rows)
    rep = Report(roots, out, runs, rows, run_rows(runs, roots[0]), status_counts, markdown(cols, cells))
    rep.findings_md, rep.findings = findings.markdown(rows, runs)
    rep.device_hours = device_hours(runs)
    hw_cols, hw_cells = hardware_table(rows)
    rep.hardware_md = markdown(hw_cols, hw_cells) if hw_cells else ""
    rep.targets = list(targets)
    rep.time_to_accuracy = [time_to_accuracy.compute(t, runs) for t in targets]
    if charts:
        from harness.report.charts import draw_all

        rep.charts, rep.skipped = draw_all(runs, rows, out, targets)
    meta = {
        "source": rep.source,
        "status_counts": status_counts,
        "group_by": "arch, dataset, transfer, labels_per_class and the config keys in 'variant'",
        "stats": "mean and sample std (n-1; null for n=1) over seeds; accuracies as fractions",
        "charts": {k: p.name for k, p in rep.charts.items()},
        "charts_skipped": rep.skipped,
        "findings": rep.findings,
        "device_hours": rep.device_hours,
        "time_to_accuracy": rep.time_to_accuracy,
    }
    rep.files = [
        _dump(
            out / "report.json",
            {
                **meta,
                "rows": [{k: v for k, v in r.items() if k != "variant_label" and not k.startswith("_")} for r in rows],
            },
        ),
        _dump(out / "runs.json", rep.runs_table),
    ]
    md = out / "report.md"
    md.write_text(_markdown_doc(rep))
    rep.files.insert(0, md)
    rep.files += list(rep.charts.values())
    return rep
