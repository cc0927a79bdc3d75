"""A sweep of thousands of runs, timed end to end through the CLI (printed, not asserted; `-s` shows them):

- expansion: `convbench sweep FILE --dry-run` (load, validate and list every run);
- Slurm: `convbench sweep FILE --backend slurm` to the local cluster, every array submitted held
  (`slurm.extra: [--hold]`, so nothing trains), then `sweep status` (one sacct and one squeue call for
  all arrays) and `sweep cancel`;
- local status and `convbench report` over one result.json per run: copies of one small real run
  (lenet5, synthetic data, one step) written under each run's own id, seed and config.

Goals on this machine: dry run and report under 30 s each, submission under 10 s, status under 5 s.
`make test` runs 1,000 runs (CONVBENCH_SCALE_RUNS); `make bench` runs 10,000.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from harness.sweep.spec import load
from tests.helpers import LENET5_SYNTHETIC, convbench, sweep_file
from tests.slurm_fixtures import SlurmCluster

RUNS = int(os.environ.get("CONVBENCH_SCALE_RUNS", "1000"))
PARAMETERS = {
    **LENET5_SYNTHETIC,
    "data.num_samples": 32,
    "data.batch_size": 32,
    "data.val_size": 0,
    "trainer.accelerator": "cpu",
    "trainer.log_every_n_steps": 1,
}
SLURM = {"cpus_per_task": 1, "time": "00:05:00", "array_parallelism": 50, "extra": ["--hold"]}


def scale_sweep(tmp_path: Path, name: str, seeds: list[int]) -> Path:
    block = {"name": name, "results": str(tmp_path / "results"), "seeds": seeds, "slurm": SLURM}
    return sweep_file(tmp_path / f"{name}.yaml", PARAMETERS, convbench=block)


def timed(cluster: SlurmCluster, *args: str) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.monotonic()
    proc = convbench(*args, cluster=cluster, timeout=600)
    wall = time.monotonic() - t0
    print(f"{' '.join(args[:2])}: {wall:.1f}s", flush=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return wall, proc


def copy_results(sweep_path: Path, tmp_path: Path) -> None:
    """One real run (seed RUNS, outside the sweep), then its result.json and metrics.csv under every run's id,
    with that run's seed and config put in."""
    real = scale_sweep(tmp_path, "real", [RUNS])
    proc = convbench("sweep", real)
    source = load(real).runs[0].run_dir
    assert (source / "result.json").is_file(), proc.stdout[-3000:] + proc.stderr[-3000:]
    template = json.loads((source / "result.json").read_text())
    metrics = {f.relative_to(source): f.read_bytes() for f in (source / "metrics").rglob("*") if f.is_file()}
    assert any(f.name == "metrics.csv" for f in metrics), metrics
    for run in load(sweep_path).runs:
        for rel, data in metrics.items():
            (run.run_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            (run.run_dir / rel).write_bytes(data)
        result = {**template, "run_id": run.run_id, "seed": run.config.seed, "config": run.config.to_dict()}
        (run.run_dir / "result.json").write_text(json.dumps(result, indent=1) + "\n")


@pytest.mark.slow
@pytest.mark.slurm
def test_sweep_at_scale(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    cluster = slurm_cluster
    p = scale_sweep(tmp_path, "scale", list(range(RUNS)))
    figures: dict[str, float] = {}
    figures["dry-run"], dry = timed(cluster, "sweep", str(p), "--dry-run")
    assert dry.stdout.count(" lenet5 ") == RUNS

    figures["submit"], sub = timed(cluster, "sweep", str(p), "--backend", "slurm")
    sweep = load(p)
    jobs = json.loads((sweep.dir / "jobs.json").read_text())
    block = 1000  # the local cluster runs Slurm's default MaxArraySize, 1001
    assert [(j["runs"], j["offset"]) for j in jobs] == [
        (f"{o}-{min(o + block, RUNS) - 1}", o) for o in range(0, RUNS, block)
    ]
    assert f"submitted {RUNS:,} runs as {len(jobs)} array job" in sub.stdout and len(sub.stdout) < 400, sub.stdout
    figures["status (slurm)"], status = timed(cluster, "sweep", "status", str(p))
    assert status.stdout.splitlines()[-1] == f"scale: {RUNS} pending", status.stdout[-500:]
    assert f"slurm {jobs[-1]['job_id']}_{RUNS - 1 - jobs[-1]['offset']} PENDING" in status.stdout.splitlines()[-2]
    figures["cancel"], _ = timed(cluster, "sweep", "cancel", str(p))
    queue = slurm_cluster.run("squeue", "-h", "-j", ",".join(j["job_id"] for j in jobs), "-t", "PENDING,RUNNING")
    assert queue.stdout.strip() == "", queue.stdout  # held, then cancelled: no task ever ran
    assert not any(r.run_dir.exists() for r in sweep.runs[:: max(1, RUNS // 50)])

    local = scale_sweep(tmp_path, "scale-local", list(range(RUNS)))  # the same runs, no Slurm jobs recorded
    copy_results(local, tmp_path)
    figures["status (local)"], status = timed(cluster, "sweep", "status", str(local))
    assert status.stdout.splitlines()[-1] == f"scale-local: {RUNS} completed", status.stdout[-500:]
    # the report of the submitted sweep's directory, which names its runs in runs.json
    figures["report"], report = timed(cluster, "report", str(sweep.dir), "--out", str(tmp_path / "report"))
    (row,) = json.loads((tmp_path / "report" / "report.json").read_text())["rows"]
    assert row["n"] == RUNS, row
    print(
        f"\nsweep of {RUNS:,} runs: "
        + ", ".join(f"{k} {v:.1f}s" for k, v in figures.items())
        + f" (load {os.getloadavg()[0]:.1f})"
    )
