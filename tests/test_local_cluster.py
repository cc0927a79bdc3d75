"""The local Slurm cluster (slurm/local-cluster.sh) does what the SLURM path of convbench needs:
batch jobs, multi-task srun, arrays, cancellation, accounting, and torch.distributed through
Lightning's SLURMEnvironment.

The down/up cycle test is last on purpose: it restarts the session cluster and leaves it running.
"""

from __future__ import annotations

import os
import re
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.helpers import wait_for, wait_for_allocations
from tests.slurm_fixtures import SlurmCluster

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

DAEMONS = ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd")
JOB_TIMEOUT = 60.0


def _check(proc, what: str) -> str:
    assert proc.returncode == 0, f"{what}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def submit(cluster: SlurmCluster, tmp_path: Path, body: str, *options: str) -> str:
    """sbatch a script (body after the shebang) from tmp_path; return the job id."""
    script = tmp_path / f"job{len(list(tmp_path.glob('job*.sh')))}.sh"
    script.write_text("#!/bin/bash\n" + textwrap.dedent(body).lstrip())
    out = _check(
        cluster.run("sbatch", "--parsable", f"--chdir={tmp_path}", *options, script),
        "sbatch",
    )
    return out.strip().split(";")[0]  # --parsable prints "id" or "id;cluster"


def _alive(pid: int) -> bool:
    """Exists and is not a zombie (PID 1 in containers may reap late)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_until_running(cluster: SlurmCluster, job_id: str) -> None:
    wait_for(
        lambda: cluster.run("squeue", "-h", "-j", job_id, "-o", "%T").stdout.strip() == "RUNNING",
        f"job {job_id} to start",
        JOB_TIMEOUT,
        interval=0.1,
        detail=cluster.log_tail,
    )


def test_up_is_idempotent_and_env_prints_slurm_conf(slurm_cluster: SlurmCluster) -> None:
    up = slurm_cluster.script("up")
    assert _check(up, "second up").strip() == f"export SLURM_CONF={slurm_cluster.slurm_conf}"
    assert "already running" in up.stderr
    env = _check(slurm_cluster.script("env"), "env")
    assert env.strip() == f"export SLURM_CONF={slurm_cluster.slurm_conf}"


def test_status_reports_every_daemon_running(slurm_cluster: SlurmCluster) -> None:
    out = _check(slurm_cluster.script("status"), "status")
    for daemon in DAEMONS:
        assert re.search(rf"^{daemon}\s+running \(pid \d+\)$", out, re.M), out


RANK_OF = 'import os; print("rank", os.environ["SLURM_PROCID"], "of", os.environ["SLURM_NTASKS"])'


def test_sbatch_srun_two_ranks_completes(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    submitted = time.time()
    job_id = submit(
        slurm_cluster,
        tmp_path,
        f"""
        #SBATCH --job-name=ranks
        #SBATCH --ntasks-per-node=2
        #SBATCH --output=ranks.out
        echo "started $(date +%s.%N)"
        srun {sys.executable} -c '{RANK_OF}'
        """,
    )
    states = wait_for_allocations(slurm_cluster, job_id)
    assert states == {job_id: "COMPLETED", f"{job_id}.batch": "COMPLETED", f"{job_id}.0": "COMPLETED"}
    out = (tmp_path / "ranks.out").read_text()
    assert sorted(re.findall(r"^rank \d of 2$", out, re.M)) == ["rank 0 of 2", "rank 1 of 2"], out
    latency = float(re.search(r"^started (\S+)$", out, re.M).group(1)) - submitted
    print(f"sbatch submit-to-start latency: {latency:.2f}s")
    assert latency < 10, f"job took {latency:.1f}s to start (fast scheduler settings lost?)"


def test_job_array_runs_all_tasks(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    job_id = submit(
        slurm_cluster,
        tmp_path,
        """
        #SBATCH --job-name=array
        #SBATCH --array=0-3
        #SBATCH --output=task_%a.out
        echo "task $SLURM_ARRAY_TASK_ID of job $SLURM_ARRAY_JOB_ID"
        """,
    )
    states = wait_for_allocations(slurm_cluster, job_id, count=4)
    tasks = {j: s for j, s in states.items() if "." not in j}
    assert tasks == {f"{job_id}_{i}": "COMPLETED" for i in range(4)}, states
    for i in range(4):
        assert (tmp_path / f"task_{i}.out").read_text() == f"task {i} of job {job_id}\n"


def _pids_with_cmdline(*argv: str) -> list[int]:
    wanted = "\0".join(argv) + "\0"
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if (proc / "cmdline").read_text() == wanted and _alive(int(proc.name)):
                pids.append(int(proc.name))
        except OSError:
            pass
    return pids


def test_scancel_marks_job_cancelled_and_kills_its_processes(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    duration = f"300.{os.getpid()}"  # a command line no other process has
    job_id = submit(slurm_cluster, tmp_path, f"#SBATCH --job-name=sleeper\ntouch started\nsleep {duration}\n")
    wait_until_running(slurm_cluster, job_id)
    wait_for((tmp_path / "started").exists, "the job's first command", JOB_TIMEOUT, interval=0.05)
    _check(slurm_cluster.run("scancel", job_id), "scancel")
    states = wait_for_allocations(slurm_cluster, job_id)
    assert states[job_id] == "CANCELLED", states
    wait_for(lambda: not _pids_with_cmdline("sleep", duration), "the cancelled job's sleep to end", 10, interval=0.1)


GLOO_ALLREDUCE = """
import torch
import torch.distributed as dist
from lightning_fabric.plugins.environments import SLURMEnvironment

