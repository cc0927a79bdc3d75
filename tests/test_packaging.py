"""A wheel (what `pip install .` installs on a cluster, unlike the editable install of `make`) holds
what the package reads from disk at run time: the sbatch templates of slurm/templates; and the pytest
plugin's entry point."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from harness.sweep.slurm import TEMPLATES
from tests.helpers import REPO


def test_the_wheel_carries_the_sbatch_templates(tmp_path: Path) -> None:
    shipped = sorted(p.name for p in (REPO / "slurm" / "templates").glob("*.sbatch"))
    assert shipped and sorted(p.name for p in TEMPLATES.glob("*.sbatch")) == shipped
    src = tmp_path / "src"  # setuptools builds in the source tree: build a copy, keep the checkout clean
    shutil.copytree(
        REPO,
        src,
        symlinks=True,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "results", "build", "*.egg-info", "__pycache__", ".pytest_cache", ".benchmarks", "wandb"
        ),
    )
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = tmp_path.glob("convbench-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {f"harness/sweep/templates/{n}" for n in shipped} <= set(names)
    assert "harness/sweep/slurm.py" in names and "architectures/registry.py" in names
    # the throughput check's pytest plugin, and the entry point through which pytest loads it
    assert "harness/throughput_check/plugin.py" in names and "harness/throughput_check/measure.py" in names
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[pytest11]\nconvbench_throughput = harness.throughput_check.plugin\n" in text, text
