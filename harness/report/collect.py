"""Finding runs: every ``result.json`` under a directory (a results root, a sweep directory, any
tree), read through :class:`harness.run_record.RunResult`, plus each run's training curve from its
``metrics/version_N/metrics.csv``.

A directory holding no ``result.json`` at all is a sweep directory: convbench's own (harness.sweep.store)
names every run directory in its ``runs.json``, which is read alone; any other is read best effort: any
string in its JSON/YAML files that names ``<ancestor>/<string>/result.json``
(or is a path to a run directory or a result.json) is taken as a run of the sweep."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.run_record import RESULT, RunResult, read_metrics

# the metrics.csv columns written once per epoch (per evaluation), never per step
EVALUATED = ("val/acc1", "val/acc5", "val/loss", "train/acc1", "train/acc5", "train/loss")
EPOCH_KEYS = (*EVALUATED, "time/elapsed_s")


@dataclass
class Run:
    path: Path  # the run directory (holds result.json and metrics/)
    result: RunResult
    _curve: dict[str, list[tuple[float, float]]] | None = field(default=None, repr=False)
    _evaluations: list[dict[str, Any]] | None = field(default=None, repr=False)

    def get(self, key: str) -> Any:
        """A RunResult field by name (the report's tables and charts name their columns so)."""
        return getattr(self.result, key)

    @property
    def config(self) -> dict[str, Any]:
        return self.result.config

    @property
    def labels_per_class(self) -> int | None:
        data = self.config.get("data")
        return data.get("labels_per_class") if isinstance(data, dict) else None

    @property
    def classes(self) -> list[int] | None:
        """The class subset trained on (data.classes), None for all classes."""
        data = self.config.get("data")
        return data.get("classes") if isinstance(data, dict) else None

    @property
    def hardware(self) -> str:
        """What the run's speed, memory and time figures were measured on (harness.hardware's label)."""
        hw = self.result.hardware
        if hw is not None:
            return hw.label
        device = (self.result.device or "unknown device").split(":")[0]  # cuda:0 and cuda:1 are one kind
        return f"{device} on {self.result.host or 'an unnamed host'} (hardware not recorded)"

    @property
    def transfer(self) -> str:
        return self.result.transfer or "scratch"

    @property
    def completed(self) -> bool:
        return self.result.status == "completed"

    def evaluations(self) -> list[dict[str, Any]]:
        """One dict per epoch end, in order: its row of metrics.csv with the validation row of the
        same step merged in (Lightning logs them as two rows)."""
        if self._evaluations is None:
            by_step: dict[float, dict[str, Any]] = {}
            for r in read_metrics(self.path):
                if any(r.get(k) is not None for k in EPOCH_KEYS):
                    merged = by_step.setdefault(r["step"], {})
                    merged.update({k: v for k, v in r.items() if v is not None})
            self._evaluations = [by_step[s] for s in sorted(by_step)]
        return self._evaluations

    def curve(self) -> dict[str, list[tuple[float, float]]]:
        if self._curve is None:
            self._curve = read_curve(self.path)
        return self._curve


def finite(v: Any) -> float | None:
    """A number, or None for missing / NaN / inf (JSON has no NaN)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def _walk(root: Path, exclude: Path | None) -> Iterator[Path]:
    """Directories under root (symlinked ones followed once), skipping ``exclude`` and hidden/W&B dirs."""
    seen: set[str] = set()
    for dirpath, dirnames, _ in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen or (exclude is not None and Path(real) == exclude):
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in ("wandb", "checkpoints"))
        yield Path(dirpath)


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for k, v in node.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(node, (list, tuple)):
        for v in node:
            yield from _strings(v)


def _referenced(root: Path, exclude: Path | None) -> list[Path]:
    """result.json files named by run ids or paths in the JSON/YAML files of a sweep directory."""
    import yaml

    bases = [root, *list(root.resolve().parents)[:3]]
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    found: list[Path] = []
    checked: set[tuple[Path, str]] = set()  # many files repeat the same strings (a results root, an arch)
    for d in _walk(root, exclude):
        for f in sorted(d.iterdir()):
            if not f.is_file() or f.suffix not in (".json", ".yaml", ".yml", ".txt") or f.stat().st_size > 20_000_000:
                continue
            try:
                text = f.read_text()
                data = (
                    json.loads(text)
                    if f.suffix == ".json"
                    else yaml.load(text, Loader=loader)
                    if f.suffix != ".txt"
                    else text.split()
                )
            except Exception:  # noqa: BLE001 - not a manifest we can read: ignore it
                continue
            for s in _strings(data):
                if not s or len(s) > 500 or "\n" in s or (d, s) in checked or not re.fullmatch(r"[\w./@:+=,-]+", s):
                    continue
                checked.add((d, s))
                p = Path(s)
                candidates = (
                    [p, p / RESULT]
                    if p.is_absolute()
                    else [b / p for b in (d, *bases)] + [b / p / RESULT for b in (d, *bases)]
                )
                for c in candidates:
                    if c.name == RESULT and c.is_file():
                        found.append(c)
                        break
    return found


def _sweep_manifest(root: Path) -> list[Path] | None:
    """The result.json files of the runs a convbench sweep directory's runs.json lists ([{run_dir, ...}]),
    or None when ``root`` holds no such file: one read, where a 10,000-run sweep directory holds 10,000 run
    configs that the best-effort reading would parse."""
    try:
        table = json.loads((root / "runs.json").read_text())
    except (OSError, ValueError):
        return None
    if (
        not isinstance(table, list)
        or not table
        or not all(isinstance(e, dict) and isinstance(e.get("run_dir"), str) for e in table)
    ):
        return None
    return [f for f in (Path(e["run_dir"]) / RESULT for e in table) if f.is_file()]


def find_results(root: Path, exclude: Path | None = None) -> list[Path]:
    """Every result.json under ``root`` (recursively), deduplicated; else those its manifests name."""
    if not root.exists():
        raise UserError(f"{root}: no such directory")
    if not root.is_dir():
        raise UserError(f"{root}: not a directory (give a results root or a sweep directory)")
    exclude = exclude.resolve() if exclude is not None else None
    files = [d / RESULT for d in _walk(root, exclude) if (d / RESULT).is_file()]
    if not files:
        manifest = _sweep_manifest(root)
        files = manifest if manifest is not None else _referenced(root, exclude)
    out, seen = [], set()
    for f in files:
        real = os.path.realpath(f)
        if real not in seen:
            seen.add(real)
            out.append(f)
    return out


def collect(root: Path, exclude: Path | None = None) -> list[Run]:
    """The runs under ``root``; a run id seen twice (a copied run directory) counts once."""
    files = find_results(root, exclude)
    if not files:
        raise UserError(f"{root}: no result.json found (expected a results root, a sweep directory or a run directory)")
    runs: dict[str, Run] = {}
    for f in files:
        result = RunResult.read(f)
        runs.setdefault(result.run_id, Run(f.parent, result))
    return list(runs.values())


def read_curve(run_dir: Path) -> dict[str, list[tuple[float, float]]]:
    """``{"train_error": [(steps, 1 - train/acc1)], "train_loss_step": [(step, loss)], "train_loss": [(epoch, loss)]}``:
    the training error of each epoch at the steps trained when it ended (He et al.'s Figure 6 is against
    iterations), the loss per epoch counted from 1; keys without data are left out."""
    out: dict[str, list[tuple[float, float]]] = {}
    for r in read_metrics(run_dir):
        if r.get("train/acc1") is not None and r.get("step") is not None:
            out.setdefault("train_error", []).append((int(r["step"]) + 1, 1 - r["train/acc1"]))
        if r.get("train/loss") is not None and r.get("epoch") is not None:
            out.setdefault("train_loss", []).append((r["epoch"] + 1, r["train/loss"]))
        if r.get("train/loss_step") is not None:
            out.setdefault("train_loss_step", []).append((r["step"], r["train/loss_step"]))
    return {k: sorted(v) for k, v in out.items()}
