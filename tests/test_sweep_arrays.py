"""Sweeps at scale without a cluster: index ranges, splitting runs into arrays at MaxArraySize and at
Slurm's 4,096-character --array limit, offsets in the rendered script, jobs.json old and new, the
array_parallelism key, and a local runner whose work does not grow with the number of waiting runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.errors import UserError
from harness.sweep import ranges, store
from harness.sweep.slurm import MAX_ARRAY_SPEC, Limits, render, split, submit
from harness.sweep.spec import load
from tests.helpers import ENV, LENET5_SYNTHETIC, REPO, sweep_file


def big_sweep(tmp_path: Path, seeds: list[int], slurm: dict[str, Any] | None = None) -> Path:
    """One lenet5 run a seed on 32 synthetic images; `slurm` is the convbench.slurm block."""
    return sweep_file(
        tmp_path / "big.yaml",
        {**LENET5_SYNTHETIC, "data.num_samples": 32, "data.batch_size": 32, "data.val_size": 0},
        convbench={
            "name": "big",
            "results": str(tmp_path / "results"),
            "seeds": seeds,
            "slurm": {"cpus_per_task": 1} if slurm is None else slurm,
        },
    )


def line_of(path: Path, key: str) -> int:
    """The line of a sweep file where `key:` is, counted as the loader's messages count."""
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if line.strip().startswith(f"{key}:"))


@pytest.mark.parametrize(
    "indices, text",
    [
        ([], ""),
        ([7], "7"),
        ([0, 1], "0-1"),
        (list(range(600)), "0-599"),
        ([*range(10), *range(20, 30)], "0-9,20-29"),
        ([5, 3, 4, 9, 1, 3], "1,3-5,9"),
    ],
)
def test_ranges_round_trip(indices: list[int], text: str) -> None:
    assert ranges.compact(indices) == text
    assert ranges.expand(text) == sorted(set(indices))
    assert ranges.count(text) == len(set(indices))


def test_ranges_read_slurm_task_lists() -> None:
    assert ranges.expand("[0-3,7%2]") == [0, 1, 2, 3, 7]


@pytest.mark.parametrize(
    "max_array_size, block", [(1001, 1000), (50, 50), (10001, 10000), (4, 4), (1234, 1200), (101, 100)]
)
def test_block_is_max_array_size_to_two_significant_digits(max_array_size: int, block: int) -> None:
    assert Limits(max_array_size, 0).block == block


def test_split_at_max_array_size_with_offsets() -> None:
    assert split(list(range(1100)), Limits(1001, 0)) == [(0, "0-999"), (1000, "0-99")]
    assert split(list(range(120)), Limits(50, 0), "%5") == [(0, "0-49"), (50, "0-49"), (100, "0-19")]
    assert split(list(range(600)), Limits(1001, 0)) == [(0, "0-599")]
    # a resubmission of what is left: task ids start at the first run past the first block
    assert split([3, 7, *range(1500, 1800), 2999], Limits(1001, 0)) == [(0, "3,7"), (1500, "0-299"), (2999, "0")]
    assert split([], Limits(1001, 0)) == []


def test_split_keeps_every_array_string_within_slurms_limit() -> None:
    every_other = list(range(0, 20000, 2))  # 10,000 separate indices under MaxArraySize 100001
    arrays = split(every_other, Limits(100001, 0), "%50")
    assert len(arrays) > 1 and all(len(tasks) + 3 <= MAX_ARRAY_SPEC for _, tasks in arrays)
    assert sorted(o + t for o, tasks in arrays for t in ranges.expand(tasks)) == every_other
    assert all(max(ranges.expand(tasks)) < 100001 for _, tasks in arrays)


def test_script_maps_task_ids_to_run_indices(tmp_path: Path) -> None:
    sweep = load(big_sweep(tmp_path, list(range(3)), {"cpus_per_task": 1, "array_parallelism": 5}))
    script = render(sweep, sweep.runs, "0-99%5", 1000)
    assert "#SBATCH --array=0-99%5\n" in script
    assert 'RUN_INDEX=$((SLURM_ARRAY_TASK_ID + 1000))\nRUN_CONFIG="' in script and '/runs/${RUN_INDEX}.yaml"' in script
    task_id = 42  # what bash computes for task 42 of that array
    out = subprocess.run(
        [
            "bash",
            "-c",
            "SLURM_ARRAY_TASK_ID=42; "
            + next(line for line in script.splitlines() if line.startswith("RUN_INDEX"))
            + "; echo $RUN_INDEX",
        ],
        capture_output=True,
        text=True,
    )
    assert out.stdout.strip() == str(1000 + task_id)


