"""Log a bench run to Weights & Biases: one run (job_type "bench") holding a table of all rows, native
W&B charts over the model rows (wandb.plot: samples/s and MFU per model, samples/s vs MACs, peak
memory vs samples/s) and, in its summary, each row's samples/s and MFU. Offline mode writes under
`results_dir` only and never touches the network."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from .result import FIELDS, Result

CHART_COLUMNS = ["model", "name", "mode", "batch_size", "macs", "params", "samples_per_s", "step_time_ms", "peak_memory_mib", "mfu"]


def chart_table(results: Sequence[Result]) -> list[list[Any]]:
    """The model rows (a data pipeline row has no MACs), one line each: 'resnet20 train' is the model label."""
    return [[f"{r.name} {r.mode}", r.name, r.mode, r.batch_size, r.macs, r.params, r.samples_per_s, r.step_time_ms,
             r.peak_memory_bytes / 2**20, r.mfu] for r in results if r.macs is not None]


def log_results(results: Sequence[Result], mode: str, results_dir: Path, config: dict[str, Any]) -> Path:
    """Returns the run's local folder."""
    import wandb

    from harness.wandb_run import wait_written

    results_dir.mkdir(parents=True, exist_ok=True)
    run = wandb.init(project="convbench", job_type="bench", dir=str(results_dir), mode=mode, config=config,
                     settings=wandb.Settings(silent=True, console="off"))
    data: dict[str, Any] = {"bench": wandb.Table(columns=FIELDS, data=[[_cell(v) for v in r.to_dict().values()] for r in results])}
    cells = chart_table(results)
    if cells:
        t = wandb.Table(columns=CHART_COLUMNS, data=cells)
        data.update({
            "charts/samples_per_s": wandb.plot.bar(t, "model", "samples_per_s", title="samples/s per model"),
            "charts/samples_per_s_vs_macs": wandb.plot.scatter(t, "macs", "samples_per_s", title="samples/s vs MACs per sample"),
            "charts/memory_vs_samples_per_s": wandb.plot.scatter(t, "samples_per_s", "peak_memory_mib", title="peak memory MiB vs samples/s"),
        })
        if any(c[-1] is not None for c in cells):
            data["charts/mfu"] = wandb.plot.bar(t, "model", "mfu", title="MFU per model")
    run.log(data)
    for r in results:
        run.summary[f"{r.name}/{r.mode}/samples_per_s"] = r.samples_per_s
        if r.mfu is not None:
            run.summary[f"{r.name}/{r.mode}/mfu"] = r.mfu
    folder = Path(run.dir).parent
    run.finish()
    why = wait_written(folder, run.id)
    if why is not None:
        raise RuntimeError(f"W&B wrote no complete run to {folder} ({why})")
    return folder


def _cell(value: Any) -> Any:
    """wandb tables take scalars: a list (input_size) becomes '3x32x32'."""
    return "x".join(map(str, value)) if isinstance(value, list) else value
