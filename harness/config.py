"""One validated config per run, resolved from layers: defaults < recipe < config file < flags <
``--set key=value``. Unknown keys and wrong types are errors naming the key and where it came from."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.errors import UserError
from harness.recipes import DEFAULT_FOR_FAMILY, RECIPES, OptimConfig

TRANSFER_MODES = ("scratch", "linear-probe", "finetune")
WANDB_MODES = ("online", "offline", "disabled")


@dataclass
class TrainerConfig:
    """What Lightning's Trainer is given; runtime only where marked."""

    accelerator: str = "auto"
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"  # auto | ddp | ddp_spawn | ddp_fork (Lightning's names)
    precision: str = "32-true"  # 32-true | bf16-mixed | 16-mixed
    channels_last: bool = False
    limit_train_batches: float = 1.0  # a fraction (<= 1.0) or a number of batches (> 1)
    deterministic: bool = False
    log_every_n_steps: int = 10  # per-step loss curve resolution in metrics.csv and W&B
    threads: int = 0  # torch CPU threads per process; 0 = auto (see harness.train.cpu_threads)
    checkpoint_every_min: float = 0.0  # also checkpoint mid-epoch every this many minutes; 0 = at epoch ends only


@dataclass
class TransferConfig:
    mode: str = "scratch"  # scratch | linear-probe | finetune
    checkpoint: str | None = None  # a convbench checkpoint of the same architecture


@dataclass
class WandbConfig:
    mode: str = "offline"  # online | offline | disabled; offline never touches the network
    project: str = "convbench"
    entity: str | None = None
    group: str | None = None
    tags: tuple[str, ...] = ()


@dataclass
class TrainConfig:
    arch: str
    dataset: str = "fashion-mnist"
    epochs: int = 1
    seed: int = 0
    recipe: str | None = None  # None: the family's default (harness.recipes.DEFAULT_FOR_FAMILY)
    model: dict[str, Any] = field(default_factory=dict)  # architecture overrides, e.g. {shortcut: B}
    data: dict[str, Any] = field(default_factory=dict)  # datamodules.DataConfig fields
    optim: OptimConfig = field(default_factory=OptimConfig)
    hidden_noise_std: float = 0.0  # Gaussian noise on hidden activations while training
    transfer: TransferConfig = field(default_factory=TransferConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)
    results: str = "results"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def run_id(self) -> str:
        """Stable name of the run: the arch and dataset plus a hash of everything that changes
        what is computed (not where results go, how W&B is reached, or how data is read)."""
        d = self.to_dict()
        for key in ("results", "wandb"):
            d.pop(key)
        for key in ("root", "num_workers", "download"):
            d["data"].pop(key, None)
        digest = hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:10]
        return f"{self.arch}-{self.dataset}-s{self.seed}-{digest}"


def _check(value: Any, hint: Any, key: str, source: str) -> Any:
    """``value`` converted to the annotated type, or a UserError naming ``key``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        return _check(value, next(a for a in args if a is not type(None)), key, source)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise UserError(f"{key} ({source}): expected a mapping of {', '.join(f.name for f in dataclasses.fields(hint))}, got {value!r}")
        return build(hint, value, source, prefix=f"{key}.")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{key}={value!r} ({source}): expected a list")
        return tuple(_check(v, args[0], key, source) for v in value)
    if origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"{key}={value!r} ({source}): expected a mapping")
        return dict(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is Any or (isinstance(value, hint) and not (hint is int and isinstance(value, bool))):
        return value
    raise UserError(f"{key}={value!r} ({source}): expected {hint.__name__}")


def build(cls: type, values: dict[str, Any], source: str, prefix: str = "") -> Any:
    """A dataclass from a mapping, checking every key and type."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in values if k not in names]
    if unknown:
        raise UserError(f"unknown config key {prefix}{unknown[0]} ({source}); accepted under {prefix.rstrip('.') or 'the top level'}: {', '.join(names)}")
    return cls(**{k: _check(v, hints[k], prefix + k, source) for k, v in values.items()})


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict update: nested sections are merged, everything else replaced."""
    out = dict(base)
    for k, v in update.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse_set(items: list[str]) -> dict[str, Any]:
    """``["optim.lr=0.05", "data.augment.flip=true"]`` -> nested dict; values are YAML scalars."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UserError(f"--set {item!r}: expected key=value, e.g. optim.lr=0.05")
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            value = raw
        if isinstance(value, str):  # YAML 1.1 reads 1e12 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def load_file(path: str) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UserError(f"config file {path}{where}: not valid YAML ({getattr(err, 'problem', err)})") from None
    if not isinstance(data, dict):
        raise UserError(f"config file {path}: expected a mapping at the top level")
    return data


