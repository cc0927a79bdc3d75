"""One complete offline W&B run per training run, read back from the `.wandb` files themselves
(wandb's protobuf Records in leveldb-log framing): a `convbench train` killed twice mid-training and
resumed leaves exactly one offline run whose history holds every logged step once and whose summary
is result.json; `convbench sync` exports what is missing and never waits on the network."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.cli import main
from harness.run_record import read_metrics
from harness.wandb_run import STAGING, WandbFile, complete_export, offline_dirs, read_records, summary_of, wandb_file
from tests.helpers import ENV, REPO, wait_for

# resnet20 on synthetic 32x32 images at one thread: 24 steps an epoch, a few seconds each
RUN = [
    "--arch",
    "resnet20",
    "--data",
    "synthetic",
    "--epochs",
    "3",
    "--batch-size",
    "32",
    "--workers",
    "0",
    "--wandb",
    "offline",
    "trainer.threads=1",
    "trainer.log_every_n_steps=1",
    "data.num_samples=1024",
    "data.val_size=256",
    "data.input_size=[3, 32, 32]",
]


def start(results: Path, *extra: str) -> subprocess.Popen:
    env = {**ENV, "PYTHONPATH": str(REPO), "WANDB_MODE": "offline"}
    return subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "train", *RUN, "--results", str(results), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=results.parent,
    )


def kill_mid_epoch(proc: subprocess.Popen, ckpt: Path, after_mtime: float, sig: int) -> str:
    """Wait for the next epoch's checkpoint, then kill ``proc`` with ``sig`` part-way into the following epoch."""
    wait_for(
        lambda: ckpt.is_file() and ckpt.stat().st_mtime > after_mtime or proc.poll() is not None,
        "an epoch's checkpoint",
        180,
        interval=0.05,
    )
    assert proc.poll() is None, proc.communicate()[0][-3000:]
    saved = ckpt.stat().st_mtime
    time.sleep(0.5)
    assert ckpt.stat().st_mtime == saved and proc.poll() is None, "the epoch ended before the kill: make epochs longer"
    proc.send_signal(sig)
    out = proc.communicate(timeout=60)[0]
    assert ckpt.stat().st_mtime == saved  # killed between two epoch ends: mid-epoch
    return out


