"""`convbench bench --sweep` on the real local Slurm cluster: a bench sweep file becomes one array
(one model a task; one model here, the array's indexing is tested in test_bench.py) whose srun steps run `convbench bench MODEL --devices 2` as two Slurm tasks, the
world taken from Slurm (each task one gloo rank), rank 0's task appending the rows; then `--merge`
reads them back into the scaling table and chart."""

from __future__ import annotations

import csv
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.slurm_fixtures import SlurmCluster

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[1]


def test_bench_sweep_runs_ddp_ranks_as_slurm_tasks(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    results = tmp_path / "bench"
    spec = tmp_path / "scaling.yaml"
    spec.write_text(
        textwrap.dedent(f"""
        name: scaling-test
        bench:
          models: [lenet5]
          devices: 2
          precision: ["32"]
          batch_size: 16
          args: [--iters, "3", --warmup, "1", --repeats, "2", --min-block, "0.001"]
          results: {results}
        slurm: {{cpus_per_task: 1, time: "00:10:00"}}
    """)
    )
    env = {**slurm_cluster.env, "NO_ALBUMENTATIONS_UPDATE": "1"}
    bench = lambda *a: subprocess.run(
        [sys.executable, "-m", "harness.cli", "bench", *a],
        capture_output=True,
        text=True,  # noqa: E731
        env=env,
        cwd=REPO,
        timeout=120,
    )
    proc = bench("--sweep", str(spec))
    assert proc.returncode == 0, proc.stderr
    job_id = proc.stdout.split("array job ")[1].split()[0]
    script = (results / "bench-array.sbatch").read_text()
    assert "--array=0-0" in script and "--ntasks-per-node=2" in script and "gres" not in script
    deadline = time.monotonic() + 240
    while slurm_cluster.run("squeue", "-h", "-j", job_id).stdout.strip():
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {p}\n{p.read_text()[-3000:]}" for p in sorted((results / "logs").glob("*")))
            pytest.fail(f"bench array {job_id} still queued or running\n{logs}")
        time.sleep(0.5)
    logs = "\n".join(p.read_text()[-3000:] for p in sorted((results / "logs").glob("*")))
    with (results / "lenet5.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["name"], r["world_size"], r["nodes"], r["backend"], r["threads"]) for r in rows] == [
        ("lenet5", "1", "1", "gloo", "1"),
        ("lenet5", "2", "1", "gloo", "1"),
    ], logs
    assert float(rows[1]["raw_allreduce_busbw"]) > 0 and float(rows[0]["scaling_efficiency"]) == 1
    proc = bench("--merge", str(results / "lenet5.csv"), "--chart", str(tmp_path / "scaling.png"))
    assert proc.returncode == 0 and proc.stdout.count("lenet5") == 2 and "efficiency" in proc.stdout, proc.stderr
    assert (tmp_path / "scaling.png").stat().st_size > 10_000