def resolve(layers: list[tuple[str, dict[str, Any]]]) -> TrainConfig:
    """Merge ``(source, values)`` layers in order, apply the recipe underneath, and validate."""
    merged: dict[str, Any] = {}
    where: dict[str, str] = {}
    for source, values in layers:
        merged = merge(merged, values)
        for k in values:
            where[k] = source
    if "arch" not in merged:
        raise UserError("no architecture given: pass --arch NAME (see `convbench list`)")
    import architectures

    recipe = merged.get("recipe") or DEFAULT_FOR_FAMILY.get(architectures.info(merged["arch"]).family, "resnet-cifar")
    if recipe not in RECIPES:
        raise UserError(f"unknown recipe {recipe!r} ({where.get('recipe', 'default')}); accepted: {', '.join(RECIPES)}")
    base = {"recipe": recipe, "optim": RECIPES[recipe].optim, "data": {"batch_size": RECIPES[recipe].batch_size}}
    config: TrainConfig = build(TrainConfig, merge(base, merged), source=", ".join(sorted(set(where.values()))) or "defaults")
    validate(config)
    return config


def validate(c: TrainConfig) -> None:
    """Value checks the types cannot express; each error names the key and what is accepted."""
    checks = [
        (c.epochs >= 1, f"epochs={c.epochs}: must be >= 1"),
        (c.optim.optimizer in ("sgd", "adamw"), f"optim.optimizer={c.optim.optimizer!r}: accepted sgd, adamw"),
        (c.optim.schedule in ("multistep", "plateau", "cosine", "constant"), f"optim.schedule={c.optim.schedule!r}: accepted multistep, plateau, cosine, constant"),
        (c.optim.lr > 0, f"optim.lr={c.optim.lr}: must be > 0"),
        (all(0 < m < 1 for m in c.optim.milestones), f"optim.milestones={list(c.optim.milestones)}: fractions of the run, each in (0, 1)"),
        (0 <= c.optim.label_smoothing < 1, f"optim.label_smoothing={c.optim.label_smoothing}: accepted [0, 1)"),
        (c.hidden_noise_std >= 0, f"hidden_noise_std={c.hidden_noise_std}: must be >= 0"),
        (c.transfer.mode in TRANSFER_MODES, f"transfer.mode={c.transfer.mode!r}: accepted {', '.join(TRANSFER_MODES)}"),
        (c.transfer.mode == "scratch" or c.transfer.checkpoint, f"transfer.mode={c.transfer.mode}: needs --from CHECKPOINT"),
        (c.transfer.mode != "scratch" or not c.transfer.checkpoint, "--from CHECKPOINT needs --transfer linear-probe or finetune"),
        (c.wandb.mode in WANDB_MODES, f"wandb.mode={c.wandb.mode!r}: accepted {', '.join(WANDB_MODES)}"),
        (c.trainer.devices >= 1 and c.trainer.num_nodes >= 1, "trainer.devices and trainer.num_nodes must be >= 1"),
        (c.trainer.checkpoint_every_min >= 0, f"trainer.checkpoint_every_min={c.trainer.checkpoint_every_min}: must be >= 0 (0: at epoch ends only)"),
        (c.trainer.precision in ("32-true", "32", "bf16-mixed", "16-mixed"), f"trainer.precision={c.trainer.precision!r}: accepted 32-true, bf16-mixed, 16-mixed"),
    ]
    for ok, message in checks:
        if not ok:
            raise UserError(message)
