"""Argument types and flags that more than one verb shares: argparse checks them, so a bad value is
one line naming the flag (cli.Parser), before any work starts."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    return _int_at_least(text, 1)


def nonnegative_int(text: str) -> int:
    return _int_at_least(text, 0)


def _int_at_least(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
    return value


def add_input_size(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--input-size", nargs=3, type=positive_int, metavar=("C", "H", "W"), help=help)
