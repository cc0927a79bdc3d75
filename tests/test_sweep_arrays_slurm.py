"""Split arrays on the real local cluster: MaxArraySize lowered in its slurm.conf (`scontrol reconfigure`),
a sweep split into 3 arrays whose tasks all train to completion under a %1 throttle, status, cancel and
the resubmission of the rest across the arrays (with offsets); 120 held runs split at MaxArraySize 50;
1,100 held runs at Slurm's default MaxArraySize (1001). Held arrays (`slurm.extra: [--hold]`) never train."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from harness.sweep import ranges
from harness.sweep.spec import load
from tests.slurm_fixtures import SlurmCluster

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[1]


def sweep_file(tmp_path: Path, name: str, runs: int, slurm: str) -> Path:
    """lenet5 on 32 synthetic images, one step: the runs cost their imports and little else."""
    p = tmp_path / f"{name}.yaml"
    p.write_text(
        textwrap.dedent(f"""
        method: grid
        parameters:
          arch: {{value: lenet5}}
          dataset: {{value: synthetic}}
          data.input_size: {{value: [1, 32, 32]}}
          data.num_samples: {{value: 32}}
          data.batch_size: {{value: 32}}
          data.val_size: {{value: 0}}
          data.num_workers: {{value: 0}}
          wandb.mode: {{value: disabled}}
          trainer.accelerator: {{value: cpu}}
        convbench:
          name: {name}
          results: {tmp_path / "results"}
          seeds: {json.dumps(list(range(runs)))}
          slurm: {slurm}
    """).lstrip()
    )
    return p


def cli(cluster: SlurmCluster, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "sweep", *args],
        capture_output=True,
        text=True,
        env={**cluster.env, "NO_ALBUMENTATIONS_UPDATE": "1"},
        cwd=REPO,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def statuses(cluster: SlurmCluster, p: Path) -> dict[int, tuple[str, str | None]]:
    rows = json.loads(cli(cluster, "status", str(p), "--json").stdout)
    return {r["index"]: (r["status"], r["slurm_task"]) for r in rows}


def max_array_size(cluster: SlurmCluster, n: int) -> None:
    """MaxArraySize=n for the rest of this fresh cluster's life (slurm_cluster_arrays: one a test). Not
    raised back: slurmctld 22.05 kept rejecting arrays here after the limit was raised again."""
    original = cluster.slurm_conf.read_text()
    assert re.search(r"^MaxArraySize=", original, re.M), "slurm/local-cluster.sh writes MaxArraySize"
    cluster.slurm_conf.write_text(re.sub(r"^MaxArraySize=.*$", f"MaxArraySize={n}", original, flags=re.M))
    assert cluster.run("scontrol", "reconfigure").returncode == 0
    assert re.search(rf"MaxArraySize\s*=\s*{n}\n", cluster.run("scontrol", "show", "config").stdout)


def wait_for(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_split_arrays_throttle_complete_cancel_and_rerun(slurm_cluster_arrays: SlurmCluster, tmp_path: Path) -> None:
    p = sweep_file(tmp_path, "split", 6, "{cpus_per_task: 1, array_parallelism: 1}")
    sweep = load(p)
    max_array_size(slurm_cluster_arrays, 2)
    sub = cli(slurm_cluster_arrays, str(p), "--backend", "slurm")
    jobs = json.loads((sweep.dir / "jobs.json").read_text())
    ids = [j["job_id"] for j in jobs]
    assert f"submitted 6 runs as 3 array jobs (0-1, 2-3, 4-5): jobs {', '.join(ids)}" in sub.stdout, sub.stdout
    assert [(j["runs"], j["offset"]) for j in jobs] == [("0-1", 0), ("2-3", 2), ("4-5", 4)]
    assert [re.search(r"--array=(\S+)", Path(j["script"]).read_text()).group(1) for j in jobs] == ["0-1%1"] * 3
    assert "ArrayTaskThrottle=1" in slurm_cluster_arrays.run("scontrol", "show", "job", ids[1]).stdout
    # the throttle, watched: never two tasks of one array running at once
    most, deadline = 0, time.monotonic() + 180
    while not ((sweep.runs[0].run_dir / "result.json").is_file() and (sweep.runs[2].run_dir / "result.json").is_file()):
        queue = slurm_cluster_arrays.run(
            "squeue", "-h", "-r", "-t", "RUNNING", "-o", "%F", "-j", ",".join(ids)
        ).stdout.split()
        most = max([most, *(queue.count(i) for i in ids)])
        assert time.monotonic() < deadline, "runs 0 and 2 never completed"
        time.sleep(0.2)
    assert most <= 1
    cli(slurm_cluster_arrays, "cancel", str(p))
    wait_for(
        lambda: not slurm_cluster_arrays.run("squeue", "-h", "-j", ",".join(ids)).stdout.strip(),
        60,
        "the cancelled arrays to leave the queue",
    )
    first = statuses(slurm_cluster_arrays, p)
    assert first[0][0] == first[2][0] == "completed"
    assert first[5][1] == f"{ids[2]}_1", first  # run 5 = task 1 of the third array (offset 4)
    assert "cancelled" in {s for s, _ in first.values()}, first
    left = sorted(i for i, (s, _) in first.items() if s != "completed")
    again = cli(slurm_cluster_arrays, str(p), "--backend", "slurm").stdout  # split again at MaxArraySize 2
    jobs = json.loads((sweep.dir / "jobs.json").read_text())
    resubmitted = jobs[len(ids) :]
    assert sorted(i for j in resubmitted for i in ranges.expand(j["runs"])) == left, resubmitted
    assert all(i - j["offset"] < 2 for j in resubmitted for i in ranges.expand(j["runs"])), (
        resubmitted
    )  # task ids < MaxArraySize
    assert f"submitted {len(left)} runs as {len(resubmitted)} array jobs" in again, again
    wait_for(lambda: all((r.run_dir / "result.json").is_file() for r in sweep.runs), 240, "every run's result")
    wait_for(
        lambda: all(s == "completed" for s, _ in statuses(slurm_cluster_arrays, p).values()),
        60,
        "status: all completed",
    )
    assert "nothing to submit" in cli(slurm_cluster_arrays, str(p), "--backend", "slurm").stdout


def test_120_held_runs_split_at_max_array_size_50(slurm_cluster_arrays: SlurmCluster, tmp_path: Path) -> None:
    p = sweep_file(tmp_path, "held120", 120, "{cpus_per_task: 1, array_parallelism: 4, extra: [--hold]}")
    sweep = load(p)
    max_array_size(slurm_cluster_arrays, 50)
    sub = cli(slurm_cluster_arrays, str(p), "--backend", "slurm")
    jobs = json.loads((sweep.dir / "jobs.json").read_text())
    ids = [j["job_id"] for j in jobs]
    assert f"submitted 120 runs as 3 array jobs (0-49, 50-99, 100-119): jobs {', '.join(ids)}" in sub.stdout, sub.stdout
    tasks = slurm_cluster_arrays.run("squeue", "-h", "-r", "-o", "%i %r", "-j", ",".join(ids)).stdout.split("\n")
    assert len([t for t in tasks if t]) == 120 and all("JobHeld" in t for t in tasks if t), tasks[:3]
    status = statuses(slurm_cluster_arrays, p)
    assert status[0] == ("pending", f"{ids[0]}_0") and status[57] == ("pending", f"{ids[1]}_7")
    assert status[119] == ("pending", f"{ids[2]}_19")
    # a second submission sees every run queued, across the three arrays
    assert "nothing to submit" in cli(slurm_cluster_arrays, str(p), "--backend", "slurm").stdout
    cli(slurm_cluster_arrays, "cancel", str(p))
    wait_for(
        lambda: all(s == "cancelled" for s, _ in statuses(slurm_cluster_arrays, p).values()),
        60,
        "status: all cancelled",
    )
    assert not any(r.run_dir.exists() for r in sweep.runs)


def test_1100_held_runs_submit_at_the_default_max_array_size(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    assert re.search(r"MaxArraySize\s*=\s*1001\n", slurm_cluster.run("scontrol", "show", "config").stdout)
    p = sweep_file(tmp_path, "held1100", 1100, "{cpus_per_task: 1, extra: [--hold]}")
    sweep = load(p)
    sub = cli(slurm_cluster, str(p), "--backend", "slurm")
    jobs = json.loads((sweep.dir / "jobs.json").read_text())
    ids = [j["job_id"] for j in jobs]
    assert sub.stdout.strip() == f"submitted 1,100 runs as 2 array jobs (0-999, 1000-1099): jobs {', '.join(ids)}"
    assert [(j["runs"], j["offset"]) for j in jobs] == [("0-999", 0), ("1000-1099", 1000)]
    shown = slurm_cluster.run("scontrol", "show", "job", ids[1]).stdout
    assert "ArrayTaskId=0-99" in shown and "JobHeld" in shown
    status = statuses(slurm_cluster, p)
    assert len(status) == 1100 and status[1099] == ("pending", f"{ids[1]}_99")
    cli(slurm_cluster, "cancel", str(p))
    wait_for(
        lambda: not slurm_cluster.run("squeue", "-h", "-j", ",".join(ids)).stdout.strip(),
        60,
        "the arrays to leave the queue",
    )
    assert statuses(slurm_cluster, p)[1050] == ("cancelled", f"{ids[1]}_50")
