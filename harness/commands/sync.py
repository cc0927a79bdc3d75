"""`convbench sync RESULTS [--upload]`: make every finished run under RESULTS one complete offline W&B
run, then print the `wandb sync` command that uploads them, or run it with --upload (on a machine with
internet: the login node). Exit codes: 0 done, 2 a user mistake or an upload that could not start, 1 an
upload that failed (harness.wandb_sync)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "dir", metavar="RESULTS", help="a results root, sweep directory or run directory (searched recursively)"
    )
    p.add_argument("--upload", action="store_true", help="run `wandb sync` on the offline runs not yet uploaded")
    p.add_argument(
        "--timeout", type=float, default=900, help="--upload: seconds before `wandb sync` is stopped (default 900)"
    )


def run(args: argparse.Namespace) -> int:
    from harness.wandb_sync import prepare, upload

    pending = prepare(Path(args.dir))
    print(pending.summary(), file=sys.stderr)
    if not pending.offline_runs:
        return 0
    if not args.upload:
        print(shlex.join(["wandb", "sync", *map(str, pending.offline_runs)]))
        return 0
    print(upload(pending.offline_runs, args.timeout, f"convbench sync {args.dir} --upload"), end="")
    return 0
