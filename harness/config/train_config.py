"""One validated config per run, resolved from layers: defaults < recipe < config file < flags <
``--set key=value``. The dataclasses below are the schema: a field's type (``Literal`` for a choice,
``Annotated`` bounds for a minimum) and default say what a key accepts, and its metadata says whether
it changes what is computed (``identity: False``: not part of the run id, not a report variant) or
differs between the seeds of one experiment (``replicate: True``: the report averages over it);
``identity: "non-default"`` marks a key added after runs were recorded: hashed only when set away
from its default, so the ids of earlier runs stay.
:mod:`harness.config.schema` checks every layer against them; ``data.*`` keys against datamodules.DataConfig.
A field's docstring (the string on the line after it) is its key's entry in docs/config.md
(:mod:`harness.config_docs` generates the page)."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import typing
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import yaml
from annotated_types import Ge

from harness.config import schema
from harness.config.files import read_text
from harness.config.keys import flatten, nest
from harness.config.recipes import DEFAULT_FOR_FAMILY, RECIPES, OptimConfig
from harness.config.schema import STRICT, ConfigError
from harness.errors import UserError

NOT_IDENTITY = {"identity": False}
REPLICATE = {"replicate": True}
TransferMode = Literal["scratch", "linear-probe", "finetune"]
WandbMode = Literal["online", "offline", "disabled"]  # offline never touches the network
TRANSFER_MODES: tuple[str, ...] = typing.get_args(TransferMode)
WANDB_MODES: tuple[str, ...] = typing.get_args(WandbMode)


@dataclass
class TrainerConfig:
    """What Lightning's Trainer is given."""

    __pydantic_config__ = STRICT

    accelerator: str = "auto"
    """Lightning's accelerator name: auto, cpu or gpu."""
    devices: Annotated[int, Ge(1)] = 1
    """Ranks on each node: one per GPU; on a CPU, processes sharing its cores."""
    num_nodes: Annotated[int, Ge(1)] = 1
    """Nodes of a DDP run; under Slurm one array task spans them."""
    strategy: Literal["auto", "ddp", "ddp_spawn", "ddp_fork", "ddp_find_unused_parameters_true", "fsdp"] = "auto"
    """Lightning's strategy; ddp for several ranks (NCCL on GPUs, gloo on CPUs)."""
    precision: Literal["32-true", "32", "bf16-mixed", "16-mixed"] = "32-true"
    """Lightning's precision; the mixed ones autocast the model, the weights and optimiser stay fp32."""
    channels_last: bool = False
    """The model and its inputs in NHWC memory layout: the same arithmetic, other kernels."""
    limit_train_batches: Annotated[float, Ge(0)] = 1.0
    """A fraction (<= 1.0) of each epoch's training batches, or a number of batches (> 1)."""
    deterministic: bool = False
    """Lightning's deterministic mode: torch's deterministic algorithms only."""
    max_steps: Annotated[int, Ge(0)] = field(default=0, metadata={"identity": "non-default"})
    """Train this many optimiser steps instead of `epochs` epochs (0: epochs decide); the schedule spans them."""
    log_every_n_steps: Annotated[int, Ge(1)] = 10
    """The logging interval: the step loss in metrics.csv and W&B, the divergence check and the preemption vote."""
    threads: Annotated[int, Ge(0)] = 0
    """Torch CPU threads a process; 0: the cores the DataLoader workers leave, shared by the local ranks."""
    checkpoint_every_min: Annotated[float, Ge(0)] = field(default=0.0, metadata=NOT_IDENTITY)
    """Also checkpoint mid-epoch every this many minutes of training (0: at epoch ends only)."""


@dataclass
class TransferConfig:
    __pydantic_config__ = STRICT

    mode: TransferMode = "scratch"
    """From random weights, a linear probe on frozen pretrained features, or finetuning them."""
    checkpoint: str | None = field(default=None, metadata=REPLICATE)
    """The pretrained weights (`--from`): a convbench checkpoint of the same architecture."""

    def __post_init__(self) -> None:
        if self.mode != "scratch" and not self.checkpoint:
            raise ConfigError(("transfer", "mode"), f"transfer.mode={self.mode}: needs --from CHECKPOINT")
        if self.mode == "scratch" and self.checkpoint:
            raise ConfigError(("transfer", "checkpoint"), "--from CHECKPOINT needs --transfer linear-probe or finetune")


