"""The report as a W&B summary run: the aggregated and per-run tables (wandb.Table) and the charts
(wandb.Image), in the runs' W&B project and group (their config wandb.*, the most common value),
with its files under ``<out>/wandb``. Offline mode never touches the network."""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

from harness.report import Report
from harness.report.tables import table


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
    name = f"report-{group or rep.root.resolve().name}"
    run = wandb.init(project=_common(rep, "project") or "convbench", entity=_common(rep, "entity"), group=group, name=name,
                     job_type="report", dir=str(rep.out), mode=mode, reinit="finish_previous",
                     config={"source": str(rep.root), "status_counts": rep.status_counts})
    try:
        cols, cells = table(rep.rows)
        run_cols = list(rep.runs_table[0]) if rep.runs_table else []
        data: dict[str, Any] = {
            "report": wandb.Table(columns=cols, data=cells),
            "runs": wandb.Table(columns=run_cols, data=[[_cell(r[c]) for c in run_cols] for r in rep.runs_table]),
        }
        data.update({f"charts/{k}": wandb.Image(str(p), caption=k) for k, p in rep.charts.items()})
        run.log(data)
        run.summary.update({f"runs_{s}": n for s, n in rep.status_counts.items()})
        path = Path(run.dir).parent  # .../wandb/<offline-run-...>/files -> the run directory
    finally:
        run.finish()
    return path


def _cell(v: Any) -> Any:
    return v if v is None or isinstance(v, (int, float, str, bool)) else str(v)
