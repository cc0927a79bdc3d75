"""`convbench sweep`: loading and validation (with line numbers), grid expansion, dry runs, and the local
backend, including a runner killed mid-run and started again (every run completes exactly once)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import UserError
from harness.sweep.spec import load
from tests.helpers import ENV, LENET5_SYNTHETIC, REPO, convbench, sweep_file, wait_for


def write(tmp_path: Path, text: str) -> Path:
    """A sweep file as text: for what the loader says about the text itself (line numbers, bad YAML)."""
    p = tmp_path / "s.yaml"
    p.write_text(text)
    return p


def tiny(tmp_path: Path, epochs: int, samples: int) -> Path:
    """Two lenet5 runs (seeds 0 and 1) on synthetic images, a step a batch of 64 logged."""
    return sweep_file(
        tmp_path / "s.yaml",
        {
            **LENET5_SYNTHETIC,
            "epochs": epochs,
            "data.num_samples": samples,
            "data.batch_size": 64,
            "trainer.log_every_n_steps": 1,
        },
        convbench={"name": "tiny", "results": str(tmp_path / "results"), "seeds": [0, 1]},
    )


@pytest.mark.parametrize(
    "text, match",
    [
        (
            "method: grid\nparameters:\n  arch: {value: lenet5}\n  optim.lrr: {values: [0.1]}\n",
            r"line 4: unknown config key optim.lrr; accepted under optim: .*lr",
        ),
        (
            "method: grid\nparameters:\n  arch: {value: lenet5}\n  seed:\n    values: []\n",
            r"line 5: parameters.seed.values: empty grid",
        ),
        (
            "method: grid\nparameters:\n  arch: {value: lenet5}\n  epochs:\n    values: [1, two]\n",
            r"line 5.*epochs='two'.*expected int",
        ),
        (
            "method: grid\nparameters:\n  arch: {value: lenet5}\nconvbench:\n  slurmm: {}\n",
            r"line 5: unknown config key convbench.slurmm; accepted under convbench: .*slurm",
        ),
        (
            "method: grid\nparameters:\n  arch: {value: lenet5}\nconvbench:\n  slurm:\n    cpus_per_task: many\n",
            r"line 6: convbench.slurm.cpus_per_task='many': expected int",
        ),
        (
            "method: grid\nparameters:\n  arch: {value: lenet5}\nconvbench:\n  slurm:\n    partion: gpu\n",
            r"line 6: unknown config key convbench.slurm.partion; accepted under convbench.slurm: partition",
        ),
        ("method: grid\nparameters:\n  arch: {value: lenet5}\nconvbench:\n  seeds: []\n", r"line 5: convbench.seeds"),
        (
            "method: grid\nparameters:\n  arch: {value: lenet5}\n  trainer.precision: {value: 64}\n",
            r"line 4: trainer.precision=64: accepted 32-true",
        ),
        (
            "method: grid\nparamters:\n  arch: {value: lenet5}\n",
            r"line 2: unknown config key paramters; accepted under the top level: method, parameters"
            r".*convbench-only keys go under convbench",
        ),
        ("method: bayes\nparameters:\n  arch: {value: lenet5}\n", r"line 1: method='bayes'"),
        (
            "method: grid\nparameters:\n  arch: {value: lenet5}\n  data.bogus: {value: 1}\n",
            r"line 4: unknown config key data.bogus; accepted under data: root",
        ),
        ("method: grid\nparameters:\n  arch: {values: [lenet5, nonet]}\n", r"run 1 \(arch=nonet\)"),
        (
            "method: grid\nparameters:\n  arch: {value: lenet5}\n  optim.lr: {values: [0.1, -1.0]}\n",
            r"line 4: optim.lr=-1.0: must be > 0",
        ),
    ],
)
def test_validation_errors_name_key_and_line(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(Exception, match=match):
        load(write(tmp_path, text))


def test_cli_reports_a_bad_sweep_in_one_line(tmp_path: Path) -> None:
    p = write(tmp_path, "method: grid\nparameters:\n  arch: {value: lenet5}\n  optim.lrr: {values: [0.1]}\n")
    proc = convbench("sweep", p, "--dry-run")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "line 4" in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda p: p.write_text(""), "is empty"),
        (lambda p: p.mkdir(), "is a directory"),
        (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200)), "not a text file"),
        (lambda p: p.write_text("method: grid\nparameters:\n  arch: {value: lenet5\n"), "not valid YAML"),
        (lambda p: p.write_text("- a\n- b\n"), "expected a mapping"),
    ],
)
def test_unusable_sweep_file(tmp_path: Path, make, fragment: str) -> None:
    make(tmp_path / "s.yaml")
    with pytest.raises(UserError, match=fragment):
        load(tmp_path / "s.yaml")


def test_cli_reports_an_empty_sweep_file_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text("")
    proc = convbench("sweep", tmp_path / "s.yaml", "--dry-run")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "s.yaml is empty" in proc.stderr, proc.stderr


def test_shipped_sweeps_load() -> None:
    counts = {p.stem: len(load(p).runs) for p in sorted((REPO / "sweeps").glob("*.yaml"))}
    assert counts == {
        "cifar10-resnet-depth": 30,
        "fashion-depth": 16,
        "fashion-depth-zero-init": 8,
        "fashion-pipeline": 16,
        "fashion-precision": 8,
        "fashion-time-to-accuracy": 10,
        "imagenet-ilsvrc": 17,
        "transfer": 38,
        "transfer-similar": 38,
        "unet-depth": 12,
    }
    for split, prefix, target in (
        ("transfer", "pretrain-", [5, 6, 7, 8, 9]),
        ("transfer-similar", "pretrain-similar-", [6, 4, 9, 3, 1]),
    ):
        transfer = load(REPO / "sweeps" / f"{split}.yaml")
        named = {r.name: r for r in transfer.runs if r.name}
        assert set(named) == {f"{prefix}lenet5", f"{prefix}resnet20"}
        for r in transfer.runs:
            if r.config.transfer.mode == "scratch":
                assert not r.deps and r.config.transfer.checkpoint is None
            if r.name:
                assert (
                    r.config.data["classes"] == sorted(set(range(10)) - set(target)) and r.config.trainer.max_steps == 0
                )
            else:  # equal optimisation at every label budget
                assert r.config.data["classes"] == target and r.config.trainer.max_steps == 200
            if r.config.transfer.mode != "scratch" and not r.name:
                dep = transfer.runs[r.deps[0]]
                assert dep.name == f"{prefix}{r.config.arch}"
                assert r.config.transfer.checkpoint == str(dep.run_dir / "checkpoints" / "last.ckpt")


def test_run_ids_are_those_of_the_published_studies() -> None:
    """Finished runs are found by run id: the shipped sweeps still resolve to the ids of docs/results (a
    change to the config schema or the hash that moved them would rerun every study)."""

    def published(study: str) -> set[str]:
        return {r["run_id"] for r in json.loads((REPO / "docs" / "results" / study / "runs.json").read_text())}

    def ids(sweep: str) -> set[str]:
        return {r.run_id for r in load(REPO / "sweeps" / f"{sweep}.yaml").runs}

    assert ids("fashion-precision") == published("precision")
    assert ids("fashion-depth") | ids("fashion-depth-zero-init") == published("depth")
    scratch = {
        r.run_id
        for s in ("transfer", "transfer-similar")
        for r in load(REPO / "sweeps" / f"{s}.yaml").runs
        if r.config.transfer.mode == "scratch"
    }
    assert len(scratch) == 28 and scratch <= published("transfer")  # the others hash their checkpoint's absolute path


def test_a_key_added_as_non_default_identity_keeps_earlier_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    from harness.config import train_config as config

    new = dataclasses.field(default=0, metadata={"identity": "non-default"})
    new.name = "foo"
    real = config._field
    monkeypatch.setattr(config, "_field", lambda at: new if at == ("trainer", "foo") else real(at))
    config.role.cache_clear()
    base = config.resolve([("test", {"arch": "lenet5"})]).to_dict()
    with_default = config.merge(base, {"trainer": {"foo": 0}})
    assert config.identity(with_default) == config.identity(base)
    assert config.identity(config.merge(base, {"trainer": {"foo": 3}})) != config.identity(base)
    config.role.cache_clear()


def test_random_needs_run_cap_and_samples(tmp_path: Path) -> None:
    parameters = {"arch": "lenet5", "seed": [0, 1, 2, 3, 4, 5]}
    with pytest.raises(UserError, match="run_cap"):
        load(sweep_file(tmp_path / "s.yaml", parameters, method="random"))
    assert len(load(sweep_file(tmp_path / "s.yaml", parameters, method="random", run_cap=3)).runs) == 3


def test_dry_run_lists_runs(tmp_path: Path) -> None:
    p = tiny(tmp_path, epochs=1, samples=256)
    proc = convbench("sweep", p, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    sweep = load(p)
    for run in sweep.runs:
        line = next(line for line in proc.stdout.splitlines() if run.run_id in line)
        assert "lenet5" in line and "depth 5" in line and f"seed={run.config.seed}" in line
    assert not (tmp_path / "results").exists()  # nothing ran, nothing written
    slurm = convbench("sweep", "run", p, "--backend", "slurm", "--dry-run")
    assert slurm.returncode == 0, slurm.stderr
    assert (
        "#SBATCH --array=0-1\n" in slurm.stdout
        and "#SBATCH --ntasks-per-node=1" in slurm.stdout
        and "gres" not in slurm.stdout
    )
    assert "#SBATCH --signal=SIGUSR1@90" in slurm.stdout and "srun " in slurm.stdout


def test_local_parallel_runs_and_skips_done(tmp_path: Path) -> None:
    p = tiny(tmp_path, epochs=1, samples=256)
    proc = convbench("sweep", p, "--parallel", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    sweep = load(p)
    for run in sweep.runs:
        assert json.loads((run.run_dir / "result.json").read_text())["status"] == "completed"
        assert "OMP_NUM_THREADS" not in (run.run_dir / "config.yaml").read_text()
    again = convbench("sweep", p, "--parallel", "2")
    assert again.returncode == 0 and "started" not in again.stdout
    status = convbench("sweep", "status", p)
    assert status.stdout.count("completed") >= 2, status.stdout


def test_killed_runner_restarts_and_completes_each_run_once(tmp_path: Path) -> None:
    p = tiny(tmp_path, epochs=3, samples=1024)
    sweep = load(p)
    first = sweep.runs[0]
    runner = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "sweep", str(p), "--parallel", "1"],
        cwd=REPO,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for(  # mid-run: one epoch done
            lambda: (first.run_dir / "checkpoints" / "last.ckpt").is_file() or runner.poll() is not None,
            "the first run's checkpoint",
            120,
            interval=0.05,
        )
        assert runner.poll() is None, "the runner ended before the first run checkpointed"
    finally:
        os.killpg(runner.pid, signal.SIGKILL)  # the runner and its training child
        runner.wait()
    assert not (first.run_dir / "result.json").exists()
    status = convbench("sweep", "status", p)
    assert "interrupted" in status.stdout, status.stdout
    proc = convbench("sweep", p)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "resuming" in proc.stdout
    for run in sweep.runs:
        assert len(list(run.run_dir.glob("result.json"))) == 1
    versions = sorted(d.name for d in (first.run_dir / "metrics").iterdir())
    assert versions == ["version_0", "version_1"]  # resumed, not restarted
    result = json.loads((first.run_dir / "result.json").read_text())
    assert result["epochs_completed"] == 3 and result["status"] == "completed"


@pytest.mark.skipif(shutil.which("squeue") is None, reason="needs Slurm's squeue (make system-packages)")
def test_status_without_the_slurm_controller_says_so(tmp_path: Path) -> None:
    """A sweep with recorded Slurm jobs, checked where squeue cannot reach a controller (no SLURM_CONF):
    one line naming squeue, not a status that shows queued runs as never submitted."""
    p = tiny(tmp_path, epochs=1, samples=256)
    sweep = load(p)
    from harness.sweep import store

    store.prepare(sweep)
    store.add_job(sweep, store.ArrayJob("4242", "x.sbatch", "0-1"))
    proc = convbench("sweep", "status", p, env={k: None for k in ENV if k.startswith("SLURM_")})
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stdout + proc.stderr
    assert "squeue failed" in proc.stderr and "SLURM_CONF" in proc.stderr


def test_local_runs_wait_for_the_runs_they_need_and_say_how_far_along_they_are(tmp_path: Path) -> None:
    """A transfer run starts only once the run whose checkpoint it loads has completed, while a run that
    needs nothing takes the free slot; the runner's plain lines say what it will do, each start and end,
    and how many runs are done. A run whose need failed is blocked, not run."""
    from harness.run_record import RunResult

    common = {
        "arch": "lenet5",
        "dataset": "synthetic",
        "epochs": 1,
        "data.input_size": [1, 32, 32],
        "data.num_samples": 128,
        "data.num_workers": 0,
        "data.batch_size": 32,
        "wandb.mode": "disabled",
    }
    p = sweep_file(
        tmp_path / "s.yaml",
        {"transfer.mode": ["scratch", "finetune"], "transfer.checkpoint": "{run:pre}"},
        convbench={
            "name": "needs",
            "results": str(tmp_path / "results"),
            "common": common,
            "runs": {"pre": {"data.num_samples": 96}},
        },
    )
    pre, scratch, finetune = load(p).runs
    assert (pre.name, scratch.deps, finetune.deps) == ("pre", [], [pre.index])
    proc = convbench("sweep", p, "--parallel", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("sweep needs: 3 runs, 0 already done; 3 to run, 2 at a time"), lines[0]

    def at(run, what: str) -> int:
        return next(i for i, line in enumerate(lines) if line.startswith(f"[{run.index}] {run.run_id}: {what}"))

    assert at(scratch, "started") < at(pre, "completed") < at(finetune, "started") < at(finetune, "completed")
    done = [line.split("; ")[1].split(" (log")[0] for line in lines if line.startswith("[") and "runs done" in line]
    assert done == ["1 of 3 runs done", "2 of 3 runs done", "3 of 3 runs done"], proc.stdout
    assert lines[-2] == "sweep needs: 3/3 completed", proc.stdout

    (finetune.run_dir / "result.json").unlink()
    RunResult(pre.run_id, "lenet5", "failed").write(pre.run_dir / "result.json")
    again = convbench("sweep", p)
    assert again.returncode == 1, again.stdout + again.stderr
    first, *rest = again.stdout.splitlines()
    assert first.startswith("sweep needs: 3 runs, 2 already done; 1 to run, one at a time"), first
    assert rest == [
        f"[2] {finetune.run_id}: blocked (a run it needs ended failed); 3 of 3 runs done",
        "sweep needs: 1/3 completed; not completed: run 0 failed, run 2 blocked",
    ]
    assert not (finetune.run_dir / "result.json").exists()