assert SLURMEnvironment.detect(), "Lightning does not see a SLURM job"
env = SLURMEnvironment()
env.validate_settings(num_devices=2, num_nodes=1)  # what Trainer(devices=2) checks under SLURM
rank, world = env.global_rank(), env.world_size()
dist.init_process_group(
    "gloo", init_method=f"tcp://{env.main_address}:{env.main_port}", rank=rank, world_size=world
)
value = torch.tensor([float(rank + 1)])
dist.all_reduce(value)
print(f"rank={rank} local={env.local_rank()} world={world} addr={env.main_address} sum={value.item()}", flush=True)
dist.destroy_process_group()
"""


def test_gloo_all_reduce_via_lightning_slurm_environment(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    (tmp_path / "allreduce.py").write_text(GLOO_ALLREDUCE)
    job_id = submit(
        slurm_cluster,
        tmp_path,
        # Not named bash/interactive (Lightning would ignore SLURM), --ntasks-per-node not --ntasks
        # (Lightning rejects that), one CPU per rank so both ranks fit the 2-CPU node.
        f"""
        #SBATCH --job-name=allreduce
        #SBATCH --nodes=1
        #SBATCH --ntasks-per-node=2
        #SBATCH --cpus-per-task=1
        #SBATCH --output=allreduce.out
        export OMP_NUM_THREADS=1
        srun {sys.executable} allreduce.py
        """,
    )
    # Two cold `import torch` at once on two cores, slower still when other suites share the CPUs.
    states = wait_for_allocations(slurm_cluster, job_id, timeout=150)
    out = (tmp_path / "allreduce.out").read_text()
    assert states[job_id] == "COMPLETED", f"{states}\n{out}"
    lines = sorted(re.findall(r"^rank=.*$", out, re.M))
    assert lines == [
        "rank=0 local=0 world=2 addr=localhost sum=3.0",
        "rank=1 local=1 world=2 addr=localhost sum=3.0",
    ], out


def test_down_stops_everything_then_up_restores(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    status = _check(slurm_cluster.script("status"), "status")
    pids = [int(p) for p in re.findall(r"running \(pid (\d+)\)", status)]
    assert len(pids) == len(DAEMONS), status

    _check(slurm_cluster.script("down"), "down")
    stopped = slurm_cluster.script("status")
    assert stopped.returncode != 0, stopped.stdout
    for daemon in DAEMONS:
        assert re.search(rf"^{daemon}\s+stopped$", stopped.stdout, re.M), stopped.stdout
    assert [p for p in pids if _alive(p)] == [], "daemons still alive after down"
    _check(slurm_cluster.script("down"), "second down")  # idempotent

    _check(slurm_cluster.script("up"), "up after down")
    _check(slurm_cluster.script("status"), "status after up")
    # The restarted cluster (same state dir, same job ID counter) still runs jobs.
    job_id = submit(slurm_cluster, tmp_path, "#SBATCH --job-name=after-restart\ntrue\n")
    assert wait_for_allocations(slurm_cluster, job_id)[job_id] == "COMPLETED"