def test_array_parallelism_must_be_positive(tmp_path: Path) -> None:
    p = big_sweep(tmp_path, [0], {"array_parallelism": 0})
    line = line_of(p, "array_parallelism")
    with pytest.raises(UserError, match=rf"line {line}: convbench.slurm.array_parallelism=0: must be >= 1"):
        load(p)


def test_signal_must_be_the_one_preemption_listens_for(tmp_path: Path) -> None:
    assert load(big_sweep(tmp_path, [0], {"signal": "B:USR1@60"})).slurm.signal == "B:USR1@60"
    p = big_sweep(tmp_path, [0], {"signal": "SIGUSR2@90"})
    lines = f"({line_of(p, 'slurm')}|{line_of(p, 'signal')})"  # the section's line or the key's
    with pytest.raises(
        UserError, match=rf"line {lines}: convbench.slurm.signal='SIGUSR2@90': accepted \[B:\]\[SIG\]USR1@SECONDS"
    ):
        load(p)


def test_a_cluster_without_arrays_is_a_one_line_error() -> None:
    with pytest.raises(UserError, match=r"MaxArraySize=0: job arrays are disabled"):
        Limits(0, 10_000)


def test_jobs_json_in_ranges_and_old_files_read(tmp_path: Path) -> None:
    sweep = load(big_sweep(tmp_path, list(range(4))))
    store.prepare(sweep)
    (sweep.dir / "jobs.json").write_text(
        json.dumps([{"job_id": "7", "script": "a.sbatch", "indices": [0, 1, 2], "dependency": None, "submitted": 1.0}])
    )
    store.add_job(sweep, store.ArrayJob("8", "b.sbatch", "1000-1099", 1000))
    old, new = store.jobs(sweep)
    assert (old.runs, old.offset, old.indices(), old.run_index(2)) == ("0-2", 0, [0, 1, 2], 2)
    assert (new.runs, new.run_index(99)) == ("1000-1099", 1099)
    written = json.loads((sweep.dir / "jobs.json").read_text())
    assert [j["runs"] for j in written] == ["0-2", "1000-1099"] and "indices" not in written[0]


def test_dry_run_without_a_cluster_splits_at_slurms_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """1,100 runs: two scripts, tasks 0-999 and 0-99 (+1000), and the dry run says it assumed MaxArraySize."""
    sweep = load(big_sweep(tmp_path, list(range(1100)), {"cpus_per_task": 1, "array_parallelism": 50}))
    monkeypatch.delenv("SLURM_CONF", raising=False)
    lines: list[str] = []
    assert submit(sweep, dry_run=True, say=lines.append) == []
    text = "\n".join(lines)
    assert "Slurm's default MaxArraySize=1001" in lines[0]
    assert "#SBATCH --array=0-999%50\n" in text and "#SBATCH --array=0-99%50\n" in text
    assert "# ---- array 1: runs 1000-1099, task id + 1000 = run index" in text
    assert not (tmp_path / "results").exists()


def test_submit_refuses_more_runs_than_max_job_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.sweep.slurm as slurm

    sweep = load(big_sweep(tmp_path, list(range(30))))
    monkeypatch.setattr(slurm, "limits", lambda dry_run=False, say=print: Limits(1001, 20))
    monkeypatch.setattr(slurm, "task_states", lambda sweep: {})
    with pytest.raises(UserError, match=r"30 runs to submit, but the cluster's MaxJobCount is 20"):
        submit(sweep)


RUNNER = """
import sys
from harness.sweep import local, store
from harness.sweep.spec import load

reads = 0
def counted(run, _read=store.result):
    global reads
    reads += 1
    return _read(run)

store.result = counted
outcome = local.run_local(load(sys.argv[1]), parallel=1, say=lambda line: None)
print(reads, sorted(set(outcome.final.values())))
"""


def test_local_runner_reads_each_result_a_bounded_number_of_times(tmp_path: Path) -> None:
    """The runner reads a run's result.json at the start, when it forks it and when it ends: 3 reads a run
    however long the others take (it used to read every waiting run's file every 50 ms)."""
    p = big_sweep(tmp_path, list(range(3)))
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, str(p)], capture_output=True, text=True, cwd=REPO, env=ENV, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    reads, statuses = proc.stdout.split(maxsplit=1)
    assert statuses.strip() == "['completed']" and int(reads) <= 3 * 3, proc.stdout
