"""Two Slurm nodes for real (slurm/local-cluster.sh up --nodes 2: node1 and node2 in their own network
namespaces): a `trainer.num_nodes: 2` sweep run (one rank a node, gloo) that is requeued by
`scontrol requeue` (SIGTERM: checkpoint at an agreed step, stop, Slurm restarts it) and then
preempted by the SIGUSR1 path, and finishes with one result from both nodes, one W&B run and a
merged curve with every logged step once; requeues at random moments that lose no work; and
`convbench bench --devices 1 --nodes 2` under srun, one rank a node."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from functools import partial
from pathlib import Path

import pytest

from harness.run_record import read_metrics
from harness.sweep.spec import load
from tests.helpers import REPO, convbench, sweep_file, sweep_logs, wait_for, wait_for_allocations
from tests.slurm_fixtures import SlurmCluster

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
LOG_EVERY = 5
WANDB = {"WANDB_MODE": "offline"}


def two_node_sweep(tmp_path: Path, name: str, epochs: int, train_limit: int, every_min: float) -> Path:
    return sweep_file(
        tmp_path / f"{name}.yaml",
        {
            "arch": "lenet5",
            "dataset": "fashion-mnist",
            "epochs": epochs,
            "data.train_limit": train_limit,
            "data.val_size": 500,
            "data.num_workers": 0,
            "data.batch_size": 64,
            "trainer.accelerator": "cpu",
            "trainer.devices": 1,
            "trainer.num_nodes": 2,
            "trainer.strategy": "ddp",
            "trainer.log_every_n_steps": LOG_EVERY,
            "trainer.checkpoint_every_min": every_min,
            "wandb.mode": "offline",
        },
        convbench={
            "name": name,
            "results": str(tmp_path / "results"),
            "seeds": [0],
            "slurm": {"cpus_per_task": 1, "time": "00:10:00"},
        },
    )


def logged_steps(run_dir: Path) -> list[int]:
    return [int(r["step"]) for r in read_metrics(run_dir) if r.get("train/loss_step") is not None]


def check_one_run(run_dir: Path, result: dict) -> None:
    """One result from both nodes, one W&B run id, every logged step once and none missing."""
    assert (result["status"], result["world_size"], result["num_nodes"]) == ("completed", 2, 2)
    assert sorted(result["hosts"]) == ["node1", "node2"], result["hosts"]
    wandb_id = (run_dir / "wandb_id").read_text().strip()
    # offline, the one W&B run is exported after result.json (harness.wandb_run)
    wait_for(lambda: any((run_dir / "wandb").glob("offline-run-*")), "the W&B export", 60, interval=0.5)
    assert {d.name.rsplit("-", 1)[1] for d in (run_dir / "wandb").glob("offline-run-*")} == {wandb_id}
    steps = logged_steps(run_dir)
    assert steps == list(range(steps[0], steps[-1] + 1, LOG_EVERY)) and steps[0] < LOG_EVERY, steps
    assert steps[-1] > result["global_step"] - LOG_EVERY - 1, (steps[-1], result["global_step"])


def run_job(cluster: SlurmCluster, *args: str | Path, timeout: float) -> str:
    """`sbatch ARGS` to the job's end (polled through sacct, not `sbatch --wait`: helpers.wait_for_allocations);
    the job's final state."""
    sub = cluster.run("sbatch", "--parsable", *args)
    assert sub.returncode == 0, sub.stderr
    job = sub.stdout.strip().split(";")[0]  # "id" or "id;cluster"
    return wait_for_allocations(cluster, job, timeout=timeout)[job]


def namespaces_and_links(cluster: SlurmCluster) -> tuple[set[str], set[str]]:
    """This cluster's network namespaces and links, from `status` (it names the tag they carry)."""
    tag = re.search(r"\(netns (\w+)-node1\)", cluster.script("status").stdout).group(1)
    netns = {line.split()[0] for line in cluster.run("ip", "netns", "list").stdout.splitlines() if line.startswith(tag)}
    links = {
        line.split()[0].split("@")[0]
        for line in cluster.run("ip", "-br", "link").stdout.splitlines()
        if line.startswith(tag)
    }
    return netns, links


def test_two_nodes_have_their_own_hostnames_and_addresses(slurm_cluster_2n: SlurmCluster, tmp_path: Path) -> None:
    status = slurm_cluster_2n.script("status")
    assert (
        status.returncode == 0
        and re.search(r"(?m)^slurmd-node1\s+running", status.stdout)
        and "slurmd-node2" in status.stdout
    )
    netns, links = namespaces_and_links(slurm_cluster_2n)
    assert len(netns) == 2 and len(links) == 3, (netns, links)  # a bridge and a veth per node
    script = tmp_path / "where.sh"
    script.write_text("#!/bin/bash\nsrun bash -c 'echo $(hostname) $(hostname -i)'\n")
    out = tmp_path / "where.out"
    state = run_job(slurm_cluster_2n, "--nodes=2", "--ntasks-per-node=1", f"--output={out}", script, timeout=60)
    assert state == "COMPLETED", state
    rows = sorted(out.read_text().split("\n")[:2])
    assert [r.split()[0] for r in rows] == ["node1", "node2"] and rows[0].split()[1] != rows[1].split()[1], rows


