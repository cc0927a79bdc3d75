"""Sweep files: W&B sweep-config YAML (``method: grid|random``, ``parameters: {key: {values: [..]} | {value: x}}``)
plus a ``convbench:`` section that W&B ignores. Loading validates everything and expands the grid into
runs, each resolved by :func:`harness.config.resolve` before anything runs.

Parameter names are dotted convbench config keys (``arch``, ``optim.lr``, ``data.train_limit``). The
``convbench:`` section::

    convbench:
      name: my-sweep            # default: the file's stem; the sweep dir is <results>/sweeps/<name>/
      results: results          # results root of every run
      seeds: [0, 1, 2]          # one more grid axis (same as parameters: {seed: {values: [...]}})
      runs:                     # named runs (stage 0) that grid runs can depend on
        pretrain-lenet5: {arch: lenet5, data.classes: [0, 1, 2, 3, 4]}
      slurm: {partition: gpu, time: "04:00:00", mem: 32G, cpus_per_task: 8, gpus_per_node: 4, ...}

Dependencies: a parameter value that is exactly ``"{run:NAME}"`` becomes the path of named run NAME's
``checkpoints/last.ckpt``; NAME may use ``${key}`` placeholders filled from the run's own parameters
(``"{run:pretrain-${arch}}"``). Such runs start only after NAME completed (local backend) or with
``--dependency=afterok`` on NAME's array (SLURM backend). Named runs take ``convbench.common`` (a
mapping of constants, default empty) and their own keys; grid runs take ``convbench.common`` and the
parameters. In a grid over ``transfer.mode``, the ``scratch`` runs drop ``transfer.checkpoint`` (and so
their dependency).
"""

from __future__ import annotations

import functools
import itertools
import random
import re
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from annotated_types import Ge, MinLen

from harness.config import schema
from harness.config.files import read_text
from harness.config.keys import nest
from harness.config.schema import STRICT, ConfigError
from harness.config.train_config import TrainConfig, check_key, resolve
from harness.errors import UserError

REF = re.compile(r"^\{run:(.+)\}$")


@dataclass
class SlurmConfig:
    """``convbench.slurm``: the sbatch directives of every array (harness.sweep.slurm renders them)."""

    __pydantic_config__ = STRICT

    partition: str | None = None
    """sbatch --partition; null: the cluster's default."""
    account: str | None = None
    """sbatch --account."""
    qos: str | None = None
    """sbatch --qos."""
    constraint: str | None = None
    """sbatch --constraint (node features)."""
    time: str | None = None
    """sbatch --time, e.g. "04:00:00"; null: the partition's default."""
    mem: str | None = None
    """sbatch --mem a node, e.g. 32G."""
    cpus_per_task: Annotated[int, Ge(1)] = 1
    """sbatch --cpus-per-task: the cores of each rank."""
    gpus_per_node: Annotated[int, Ge(0)] = 0
    """sbatch --gres=gpu:N; one rank a GPU, so it must equal trainer.devices."""
    signal: str = "SIGUSR1@90"
    """sbatch --signal, [B:][SIG]USR1@SECONDS: on SIGUSR1 the run checkpoints and requeues its own task."""
    extra: list[str] = field(default_factory=list)
    """More #SBATCH lines, e.g. --exclusive."""
    setup: list[str] = field(default_factory=list)
    """Shell lines run before the task, e.g. module load."""
    array_parallelism: Annotated[int, Ge(1)] | None = None
    """--array=...%N: at most N tasks of each array run at once."""

    def __post_init__(self) -> None:
        if not re.fullmatch(r"(B:)?(SIG)?USR1@\d+", self.signal):
            raise ValueError(
                f"convbench.slurm.signal={self.signal!r}: accepted [B:][SIG]USR1@SECONDS (harness.training.preemption "
                "checkpoints and requeues on SIGUSR1; SIGTERM needs no --signal)"
            )


