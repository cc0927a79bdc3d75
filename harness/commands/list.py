"""`convbench list [PATTERN] [--json]`: the registry as a table."""

from __future__ import annotations

import argparse
import json

import architectures
from harness.console import print_table


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("pattern", nargs="?", default="*", help="glob over names, e.g. 'resnet*'")
    p.add_argument("--json", action="store_true", help="one JSON object per architecture, in a list")


def run(args: argparse.Namespace) -> int:
    rows = []
    for name in architectures.names(args.pattern):
        i = architectures.info(name)
        params = architectures.count_params(name)
        rows.append(
            {
                "name": name,
                "family": i.family,
                "depth": architectures.depth(name),
                "residual": i.residual,
                "params": params,
                "input_size": list(i.input_size),
                "num_classes": i.num_classes,
                "task": i.task,
                "reference": i.reference,
                "origin": i.origin,
            }
        )
    if not rows:
        raise architectures.ArchitectureError(f"no architecture matches {args.pattern!r} (try `convbench list`)")
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    outside = any(not architectures.info(r["name"]).zoo for r in rows)  # then say where each comes from
    print_table(
        None,
        ["name", "family", "depth", "residual", "params", "input"] + (["from"] if outside else []),
        (
            [
                r["name"],
                r["family"],
                r["depth"],
                "yes" if r["residual"] else "no",
                f"{r['params']:,}",
                "x".join(map(str, r["input_size"])),
            ]
            + ([r["origin"].partition(":")[0]] if outside else [])
            for r in rows
        ),
        right=("depth", "params"),
    )
    return 0
