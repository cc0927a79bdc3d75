"""What several test modules need: the repo's path, the `convbench` CLI in a subprocess (here or on a local
Slurm cluster) or in this process, waiting for a condition with a deadline or for a Slurm job's end (sacct),
sweep files built from dicts, and the tensor reads that wait for the device. Test modules import from here (and
from `tests.slurm_fixtures`), never from one another."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
import yaml

if TYPE_CHECKING:
    from tests.slurm_fixtures import SlurmCluster

REPO = Path(__file__).resolve().parents[1]
# no network from any child: albumentations' version check off, W&B off unless a test asks for it
QUIET = {"NO_ALBUMENTATIONS_UPDATE": "1", "WANDB_MODE": "disabled"}
ENV = {**os.environ, **QUIET}
# the smallest real run: lenet5 on synthetic 1x32x32 images, no DataLoader workers, W&B off (sweep parameters)
LENET5_SYNTHETIC = {
    "arch": "lenet5",
    "dataset": "synthetic",
    "data.input_size": (1, 32, 32),
    "data.num_workers": 0,
    "wandb.mode": "disabled",
}
# the Tensor methods that read a value back to the host: under CUDA each waits for the device
READS = ("item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__", "__index__")

T = TypeVar("T")


def convbench(
    *args: str | Path,
    env: Mapping[str, str | None] | None = None,
    cluster: SlurmCluster | None = None,
    cwd: Path = REPO,
    timeout: float = 300,
    check: bool = False,
) -> subprocess.CompletedProcess[str]:
    """`convbench ARGS` in a child process of this interpreter, in `ENV` plus `env` (a None value unsets that
    variable); on `cluster`, in the cluster's environment (its SLURM_CONF, none of an enclosing job's
    variables) plus `QUIET` and `env`. With `check`, the test fails unless it exits 0."""
    base = ENV if cluster is None else {**cluster.env, **QUIET}
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env={k: v for k, v in {**base, **(env or {})}.items() if v is not None},
        cwd=cwd,
        timeout=timeout,
    )
    assert not check or proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def in_process(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`convbench ARGS` through `harness.cli.main` in this process, for checks of messages and exit codes
    without a child's start-up: (exit code, stdout, stderr); argparse's exits are returned, not raised."""
    from harness.cli import main

    capsys.readouterr()
    try:
        code = main(list(args))
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def wait_for(
    condition: Callable[[], T],
    what: str,
    timeout: float,
    interval: float = 0.2,
    detail: Callable[[], str] | None = None,
) -> T:
    """Poll `condition` until it returns something truthy, and return that; fail naming `what` at the deadline,
    followed by what `detail` returns then (logs, the last state seen)."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            message = f"timed out after {timeout:g} s waiting for {what}"
            raise AssertionError(message + ("\n" + detail() if detail else ""))
        time.sleep(interval)
    return value


# the states a Slurm job or array task ends in
SLURM_FINAL = {
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
    "PREEMPTED", "BOOT_FAIL", "DEADLINE", "REVOKED",
}  # fmt: skip


def accounting(cluster: SlurmCluster, job_id: str) -> dict[str, str]:
    """sacct rows of a job as {JobID: State}; "CANCELLED by 0" is reported as CANCELLED."""
    proc = cluster.run("sacct", "-j", job_id, "--format=JobID,State", "-P", "-n")
    assert proc.returncode == 0, f"sacct: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    rows = (line.split("|") for line in proc.stdout.splitlines() if "|" in line)
    return {jid: state.split()[0] for jid, state in rows if state}


def wait_for_allocations(cluster: SlurmCluster, job_id: str, count: int = 1, timeout: float = 60) -> dict[str, str]:
    """Poll sacct until `count` allocations (array tasks, or the job itself) are in a final state; return
    every row's state, steps included. Not `sbatch --wait`: its polling interval grows fourfold while under
    MinJobAge/3, so a short job is seen long after it ends (docs/measurements.md#slurm)."""

    def finished() -> dict[str, str] | None:
        states = accounting(cluster, job_id)
        allocations = {j: s for j, s in states.items() if "." not in j}  # drop .batch/.0 steps
        return states if len(allocations) >= count and all(s in SLURM_FINAL for s in allocations.values()) else None

    return wait_for(
        finished,
        f"job {job_id} to finish",
        timeout,
        detail=lambda: f"{accounting(cluster, job_id)}\n{cluster.log_tail()}",
    )


def sweep_logs(sweep_dir: Path) -> str:
    """The tail of each of a sweep's logs (its Slurm tasks' output), for a failure message."""
    return "\n".join(f"--- {p}\n{p.read_text()[-3000:]}" for p in sorted((sweep_dir / "logs").glob("*")))


def sweep_file(path: Path, parameters: Mapping[str, Any], method: str = "grid", **top: Any) -> Path:
    """Write a W&B-schema sweep file: each parameter a list of values (`{values: [...]}`) or one value
    (`{value: ...}`; a tuple is one list-valued value, e.g. `"data.input_size": (1, 32, 32)`). `top` adds
    top-level keys, e.g. `convbench={"slurm": {"cpus_per_task": 1}}` or `name="depth"`."""

    def entry(value: Any) -> dict[str, Any]:
        if isinstance(value, list):
            return {"values": value}
        return {"value": list(value) if isinstance(value, tuple) else value}

    body = {"method": method, "parameters": {key: entry(v) for key, v in parameters.items()}, **top}
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def assert_names_this_machine(hw: dict[str, Any], threads: int) -> None:
    """A record's hardware, against /proc/cpuinfo read here: this CPU, its numerics flags, the thread count."""
    import torch

    from harness.hardware import NUMERIC_FLAGS

    cpuinfo = Path("/proc/cpuinfo").read_text().split("\n\n")[0]
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M).group(1)
    flags = set(re.search(r"^flags\s*:\s*(.+)$", cpuinfo, re.M).group(1).split())
    (host,) = hw["hosts"]
    assert host["name"] == socket.gethostname() and host["cpu"].startswith(model)
    assert set(host["cpu_flags"]) == flags & set(NUMERIC_FLAGS) and host["cpu_flags"]  # any CPU torch runs on has some
    assert host["cpu_isa"] == torch.backends.cpu.get_cpu_capability() and host["cores"] == len(os.sched_getaffinity(0))
    assert hw["torch_threads"] == threads and hw["label"].endswith(f"{threads} thread{'s' if threads > 1 else ''}")
    assert hw["device"] == "cpu" and host["gpus"] == [] and hw["devices"] == [host["cpu"]]
    assert ("mkl" in host["blas"]) == torch.backends.mkl.is_available()
