"""Split arrays on the real local cluster: MaxArraySize lowered in its slurm.conf (`scontrol reconfigure`) on
a fresh cluster, to 50 for 120 held runs, then to 2 for a sweep split into 3 arrays whose tasks all train to
completion under a %1 throttle, status, cancel and the resubmission of the rest across the arrays (with
offsets); 1,100 held runs at Slurm's default MaxArraySize (1001). Held arrays (`slurm.extra: [--hold]`) never
train."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from harness.sweep import ranges
from harness.sweep.spec import load
from tests.helpers import LENET5_SYNTHETIC, convbench, sweep_file, wait_for
from tests.slurm_fixtures import SlurmCluster

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def one_step_sweep(tmp_path: Path, name: str, runs: int, slurm: dict[str, Any]) -> Path:
    """lenet5 on 32 synthetic images, one step: the runs cost their imports and little else."""
    return sweep_file(
        tmp_path / f"{name}.yaml",
        {
            **LENET5_SYNTHETIC,
            "data.num_samples": 32,
            "data.batch_size": 32,
            "data.val_size": 0,
            "trainer.accelerator": "cpu",
        },
        convbench={"name": name, "results": str(tmp_path / "results"), "seeds": list(range(runs)), "slurm": slurm},
    )


def statuses(cluster: SlurmCluster, p: Path) -> dict[int, tuple[str, str | None]]:
    rows = json.loads(convbench("sweep", "status", p, "--json", cluster=cluster, check=True).stdout)
    return {r["index"]: (r["status"], r["slurm_task"]) for r in rows}


def max_array_size(cluster: SlurmCluster, n: int) -> None:
    """MaxArraySize=n for the rest of this module's fresh cluster's life (slurm_cluster_arrays), so each test
    lowers it below the one before. Never raised: slurmctld 22.05 kept rejecting arrays here after the limit
    was raised again."""
    original = cluster.slurm_conf.read_text()
    current = re.search(r"^MaxArraySize=(\d+)$", original, re.M)
    assert current, "slurm/local-cluster.sh writes MaxArraySize"
    assert n <= int(current[1]), f"MaxArraySize is {current[1]} already: a test that lowers it less comes first"
    cluster.slurm_conf.write_text(re.sub(r"^MaxArraySize=.*$", f"MaxArraySize={n}", original, flags=re.M))
    assert cluster.run("scontrol", "reconfigure").returncode == 0
    assert re.search(rf"MaxArraySize\s*=\s*{n}\n", cluster.run("scontrol", "show", "config").stdout)


def test_120_held_runs_split_at_max_array_size_50(slurm_cluster_arrays: SlurmCluster, tmp_path: Path) -> None:
    cluster = slurm_cluster_arrays
    p = one_step_sweep(tmp_path, "held120", 120, {"cpus_per_task": 1, "array_parallelism": 4, "extra": ["--hold"]})
    sweep = load(p)
    max_array_size(cluster, 50)
    sub = convbench("sweep", p, "--backend", "slurm", cluster=cluster, check=True)
    jobs = json.loads((sweep.dir / "jobs.json").read_text())
    ids = [j["job_id"] for j in jobs]
    assert f"submitted 120 runs as 3 array jobs (0-49, 50-99, 100-119): jobs {', '.join(ids)}" in sub.stdout, sub.stdout
    tasks = cluster.run("squeue", "-h", "-r", "-o", "%i %r", "-j", ",".join(ids)).stdout.split("\n")
    assert len([t for t in tasks if t]) == 120 and all("JobHeld" in t for t in tasks if t), tasks[:3]
    status = statuses(cluster, p)
    assert status[0] == ("pending", f"{ids[0]}_0") and status[57] == ("pending", f"{ids[1]}_7")
    assert status[119] == ("pending", f"{ids[2]}_19")
    # a second submission sees every run queued, across the three arrays
    assert "nothing to submit" in convbench("sweep", p, "--backend", "slurm", cluster=cluster, check=True).stdout
    convbench("sweep", "cancel", p, cluster=cluster, check=True)
    wait_for(lambda: all(s == "cancelled" for s, _ in statuses(cluster, p).values()), "status: all cancelled", 60)
    assert not any(r.run_dir.exists() for r in sweep.runs)


def test_split_arrays_throttle_complete_cancel_and_rerun(slurm_cluster_arrays: SlurmCluster, tmp_path: Path) -> None:
    cluster = slurm_cluster_arrays
    p = one_step_sweep(tmp_path, "split", 6, {"cpus_per_task": 1, "array_parallelism": 1})
    sweep = load(p)
    max_array_size(cluster, 2)
    sub = convbench("sweep", p, "--backend", "slurm", cluster=cluster, check=True)
    jobs = json.loads((sweep.dir / "jobs.json").read_text())
    ids = [j["job_id"] for j in jobs]
    assert f"submitted 6 runs as 3 array jobs (0-1, 2-3, 4-5): jobs {', '.join(ids)}" in sub.stdout, sub.stdout
    assert [(j["runs"], j["offset"]) for j in jobs] == [("0-1", 0), ("2-3", 2), ("4-5", 4)]
    assert [re.search(r"--array=(\S+)", Path(j["script"]).read_text()).group(1) for j in jobs] == ["0-1%1"] * 3
    assert "ArrayTaskThrottle=1" in cluster.run("scontrol", "show", "job", ids[1]).stdout
    # the throttle, watched: never two tasks of one array running at once
    running: list[int] = []  # at each look, the most tasks of one array running

    def runs_0_and_2_completed() -> bool:
        queue = cluster.run("squeue", "-h", "-r", "-t", "RUNNING", "-o", "%F", "-j", ",".join(ids)).stdout.split()
        running.append(max(queue.count(i) for i in ids))
        return all((sweep.runs[i].run_dir / "result.json").is_file() for i in (0, 2))

    wait_for(runs_0_and_2_completed, "runs 0 and 2 to complete", 180)
    assert max(running) <= 1, running
    convbench("sweep", "cancel", p, cluster=cluster, check=True)
    wait_for(
        lambda: not cluster.run("squeue", "-h", "-j", ",".join(ids)).stdout.strip(),
        "the cancelled arrays to leave the queue",
        60,
    )
    first = statuses(cluster, p)
    assert first[0][0] == first[2][0] == "completed"
    assert first[5][1] == f"{ids[2]}_1", first  # run 5 = task 1 of the third array (offset 4)
    assert "cancelled" in {s for s, _ in first.values()}, first
    left = sorted(i for i, (s, _) in first.items() if s != "completed")
    again = convbench("sweep", p, "--backend", "slurm", cluster=cluster, check=True).stdout  # split again: size 2
    jobs = json.loads((sweep.dir / "jobs.json").read_text())
    resubmitted = jobs[len(ids) :]
    assert sorted(i for j in resubmitted for i in ranges.expand(j["runs"])) == left, resubmitted
    assert all(i - j["offset"] < 2 for j in resubmitted for i in ranges.expand(j["runs"])), (
        resubmitted
    )  # task ids < MaxArraySize
    assert f"submitted {len(left)} runs as {len(resubmitted)} array jobs" in again, again
    wait_for(lambda: all((r.run_dir / "result.json").is_file() for r in sweep.runs), "every run's result", 240)
    wait_for(lambda: all(s == "completed" for s, _ in statuses(cluster, p).values()), "status: all completed", 60)
    assert "nothing to submit" in convbench("sweep", p, "--backend", "slurm", cluster=cluster, check=True).stdout


def test_1100_held_runs_submit_at_the_default_max_array_size(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    assert re.search(r"MaxArraySize\s*=\s*1001\n", slurm_cluster.run("scontrol", "show", "config").stdout)
    p = one_step_sweep(tmp_path, "held1100", 1100, {"cpus_per_task": 1, "extra": ["--hold"]})
    sweep = load(p)
    sub = convbench("sweep", p, "--backend", "slurm", cluster=slurm_cluster, check=True)
    jobs = json.loads((sweep.dir / "jobs.json").read_text())
    ids = [j["job_id"] for j in jobs]
    assert sub.stdout.strip() == f"submitted 1,100 runs as 2 array jobs (0-999, 1000-1099): jobs {', '.join(ids)}"
    assert [(j["runs"], j["offset"]) for j in jobs] == [("0-999", 0), ("1000-1099", 1000)]
    shown = slurm_cluster.run("scontrol", "show", "job", ids[1]).stdout
    assert "ArrayTaskId=0-99" in shown and "JobHeld" in shown
    status = statuses(slurm_cluster, p)
    assert len(status) == 1100 and status[1099] == ("pending", f"{ids[1]}_99")
    convbench("sweep", "cancel", p, cluster=slurm_cluster, check=True)
    wait_for(
        lambda: not slurm_cluster.run("squeue", "-h", "-j", ",".join(ids)).stdout.strip(),
        "the arrays to leave the queue",
        60,
    )
    assert statuses(slurm_cluster, p)[1050] == ("cancelled", f"{ids[1]}_50")
