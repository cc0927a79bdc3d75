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

import dataclasses
import functools
import itertools
import random
import re
import string
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.config import TrainConfig, _check, resolve
from harness.errors import UserError

WANDB_KEYS = {"method", "parameters", "name", "description", "metric", "program", "command", "project", "entity",
              "early_terminate", "run_cap", "convbench"}
CONVBENCH_KEYS = {"name", "results", "seeds", "runs", "common", "slurm", "seed"}
SLURM_KEYS = {"partition": str, "account": str, "qos": str, "constraint": str, "time": str, "mem": str,
              "cpus_per_task": int, "gpus_per_node": int, "signal": str, "extra": list, "setup": list,
              "array_parallelism": int}  # array_parallelism N: --array=...%N, at most N tasks of each array at once
REF = re.compile(r"^\{run:(.+)\}$")


@dataclass
class Run:
    index: int
    values: dict[str, Any]  # flat dotted keys, as written in the sweep (references resolved)
    config: TrainConfig
    name: str | None = None  # named runs (convbench.runs)
    deps: list[int] = field(default_factory=list)  # indices of the runs this one needs

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
    slurm: dict[str, Any]
    raw: dict[str, Any]

    @property
    def dir(self) -> Path:
        return self.results / "sweeps" / self.name


# ---------------------------------------------------------------- YAML with line numbers

def _compose(path: Path) -> tuple[Any, dict[tuple, int]]:
    """The document and {key path: line} for every mapping key and sequence item."""
    try:
        text = path.read_text()
    except OSError as err:
        raise UserError(f"sweep file {path}: {err.strerror}") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise UserError(f"{path}{f' line {mark.line + 1}' if mark else ''}: not valid YAML ({getattr(err, 'problem', err)})") from None
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


# ---------------------------------------------------------------- key checking

def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def key_hint(key: str) -> Any:
    """The type a dotted config key takes, or raise KeyError naming what is accepted there."""
    from datamodules.config import DataConfig

    node: Any = TrainConfig
    parts = key.split(".")
    for i, part in enumerate(parts):
        if node is Any:
            return Any
        if node is TrainConfig and part == "data":
            node = DataConfig if i + 1 < len(parts) else dict
            continue
        if not (isinstance(node, type) and dataclasses.is_dataclass(node)):
            raise KeyError(f"{'.'.join(parts[:i])} takes no sub-keys")
        hints = _hints(node)
        if part not in hints:
            where = ".".join(parts[:i]) or "the top level"
            raise KeyError(f"accepted under {where}: {', '.join(hints)}")
        node = hints[part]
        if typing.get_origin(node) is dict:
            node = Any if i + 1 < len(parts) else node
    return node


