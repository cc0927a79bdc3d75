"""`convbench sweep --backend slurm` on the real local cluster: a 2-task array of 2-rank DDP runs (gloo on
CPU), a requeue mid-training that resumes from the checkpoint and still ends as one W&B run, no secret in any
file, DDP test accuracy equal to a single-process evaluation, the preemption signal (SIGUSR1: an hpc
checkpoint, the task requeues itself and resumes from it), and cancel + re-submit."""

from __future__ import annotations

import json
import re
import time
from functools import partial
from pathlib import Path

import pytest
import yaml

from harness.sweep import ranges
from harness.sweep.spec import load
from harness.wandb_run import WandbFile, complete_export, wandb_file
from tests.helpers import LENET5_SYNTHETIC, convbench, in_process, sweep_file, sweep_logs, wait_for
from tests.slurm_fixtures import SlurmCluster

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
SECRET = "secret-xyz"
WANDB = {"WANDB_API_KEY": SECRET, "WANDB_MODE": "offline"}  # the submitting shell's W&B key


def ddp_sweep(tmp_path: Path, name: str, epochs: int, train_limit: int, seeds: list[int]) -> Path:
    """lenet5 on a slice of the real Fashion-MNIST, 2-rank DDP (gloo on CPU) per array task."""
    return sweep_file(
        tmp_path / f"{name}.yaml",
        {
            "arch": "lenet5",
            "dataset": "fashion-mnist",
            "epochs": epochs,
            "data.train_limit": train_limit,
            "data.val_size": 500,
            "data.num_workers": 0,
            "trainer.accelerator": "cpu",
            "trainer.devices": 2,
            "trainer.strategy": "ddp",
            "wandb.mode": "offline",
        },
        convbench={
            "name": name,
            "results": str(tmp_path / "results"),
            "seeds": seeds,
            "slurm": {"cpus_per_task": 1, "time": "00:10:00"},
        },
    )


def test_ddp_array_requeue_and_no_secret(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    p = ddp_sweep(tmp_path, "ddp", epochs=2, train_limit=2000, seeds=[0, 1])
    sweep = load(p)
    logs = partial(sweep_logs, sweep.dir)
    t0 = time.monotonic()
    proc = convbench("sweep", p, "--backend", "slurm", cluster=slurm_cluster, env=WANDB)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    jobs = json.loads((sweep.dir / "jobs.json").read_text())
    assert len(jobs) == 1 and (jobs[0]["runs"], jobs[0]["offset"]) == ("0-1", 0)
    script = Path(jobs[0]["script"]).read_text()
    assert "--ntasks-per-node=2" in script and "--array=0-1\n" in script and "gres" not in script
    first = sweep.runs[0]
    wait_for((first.run_dir / "checkpoints" / "last.ckpt").is_file, "run 0's first checkpoint", 150, detail=logs)
    print(f"submit -> first checkpoint of task 0: {time.monotonic() - t0:.1f}s")
    interrupted = not (first.run_dir / "result.json").exists()
    requeue = slurm_cluster.run("scontrol", "requeue", f"{jobs[0]['job_id']}_0")
    assert requeue.returncode == 0, requeue.stderr
    if interrupted:
        wait_for(
            lambda: (
                "requeued" in convbench("sweep", "status", p, cluster=slurm_cluster, env=WANDB).stdout.split("\n")[0]
                or (first.run_dir / "metrics" / "version_1").exists()
            ),
            "status requeued",
            60,
            detail=logs,
        )
    wait_for(
        lambda: all((r.run_dir / "result.json").is_file() for r in sweep.runs), "both results", 300, detail=logs
    )  # the runs in turn (task 0 twice), each paying a rank's start-up (slow on 2 busy cores)
    print(f"2-run DDP array incl. requeue: {time.monotonic() - t0:.1f}s")
    results = [json.loads((r.run_dir / "result.json").read_text()) for r in sweep.runs]
    assert [(r["status"], r["world_size"]) for r in results] == [("completed", 2)] * 2
    shown = convbench("sweep", "status", p, cluster=slurm_cluster, env=WANDB).stdout
    assert shown.count(" completed ") == 2, shown
    if interrupted:  # resumed from its checkpoint, one W&B run
        assert (first.run_dir / "metrics" / "version_1").is_dir()
    # the W&B export follows result.json (the record first: nothing computed is lost if it fails)
    wait_for(lambda: all(complete_export(r.run_dir) for r in sweep.runs), "both W&B exports", 60, detail=logs)
    for r in sweep.runs:  # one complete offline W&B run per run, requeued or not
        offline = list((r.run_dir / "wandb").glob("offline-run-*"))
        assert len(offline) == 1 and complete_export(r.run_dir) == offline[0], offline
        assert offline[0].name.endswith("-" + (r.run_dir / "wandb_id").read_text().strip())
    # the W&B key of the submitting environment is in no file the sweep wrote
    for f in tmp_path.rglob("*"):
        if f.is_file():
            assert SECRET.encode() not in f.read_bytes(), f
    # DDP test accuracy (synced over both ranks) == a single-process evaluation of the final checkpoint
    assert results[1]["test_acc1"] == pytest.approx(evaluate(sweep, sweep.runs[1]), abs=1e-6)


def evaluate(sweep, run) -> float:
    import pytorch_lightning as pl

    from harness.config.train_config import load_file, resolve
    from harness.training.module import ClassifierModule
    from harness.training.run import build_data, build_model, steps_per_epoch

    config = resolve([("test", load_file(str(sweep.dir / "runs" / f"{run.index}.yaml")))])
    config.trainer.devices = 1
    dm = build_data(config)
    model, _ = build_model(config, dm)
    module = ClassifierModule(
        model,
        dm.num_classes,
        config.optim,
        config.arch,
        config.transfer.mode,
        config.hidden_noise_std,
        False,
        plateau_monitor="val/acc1",
        steps_per_epoch=steps_per_epoch(config, dm),
    )
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_checkpointing=False
    )
    out = trainer.test(module, datamodule=dm, ckpt_path=str(run.run_dir / "checkpoints" / "last.ckpt"), verbose=False)
    return out[0]["test/acc1"]


