"""convbench's pytest plugin (harness/throughput_check) as a user meets it: the README's test file, with its own
model, run by `pytest` in a child process in an empty directory, the plugin loaded through its installed `pytest11`
entry point (no -p, no conftest). It records a baseline, passes against it, and fails against one edited to twice
the model's speed, naming the slowdown, the baseline file and both machines. Bad input is one line; a session that
does not use the fixture neither imports torch nor loses its threads."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness.hardware import cpu_name
from harness.throughput_check.plugin import UPDATE_ENV
from tests.helpers import ENV, REPO

HEADING = "### A throughput check in your CI"
BRIEF = ["--benchmark-only", "--benchmark-min-rounds=10", "--benchmark-max-time=0.5"]  # about a second of rounds


def readme_test_file() -> str:
    """The first python block under the README's heading: the example users copy is the one tested."""
    text = REPO.joinpath("README.md").read_text()
    assert HEADING in text, f"README.md has no {HEADING!r}"
    match = re.search(r"```python\n(.*?)```", text.split(HEADING, 1)[1], re.S)
    assert match, f"no python block under README.md's {HEADING!r}"
    return match.group(1)


def pytest_in(directory: Path, *args: str, python: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """`python [PYTHON...] -m pytest ARGS` in `directory`, in this interpreter's environment without the variables
    that would change which plugins load or record a baseline."""
    drop = (UPDATE_ENV, "PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD")
    return subprocess.run(
        [sys.executable, *python, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=directory,
        env={k: v for k, v in ENV.items() if k not in drop},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_records_a_baseline_passes_against_it_and_fails_against_one_twice_as_fast(tmp_path: Path) -> None:
    (tmp_path / "test_model_speed.py").write_text(readme_test_file())
    recorded = pytest_in(tmp_path, "--throughput-record", *BRIEF)
    assert recorded.returncode == 0, recorded.stdout + recorded.stderr
    assert re.search(r"^plugins: .*convbench-", recorded.stdout, re.M), recorded.stdout  # through the entry point
    assert "throughput baseline: 1 figure recorded into throughput-baseline.json" in recorded.stdout
    baseline = tmp_path / "throughput-baseline.json"
    data = json.loads(baseline.read_text())
    assert list(data["normalised"]) == ["train_step/TinyNet"] and data["normalised"]["train_step/TinyNet"] > 0
    assert data["recorded_on"]["cpu"] == cpu_name() and data["recorded_on"]["torch"] == torch.__version__

    checked = pytest_in(tmp_path, *BRIEF)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "benchmarks vs baseline throughput-baseline.json: 1 checked" in checked.stdout

    data["normalised"]["train_step/TinyNet"] *= 2
    baseline.write_text(json.dumps(data))
    failed = pytest_in(tmp_path, *BRIEF)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    message = re.search(
        r"^train_step/TinyNet: (\d+\.\d\d)x slower than its baseline .*\n"
        r"  baseline: throughput-baseline\.json, recorded on (.*)\n"
        r"  this run: (.*)\n",
        failed.stdout,
        re.M,
    )
    assert message, failed.stdout
    slower, recorded_on, this_run = message.groups()
    assert float(slower) > 1.5
    assert recorded_on.startswith(f"{cpu_name()}, torch {torch.__version__}, reference ")
    assert this_run.startswith(f"{cpu_name()}, torch {torch.__version__}, reference ")


USES_FIXTURE = """\
def test_sum(throughput):
    throughput("sum", lambda: sum(range(1000)), items=1000)
"""


@pytest.mark.parametrize(
    ("args", "baseline", "message"),
    [
        (["--throughput-tolerance=1"], None, "ERROR: --throughput-tolerance=1: must be a number above 1 ("),
        ([], "{not json", "throughput-baseline.json: not JSON (Expecting property name"),
        ([], '{"normalised": {"sum": "fast"}}', "throughput-baseline.json: not a throughput baseline; expected an"),
        (["-p", "no:benchmark"], None, "the throughput fixture times with pytest-benchmark, which is not installed"),
    ],
    ids=["tolerance", "not-json", "not-a-baseline", "no-pytest-benchmark"],
)
def test_bad_input_is_one_line(tmp_path: Path, args: list[str], baseline: str | None, message: str) -> None:
    (tmp_path / "test_sum.py").write_text(USES_FIXTURE)
    if baseline is not None:
        (tmp_path / "throughput-baseline.json").write_text(baseline)
    proc = pytest_in(tmp_path, *args)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and message in out, out
    assert "Traceback" not in out and not re.search(r"^(E |> )", out, re.M), out  # the message, no code


def test_a_session_without_the_fixture_imports_no_torch(tmp_path: Path) -> None:
    (tmp_path / "test_plain.py").write_text(
        "import sys\n\n\ndef test_plain():\n    assert 'torch' not in sys.modules\n"
    )
    proc = pytest_in(tmp_path, "-q", python=("-X", "importtime"))
    assert proc.returncode == 0 and "1 passed" in proc.stdout, proc.stdout + proc.stderr
    # the plugin's imports, timed as they load (pytest imports the plugin module itself through importlib, untimed)
    modules = [line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")]
    assert any(m.startswith("harness.throughput_check.") for m in modules), "the plugin was not loaded"
    assert [m for m in modules if m.split(".")[0] == "torch"] == []


def test_only_the_tests_that_use_the_fixture_run_at_one_thread(tmp_path: Path) -> None:
    (tmp_path / "test_threads.py").write_text(
        "import torch\n\n"
        "torch.set_num_threads(3)\n\n\n"
        "def test_checked(throughput):\n"
        "    throughput('sum', lambda: sum(range(1000)), items=1000)\n"
        "    assert torch.get_num_threads() == 1\n\n\n"
        "def test_after():\n"
        "    assert torch.get_num_threads() == 3\n"
    )
    proc = pytest_in(tmp_path, "--benchmark-max-time=0.1")
    assert proc.returncode == 0 and "2 passed" in proc.stdout, proc.stdout + proc.stderr
    assert "throughput: no baseline in throughput-baseline.json for sum; record one with --throughput-record" in (
        proc.stdout
    )