@dataclass
class Options:
    """The ``convbench:`` section (W&B ignores it)."""

    __pydantic_config__ = STRICT

    name: str | None = None
    """The sweep's directory, <results>/sweeps/<name>/; null: the file's `name:`, else its stem."""
    results: str = "results"
    """The results root of every run (`convbench sweep --results` overrides it)."""
    seeds: Annotated[list[int], MinLen(1)] | None = None
    """One more grid axis, as a `seed:` parameter would be (give one of the two)."""
    seed: int = 0
    """Draws a random sweep's sample."""
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Named runs, each a mapping of config keys, run before the grid runs that reference them."""
    common: dict[str, Any] = field(default_factory=dict)
    """Config keys every run takes, named and grid runs alike."""
    slurm: SlurmConfig = field(default_factory=SlurmConfig)
    """The sbatch resources of the Slurm backend."""
    imports: list[str] = field(default_factory=list)
    """Modules to import first, where your models and data modules register (`--import` adds to them);
    every run's config lists them, so every array task and rank imports them too."""


@dataclass
class Parameter:
    __pydantic_config__ = STRICT

    value: Any = None
    values: list[Any] | None = None
    description: str | None = None


@dataclass
class SweepFile:
    """A W&B sweep config: the keys convbench reads, and those W&B defines that it accepts and ignores."""

    __pydantic_config__ = STRICT

    method: Literal["grid", "random"] = "grid"
    parameters: dict[str, Parameter] = field(default_factory=dict)
    name: str | None = None
    run_cap: Annotated[int, Ge(1)] | None = None
    convbench: Options = field(default_factory=Options)
    description: str | None = None
    metric: Any = None
    program: Any = None
    command: Any = None
    project: Any = None
    entity: Any = None
    early_terminate: Any = None


@dataclass
class Run:
    index: int
    values: dict[str, Any]  # flat dotted keys, as written in the sweep (references resolved)
    config: TrainConfig
    name: str | None = None  # named runs (convbench.runs)
    deps: list[int] = field(default_factory=list)  # indices of the runs this one needs
    params: dict[str, Any] | None = (
        None  # grid runs: the parameters as W&B's agent passes them (before common and references)
    )

    @functools.cached_property
    def run_id(self) -> str:
        """Computed once (a hash of the whole config): status and submission ask for it per run, 10,000 times."""
        return self.config.run_id()

    @functools.cached_property
    def run_dir(self) -> Path:
        return Path(self.config.results) / self.run_id

    def layer(self) -> dict[str, Any]:
        """The run's config as one nested mapping (a `convbench train --config` file)."""
        return self.config.to_dict()


@dataclass
class Sweep:
    path: Path
    name: str
    method: str
    results: Path
    runs: list[Run]
    slurm: SlurmConfig

    @property
    def dir(self) -> Path:
        return self.results / "sweeps" / self.name

    def agent_run(self, arguments: list[str]) -> Run:
        """The grid run whose parameters are ``arguments`` (``key=value``, values YAML: what `wandb agent`
        passes as ``${args_no_hyphens}``), so an agent's run is exactly convbench's: same config, run id,
        convbench.common, and ``{run:NAME}`` references resolved to the named run's checkpoint. A single
        argument that is a name in ``convbench.runs`` selects that named run (run those first)."""
        from harness.config.train_config import parse_set

        named = {r.name: r for r in self.runs if r.name}
        if (
            len(arguments) == 1 and arguments[0] in named
        ):  # a named run (convbench.runs) by its name: W&B's grid has none
            return named[arguments[0]]
        given: dict[str, Any] = {}
        for arg in arguments:
            key, sep, raw = arg.partition("=")
            if not sep or not key:
                raise UserError(f"argument {arg!r}: expected KEY=VALUE (a parameter of {self.path})")
            given[key] = raw if REF.match(raw) else parse_set([f"value={raw}"])["value"]
        for run in self.runs:
            if run.params == given:
                return run
        keys = sorted({k for r in self.runs if r.params for k in r.params})
        unknown = sorted(set(given) - set(keys))
        why = f"unknown parameter {unknown[0]}" if unknown else "no grid run has these values"
        raise UserError(
            f"{self.path}: {why} ({' '.join(arguments) or 'no arguments'}); its parameters: {', '.join(keys)}"
        )


