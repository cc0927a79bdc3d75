"""Sweep overheads, measured and printed (not asserted; run with -s to see the numbers):

- local: a sweep's wall time vs (sum of the runs' own wall times) / parallel slots (goal <= 1.15x);
- SLURM: submit -> first training step of an array task on the local cluster.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from harness.sweep.spec import load
from tests.slurm_fixtures import SlurmCluster

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
BODY = """
    method: grid
    parameters:
      arch: {value: lenet5}
      dataset: {value: synthetic}
      epochs: {value: EPOCHS}
      data.input_size: {value: [1, 32, 32]}
      data.num_samples: {value: 1024}
      data.num_workers: {value: 0}
      wandb.mode: {value: disabled}
      trainer.accelerator: {value: cpu}
      trainer.log_every_n_steps: {value: 1}
    convbench:
      name: bench
      results: RESULTS
      seeds: SEEDS
      slurm: {cpus_per_task: 2}
"""


def write(tmp_path: Path, epochs: int, seeds: list[int]) -> Path:
    p = tmp_path / "bench.yaml"
    p.write_text(
        textwrap.dedent(BODY)
        .replace("RESULTS", str(tmp_path / "results"))
        .replace("EPOCHS", str(epochs))
        .replace("SEEDS", json.dumps(seeds))
    )
    return p


@pytest.mark.slow
def test_local_sweep_overhead(tmp_path: Path) -> None:
    parallel = 2
    p = write(tmp_path, epochs=2, seeds=[0, 1, 2, 3])
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "sweep", str(p), "--parallel", str(parallel)],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    wall = time.monotonic() - t0
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = [json.loads((r.run_dir / "result.json").read_text())["wall_time_s"] for r in load(p).runs]
    ideal = sum(runs) / parallel
    print(
        f"\nlocal sweep: {len(runs)} runs, parallel {parallel}: wall {wall:.1f}s, sum of run wall times {sum(runs):.1f}s, "
        f"ratio wall/(sum/parallel) = {wall / ideal:.2f}x (the wall includes the runner's one import of the training stack, ~4 s)"
    )
    # the figure the sweep prints itself: the same ratio, without this process's own start-up
    printed = float(re.search(r"overhead (\d+\.\d+)x", proc.stdout).group(1))
    assert f"{len(runs)} runs trained" in proc.stdout
    assert 0.95 <= printed <= wall / ideal + 0.01, proc.stdout


@pytest.mark.slow
@pytest.mark.slurm
def test_slurm_submit_to_first_step(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    p = write(tmp_path, epochs=1, seeds=[0])
    run = load(p).runs[0]
    t0 = time.time()
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "sweep", str(p), "--backend", "slurm"],
        cwd=REPO,
        env={**slurm_cluster.env, "NO_ALBUMENTATIONS_UPDATE": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    deadline = time.time() + 180
    while not (run.run_dir / "result.json").is_file() and time.time() < deadline:
        time.sleep(0.05)
    result = json.loads((run.run_dir / "result.json").read_text())
    (job,) = json.loads((load(p).dir / "jobs.json").read_text())
    # sbatch's return (recorded in jobs.json) -> the first training step's start (recorded by the run)
    latency = result["first_step_at"] - job["submitted"]
    print(
        f"\nslurm: `convbench sweep --backend slurm` returned after {job['submitted'] - t0:.2f}s; submit -> first training step "
        f"{latency:.1f}s (goal 5 s); submit -> result.json {time.time() - job['submitted']:.1f}s"
    )
    assert result["status"] == "completed" and 0 < latency < 180
