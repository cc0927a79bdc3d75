"""The `convbench` command line.

Each verb lives in its own module under `harness.commands` exposing `configure(parser)` and
`run(args) -> int`. Only the chosen verb's module is imported, so `convbench list` does not pay for
Lightning. `--import MODULE`, on every verb, imports the user's module (where their models and datasets
register) before the verb runs. User mistakes (`UserError`, `ArchitectureError`, `DataError`) print one
line and exit with their code; nothing else is caught.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys

from harness.errors import user_errors

# verb -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "list": ("harness.commands.list", "list registered architectures"),
    "summary": ("harness.commands.summary", "per-layer shapes, parameters and MACs of one architecture"),
    "train": ("harness.commands.train", "train one architecture on one dataset and record the run"),
    "sweep": ("harness.commands.sweep", "run a grid of trainings from a sweep file, locally or as SLURM array jobs"),
    "bench": (
        "harness.commands.bench",
        "samples/s, step time, peak memory and MFU of architectures and data pipelines",
    ),
    "sync": (
        "harness.commands.sync",
        "export finished runs as complete offline W&B runs; print or run their `wandb sync`",
    ),
    "report": (
        "harness.commands.report",
        "aggregate result.json files into report.md/json and charts (mean ± std over seeds)",
    ),
}


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag as one line (exit 2) instead of the usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser(verb: str | None) -> argparse.ArgumentParser:
    parser = Parser(prog="convbench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True, parser_class=Parser)
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        p.add_argument(
            "--import",
            dest="imports",
            action="append",
            default=[],
            metavar="MODULE",
            help="import this module first (repeatable): where your own models and datasets register",
        )
        if name == verb:
            importlib.import_module(module).configure(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `convbench list | head` ends quietly
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    verb = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(verb if verb in COMMANDS else None).parse_args(argv)
    try:
        if args.imports:
            from harness.imports import load

            load(args.imports, "--import")
        return int(importlib.import_module(COMMANDS[args.verb][0]).run(args) or 0)
    except user_errors() as err:
        print(f"convbench {args.verb}: error: {err}", file=sys.stderr)
        return getattr(err, "exit_code", 2)


if __name__ == "__main__":
    sys.exit(main())
