"""`convbench summary NAME`: per-layer output shape, parameters and MACs, and the totals."""

from __future__ import annotations

import argparse
import json

import architectures
from harness.commands.options import add_input_size
from harness.console import human, print_table
from harness.errors import UserError


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("name")
    add_input_size(p, "default: the reference's input size")
    p.add_argument("--num-classes", type=int, default=None)
    p.add_argument("--json", action="store_true", help="one JSON object: name, params, macs, input_size, depth, layers")


def run(args: argparse.Namespace) -> int:
    info = architectures.info(args.name)
    size = tuple(args.input_size) if args.input_size else info.input_size
    if args.num_classes is not None and args.num_classes < 1:
        raise UserError(f"--num-classes must be a positive integer, got {args.num_classes}")
    model = architectures.create(args.name, num_classes=args.num_classes, in_chans=size[0])
    try:
        prof = architectures.profile(model, size)
    except RuntimeError as err:
        raise UserError(
            f"{args.name} cannot run on input {'x'.join(map(str, size))}: {str(err).splitlines()[0]}"
        ) from None
    if args.json:
        print(json.dumps({"name": args.name, "family": info.family, **prof.to_dict()}))
        return 0
    print_table(
        f"{args.name}  ({info.reference})",
        ["layer", "type", "output", "params", "MACs"],
        (
            [layer.name, layer.type, "x".join(map(str, layer.output_shape)), f"{layer.params:,}", f"{layer.macs:,}"]
            for layer in prof.layers
        ),
        right=("params", "MACs"),
    )
    print(
        f"input {'x'.join(map(str, size))}  depth {prof.depth}  params {prof.params:,}  "
        f"MACs {prof.macs:,} ({human(prof.macs)}; FLOPs = 2 x MACs)  output {'x'.join(map(str, prof.output_shape))}"
    )
    return 0
