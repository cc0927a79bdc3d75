"""docs/config.md, generated from the schema: every config key and every sweep-file option, with its
type, default, accepted values, whether it changes the run id, and the field's own docstring.

A key is documented where it is defined: the string literal on the line after a dataclass field (an
attribute docstring, read here with `ast`). A field without one stops the generator, so a new key
cannot reach the page undocumented. Regenerate the page with

    .venv/bin/python -m harness.config_docs --out docs/config.md

(without --out it prints the page); tests/test_docs.py fails while the committed page is stale.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import json
import textwrap
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from annotated_types import Ge, Gt, Le, Lt, MinLen

from datamodules.config import DataConfig
from harness.config.train_config import TrainConfig, role
from harness.sweep.spec import Options

COMMAND = ".venv/bin/python -m harness.config_docs --out docs/config.md"
# TrainConfig.data is a free mapping in the dataclass (only the keys given are hashed), checked against DataConfig
CHECKED_AGAINST: dict[tuple[type, str], type] = {(TrainConfig, "data"): DataConfig}
FREE = {"model"}  # mappings of keys the schema does not list, each with a section of the page
BOUNDS = {Ge: (">=", "ge"), Gt: (">", "gt"), Le: ("<=", "le"), Lt: ("<", "lt")}
RUN_ID = {
    "identity": "yes",
    "replicate": "yes, a replicate",
    "non-default": "when not default",
    "ignored": "no",
}


class UndocumentedField(Exception):
    """A schema field with no attribute docstring: the page would have a key without a description."""


@dataclass(frozen=True)
class Key:
    """One row of the page: a dotted key and what its field says about it."""

    key: str
    owner: type
    field: dataclasses.Field
    hint: Any
    doc: str


@functools.cache
def docstrings(cls: type) -> dict[str, str]:
    """Each field's attribute docstring (the string statement right after it), as one line."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = next(node for node in tree.body if isinstance(node, ast.ClassDef)).body
    docs = {}
    for node, after in zip(body, body[1:]):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def walk(cls: type, prefix: str = "") -> Iterator[Key]:
    """Every key of ``cls`` in field order; a nested dataclass is a row of its own and then its keys."""
    hints = typing.get_type_hints(cls, include_extras=True)
    docs = docstrings(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        if f.name not in docs:
            raise UndocumentedField(
                f"{cls.__module__}.{cls.__qualname__}.{f.name} ({key}) has no docstring: "
                "add a string literal on the line after the field"
            )
        hint = CHECKED_AGAINST.get((cls, f.name), hints[f.name])
        yield Key(key, cls, f, hint, docs[f.name])
        if _is_section(hint):
            yield from walk(hint, f"{key}.")


def _is_section(hint: Any) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def _split(hint: Any) -> tuple[Any, list[Any], bool]:
    """``Annotated[X, bounds] | None`` -> (X, bounds, nullable)."""
    bounds: list[Any] = []
    nullable = False
    while True:
        origin = typing.get_origin(hint)
        if origin is typing.Annotated:
            hint, *extra = typing.get_args(hint)
            bounds += extra
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(hint) if a is not type(None)]
            nullable = nullable or len(args) < len(typing.get_args(hint))
            if len(args) != 1:
                return hint, bounds, nullable
            hint = args[0]
        else:
            return hint, bounds, nullable


def _bounds(bounds: list[Any]) -> list[str]:
    out = []
    for b in bounds:
        for kind, (sign, attr) in BOUNDS.items():
            if isinstance(b, kind):
                out.append(f"{sign} {getattr(b, attr)}")
        if isinstance(b, MinLen):
            out.append(f"at least {b.min_length} item{'s' if b.min_length > 1 else ''}")
    return out


def describe(hint: Any) -> tuple[str, str]:
    """(type, accepted values) of a field's hint, as the page writes them."""
    base, bounds, nullable = _split(hint)
    accepted = [", ".join(_bounds(bounds))] if bounds else []
    origin, args = typing.get_origin(base), typing.get_args(base)
    if origin is typing.Literal:
        kind = " or ".join(sorted({type(a).__name__ for a in args}))
        accepted = [", ".join(f"`{a}`" for a in args)]
    elif origin in (tuple, list):
        items = [a for a in args if a is not Ellipsis] or [Any]
        item, item_bounds, _ = _split(items[0])
        count = f"{len(items)} " if origin is tuple and Ellipsis not in args and len(items) > 1 else ""
        kind = f"list of {count}{_name(item)}"
        accepted += [f"each {', '.join(_bounds(item_bounds))}"] if item_bounds else []
    elif origin is dict or base is dict:
        kind = "mapping"
    elif _is_section(base):
        kind = "section"
    else:
        kind = _name(base)
    return kind + (" or null" if nullable else ""), "; ".join(accepted)


def _name(hint: Any) -> str:
    return "any" if hint is Any else getattr(hint, "__name__", str(hint))