@dataclass
class Draft:
    """A run before it is resolved: its flat keys (references unfilled) and where it was written."""

    values: dict[str, Any]
    label: str
    at: tuple
    name: str | None = None
    params: dict[str, Any] | None = None  # grid runs: the parameters as W&B's agent passes them


# ---------------------------------------------------------------- YAML with line numbers


def _compose(path: Path) -> tuple[Any, dict[tuple, int]]:
    """The document and {key path: line} for every mapping key and sequence item."""
    text = read_text(path, "sweep file")
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise UserError(
            f"{path}{f' line {mark.line + 1}' if mark else ''}: not valid YAML ({getattr(err, 'problem', err)})"
        ) from None
    finally:
        loader.dispose()
    lines: dict[tuple, int] = {}

    def walk(n: Any, at: tuple) -> None:
        lines.setdefault(at, n.start_mark.line + 1)
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                key = k.value
                lines[at + (key,)] = k.start_mark.line + 1
                walk(v, at + (key,))
        elif isinstance(n, yaml.SequenceNode):
            for i, v in enumerate(n.value):
                walk(v, at + (i,))

    if node is not None:
        walk(node, ())
    return data, lines


class _Where:
    def __init__(self, path: Path, lines: dict[tuple, int]) -> None:
        self.path, self.lines = path, lines

    def __call__(self, *at: Any) -> str:
        while at and at not in self.lines:
            at = at[:-1]
        return f"{self.path} line {self.lines.get(at, 1)}"

    def error(self, at: tuple, message: str) -> UserError:
        return UserError(f"{self(*at)}: {message}")


def _check_value(key: str, value: Any, where: _Where, at: tuple) -> None:
    """One config value as written in the sweep, named by its line ({run:NAME} references wait for expand)."""
    if isinstance(value, str) and REF.match(value):
        return
    try:
        check_key(key, value)
    except ConfigError as err:
        raise where.error(at, err.problem) from None


# ---------------------------------------------------------------- the four steps of load


def parse(path: Path) -> tuple[SweepFile, _Where]:
    """The sweep file, every key and value checked against the schema, errors naming their line."""
    data, lines = _compose(path)
    where = _Where(path, lines)
    if not isinstance(data, dict):
        raise where.error((), f"the sweep file: expected a mapping, got {type(data).__name__}")
    try:
        doc: SweepFile = schema.parse(SweepFile, data)
    except ConfigError as err:
        hint = (
            " (convbench-only keys go under convbench:)"
            if len(err.at) == 1 and err.problem.startswith("unknown")
            else ""
        )
        raise where.error(err.at, err.problem + hint) from None
    name = doc.convbench.name or doc.name or path.stem
    if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
        raise where.error(("convbench", "name"), f"sweep name {name!r}: letters, digits, '.', '_', '-' only")
    if not doc.parameters and not doc.convbench.runs:
        raise where.error(("parameters",), "no parameters: a sweep needs at least one")
    for key, spec in doc.parameters.items():
        at = ("parameters", key)
        given = set(data["parameters"][key] or {})
        if ("value" in given) == ("values" in given):
            raise where.error(at, f"parameters.{key}: give exactly one of value: or values:")
        if spec.values is not None and not spec.values:
            raise where.error(at + ("values",), f"parameters.{key}.values: empty grid")
        for i, v in enumerate(spec.values or []):
            _check_value(key, v, where, at + ("values", i))
        if spec.values is None:
            _check_value(key, spec.value, where, at + ("value",))
    if doc.convbench.seeds is not None and "seed" in doc.parameters:
        raise where.error(("convbench", "seeds"), "convbench.seeds and parameters.seed both given: keep one")
    for key, v in doc.convbench.common.items():
        _check_value(key, v, where, ("convbench", "common", key))
    for run_name, values in doc.convbench.runs.items():
        for key, v in values.items():
            _check_value(key, v, where, ("convbench", "runs", run_name, key))
    doc.convbench.name = name
    return doc, where


