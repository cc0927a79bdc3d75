"""`convbench bench` as a user runs it (real processes, their output, progress and exit codes; option
mistakes through the same `main` in-process), and the out-of-memory policy fed a callable that
runs out of memory above a batch size."""

from __future__ import annotations

import ast
import csv
import json
import os
import re
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import architectures
from harness.bench.measure import with_halving
from harness.bench.results import FIELDS
from harness.cli import main
from harness.errors import UserError
from harness.wandb_run import WandbFile
from tests.helpers import ENV, REPO, assert_names_this_machine, convbench, in_process

FAST = ["--iters", "3", "--warmup", "1", "--repeats", "2", "--threads", "1", "--min-block", "0.001"]
OFFLINE = {"WANDB_MODE": "offline"}  # the helpers' environment disables W&B; these runs ask for offline files


def assert_progress_lines(stderr: str, labels: list[str]) -> None:
    """A batch log's progress (stderr not a tty): a line when each measurement starts and one when it
    ends, counted out of all of them, then the total."""
    n = len(labels)
    expected = []
    for i, label in enumerate(labels, 1):
        counted = re.escape(f"bench: {label} ({i}/{n})")
        expected += [counted, counted + r" done in \d+\.\d s"]
    expected.append(rf"bench: {n} measurements done in \d+\.\d s")
    lines = [line for line in stderr.splitlines() if line.startswith("bench: ")]
    assert len(lines) == len(expected), stderr
    for line, pattern in zip(lines, expected):
        assert re.fullmatch(pattern, line), (line, pattern)