def default(f: dataclasses.Field) -> str:
    if f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    elif f.default is dataclasses.MISSING:
        return "required"
    else:
        value = f.default
    if dataclasses.is_dataclass(value):
        return ""
    return f"`{json.dumps(value)}`"


def run_id(k: Key) -> str:
    if k.field.metadata.get("identity") == "non-default":
        return RUN_ID["non-default"]
    kind = RUN_ID[role(k.key)]
    return f"{kind}, when given" if k.key.startswith("data.") and kind != "no" else kind  # TrainConfig.data


def datasets(k: Key) -> str:
    owners = k.field.metadata.get("datasets")
    return f"{', '.join(owners)} only" if owners else ""


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading whose only punctuation is backticks, dots and stars."""
    return "".join(c for c in heading.lower() if c.isalnum() or c in "-_ ").replace(" ", "-")


def table(keys: list[Key], with_run_id: bool) -> list[str]:
    head = ["key", "type", "default", "accepts"] + (["run id"] if with_run_id else []) + ["description"]
    lines = [f"| {' | '.join(head)} |", f"|{'---|' * len(head)}"]
    for k in keys:
        kind, accepted = describe(k.hint)
        accepted = "; ".join(a for a in (accepted, datasets(k)) if a)
        if kind == "section":  # its keys have rows of their own, under its heading
            cells = [f"[`{k.key}.*`](#{anchor(k.key)})", kind, "", "", *([""] if with_run_id else [])]
        elif k.key in FREE:
            cells = [f"[`{k.key}.*`](#{anchor(k.key)})", kind, default(k.field), "", run_id(k)]
        else:
            cells = [f"`{k.key}`", kind, default(k.field), accepted, *([run_id(k)] if with_run_id else [])]
        cells.append(k.doc)
        lines.append(f"| {' | '.join(_cell(c) for c in cells)} |")
    return lines


INTRO = """\
# Config keys

<!-- Generated from the schema dataclasses by `{command}`. Do not edit: edit the field's docstring. -->

Every key of a training run, as `--set KEY=VALUE`, a `--config` file, a sweep parameter or a
`convbench train` positional `KEY=VALUE` gives it (values are YAML). Layers resolve in this order,
each over the one before: defaults < recipe < `--config FILE.yaml` < flags < `--set` < positional
`KEY=VALUE`. How a key is checked: [training.md](training.md#config). How to add one:
[ARCHITECTURE.md](ARCHITECTURE.md#where-a-new-config-key-or-result-field-goes).

The **run id** column says whether a key changes the run id (`results/<run id>/`, and the report's
groups). *yes*: the key is hashed. *yes, a replicate*: hashed, but it differs between the seeds of one
experiment, so the report averages over it. *when not default*: hashed only when set away from its
default (a key added after runs were recorded, so their ids stay). *no*: where output goes and how
fast, not what is computed. `data.*` keys are hashed only when given (by a layer or the recipe).
"""

MODEL = """\
### `model.*`

`model.*` keys are not in the schema: they are keyword arguments of the architecture's builder
(`architectures.create(arch, **model)`), e.g. `--set model.shortcut=B` or
`--set model.zero_init_residual=true`. An override the architecture does not take is a one-line
error naming the ones it does; `convbench summary NAME` and [architectures.md](architectures.md)
list them. Every `model.*` key is in the run id.
"""

SWEEP = """\
## Sweep files: `convbench:`

The `convbench:` section of a sweep file, which W&B ignores (the rest of the file is a W&B sweep
config: [sweeps.md](sweeps.md)).
"""


def render() -> str:
    """The whole page."""
    keys = list(walk(TrainConfig))
    top = [k for k in keys if "." not in k.key]
    lines = [INTRO.format(command=COMMAND), "## Training runs", "", "### Top level", ""]
    lines += table(top, with_run_id=True) + ["", MODEL]
    for section in (k for k in top if _is_section(k.hint)):
        below = [k for k in keys if k.key.startswith(f"{section.key}.")]
        for sub in [section, *(k for k in below if _is_section(k.hint))]:
            rows = [k for k in below if k.key.rpartition(".")[0] == sub.key]
            lines += [f"### `{sub.key}.*`", "", sub.doc, ""] + table(rows, with_run_id=True) + [""]
    lines.append(SWEEP)
    options = list(walk(Options, "convbench."))
    lines += table([k for k in options if k.key.count(".") == 1], with_run_id=False) + [""]
    slurm = [k for k in options if k.key.startswith("convbench.slurm.")]
    lines += ["### `convbench.slurm.*`", "", docstrings(Options)["slurm"], ""]
    lines += table(slurm, with_run_id=False)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the page here (default: print it)")
    args = parser.parse_args(argv)
    page = render()
    if args.out:
        args.out.write_text(page)
    else:
        print(page, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
