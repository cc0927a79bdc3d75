"""What several test modules need: the repo's path, the `convbench` CLI in a subprocess, waiting for a
condition with a deadline, and sweep files built from dicts. Test modules import from here (and from
`tests.slurm_fixtures`), never from one another."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

REPO = Path(__file__).resolve().parents[1]
# no network from any child: albumentations' version check off, W&B off unless a test asks for it
ENV = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "WANDB_MODE": "disabled"}

T = TypeVar("T")


def convbench(
    *args: str | Path, env: Mapping[str, str] | None = None, cwd: Path = REPO, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """`convbench ARGS` in a child process of this interpreter; `env` is added to `ENV`."""
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env={**ENV, **(env or {})},
        cwd=cwd,
        timeout=timeout,
    )


def wait_for(condition: Callable[[], T], what: str, timeout: float, interval: float = 0.2) -> T:
    """Poll `condition` until it returns something truthy, and return that; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)
    return value


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
