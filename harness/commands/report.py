"""`convbench report DIR [DIR ...]`: aggregate every result.json under the DIRs (results roots, sweep
directories, any tree) into report.md, report.json, runs.json and PNG charts in --out (default
<first DIR>/report)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from harness.config.train_config import WANDB_MODES


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "dirs",
        nargs="+",
        metavar="RESULTS_OR_SWEEP_DIR",
        help="searched recursively for result.json files; several: one report over all their runs",
    )
    p.add_argument("--out", help="where the report goes (default FIRST_DIR/report)")
    p.add_argument(
        "--wandb",
        choices=WANDB_MODES,
        default="disabled",
        help="also log the table and charts to a W&B summary run in the runs' group (default disabled)",
    )
    p.add_argument("--no-charts", action="store_true", help="tables only")
    p.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="METRIC=VALUE",
        help="time to accuracy: per run the first evaluation reaching it, per configuration the median over "
        "seeds (e.g. val_acc1=0.90; METRIC: val_acc1, val_acc5, val_loss, train_acc1, train_acc5, train_loss; "
        "repeatable)",
    )


def _show(path: Path) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return str(path)
    return str(path) if rel.startswith("..") else rel


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("MPLBACKEND", "Agg")
    from harness.report import build, device_hours_line, status_line, time_to_accuracy

    targets = [time_to_accuracy.parse_target(t) for t in args.target]
    rep = build(
        [Path(d) for d in args.dirs], Path(args.out) if args.out else None, charts=not args.no_charts, targets=targets
    )
    if args.wandb != "disabled":
        from harness.report.publish import log

        rep.wandb_dir = log(rep, args.wandb)
    print(rep.markdown_table if rep.rows else "(no completed runs)")
    print()
    for found in rep.time_to_accuracy:
        print()
        print(f"time to accuracy, {found['target']}:")
        print(time_to_accuracy.configs_table(found))
    print()
    print(status_line(rep.status_counts) + " (only completed runs are aggregated)")
    print(device_hours_line(rep.device_hours))
    for name, why in rep.skipped.items():
        print(f"chart {name} not drawn: {why}")
    print("wrote:")
    for f in rep.files:
        print(f"  {_show(f)}")
    if rep.wandb_dir is not None:
        print(f"  {_show(rep.wandb_dir)}  (W&B {args.wandb})")
    return 0