def test_models_both_modes_and_a_pipeline_as_json_and_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.csv"
    r = convbench(
        "bench",
        "lenet5",
        "resnet20",
        "--mode",
        "both",
        "--json",
        "--batch-size",
        "16",
        "--csv",
        str(out),
        "--data",
        "synthetic",
        "--workers",
        "1",
        *FAST,
    )
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    names = [(n, m) for n in ("lenet5", "resnet20") for m in ("infer", "train")]
    names += [("synthetic", "data"), ("synthetic", "data-device")]
    assert [(row["name"], row["mode"]) for row in rows] == names
    models = [f"{n} {m}" for n, m in names[:-2]]
    assert_progress_lines(r.stderr, [*models, "peak FLOP/s, precision 32", "synthetic pipeline", "synthetic on cpu"])
    *models, data, on_device = rows
    for row in models:
        prof = architectures.profile(architectures.create(row["name"]), architectures.info(row["name"]).input_size)
        assert (row["params"], row["macs"]) == (prof.params, prof.macs)
        assert row["batch_size"] == row["requested_batch_size"] == 16
        assert row["samples_per_s"] > 0 and row["step_time_std_ms"] >= 0
        assert row["samples_per_s"] == pytest.approx(16 / row["step_time_ms"] * 1e3)
        factor = 3 if row["mode"] == "train" else 1
        assert row["flops_per_step"] == 2 * prof.macs * 16 * factor
        assert row["flops_per_s"] == pytest.approx(row["flops_per_step"] / row["step_time_ms"] * 1e3)
        assert 0 < row["mfu"] <= 1 and row["mfu"] == pytest.approx(row["flops_per_s"] / row["peak_flops_per_s"])
        assert row["peak_memory_bytes"] > 100e6  # the worker's peak RSS: torch alone is more
        assert (row["device"], row["precision"], row["channels_last"], row["compile"], row["threads"]) == (
            "cpu",
            "32",
            False,
            False,
            1,
        )
        assert row["torch_version"] == torch.__version__ and "GEMM" in row["peak_flops_source"]
        assert_names_this_machine(row["hardware"], threads=1)
    assert len({row["peak_flops_per_s"] for row in models}) == 1  # one peak for the whole table
    assert (data["workers"], data["batch_size"], data["input_size"]) == (1, 16, [3, 32, 32])
    assert data["samples_per_s"] > 0 and data["samples_per_s_per_worker"] == data["samples_per_s"]
    assert data["params"] is None and data["mfu"] is None
    assert data["hardware"]["dataloader_workers"] == 1
    # the device pipeline: the images held on the bench's device, no workers, the rate the device's
    assert (on_device["workers"], on_device["device"], on_device["input_size"]) == (0, "cpu", [3, 32, 32])
    assert on_device["samples_per_s"] > 0 and on_device["samples_per_s_per_worker"] == on_device["samples_per_s"]

    r = convbench(
        "bench",
        "lenet5",
        "--mode",
        "train",
        "--detail",
        "--verify",
        "--channels-last",
        "--precision",
        "bf16-mixed",
        "--csv",
        str(out),
        "--wandb",
        "offline",
        "--results",
        str(tmp_path),
        *FAST,
        env=OFFLINE,
    )
    assert r.returncode == 0, r.stderr
    assert (
        "lenet5" in r.stdout
        and "fwd ms" in r.stdout
        and "agreement" in r.stdout
        and "measured bfloat16, the best of GEMM" in r.stdout
    )
    (wandb_path,) = tmp_path.glob("wandb/offline-run-*/run-*.wandb")
    w = WandbFile.read(wandb_path)  # the bench table and W&B's own charts over it, in the offline run's records
    (row,) = w.history
    assert row["bench/_type"] == "table-file" and row["bench/nrows"] == 1
    for chart, kind in (
        ("samples_per_s", "bar"),
        ("samples_per_s_vs_macs", "scatter"),
        ("memory_vs_samples_per_s", "scatter"),
        ("mfu", "bar"),
    ):
        assert row[f"charts/{chart}_table/_type"] == "table-file", chart
        spec = w.config[f"_wandb/visualize/charts/{chart}"]["panel_config"]
        assert spec["panelDefId"] == f"wandb/{kind}/v0", spec
    assert w.summary["lenet5/train/samples_per_s"] > 0 and w.exit_code == 0
    with out.open(newline="") as f:
        lines = list(csv.reader(f))
    assert lines[0] == FIELDS and len(lines) == 1 + len(names) + 1  # one header, then every row
    last = dict(zip(FIELDS, lines[-1]))
    assert (last["name"], last["mode"], last["precision"]) == ("lenet5", "train", "bf16-mixed")
    assert float(last["forward_ms"]) > 0 and float(last["timer_samples_per_s"]) > 0
    assert ast.literal_eval(last["hardware"]) == rows[0]["hardware"]  # the CSV cell reads back as the JSON's

    # a CSV written before rows carried the hardware still merges; its rows have none
    older = tmp_path / "older.csv"
    with out.open(newline="") as f, older.open("w", newline="") as g:
        writer = csv.writer(g)
        for line in csv.reader(f):
            writer.writerow(line[: FIELDS.index("hardware")])
    assert main(["bench", "--merge", str(older), "--json"]) == 0
    assert [r["hardware"] for r in json.loads(capsys.readouterr().out)] == [None] * (len(names) + 1)


def test_a_repeat_grows_to_last_min_block_seconds() -> None:
    """lenet5 infer takes milliseconds a step: 2 steps cannot fill a 0.3 s repeat, tens of them do."""
    r = convbench(
        "bench",
        "lenet5",
        "--mode",
        "infer",
        "--json",
        "--iters",
        "2",
        "--warmup",
        "3",
        "--repeats",
        "2",
        "--threads",
        "1",
        "--min-block",
        "0.3",
        "--peak-flops",
        "1e11",
    )
    assert r.returncode == 0, r.stderr
    assert "peak FLOP/s" not in r.stderr  # given, not measured
    (row,) = json.loads(r.stdout)
    assert row["iters"] > 10
    assert row["iters"] * row["step_time_mean_ms"] / 1e3 > 0.3 / 3  # each repeat lasted about the asked time


def test_unknown_name_is_one_line_from_a_real_process() -> None:
    r = convbench("bench", "resnet20", "nosuchnet", *FAST)
    assert (r.returncode, r.stdout, r.stderr.count("\n")) == (2, "", 1), r.stderr
    assert "unknown architecture 'nosuchnet'" in r.stderr