def test_two_node_run_survives_a_requeue_and_a_preemption(slurm_cluster_2n: SlurmCluster, tmp_path: Path) -> None:
    cluster = slurm_cluster_2n
    p = two_node_sweep(tmp_path, "twonode", epochs=10, train_limit=4000, every_min=0.02)
    sweep = load(p)
    logs = partial(sweep_logs, sweep.dir)
    (run,) = sweep.runs
    t0 = time.monotonic()
    # a torch.distributed world left in the submitting shell (sbatch exports it) must not reach the ranks
    world = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}
    assert convbench("sweep", p, "--backend", "slurm", cluster=cluster, env={**WANDB, **world}).returncode == 0
    job = json.loads((sweep.dir / "jobs.json").read_text())[0]
    assert "--nodes=2" in Path(job["script"]).read_text()
    task = f"{job['job_id']}_0"
    step_ckpt = run.run_dir / "checkpoints" / "step.ckpt"
    wait_for(step_ckpt.is_file, "the first interval checkpoint", 180, detail=logs)
    print(f"submit -> first interval checkpoint: {time.monotonic() - t0:.1f}s")
    assert not (run.run_dir / "result.json").exists(), "the run ended before the requeue: raise its epochs"
    assert cluster.run("scontrol", "requeue", task).returncode == 0
    wait_for((run.run_dir / "metrics" / "version_1").is_dir, "the second attempt", 120, detail=logs)
    wait_for(
        lambda: re.search(
            r"(?m)^convbench: resuming from .* at step \d+", next((sweep.dir / "logs").glob("*.out")).read_text()
        ),
        "the second attempt's first step",
        120,
        detail=logs,
    )
    assert not (run.run_dir / "result.json").exists(), "the run ended before the preemption signal: raise its epochs"
    assert cluster.run("scancel", "--signal=USR1", task).returncode == 0
    wait_for((run.run_dir / "result.json").is_file, "the result", 300, detail=logs)
    print(f"two-node run with a requeue and a preemption: {time.monotonic() - t0:.1f}s")
    check_one_run(run.run_dir, json.loads((run.run_dir / "result.json").read_text()))
    log = next((sweep.dir / "logs").glob("*.out")).read_text()
    assert re.search(r"SIGTERM at step (\d+): saved \S+/checkpoints/step\.ckpt", log), log[-3000:]
    assert re.search(r"SIGUSR1 at step \d+: saved \S+/hpc_ckpt_1\.ckpt; requeued " + task, log), log[-3000:]
    assert len(re.findall(r"(?m)^convbench: resuming from \S+ at step \d+ \(epoch \d+/10", log)) == 2, log[-3000:]
    assert "(restart 2)" in log


ATTEMPT = re.compile(r"(?m)^convbench: (?:starting at step (\d+)|resuming from \S+ at step (\d+))")
REQUEUES = int(os.environ.get("CONVBENCH_REQUEUES", "2"))  # `make bench`: 10
STOPPED = re.compile(r"(?m)^convbench: SIGTERM at step (\d+): saved")


