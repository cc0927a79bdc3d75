"""`convbench bench --sweep` on the real local Slurm cluster: a bench sweep file becomes one array
(one model a task here; the array's indexing is tested in test_bench.py) whose srun steps run
`convbench bench MODEL --devices 2` as two Slurm tasks, the world taken from Slurm (each task one
gloo rank), rank 0's task appending the rows and logging the progress; then `--merge` reads them
back into the scaling table and chart."""

from __future__ import annotations

import csv
import re
import textwrap
from pathlib import Path

import pytest

from tests.helpers import convbench, sweep_logs, wait_for
from tests.slurm_fixtures import SlurmCluster

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


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
    proc = convbench("bench", "--sweep", spec, cluster=slurm_cluster, timeout=120)
    assert proc.returncode == 0, proc.stderr
    job_id = proc.stdout.split("array job ")[1].split()[0]
    script = (results / "bench-array.sbatch").read_text()
    assert "--array=0-0" in script and "--ntasks-per-node=2" in script and "gres" not in script
    wait_for(
        lambda: not slurm_cluster.run("squeue", "-h", "-j", job_id).stdout.strip(),
        f"bench array {job_id} to leave the queue",
        timeout=240,
        interval=0.5,
        detail=lambda: sweep_logs(results),
    )
    logs = "\n".join(p.read_text() for p in sorted((results / "logs").glob("*")))
    with (results / "lenet5.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["name"], r["world_size"], r["nodes"], r["backend"], r["threads"]) for r in rows] == [
        ("lenet5", "1", "1", "gloo", "1"),
        ("lenet5", "2", "1", "gloo", "1"),
    ], logs
    assert float(rows[1]["raw_allreduce_busbw"]) > 0 and float(rows[0]["scaling_efficiency"]) == 1
    # the batch log's progress lines, once: rank 1's task, which shares the log, says nothing
    for label in ("lenet5 train, 1 rank (1/2)", "lenet5 train, 2 ranks (2/2)"):
        assert len(re.findall(rf"(?m)^bench: {re.escape(label)}$", logs)) == 1, logs
        assert len(re.findall(rf"(?m)^bench: {re.escape(label)} done in \d+\.\d s$", logs)) == 1, logs
    proc = convbench(
        "bench", "--merge", results / "lenet5.csv", "--chart", tmp_path / "scaling.png", cluster=slurm_cluster
    )
    assert proc.returncode == 0 and proc.stdout.count("lenet5") == 2 and "efficiency" in proc.stdout, proc.stderr
    assert (tmp_path / "scaling.png").stat().st_size > 10_000