# option mistakes: the same main() in this process (a subprocess each would pay the imports again)
@pytest.mark.parametrize(
    "args, message",
    [
        (["resnet20", "--iters", "0"], "--iters: expected an integer >= 1, got '0'"),
        (["resnet20", "--min-block", "0"], "--min-block: expected a number of seconds > 0, got '0'"),
        (["resnet20", "--precision", "8"], "--precision: invalid choice"),
        (["resnet20", "--input-size", "3", "x", "32"], "--input-size: expected an integer >= 1, got 'x'"),
        (["resnet20", "--input-size", "3", "0", "32"], "--input-size: expected an integer >= 1, got '0'"),
        (["resnet20", "--precision", "16-mixed", "--device", "cpu"], "16-mixed needs a GPU"),
        (["--mode", "train"], "name at least one architecture, or a dataset with --data"),
        (["--data", "mnist"], "--data mnist: unknown dataset; accepted: cifar10"),
        (["resnet20", "--peak-flops", "fast"], "--peak-flops: expected a number of FLOP/s > 0, got 'fast'"),
        (["resnet20", "--peak-flops", "1e12", "--devices", "2"], "--peak-flops does not apply to --devices"),
    ],
)
def test_option_mistakes_are_one_line_exit_2(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = in_process(capsys, "bench", *args)
    assert (code, out, err.count("\n")) == (2, "", 1), err
    assert message in err


def test_a_worker_error_comes_back_as_one_line() -> None:
    """After the failed measurement's progress line (no "done" line for it), the error in one line."""
    r = convbench("bench", "lenet5", "--mode", "infer", "--input-size", "1", "8", "8", *FAST)
    assert (r.returncode, r.stdout) == (2, ""), r.stderr
    started, error = r.stderr.splitlines()
    assert started == "bench: lenet5 infer (1/2)"
    assert error.startswith("convbench bench: error: lenet5 infer: lenet5 cannot run on input 1x8x8: "), error


def read_until_closed(fd: int, timeout: float) -> str:
    """All that is written to a pseudo-terminal until its last writer closes it (EIO on Linux), then
    closes our end."""
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not select.select([fd], [], [], 1)[0]:
                continue
            try:
                data = os.read(fd, 1 << 16)
            except OSError:  # EIO: the process closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(fd)
    return b"".join(chunks).decode(errors="replace")


def test_a_terminal_gets_a_live_progress_display() -> None:
    """stderr on a pseudo-terminal: rich's live display (the cursor hidden while it redraws the
    current measurement and the count done), a line as each measurement ends and none as it starts;
    stdout, a pipe, gets the table and no terminal codes."""
    controller, terminal = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "bench", "lenet5", "--mode", "infer", *FAST],
        stdout=subprocess.PIPE,
        stderr=terminal,
        text=True,
        cwd=REPO,
        env={**ENV, "TERM": "xterm-256color", "COLUMNS": "120"},
    )
    os.close(terminal)
    screen = read_until_closed(controller, timeout=300)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, screen[-3000:]
    assert screen.startswith("\x1b[?25l") and "\x1b[?25h" in screen, screen[:300]  # rich's Live: cursor off, on
    assert "bench: lenet5 infer" in screen and "0/2" in screen and "1/2" in screen, screen[-3000:]
    assert re.search(r"bench: lenet5 infer \(1/2\) done in \d+\.\d s", screen), screen[-3000:]
    assert not re.search(r"bench: lenet5 infer \(1/2\)\r?\n", screen)  # the batch log's start line
    assert "lenet5" in out and "\x1b" not in out


