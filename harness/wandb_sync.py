"""Every finished run under a results directory as one complete offline W&B run, and their upload.

Runs trained with W&B offline or disabled, or whose export was interrupted, are exported now
(harness.wandb_run); runs logged online are already in W&B and left alone. The upload is W&B's own
`wandb sync`, run only where W&B's server answers: on a machine without internet (a compute node) it
would retry for minutes."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from harness.errors import UserError


class UploadFailed(UserError):
    exit_code = 1


@dataclass
class Pending:
    """What `prepare` found: counts of the finished runs and the offline runs not yet uploaded."""

    finished: int = 0
    exported: int = 0
    kept: int = 0
    online: int = 0
    offline_runs: list[Path] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.finished} finished runs: {self.exported} exported now, {self.kept} already exported, "
            f"{self.online} logged online; {len(self.offline_runs)} not yet uploaded"
        )


def prepare(root: Path) -> Pending:
    """Export the finished runs under `root` that lack a complete offline W&B run; say each on stderr."""
    from harness.report.collect import find_results
    from harness.run_record import RunResult
    from harness.wandb_run import complete_export, export, synced

    files = find_results(root)
    if not files:
        raise UserError(f"{root}: no result.json found (expected a results root, a sweep directory or a run directory)")
    pending = Pending(finished=len(files))
    for f in files:
        if (RunResult.read(f).config.get("wandb") or {}).get("mode") == "online":
            pending.online += 1
            continue
        d = complete_export(f.parent)
        if d is None:
            d = export(f.parent)
            pending.exported += 1
            print(f"exported {f.parent.name} -> {d}", file=sys.stderr)
        else:
            pending.kept += 1
        if not synced(d):
            pending.offline_runs.append(d)
    return pending


def reachable(base_url: str, timeout: float = 10) -> str | None:
    """None if W&B's server answers a TCP connect, else why not."""
    url = urlparse(base_url)
    try:
        socket.create_connection(
            (url.hostname or "", url.port or (443 if url.scheme == "https" else 80)), timeout=timeout
        ).close()
    except OSError as err:
        return f"{type(err).__name__}: {err.strerror or err}"
    return None


def upload(offline_runs: list[Path], timeout: float, retry_hint: str) -> str:
    """`wandb sync` the offline runs and return its output; a one-line error when W&B cannot be reached
    (naming `retry_hint`, the command to run where it can) or the upload fails."""
    import wandb

    settings = wandb.Settings()
    settings.update_from_system_settings()  # `wandb login --host`'s settings file
    settings.update_from_env_vars(dict(os.environ))  # WANDB_BASE_URL, as `wandb sync` reads it
    why = reachable(settings.base_url)
    if why is not None:
        raise UserError(
            f"cannot reach W&B at {settings.base_url} ({why}): run `{retry_hint}` where there is internet "
            "(the login node), or copy the offline runs there and `wandb sync` them"
        )
    try:
        proc = subprocess.run(
            [shutil.which("wandb") or "wandb", "sync", *map(str, offline_runs)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "WANDB_SILENT": "false"},
        )
    except subprocess.TimeoutExpired:
        raise UploadFailed(
            f"`wandb sync` did not finish in {timeout:.0f} s ({len(offline_runs)} runs); run it again: "
            "uploaded runs are marked .synced and skipped"
        ) from None
    if proc.returncode != 0:
        last = next((line for line in reversed((proc.stderr + proc.stdout).splitlines()) if line.strip()), "no output")
        raise UploadFailed(f"`wandb sync` failed (exit {proc.returncode}): {last.strip()}")
    return proc.stdout
