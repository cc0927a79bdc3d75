"""`convbench sync RESULTS [--upload]`: make every finished run under RESULTS one complete offline W&B
run (exporting those run with W&B disabled or whose export was interrupted), then print the
`wandb sync` command that uploads them, or run it with --upload (on a machine with internet: the
login node). Runs logged online are already in W&B and left alone. Exit codes: 0 done, 2 a user
mistake or an upload that could not start, 1 an upload that failed."""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

from harness.errors import UserError


class UploadFailed(UserError):
    exit_code = 1


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "dir", metavar="RESULTS", help="a results root, sweep directory or run directory (searched recursively)"
    )
    p.add_argument("--upload", action="store_true", help="run `wandb sync` on the offline runs not yet uploaded")
    p.add_argument(
        "--timeout", type=float, default=900, help="--upload: seconds before `wandb sync` is stopped (default 900)"
    )


def reachable(base_url: str, timeout: float = 10) -> str | None:
    """None if W&B's server answers a TCP connect, else why not: `wandb sync` itself retries for
    minutes on a machine without internet (a compute node)."""
    url = urlparse(base_url)
    try:
        socket.create_connection(
            (url.hostname or "", url.port or (443 if url.scheme == "https" else 80)), timeout=timeout
        ).close()
    except OSError as err:
        return f"{type(err).__name__}: {err.strerror or err}"
    return None


def run(args: argparse.Namespace) -> int:
    from harness.report.collect import find_results
    from harness.run_record import RunResult
    from harness.wandb_run import complete_export, export, synced

    root = Path(args.dir)
    files = find_results(root)
    if not files:
        raise UserError(f"{root}: no result.json found (expected a results root, a sweep directory or a run directory)")
    exported, kept, online, pending = 0, 0, 0, []
    for f in files:
        mode = (RunResult.read(f).config.get("wandb") or {}).get("mode")
        if mode == "online":
            online += 1
            continue
        d = complete_export(f.parent)
        if d is None:
            d = export(f.parent)
            exported += 1
            print(f"exported {f.parent.name} -> {d}", file=sys.stderr)
        else:
            kept += 1
        if not synced(d):
            pending.append(d)
    print(
        f"{len(files)} finished runs: {exported} exported now, {kept} already exported, {online} logged online; "
        f"{len(pending)} not yet uploaded",
        file=sys.stderr,
    )
    if not pending:
        return 0
    command = [shutil.which("wandb") or "wandb", "sync", *map(str, pending)]
    if not args.upload:
        print(shlex.join(["wandb", "sync", *map(str, pending)]))
        return 0
    import wandb

    settings = wandb.Settings()
    settings.update_from_system_settings()  # `wandb login --host`'s settings file
    settings.update_from_env_vars(dict(os.environ))  # WANDB_BASE_URL, as `wandb sync` reads it
    base_url = settings.base_url
    why = reachable(base_url)
    if why is not None:
        raise UserError(
            f"cannot reach W&B at {base_url} ({why}): run `convbench sync {args.dir} --upload` where there is internet "
            "(the login node), or copy the offline runs there and `wandb sync` them"
        )
    try:
        proc = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=args.timeout,
            env={**os.environ, "WANDB_SILENT": "false"},
        )
    except subprocess.TimeoutExpired:
        raise UploadFailed(
            f"`wandb sync` did not finish in {args.timeout:.0f} s ({len(pending)} runs); run it again: "
            "uploaded runs are marked .synced and skipped"
        ) from None
    if proc.returncode != 0:
        last = next((line for line in reversed((proc.stderr + proc.stdout).splitlines()) if line.strip()), "no output")
        raise UploadFailed(f"`wandb sync` failed (exit {proc.returncode}): {last.strip()}")
    print(proc.stdout, end="")
    return 0
