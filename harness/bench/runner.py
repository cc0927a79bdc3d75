"""The parent side: one worker process per job, its JSON result back, its failure as one line."""
from __future__ import annotations

import json
import signal
import subprocess
import sys

from harness.errors import UserError

from .jobs import Job, to_json


class WorkerError(UserError):
    """A measurement that crashed in its worker (not the user's mistake, but still one line)."""

    exit_code = 1


def run_job(job: Job, label: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "harness.bench.worker"], input=json.dumps(to_json(job)),
                          capture_output=True, text=True)
    if proc.returncode == 0:
        return json.loads(proc.stdout)
    if proc.returncode == 2 and proc.stdout:
        raise UserError(f"{label}: {json.loads(proc.stdout)['error']}")
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name
        hint = " (out of host memory? try a smaller --batch-size)" if name == "SIGKILL" else ""
        raise WorkerError(f"{label}: worker killed by {name}{hint}")
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    raise WorkerError(f"{label}: worker failed (exit {proc.returncode}): {lines[-1] if lines else 'no output'}")