def test_run_killed_twice_mid_training_leaves_one_complete_offline_run(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    first = start(results)
    wait_for(lambda: any(results.glob("*/wandb_id")), "the run directory", 60, interval=0.05)
    run_dir = next(results.glob("*/wandb_id")).parent
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    kill_mid_epoch(first, ckpt, 0, signal.SIGKILL)  # in epoch 2
    assert first.returncode == -signal.SIGKILL and not (run_dir / "result.json").exists()
    assert not offline_dirs(run_dir) and not (run_dir / STAGING).exists()  # a killed attempt leaves nothing to sync
    second = start(results, "--resume")
    out = kill_mid_epoch(second, ckpt, ckpt.stat().st_mtime, signal.SIGTERM)  # in epoch 3
    assert second.returncode == 4 and "last.ckpt at step 24 (epoch 2/3)" in out and "SIGTERM at step" in out, out[
        -3000:
    ]
    assert not offline_dirs(run_dir) and not (run_dir / "result.json").exists()
    third = start(results, "--resume")
    out = third.communicate(timeout=180)[0]
    assert third.returncode == 0 and "resuming from" in out, out[-3000:]

    result = json.loads((run_dir / "result.json").read_text())
    assert (result["status"], result["epochs_completed"], result["global_step"]) == ("completed", 3, 3 * 24)
    assert sorted(p.parent.name for p in (run_dir / "metrics").glob("version_*/metrics.csv")) == [
        "version_0",
        "version_1",
        "version_2",
    ]
    (offline,) = offline_dirs(run_dir)  # exactly one offline run, named with the run's W&B id
    wandb_id = (run_dir / "wandb_id").read_text().strip()
    assert offline.name.endswith("-" + wandb_id) and complete_export(run_dir) == offline
    w = WandbFile.read(wandb_file(offline))
    assert (w.run_id, w.exit_code) == (wandb_id, 0)
    steps = [row["_step"] for row in w.history]
    assert steps == sorted(set(steps))  # each step once, in order
    assert [row["trainer/global_step"] for row in w.history] == steps
    # every training step's loss, from all three attempts, exactly once
    assert sorted(row["_step"] for row in w.history if "train/loss_step" in row) == list(range(3 * 24))
    assert sorted(row["epoch"] for row in w.history if "train/acc1" in row) == [0, 1, 2]
    assert sum("test/acc1" in row for row in w.history) == 1
    # and the values are the run record's: the merged metrics CSVs, the last attempt winning where they overlap
    csv_rows: dict[int, dict] = {}
    for r in read_metrics(run_dir):
        csv_rows.setdefault(int(r["step"]), {}).update({k: v for k, v in r.items() if k != "step" and v is not None})
    assert steps == sorted(csv_rows)
    for row in w.history:
        assert {k: v for k, v in row.items() if not k.startswith("_") and k != "trainer/global_step"} == pytest.approx(
            csv_rows[row["_step"]]
        )
    # the summary is result.json's numbers (and strings)
    numbers = {k: v for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    assert len(numbers) > 10 and {k: w.summary[k] for k in numbers} == numbers
    assert {k: w.summary[k] for k in summary_of(result)} == summary_of(result)
    assert w.config["arch"] == "resnet20" and w.config["optim"]["lr"] == result["config"]["optim"]["lr"]
    assert w.config["hardware"] == result["hardware"] and w.config["hardware"]["label"]  # a filter in the W&B UI
    assert w.summary["attempts"] == 3 and w.summary["elapsed_s"] == result["elapsed_s"] > 0


def quick_run(results: Path, mode: str) -> Path:
    args = [
        "train",
        "--arch",
        "lenet5",
        "--data",
        "synthetic",
        "--batch-size",
        "64",
        "--workers",
        "0",
        "--wandb",
        mode,
        "--results",
        str(results),
        "trainer.log_every_n_steps=1",
        "data.num_samples=256",
        "data.val_size=64",
        "data.input_size=[1, 32, 32]",
        "trainer.threads=1",
    ]
    assert main(args) == 0
    return next(p.parent for p in results.glob("*/result.json"))


def test_sync_exports_what_is_missing_and_upload_fails_fast_offline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = quick_run(tmp_path / "results", "disabled")
    assert not (run_dir / "wandb").exists() and not (run_dir / "wandb_id").exists()
    capsys.readouterr()
    assert main(["sync", str(tmp_path / "results")]) == 0
    out, err = capsys.readouterr()
    (offline,) = offline_dirs(run_dir)
    assert "1 exported now" in err and out.strip() == f"wandb sync {offline}"
    w = WandbFile.read(wandb_file(offline))
    result = json.loads((run_dir / "result.json").read_text())
    assert (
        w.exit_code == 0
        and w.run_id == (run_dir / "wandb_id").read_text()
        and w.summary["test_acc1"] == result["test_acc1"]
    )
    assert len(w.history) == len({int(r["step"]) for r in read_metrics(run_dir)}) >= 4
    # a second sync exports nothing; an interrupted export (a torn .wandb, a staging dir) is redone, leaving one run
    assert (
        main(["sync", str(tmp_path / "results")]) == 0
        and "0 exported now, 1 already exported" in capsys.readouterr().err
    )
    data = wandb_file(offline).read_bytes()
    wandb_file(offline).write_bytes(data[: len(data) // 2])
    (run_dir / STAGING / "wandb").mkdir(parents=True)
    assert complete_export(run_dir) is None
    assert main(["sync", str(run_dir)]) == 0 and "1 exported now" in capsys.readouterr().err
    assert len(offline_dirs(run_dir)) == 1 and complete_export(run_dir) is not None and not (run_dir / STAGING).exists()
    # --upload where W&B cannot be reached: one line, at once (wandb sync itself would retry for minutes)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    t0 = time.monotonic()
    assert main(["sync", str(run_dir), "--upload"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert time.monotonic() - t0 < 30 and err.startswith(
        "convbench sync: error: cannot reach W&B at http://127.0.0.1:9"
    ), err
    assert main(["sync", str(tmp_path / "nowhere")]) == 2


def test_reader_spans_blocks_stops_at_a_torn_tail_and_rejects_corruption(tmp_path: Path) -> None:
    import wandb

    run = wandb.init(
        mode="offline",
        dir=str(tmp_path),
        id="reader1",
        project="p",
        reinit="create_new",
        settings=wandb.Settings(silent=True, console="off", x_disable_stats=True),
    )
    for step in range(600):
        run.log({"loss": 1 / (step + 1), "text": "x" * (step % 50)}, step=step)
    run.finish()
    wandb.teardown()  # offline, finish() returns before wandb-core has written the file's tail; teardown waits for it
    f = next(tmp_path.glob("wandb/offline-run-*/run-reader1.wandb"))
    data = f.read_bytes()
    assert len(data) > 3 * 32768  # records cross block boundaries (FIRST/MIDDLE/LAST chunks)
    w = WandbFile.read(f)
    assert (
        [r["_step"] for r in w.history] == list(range(600))
        and w.history[599]["loss"] == pytest.approx(1 / 600)
        and w.exit_code == 0
    )
    torn = tmp_path / "torn.wandb"
    torn.write_bytes(data[:40000])
    history = [r for r in read_records(torn) if r.WhichOneof("record_type") == "history"]
    assert 0 < len(history) < 600
    bad = bytearray(data)
    bad[20000] ^= 0xFF
    torn.write_bytes(bytes(bad))
    with pytest.raises(ValueError, match="corrupt chunk"):
        read_records(torn)
    torn.write_bytes(b"garbage" + data)
    with pytest.raises(ValueError, match="not a W&B transaction log"):
        read_records(torn)
