"""Log a bench run to Weights & Biases: one run (job_type "bench") holding a table of all rows and,
in its summary, each row's samples/s and MFU. Offline mode writes under `results_dir` only and never
touches the network."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from .result import FIELDS, Result


def log_results(results: Sequence[Result], mode: str, results_dir: Path, config: dict[str, Any]) -> Path:
    """Returns the run's local folder."""
    import wandb

    results_dir.mkdir(parents=True, exist_ok=True)
    run = wandb.init(project="convbench", job_type="bench", dir=str(results_dir), mode=mode, config=config,
                     settings=wandb.Settings(silent=True, console="off"))
    table = wandb.Table(columns=FIELDS, data=[[_cell(v) for v in r.to_dict().values()] for r in results])
    run.log({"bench": table})
    for r in results:
        run.summary[f"{r.name}/{r.mode}/samples_per_s"] = r.samples_per_s
        if r.mfu is not None:
            run.summary[f"{r.name}/{r.mode}/mfu"] = r.mfu
    folder = Path(run.dir).parent
    run.finish()
    return folder


def _cell(value: Any) -> Any:
    """wandb tables take scalars: a list (input_size) becomes '3x32x32'."""
    return "x".join(map(str, value)) if isinstance(value, list) else value