def test_csv_with_a_foreign_header_is_refused_before_measuring(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "other.csv"
    out.write_text("a,b\n1,2\n")
    assert main(["bench", "lenet5", "--csv", str(out)]) == 2
    assert "header" in capsys.readouterr().err


def oom_above(limit: int, tried: list[int], error: Exception):  # type: ignore[no-untyped-def]
    def measure(batch_size: int) -> str:
        tried.append(batch_size)
        if batch_size > limit:
            raise error
        return f"ran at {batch_size}"

    return measure


def test_oom_halves_until_it_fits() -> None:
    tried: list[int] = []
    assert with_halving(
        oom_above(20, tried, torch.OutOfMemoryError("CUDA out of memory")), 128, on_oom=lambda: None
    ) == ("ran at 16", 16)
    assert tried == [128, 64, 32, 16]
    cpu = RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 4503599627370496 bytes")
    assert with_halving(oom_above(100, [], cpu), 128, on_oom=lambda: None) == ("ran at 64", 64)


def test_oom_at_batch_1_and_other_errors_are_not_retried() -> None:
    with pytest.raises(UserError, match="out of memory even at batch size 1"):
        with_halving(oom_above(0, [], torch.OutOfMemoryError("CUDA out of memory")), 4, on_oom=lambda: None)
    tried: list[int] = []
    with pytest.raises(ValueError):
        with_halving(oom_above(0, tried, ValueError("a bug")), 128, on_oom=lambda: None)
    assert tried == [128]


def test_ddp_scaling_at_1_and_2_ranks_to_json_csv_chart_wandb_and_merge(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--devices 2` on this machine: gloo ranks at one thread each, a row per world size whose
    figures hold together (the global rate within the ranks' spread, efficiency from the two rows,
    the gradient bytes = 4 x params, busbw = 2(n-1)/n x bytes / time); then --merge reads the CSV
    and the JSON back into one table."""
    out, chart = tmp_path / "ddp.csv", tmp_path / "scaling.png"
    r = convbench(
        "bench",
        "lenet5",
        "--devices",
        "2",
        "--batch-size",
        "16",
        "--json",
        "--csv",
        str(out),
        "--chart",
        str(chart),
        "--wandb",
        "offline",
        "--results",
        str(tmp_path),
        *FAST,
        env=OFFLINE,
    )
    assert r.returncode == 0, r.stderr
    assert_progress_lines(r.stderr, ["lenet5 train, 1 rank", "lenet5 train, 2 ranks"])
    one, two = rows = json.loads(r.stdout)
    params = architectures.profile(architectures.create("lenet5"), architectures.info("lenet5").input_size).params
    for row, world in zip(rows, (1, 2)):
        assert (row["name"], row["mode"], row["world_size"], row["nodes"], row["backend"], row["threads"]) == (
            "lenet5",
            "train",
            world,
            1,
            "gloo",
            1,
        )
        assert row["hosts"] == [socket.gethostname()] * world and row["batch_size"] == 16
        low, high = row["rank_samples_per_s_min"], row["rank_samples_per_s_max"]
        assert (
            0 < low <= high
            and world * low <= row["samples_per_s"] * (1 + 1e-12)
            and row["samples_per_s"] <= world * high * (1 + 1e-12)
        )
        assert row["allreduce_bytes"] == 4 * params  # fp32 gradients of every parameter, in DDP's buckets
        assert (
            row["no_comm_step_time_ms"] > 0
            and row["allreduce_share"] < 1
            and row["allreduce_ms"] > 0
            and row["raw_allreduce_ms"] > 0
        )
    assert one["scaling_efficiency"] == 1 and one["allreduce_busbw"] is None and one["raw_allreduce_busbw"] is None
    assert two["scaling_efficiency"] == pytest.approx(two["samples_per_s"] / (2 * one["samples_per_s"]))
    assert two["raw_allreduce_busbw"] == pytest.approx(
        4 * params / (two["raw_allreduce_ms"] / 1e3)
    )  # 2(n-1)/n = 1 at n = 2
    assert two["allreduce_busbw"] == pytest.approx(4 * params / (two["allreduce_ms"] / 1e3))
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and list(tmp_path.glob("wandb/offline-run-*/run-*.wandb"))
    saved = tmp_path / "ddp.json"
    saved.write_text(r.stdout)
    merged = tmp_path / "merged.csv"
    assert main(["bench", "--merge", str(out), str(saved), "--csv", str(merged)]) == 0
    table = capsys.readouterr().out
    assert "efficiency" in table and "busbw" in table and table.count("lenet5") == 4
    with merged.open(newline="") as f:
        back = list(csv.DictReader(f))
    assert [(b["world_size"], float(b["samples_per_s"])) for b in back] == [
        (str(row["world_size"]), row["samples_per_s"]) for row in (one, one, two, two)
    ]


@pytest.mark.parametrize(
    "args, message",
    [
        (["resnet20", "--devices", "2", "--nodes", "2"], "--nodes 2: ranks on other nodes need Slurm"),
        (["resnet20", "--devices", "2", "--mode", "infer"], "--mode infer does not apply to --devices"),
        (["resnet20", "--devices", "2", "--verify"], "--verify does not apply to --devices"),
        (["resnet20", "--nodes", "2"], "--nodes needs --devices N"),
        (["--merge", "nosuch.csv"], "--merge nosuch.csv: no such file"),
    ],
)
def test_ddp_option_mistakes_are_one_line_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SLURM_NTASKS", raising=False)
    assert main(["bench", *args]) == 2
    out, err = capsys.readouterr()
    assert (out, err.count("\n")) == ("", 1), err
    assert message in err


def test_scaling_sizes_and_bus_bandwidth() -> None:
    from harness.bench.distributed import bus_bandwidth, world_sizes

    assert [world_sizes(n) for n in (1, 2, 6, 8)] == [[1], [1, 2], [1, 2, 4, 6], [1, 2, 4, 8]]
    assert (
        bus_bandwidth(10**9, 1.0, 8) == pytest.approx(1.75e9) and bus_bandwidth(10**9, 1.0, 1) is None
    )  # nccl-tests' 2(n-1)/n


def test_bench_sweep_file_renders_one_array_task_per_model(tmp_path: Path) -> None:
    from harness.bench.sweep import load, render

    spec = load(REPO / "sweeps" / "bench" / "scaling.yaml")  # the shipped file
    script = render(spec)
    assert (
        f"--array=0-{len(spec.models) - 1}" in script and "--ntasks-per-node=8" in script and "--gres=gpu:8" in script
    )
    assert f"MODELS=({' '.join(spec.models)})" in script
    steps = [line for line in script.splitlines() if line.startswith("srun ")]
    assert len(steps) == 4 and all('bench "${MODEL}" --devices 8 --nodes 1 --precision' in s for s in steps)
    assert sum("--channels-last" in s for s in steps) == 2 and sum("bf16-mixed" in s for s in steps) == 2


@pytest.mark.parametrize(
    "body, message",
    [
        ("bench: {models: [nosuchnet]}", "bench.models: unknown architecture 'nosuchnet'"),
        ("bench: {models: [lenet5], devices: 0}", "bench.devices=0: must be >= 1"),
        (
            "bench: {models: [lenet5], precision: [fp8]}",
            "bench.precision: 'fp8' is not one of 32, bf16-mixed, 16-mixed",
        ),
        ("bench: {models: [lenet5], gpus: 8}", "unknown config key bench.gpus"),
        ("bench: {models: [lenet5]}\nslurm: {signal: USR1@60}", "slurm.signal: a bench has nothing to checkpoint"),
        (
            "bench: {models: [lenet5]}\nslurm: {array_parallelism: 2}",
            "slurm.array_parallelism: a bench sweep's tasks are not throttled",
        ),
        ("method: grid\nparameters: {}", "a bench sweep needs a `bench:` mapping"),
    ],
)
def test_bench_sweep_mistakes_are_one_line(
    tmp_path: Path, body: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(body)
    assert main(["bench", "--sweep", str(spec), "--dry-run"]) == 2
    out, err = capsys.readouterr()
    assert (out, err.count("\n")) == ("", 1) and f"{spec}: " in err and message in err, err