def _check_value(key: str, value: Any, where: str) -> None:
    try:
        hint = key_hint(key)
    except KeyError as err:
        raise UserError(f"{where}: unknown config key {key!r} ({err.args[0]})") from None
    if hint is Any or (isinstance(value, str) and REF.match(value)):
        return
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise UserError(f"{where}: {key}={value!r}: expected a mapping")
        for k, v in value.items():
            _check_value(f"{key}.{k}", v, where)
        return
    try:
        _check(value, hint, key, "sweep")
    except UserError as err:
        raise UserError(f"{where}: {str(err).replace(' (sweep)', '')}") from None


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def _mapping(value: Any, where: _Where, at: tuple, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise where.error(at, f"{what}: expected a mapping, got {type(value).__name__}")
    return value


# ---------------------------------------------------------------- loading

def load(path: str | Path, results: str | None = None) -> Sweep:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"sweep file {path} does not exist")
    data, lines = _compose(path)
    where = _Where(path, lines)
    data = _mapping(data, where, (), "the sweep file")
    for key in data:
        if key not in WANDB_KEYS:
            raise where.error((key,), f"unknown sweep key {key!r}; accepted: {', '.join(sorted(WANDB_KEYS))} (convbench-only keys go under convbench:)")
    method = data.get("method", "grid")
    if method not in ("grid", "random"):
        raise where.error(("method",), f"method={method!r}: convbench runs grid and random sweeps")
    cb = _mapping(data.get("convbench"), where, ("convbench",), "convbench")
    for key in cb:
        if key not in CONVBENCH_KEYS:
            raise where.error(("convbench", key), f"unknown key convbench.{key}; accepted: {', '.join(sorted(CONVBENCH_KEYS))}")
    slurm = _mapping(cb.get("slurm"), where, ("convbench", "slurm"), "convbench.slurm")
    for key, value in slurm.items():
        if key not in SLURM_KEYS:
            raise where.error(("convbench", "slurm", key), f"unknown key convbench.slurm.{key}; accepted: {', '.join(SLURM_KEYS)}")
        kind = SLURM_KEYS[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise where.error(("convbench", "slurm", key), f"convbench.slurm.{key}={value!r}: expected {kind.__name__}")
        if key == "array_parallelism" and value < 1:
            raise where.error(("convbench", "slurm", key), f"convbench.slurm.array_parallelism={value}: expected an integer >= 1")
    name = cb.get("name", data.get("name", path.stem))
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9._-]+", name):
        raise where.error(("convbench", "name"), f"sweep name {name!r}: letters, digits, '.', '_', '-' only")
    root = Path(results or cb.get("results", "results")).absolute()

    # the grid axes and constants
    params = _mapping(data.get("parameters"), where, ("parameters",), "parameters")
    if not params and not cb.get("runs"):
        raise where.error(("parameters",), "no parameters: a sweep needs at least one")
    axes: dict[str, list[Any]] = {}
    constants: dict[str, Any] = {}
    for key, spec in params.items():
        at = ("parameters", key)
        spec = _mapping(spec, where, at, f"parameters.{key}")
        extra = set(spec) - {"value", "values", "description"}
        if extra:
            raise where.error(at + (sorted(extra)[0],), f"parameters.{key}: {sorted(extra)[0]!r} is not supported by convbench (use value: or values:)")
        if ("value" in spec) == ("values" in spec):
            raise where.error(at, f"parameters.{key}: give exactly one of value: or values:")
        if "values" in spec:
            values = spec["values"]
            if not isinstance(values, list):
                raise where.error(at + ("values",), f"parameters.{key}.values: expected a list, got {values!r}")
            if not values:
                raise where.error(at + ("values",), f"parameters.{key}.values: empty grid")
            for i, v in enumerate(values):
                _check_value(key, v, where(*at, "values", i))
            axes[key] = values
        else:
            _check_value(key, spec["value"], where(*at, "value"))
            constants[key] = spec["value"]
    seeds = cb.get("seeds")
    if seeds is not None:
        if "seed" in params:
            raise where.error(("convbench", "seeds"), "convbench.seeds and parameters.seed both given: keep one")
        if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
            raise where.error(("convbench", "seeds"), f"convbench.seeds={seeds!r}: expected a non-empty list of integers")
        axes["seed"] = seeds
    common = _mapping(cb.get("common"), where, ("convbench", "common"), "convbench.common")
    for key, v in common.items():
        _check_value(key, v, where("convbench", "common", key))

    combos = [dict(zip(axes, c)) for c in itertools.product(*axes.values())] if axes else [{}]
    if method == "random":
        cap = data.get("run_cap")
        if not isinstance(cap, int) or isinstance(cap, bool) or cap < 1:
            raise where.error(("run_cap",), f"method: random needs run_cap: a positive integer (got {cap!r})")
        rng = random.Random(cb.get("seed", 0))
        combos = rng.sample(combos, min(cap, len(combos)))

    def build(flat: dict[str, Any], index: int, label: str, at: tuple) -> TrainConfig:
        flat = {"results": str(root), "wandb.group": name, **flat}
        try:
            config = resolve([(f"sweep {name} {label}", nest(flat))])
            _check_data(config)
        except Exception as err:
            from architectures import ArchitectureError

            if not isinstance(err, (UserError, ArchitectureError)):
                raise
            raise UserError(f"{where(*at)}: run {index} ({label}): {err}") from None
        return config

    runs: list[Run] = []
    named: dict[str, int] = {}
    for run_name, values in _mapping(cb.get("runs"), where, ("convbench", "runs"), "convbench.runs").items():
        at = ("convbench", "runs", run_name)
        values = _mapping(values, where, at, f"convbench.runs.{run_name}")
        for key, v in values.items():
            _check_value(key, v, where(*at, key))
        flat = {**common, **values}
        runs.append(Run(len(runs), flat, build(flat, len(runs), run_name, at), name=run_name))
        named[run_name] = runs[-1].index
    for combo in combos:
        flat = {**common, **constants, **combo}
        index, deps = len(runs), []
        if flat.get("transfer.mode", "scratch") == "scratch":
            flat.pop("transfer.checkpoint", None)  # the scratch arm of a transfer grid trains from random weights
        for key, value in list(flat.items()):
            m = REF.match(value) if isinstance(value, str) else None
            if not m:
                continue
            try:
                ref = string.Template(m.group(1)).substitute({k: v for k, v in flat.items()})
            except (KeyError, ValueError) as err:
                raise where.error(("parameters", key), f"run {index}: {value!r}: no parameter {err} to fill in") from None
            if ref not in named:
                raise where.error(("parameters", key), f"run {index}: {value!r} names run {ref!r}; convbench.runs has: {', '.join(named) or 'none'}")
            dep = runs[named[ref]]
            flat[key] = str(dep.run_dir / "checkpoints" / "last.ckpt")
            deps.append(dep.index)
        label = " ".join(f"{k}={v}" for k, v in combo.items()) or "constants"
        runs.append(Run(index, flat, build(flat, index, label, ("parameters",)), deps=deps))
    seen: dict[str, int] = {}
    for run in runs:
        if run.run_id in seen:
            raise UserError(f"{path}: runs {seen[run.run_id]} and {run.index} are the same run ({run.run_id}): duplicate grid values?")
        seen[run.run_id] = run.index
    return Sweep(path, name, method, root, runs, slurm, data)


def _check_data(config: TrainConfig) -> None:
    """data.* keys are checked by the data module later; check them now so a typo fails at load."""
    from datamodules.config import AugmentConfig, DataConfig
    from datamodules.errors import DataError

    data = dict(config.data)
    try:
        augment = AugmentConfig(**data.pop("augment", {}) or {})
        DataConfig(**data, augment=augment)
    except TypeError as err:
        raise UserError(f"data: {err}".replace("__init__() got an ", "")) from None
    except DataError as err:
        raise UserError(f"data.{err}") from None