def test_requeues_at_random_moments_lose_no_work(slurm_cluster_2n: SlurmCluster, tmp_path: Path) -> None:
    """`scontrol requeue` REQUEUES times in a row (ten under `make bench`, two in `make test`), each at
    a random moment of an attempt (seeded: most in training, 5-60 steps after its first, the rest 0-5 s
    into its start-up): one result, one W&B run, every logged step once, and no step trained twice beyond
    what one checkpoint interval bounds per requeue (with the SIGTERM checkpoint: none). Most of its time
    is the attempts' start-up (docs/measurements.md#slurm)."""
    import random

    cluster, rng, every_min = slurm_cluster_2n, random.Random(12), 0.1
    p = two_node_sweep(tmp_path, "storm", epochs=3 * REQUEUES, train_limit=4000, every_min=every_min)
    sweep = load(p)
    logs = partial(sweep_logs, sweep.dir)
    (run,) = sweep.runs
    t0 = time.monotonic()
    assert convbench("sweep", p, "--backend", "slurm", cluster=cluster, env=WANDB).returncode == 0
    task = f"{json.loads((sweep.dir / 'jobs.json').read_text())[0]['job_id']}_0"

    def log() -> str:
        return "\n".join(f.read_text() for f in (sweep.dir / "logs").glob("*.out"))

    for n in range(REQUEUES):
        wait_for(lambda: f"(restart {n})" in log(), f"attempt {n + 1}", 120, detail=logs)
        if rng.random() > 0.3:  # mostly in training, a random number of steps (read from metrics.csv) after its first
            attempt = wait_for(
                lambda: ATTEMPT.search(log().split(f"(restart {n})")[-1]),
                f"attempt {n + 1}'s training",
                120,
                detail=logs,
            )
            start = int(next(g for g in attempt.groups() if g))
            # paced in steps, not seconds, so a faster machine cannot finish the run before the last requeue:
            # at most 60 of the 96 steps each requeue's 3 epochs add
            stop_at = start + rng.randint(LOG_EVERY, 60)
            wait_for(
                lambda: max(logged_steps(run.run_dir), default=-1) >= stop_at,
                f"attempt {n + 1}'s steps",
                120,
                detail=logs,
            )
            time.sleep(rng.uniform(0, 0.5))
        else:  # in its start-up
            time.sleep(rng.uniform(0, 5))
        assert not (run.run_dir / "result.json").exists(), f"finished before requeue {n + 1}: raise its epochs"
        assert cluster.run("scontrol", "requeue", task).returncode == 0
    wait_for((run.run_dir / "result.json").is_file, "the result", 300, detail=logs)
    print(f"{REQUEUES} requeues: {time.monotonic() - t0:.1f}s")
    result = json.loads((run.run_dir / "result.json").read_text())
    check_one_run(run.run_dir, result)
    attempts = log().split("convbench: task ")[1:]
    assert len(attempts) == REQUEUES + 1
    # the attempts that reached training: where each started and where its SIGTERM checkpoint stopped it
    spans = []
    for i, a in enumerate(attempts):
        if (m := ATTEMPT.search(a)) is not None:
            start = int(next(g for g in m.groups() if g))
            stop = STOPPED.search(a)
            spans.append((start, result["global_step"] if i == REQUEUES else int(stop.group(1)) if stop else start))
    trained = sum(end - start for start, end in spans)
    per_interval = 1 + int(every_min * 60 * 10)  # generous: at most 10 steps/s here
    print(f"attempts (start, end): {spans}; trained {trained} steps for {result['global_step']}")
    assert spans[0][0] == 0 and all(later[0] >= end - per_interval for (_, end), later in zip(spans, spans[1:])), spans
    assert trained - result["global_step"] <= REQUEUES * per_interval


def test_bench_across_two_nodes_under_srun(slurm_cluster_2n: SlurmCluster, tmp_path: Path) -> None:
    """`convbench bench lenet5 --devices 1 --nodes 2` as two Slurm tasks, one a node: the world comes
    from Slurm, the 1-rank row runs on node1 alone, the 2-rank row on both nodes over gloo."""
    out = tmp_path / "bench.json"
    script = tmp_path / "bench.sh"
    script.write_text(
        f"#!/bin/bash\ncd {REPO}\nexport NO_ALBUMENTATIONS_UPDATE=1\n"
        f"srun {sys.executable} -m harness.cli bench lenet5 --devices 1 --nodes 2 --batch-size 16 --json "
        f"--iters 3 --warmup 1 --repeats 2 --min-block 0.001 > {out}\n"
    )
    state = run_job(
        slurm_cluster_2n,
        "--nodes=2",
        "--ntasks-per-node=1",
        "--job-name=convbench-bench",
        f"--output={tmp_path / 'bench.log'}",
        script,
        timeout=300,
    )
    assert state == "COMPLETED", state + "\n" + (tmp_path / "bench.log").read_text()[-3000:]
    one, two = json.loads(out.read_text())
    assert (one["world_size"], one["nodes"], one["hosts"]) == (1, 1, ["node1"])
    assert (two["world_size"], two["nodes"], two["hosts"], two["backend"]) == (2, 2, ["node1", "node2"], "gloo")
    assert two["raw_allreduce_busbw"] > 0 and two["scaling_efficiency"] == pytest.approx(
        two["samples_per_s"] / (2 * one["samples_per_s"])
    )


def test_down_removes_the_namespaces_then_up_restores(slurm_cluster_2n: SlurmCluster) -> None:
    """Last: restarts the session's two-node cluster."""
    netns, links = namespaces_and_links(slurm_cluster_2n)
    assert slurm_cluster_2n.script("down").returncode == 0
    listed = slurm_cluster_2n.run("ip", "netns", "list").stdout + slurm_cluster_2n.run("ip", "-br", "link").stdout
    assert not any(name in listed for name in netns | links), listed
    up = slurm_cluster_2n.script("up", "--nodes", "2")
    assert up.returncode == 0, up.stderr
    assert namespaces_and_links(slurm_cluster_2n) == (netns, links)
