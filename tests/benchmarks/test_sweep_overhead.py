"""Sweep overheads, measured and printed (not asserted; run with -s to see the numbers):

- local: a sweep's wall time vs (sum of the runs' own wall times) / parallel slots (goal <= 1.15x);
- SLURM: submit -> first training step of an array task on the local cluster.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from harness.sweep.spec import load
from tests.helpers import LENET5_SYNTHETIC, convbench, sweep_file, wait_for
from tests.slurm_fixtures import SlurmCluster


def write(tmp_path: Path, epochs: int, seeds: list[int]) -> Path:
    return sweep_file(
        tmp_path / "bench.yaml",
        {
            **LENET5_SYNTHETIC,
            "epochs": epochs,
            "data.num_samples": 1024,
            "trainer.accelerator": "cpu",
            "trainer.log_every_n_steps": 1,
        },
        convbench={
            "name": "bench",
            "results": str(tmp_path / "results"),
            "seeds": seeds,
            "slurm": {"cpus_per_task": 2},
        },
    )


@pytest.mark.slow
def test_local_sweep_overhead(tmp_path: Path) -> None:
    parallel = 2
    p = write(tmp_path, epochs=2, seeds=[0, 1, 2, 3])
    t0 = time.monotonic()
    proc = convbench("sweep", p, "--parallel", str(parallel), timeout=600)
    wall = time.monotonic() - t0
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = [json.loads((r.run_dir / "result.json").read_text())["wall_time_s"] for r in load(p).runs]
    ideal = sum(runs) / parallel
    print(
        f"\nlocal sweep: {len(runs)} runs, parallel {parallel}: wall {wall:.1f}s, "
        f"sum of run wall times {sum(runs):.1f}s, ratio wall/(sum/parallel) = {wall / ideal:.2f}x "
        "(the wall includes the runner's one import of the training stack)"
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
    proc = convbench("sweep", p, "--backend", "slurm", cluster=slurm_cluster, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wait_for((run.run_dir / "result.json").is_file, "the run's result", 180, interval=0.05)
    result = json.loads((run.run_dir / "result.json").read_text())
    (job,) = json.loads((load(p).dir / "jobs.json").read_text())
    # sbatch's return (recorded in jobs.json) -> the first training step's start (recorded by the run)
    latency = result["first_step_at"] - job["submitted"]
    print(
        f"\nslurm: `convbench sweep --backend slurm` returned after {job['submitted'] - t0:.2f}s; "
        f"submit -> first training step {latency:.1f}s (goal 5 s); "
        f"submit -> result.json {time.time() - job['submitted']:.1f}s"
    )
    assert result["status"] == "completed" and 0 < latency < 180