def test_preemption_signal_checkpoints_requeues_and_resumes(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    """What Slurm does ahead of a time limit or a preemption (--signal=SIGUSR1@90), sent by hand: the
    ranks agree on a step, save hpc_ckpt_1.ckpt there, rank 0 requeues its own array task, the task
    restarts and resumes from that checkpoint into the same W&B run, and the run ends with one result."""
    # signalled once epoch 1 is checkpointed: 3 epochs of 94 steps left for the signal to land in
    p = ddp_sweep(tmp_path, "preempt", epochs=4, train_limit=6000, seeds=[0])
    sweep = load(p)
    logs = partial(sweep_logs, sweep.dir)
    (run,) = sweep.runs
    assert convbench("sweep", p, "--backend", "slurm", cluster=slurm_cluster, env=WANDB).returncode == 0
    task = f"{json.loads((sweep.dir / 'jobs.json').read_text())[0]['job_id']}_0"
    wait_for((run.run_dir / "checkpoints" / "last.ckpt").is_file, "the first epoch's checkpoint", 150, detail=logs)
    assert not (run.run_dir / "result.json").exists(), "the run ended before it could be signalled: raise its epochs"
    signal = slurm_cluster.run("scancel", "--signal=USR1", task)
    assert signal.returncode == 0, signal.stderr
    wait_for(lambda: any(run.run_dir.glob("checkpoints/hpc_ckpt_*.ckpt")), "the hpc checkpoint", 60, detail=logs)
    wait_for((run.run_dir / "result.json").is_file, "the result", 240, detail=logs)
    result = json.loads((run.run_dir / "result.json").read_text())
    assert (result["status"], result["epochs"], result["world_size"]) == ("completed", 4, 2)
    log = next((sweep.dir / "logs").glob("*.out")).read_text()
    assert "(restart 1)" in log and re.search(
        r"SIGUSR1 at step \d+: saved \S+/hpc_ckpt_1\.ckpt; requeued " + task, log
    ), log[-3000:]
    assert re.search(r"resuming from \S+/hpc_ckpt_1\.ckpt", log), log[-3000:]
    restarts = slurm_cluster.run("sacct", "-n", "-X", "-j", task, "-o", "State", "-D")
    assert "REQUEUED" in restarts.stdout, restarts.stdout
    assert (run.run_dir / "metrics" / "version_1").is_dir()  # the second attempt logged on from the checkpoint
    wait_for(lambda: complete_export(run.run_dir) is not None, "the W&B export", 60, detail=logs)
    (offline,) = (run.run_dir / "wandb").glob("offline-run-*")  # one W&B run for both attempts
    assert offline.name.rsplit("-", 1)[1] == (run.run_dir / "wandb_id").read_text().strip()
    w = WandbFile.read(wandb_file(offline))
    assert w.exit_code == 0 and w.summary["global_step"] == result["global_step"]
    steps = [row["_step"] for row in w.history if "train/loss_step" in row]
    assert len(steps) == len(set(steps)) and steps == sorted(steps) and steps[-1] < result["global_step"]


def test_cancel_then_resubmit_completes_the_rest(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    p = sweep_file(
        tmp_path / "cancel.yaml",
        {**LENET5_SYNTHETIC, "data.num_samples": 256, "trainer.accelerator": "cpu"},
        convbench={
            "name": "cancel",
            "results": str(tmp_path / "results"),
            "seeds": [0, 1, 2],
            "slurm": {"cpus_per_task": 2},
        },
    )
    sweep = load(p)
    logs = partial(sweep_logs, sweep.dir)
    assert convbench("sweep", p, "--backend", "slurm", cluster=slurm_cluster, env=WANDB).returncode == 0
    wait_for((sweep.runs[0].run_dir / "result.json").is_file, "run 0", 120, detail=logs)
    assert convbench("sweep", "cancel", p, cluster=slurm_cluster, env=WANDB).returncode == 0

    def cancelled() -> str | None:
        shown = convbench("sweep", "status", p, cluster=slurm_cluster, env=WANDB).stdout
        return shown if "cancelled" in shown else None

    shown = wait_for(cancelled, "status cancelled", 30, detail=logs)
    assert shown.splitlines()[0].split()[1] == "completed", shown
    again = convbench("sweep", p, "--backend", "slurm", cluster=slurm_cluster, env=WANDB)
    assert again.returncode == 0, again.stderr
    jobs = json.loads((sweep.dir / "jobs.json").read_text())
    assert len(jobs) == 2 and 0 not in ranges.expand(jobs[1]["runs"])
    wait_for(lambda: all((r.run_dir / "result.json").is_file() for r in sweep.runs), "all results", 150, detail=logs)
    assert convbench("sweep", "status", p, cluster=slurm_cluster, env=WANDB).stdout.count(" completed ") == 3


def test_unet_sweep_on_slurm_and_its_report(
    slurm_cluster: SlurmCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """sweeps/unet-depth.yaml, shrunk to its skips axis (2 runs: 2 levels of width 4 on 16x16 shapes, 3
    steps), as a Slurm array; both record Dice and mIoU, and the report tables and charts them."""
    spec = yaml.safe_load(Path("sweeps/unet-depth.yaml").read_text())
    small = {"model.levels": 2, "model.base_width": 4, "data.image_size": 16, "data.num_samples": 64}
    small |= {"data.val_size": 16, "trainer.max_steps": 3, "wandb.mode": "disabled"}
    spec["parameters"] |= {k: {"value": v} for k, v in small.items()}
    spec["convbench"] = {"name": "unet", "results": str(tmp_path / "results"), "slurm": {"cpus_per_task": 1}}
    p = tmp_path / "unet.yaml"
    p.write_text(yaml.safe_dump(spec))
    sweep = load(p)
    assert len(sweep.runs) == 2
    proc = convbench("sweep", p, "--backend", "slurm", cluster=slurm_cluster)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    logs = partial(sweep_logs, sweep.dir)
    wait_for(lambda: all((r.run_dir / "result.json").is_file() for r in sweep.runs), "both results", 150, detail=logs)
    for run in sweep.runs:
        record = json.loads((run.run_dir / "result.json").read_text())
        assert record["status"] == "completed" and 0 <= record["test_miou"] <= 1 and 0 <= record["test_dice"] <= 1
    code, out, err = in_process(capsys, "report", str(sweep.dir), "--out", str(tmp_path / "report"))
    assert code == 0, err
    report = (tmp_path / "report" / "report.md").read_text()
    assert "test Dice %" in report and "test mIoU %" in report and "test top-5 %" not in report
    assert "model.skips=False" in report and (tmp_path / "report" / "segmentation_scores.png").is_file()