@dataclass
class WandbConfig:
    __pydantic_config__ = STRICT

    mode: WandbMode = "offline"
    """offline writes one W&B run when the run ends and never touches the network; online logs live."""
    project: str = "convbench"
    """The W&B project."""
    entity: str | None = None
    """The W&B user or team; null: W&B's default for the API key."""
    group: str | None = None
    """The W&B group, e.g. a sweep's name, so its runs chart together."""
    tags: tuple[str, ...] = ()
    """W&B tags of the run."""


@dataclass
class TrainConfig:
    __pydantic_config__ = STRICT

    arch: str
    """A registered architecture (`convbench list`)."""
    dataset: str = "fashion-mnist"
    """fashion-mnist, cifar10, cifar100, imagefolder (any folder of class folders), imagenet, synthetic; for
    segmentation segfolder (images/ and masks/ folders) and shapes; or one registered from outside
    (`--import`, entry points)."""
    imports: tuple[str, ...] = field(default=(), metadata=NOT_IDENTITY)
    """Modules imported before `arch` and `dataset` are looked up, where your own models and data modules
    register (`--import`, repeatable, adds to them); every rank and array task imports them too."""
    epochs: Annotated[int, Ge(1)] = 1
    """Epochs to train; the schedule spans them. Leave it at 1 when `trainer.max_steps` sets the budget."""
    seed: int = field(default=0, metadata=REPLICATE)
    """Seeds the weights, the per-step dropout and noise, and the data unless `data.seed` is given."""
    recipe: str | None = None
    """The optimiser preset under `optim.*` and `data.batch_size`; null: the family's default."""
    model: dict[str, Any] = field(default_factory=dict)
    """Keyword overrides of the architecture's builder, e.g. `model.shortcut=B`."""
    data: dict[str, Any] = field(default_factory=dict)
    """The data module's keys (datamodules.DataConfig); only the keys given are in the run id."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """The optimiser and learning-rate schedule (harness.config.recipes.OptimConfig)."""
    hidden_noise_std: Annotated[float, Ge(0)] = 0.0
    """Std of Gaussian noise added to every activation's output, while training only."""
    dice_weight: Annotated[float, Ge(0)] = field(default=0.0, metadata={"identity": "non-default"})
    """Segmentation: the loss is per-pixel cross-entropy plus this times the soft Dice loss over the
    foreground classes (0: cross-entropy alone)."""
    transfer: TransferConfig = field(default_factory=TransferConfig)
    """Start from another run's weights."""
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    """What Lightning's Trainer is given."""
    wandb: WandbConfig = field(default_factory=WandbConfig, metadata=NOT_IDENTITY)
    """Where the run is logged on W&B."""
    results: str = field(default="results", metadata=NOT_IDENTITY)
    """The results root: the run is recorded under `<results>/<run id>/`."""

    def __post_init__(self) -> None:
        if self.trainer.max_steps and self.epochs != 1:
            raise ConfigError(
                ("epochs",),
                f"epochs={self.epochs} and trainer.max_steps={self.trainer.max_steps}: give one "
                "budget (max_steps trains that many steps, however many epochs they take)",
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def run_id(self) -> str:
        """Stable name of the run: the arch and dataset plus a hash of everything that changes what is
        computed (:func:`identity`) and of what those keys do not say (:func:`origins`)."""
        hashed = {**identity(self.to_dict()), **origins(self.arch, self.dataset, self.data.get("root"))}
        digest = hashlib.sha256(json.dumps(hashed, sort_keys=True, default=str).encode()).hexdigest()[:10]
        return f"{self.arch}-{self.dataset}-s{self.seed}-{digest}"


def origins(arch: str, dataset: str, root: str | None) -> dict[str, str]:
    """What the config's keys do not say of what a run computes: where a model or dataset from outside
    convbench comes from (``origin.arch``: "my_pkg.models:my_net", so that two different ``my_net``s never
    share a run id) and, for a dataset whose root is the data itself (imagefolder), that folder's absolute
    path (``origin.root``). Empty for the zoo on the built-in datasets, whose run ids predate this."""
    import architectures
    import datamodules

    out = {}
    if not (arch_info := architectures.info(arch)).zoo:
        out["origin.arch"] = arch_info.origin
    if dataset not in datamodules.names():
        return out
    if not (data_origin := datamodules.origin(dataset)).startswith(datamodules.BUILTIN):
        out["origin.dataset"] = data_origin
    if root is not None and datamodules.root_is_data(dataset):
        out["origin.root"] = os.path.abspath(root)
    return out


@functools.cache
def _field(at: tuple[str, ...]) -> dataclasses.Field | None:
    """The dataclass field of a dotted key's path (``data.*`` in DataConfig); None for free keys (model.*)."""
    from datamodules.config import DataConfig

    cls: Any = TrainConfig
    for i, part in enumerate(at):
        if cls is TrainConfig and part == "data" and i + 1 < len(at):
            cls = DataConfig
            continue
        f = schema.fields_of(cls).get(part) if dataclasses.is_dataclass(cls) else None
        if f is None or i + 1 == len(at) or f.metadata.get("identity") is False:
            return f
        cls = schema.hints(cls)[part]
    return None


@functools.cache
def role(key: str) -> str:
    """``"identity"`` (changes what is computed), ``"replicate"`` (does, but differs between the
    seeds of one experiment) or ``"ignored"``, from the field's metadata; unknown keys count."""
    f = _field(tuple(key.split(".")))
    if f is None:
        return "identity"
    return (
        "ignored" if f.metadata.get("identity") is False else "replicate" if f.metadata.get("replicate") else "identity"
    )


def default(key: str) -> Any:
    """A dotted key's default; None for free keys (model.*), which architectures default themselves."""
    f = _field(tuple(key.split(".")))
    if f is None:
        return None
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def is_default(key: str, value: Any) -> bool:
    return json.dumps(value, default=str) == json.dumps(default(key), default=str)


def _at_default(key: str, value: Any) -> bool:
    """A key marked ``identity: "non-default"`` (added after runs were recorded) that holds its default:
    left out of the hash, so the runs recorded before it existed keep their ids."""
    f = _field(tuple(key.split(".")))
    return f is not None and f.metadata.get("identity") == "non-default" and is_default(key, value)


def identity_items(config: dict[str, Any]) -> dict[str, Any]:
    """The flat keys of a config mapping that change what is computed: all but those marked
    ``identity: False`` (where results and data live, W&B, DataLoader workers) and the
    ``identity: "non-default"`` ones at their default. The run id hashes these; the report
    groups by them (less the replicates)."""
    return {k: v for k, v in flatten(config).items() if role(k) != "ignored" and not _at_default(k, v)}


def identity(config: dict[str, Any]) -> dict[str, Any]:
    """:func:`identity_items`, nested: what the run id hashes."""
    return nest(identity_items(config))


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict update: nested sections are merged, everything else replaced."""
    out = dict(base)
    for k, v in update.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse_set(items: list[str]) -> dict[str, Any]:
    """``["optim.lr=0.05", "data.augment.flip=true"]`` -> nested dict; values are YAML scalars."""
    flat: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UserError(f"--set {item!r}: expected key=value, e.g. optim.lr=0.05")
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            value = raw
        if isinstance(value, str):  # YAML 1.1 reads 1e12 (no dot) as a string
            with contextlib.suppress(ValueError):
                value = float(value)
        flat[key] = value
    return nest(flat)


def load_file(path: str) -> dict[str, Any]:
    """A ``--config`` YAML file: a mapping of config keys."""
    text = read_text(path, "config file")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UserError(f"config file {path}{where}: not valid YAML ({getattr(err, 'problem', err)})") from None
    if data is None:
        raise UserError(f"config file {path} is empty (comments only, no config keys)")
    if not isinstance(data, dict):
        raise UserError(
            f"config file {path}: expected a mapping of config keys at the top level, got {type(data).__name__}"
        )
    return data


def check_key(key: str, value: Any) -> None:
    """One dotted key and its value against the schema alone (a sweep checks each value at its line
    before any run is resolved); a ConfigError naming the key otherwise."""
    from pydantic import ValidationError

    from datamodules.config import DataConfig

    at = tuple(key.split("."))
    cls: Any = TrainConfig
    for i, part in enumerate(at):
        if cls is TrainConfig and part == "data" and i + 1 < len(at):
            cls = DataConfig
            continue
        names = schema.fields_of(cls)
        if part not in names:
            raise ConfigError(
                at,
                f"unknown config key {key}; accepted under {'.'.join(at[:i]) or 'the top level'}: {', '.join(names)}",
            )
        hint = schema.hints(cls)[part]
        if i + 1 == len(at):
            break
        if typing.get_origin(hint) is dict or hint is dict:
            return  # a mapping of free keys (model.*): the architecture checks them
        if not dataclasses.is_dataclass(hint):
            raise ConfigError(at, f"{'.'.join(at[: i + 1])} takes no sub-keys")
        cls = hint
    if dataclasses.is_dataclass(schema.hints(cls)[at[-1]]):
        schema.parse(schema.hints(cls)[at[-1]], value if isinstance(value, dict) else {"": value}, prefix=at)
        return
    try:
        _field_adapter(cls, at[-1]).validate_json(json.dumps(value, default=str), strict=True)
    except ValidationError as err:
        first = err.errors()[0]
        sub = tuple(str(p) for p in first["loc"] if not isinstance(p, int))
        raise ConfigError(at, schema.problem(cls, (at[-1], *sub), first, at[:-1])) from None


@functools.cache
def _field_adapter(cls: type, name: str) -> Any:
    from pydantic import TypeAdapter

    return TypeAdapter(typing.get_type_hints(cls, include_extras=True)[name])


def _source(where: dict[str, str], at: tuple[str, ...]) -> str:
    for n in range(len(at), 0, -1):
        if ".".join(at[:n]) in where:
            return where[".".join(at[:n])]
    return "defaults"


def _imports(values: dict[str, Any], source: str) -> list[str]:
    """A layer's ``imports``, checked and imported (each layer adds to the ones below)."""
    if "imports" not in values:
        return []
    try:
        check_key("imports", values["imports"])
    except ConfigError as err:
        raise ConfigError(err.at, err.problem, source) from None
    from harness.imports import load

    load(values["imports"], f"{source}: imports")
    return list(values["imports"])


def resolve(layers: list[tuple[str, dict[str, Any]]]) -> TrainConfig:
    """Merge ``(source, values)`` layers in order, apply the recipe underneath, and validate; an error
    names the key and the layer it came from."""
    from datamodules.config import DataConfig

    merged: dict[str, Any] = {}
    where: dict[str, str] = {}
    imports: list[str] = []
    for source, values in layers:
        merged = merge(merged, values)
        where.update(dict.fromkeys(flatten(values), source))
        imports += [m for m in _imports(values, source) if m not in imports]
    if imports:
        merged["imports"] = imports
    if "arch" not in merged:
        raise UserError("no architecture given: pass --arch NAME (see `convbench list`)")
    import architectures

    recipe = merged.get("recipe") or DEFAULT_FOR_FAMILY.get(architectures.info(merged["arch"]).family, "resnet-cifar")
    if recipe not in RECIPES:
        raise UserError(f"unknown recipe {recipe!r} ({where.get('recipe', 'default')}); accepted: {', '.join(RECIPES)}")
    base = {"recipe": recipe, "optim": RECIPES[recipe].optim, "data": {"batch_size": RECIPES[recipe].batch_size}}
    where.update({k: where.get(k, f"recipe {recipe}") for k in flatten(base)})
    values = merge(base, merged)
    try:
        config: TrainConfig = schema.parse(TrainConfig, values)
        schema.parse(DataConfig, config.data, prefix=("data",))
    except ConfigError as err:
        raise ConfigError(err.at, err.problem, _source(where, err.at)) from None
    return config