def expand(doc: SweepFile, where: _Where) -> list[Draft]:
    """The named runs, then the grid (or a random sample of it): each run's flat keys."""
    cb = doc.convbench
    drafts = [
        Draft({**cb.common, **values}, run_name, ("convbench", "runs", run_name), name=run_name)
        for run_name, values in cb.runs.items()
    ]
    axes = {k: p.values for k, p in doc.parameters.items() if p.values is not None}
    constants = {k: p.value for k, p in doc.parameters.items() if p.values is None}
    if cb.seeds is not None:
        axes["seed"] = cb.seeds
    combos = [dict(zip(axes, c)) for c in itertools.product(*axes.values())] if axes else [{}]
    if doc.method == "random":
        if doc.run_cap is None:
            raise where.error(("run_cap",), "method: random needs run_cap: a positive integer (got None)")
        combos = random.Random(cb.seed).sample(combos, min(doc.run_cap, len(combos)))
    for combo in combos:
        params = {**constants, **combo}
        flat = {**cb.common, **params}
        if flat.get("transfer.mode", "scratch") == "scratch":
            flat.pop("transfer.checkpoint", None)  # the scratch arm of a transfer grid trains from random weights
        drafts.append(
            Draft(flat, " ".join(f"{k}={v}" for k, v in combo.items()) or "constants", ("parameters",), params=params)
        )
    return drafts


def resolve_references(
    draft: Draft, index: int, named: dict[str, Run], where: _Where
) -> tuple[dict[str, Any], list[int]]:
    """``"{run:NAME}"`` values -> the named run's last checkpoint, and the indices of the runs needed."""
    flat, deps = dict(draft.values), []
    for key, value in draft.values.items():
        m = REF.match(value) if isinstance(value, str) else None
        if not m:
            continue
        try:
            ref = string.Template(m.group(1)).substitute(draft.values)
        except (KeyError, ValueError) as err:
            raise where.error(("parameters", key), f"run {index}: {value!r}: no parameter {err} to fill in") from None
        if ref not in named:
            raise where.error(
                ("parameters", key),
                f"run {index}: {value!r} names run {ref!r}; convbench.runs has: {', '.join(named) or 'none'}",
            )
        flat[key] = str(named[ref].run_dir / "checkpoints" / "last.ckpt")
        deps.append(named[ref].index)
    return flat, deps


def build(
    draft: Draft,
    flat: dict[str, Any],
    deps: list[int],
    index: int,
    name: str,
    root: Path,
    where: _Where,
    imports: list[str],
) -> Run:
    """The run's TrainConfig, resolved as `convbench train` would; errors name the run and its line."""
    from architectures import ArchitectureError

    sweep = {"results": str(root), "wandb.group": name, **({"imports": imports} if imports else {})}
    try:
        config = resolve([(f"sweep {name} {draft.label}", nest({**sweep, **flat}))])
    except (UserError, ArchitectureError) as err:
        raise UserError(f"{where(*draft.at)}: run {index} ({draft.label}): {err}") from None
    return Run(index, flat, config, name=draft.name, deps=deps, params=draft.params)


def load(path: str | Path, results: str | None = None, imports: list[str] | None = None) -> Sweep:
    """Parse, expand, resolve references and build every run; nothing runs. ``imports`` (`--import`) add
    to the file's ``convbench.imports``."""
    from harness.imports import load as import_modules

    path = Path(path)
    doc, where = parse(path)
    name = doc.convbench.name or path.stem
    modules = list(dict.fromkeys([*doc.convbench.imports, *(imports or [])]))
    import_modules(doc.convbench.imports, f"{where('convbench', 'imports')}: convbench.imports")
    root = Path(results or doc.convbench.results).absolute()
    runs: list[Run] = []
    named: dict[str, Run] = {}
    for draft in expand(doc, where):
        flat, deps = resolve_references(draft, len(runs), named, where)
        runs.append(build(draft, flat, deps, len(runs), name, root, where, modules))
        if draft.name:
            named[draft.name] = runs[-1]
    seen: dict[str, int] = {}
    for run in runs:
        if run.run_id in seen:
            raise UserError(
                f"{path}: runs {seen[run.run_id]} and {run.index} are the same run ({run.run_id}): "
                "duplicate grid values?"
            )
        seen[run.run_id] = run.index
    return Sweep(path, name, doc.method, root, runs, doc.convbench.slurm)
