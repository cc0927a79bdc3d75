"""A run's durable record: its directory under the results root, the resolved config, the W&B run
id (so a resumed run continues the same W&B run), the metrics CSVs of its attempts (merged by
:func:`read_metrics`), and ``result.json``: one :class:`RunResult`,
written atomically once the run has finished and read back through the same class by the sweep
store and status and by the report."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import functools
import json
import math
import os
import platform
import socket
import sys
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import yaml

from harness.errors import UserError
from harness.hardware import Hardware

RESULT = "result.json"
ATTEMPTS = "attempts.jsonl"
Status = Literal["completed", "diverged", "failed"]


@dataclass
class RunResult:
    """``result.json``: what a finished run measured. Every field but the first three may be null
    (a failed run measured little; files written by older versions lack newer fields), and keys
    this version does not know are ignored on reading, so records stay readable both ways."""

    __pydantic_config__ = {"strict": True, "extra": "ignore"}

    run_id: str
    arch: str
    status: Status
    family: str | None = None
    residual: bool | None = None
    dataset: str | None = None
    depth: int | None = None
    params: int | None = None
    macs: int | None = None
    input_size: list[int] | None = None
    seed: int | None = None
    recipe: str | None = None
    transfer: str | None = None  # transfer.mode; None in the oldest records means scratch
    epochs: int | None = None
    epochs_completed: int | None = None
    global_step: int | None = None
    train_acc1: float | None = None
    train_loss: float | None = None
    val_acc1: float | None = None
    val_loss: float | None = None
    test_acc1: float | None = None
    test_acc5: float | None = None
    test_loss: float | None = None
    # segmentation (a segmenter's acc1 is pixel accuracy, its loss per pixel): Dice over the foreground
    # classes and mean IoU over the classes, per image, averaged (harness.training.metrics.SegmentationTotals)
    val_dice: float | None = None
    val_miou: float | None = None
    test_dice: float | None = None
    test_miou: float | None = None
    train_samples_per_s: float | None = None  # the job's: the sum of every rank's samples/s
    train_samples_per_s_rank_min: float | None = None  # the slowest rank's
    train_samples_per_s_rank_max: float | None = None  # the fastest rank's
    eval_samples_per_s: float | None = None
    peak_memory_bytes: int | None = None
    device: str | None = None
    world_size: int | None = None
    num_nodes: int | None = None  # distinct hosts among the ranks
    hosts: list[str] | None = None  # each rank's host, in rank order
    wall_time_s: float | None = None  # this attempt's, from the start of `convbench train` to the record
    train_time_s: float | None = None  # the run's clock over all attempts (docs/reports.md#time-to-accuracy):
    eval_time_s: float | None = None  # training batches, validation, and the clock at the end of training
    elapsed_s: float | None = None
    attempts: int | None = None  # attempts that ran (a resume or requeue is another), this one included
    device_hours: float | None = None  # the sum over attempts of world size x attempt wall time, in hours
    hardware: Hardware | None = None
    first_step_at: float | None = None  # wall clock (Unix time) of this attempt's first optimiser step
    diverged_at_step: int | None = None
    error: str | None = None
    config: dict[str, Any] = field(default_factory=dict)  # the resolved TrainConfig
    versions: dict[str, str] = field(default_factory=dict)
    host: str | None = None
    argv: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in ("run_id", "arch"):
            if not getattr(self, name):
                raise ValueError(f"{name!r} is empty")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def write(self, path: Path) -> None:
        write_atomic(path, json.dumps(self.to_dict(), indent=1, default=str) + "\n")

    @classmethod
    def read(cls, path: Path) -> RunResult:
        """The record at ``path``, or a one-line UserError naming the file and what is wrong with it."""
        from pydantic import ValidationError

        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as err:
            raise UserError(f"{path}: cannot be read ({err})") from None
        try:
            return _adapter().validate_json(text)  # one parse: status over 10,000 runs reads every record
        except ValidationError as err:
            try:
                json.loads(text)
            except json.JSONDecodeError as bad:
                raise UserError(
                    f"{path}: malformed result.json (not valid JSON: {bad.msg} at line {bad.lineno})"
                ) from None
            e = err.errors()[0]
            key = ".".join(str(p) for p in e["loc"])
            what = (
                str(e["ctx"]["error"])
                if e["type"] == "value_error"
                else (
                    f"{key!r} missing"
                    if e["type"] == "missing"
                    else f"{key}={e.get('input')!r}: {e['msg'].lower()}"
                    if key
                    else f"expected a JSON object, got {type(json.loads(text)).__name__}"
                )
            )
            raise UserError(f"{path}: malformed result.json ({what})") from None


@functools.cache
def _adapter() -> Any:
    from pydantic import TypeAdapter

    return TypeAdapter(RunResult)


def write_atomic(path: Path, text: str) -> None:
    """Temp file in the same directory + rename: readers see the old file or the new, never half."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("torch", "pytorch-lightning", "torchmetrics", "albumentations", "wandb", "convbench"):
        with contextlib.suppress(metadata.PackageNotFoundError):  # not installed: no entry
            out[dist] = metadata.version(dist)
    return out


@dataclass
class RunDir:
    path: Path

    @classmethod
    def create(cls, results: str, run_id: str) -> RunDir:
        path = Path(results) / run_id
        path.mkdir(parents=True, exist_ok=True)
        return cls(path)

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def last_checkpoint(self) -> Path | None:
        p = self.checkpoints / "last.ckpt"
        return p if p.is_file() else None

    @property
    def result_path(self) -> Path:
        return self.path / RESULT

    def result(self) -> RunResult | None:
        """The run's record once it has finished; None before."""
        return RunResult.read(self.result_path) if self.result_path.exists() else None

    def write_config(self, config: dict[str, Any]) -> None:
        write_atomic(self.path / "config.yaml", yaml.safe_dump(config, sort_keys=False))

    def wandb_id(self, new_id: str) -> str:
        """The W&B run id of this run: created once, reused on every resume and requeue."""
        p = self.path / "wandb_id"
        if p.is_file():
            return p.read_text().strip()
        write_atomic(p, new_id)
        return new_id

    def set_wandb_id(self, wandb_id: str) -> None:
        """Adopt an id given from outside (a `wandb agent` run's): the sweep server waits for that run."""
        write_atomic(self.path / "wandb_id", wandb_id)

    def log_attempt(self, started: float, ended: float, world_size: int) -> None:
        """Record the attempt that began at ``started`` as lasting until ``ended`` (rank 0, at its
        start, at every checkpoint and at its end): what a run's device-hours sum. An attempt killed
        outright (SIGKILL) counts until its last checkpoint."""
        attempts = [a for a in self.attempts() if a.get("started") != started]
        attempts.append({"started": started, "ended": ended, "world_size": world_size})
        attempts.sort(key=lambda a: a["started"])
        write_atomic(self.path / ATTEMPTS, "".join(json.dumps(a) + "\n" for a in attempts))

    def attempts(self) -> list[dict[str, Any]]:
        """The attempts recorded so far, in order."""
        try:
            lines = (self.path / ATTEMPTS).read_text().splitlines()
        except OSError:
            return []
        return [json.loads(line) for line in lines]

    def write_result(self, result: RunResult) -> None:
        """The record, stamped with the host, the command line and the versions that produced it."""
        dataclasses.replace(result, versions=versions(), host=socket.gethostname(), argv=list(sys.argv)).write(
            self.result_path
        )


def _number(v: str | None) -> float | None:
    """A metrics.csv cell: a finite float, else None (empty, text, NaN or inf)."""
    try:
        x = float(v) if v not in (None, "") else None
    except ValueError:
        return None
    return x if x is not None and math.isfinite(x) else None


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """metrics.csv rows of all attempts merged: a resumed attempt (version_N+1) replaces every row
    of the earlier ones from its first step on, so for each step the latest version wins."""
    versions = []
    for p in (run_dir / "metrics").glob("version_*/metrics.csv"):
        try:
            versions.append((int(p.parent.name.split("_", 1)[1]), p))
        except ValueError:
            continue
    rows: list[dict[str, Any]] = []
    for _, p in sorted(versions):
        try:
            with p.open(newline="") as f:
                new = [{k: _number(v) for k, v in r.items() if k} for r in csv.DictReader(f)]
        except (OSError, csv.Error, UnicodeDecodeError):
            continue
        new = [r for r in new if r.get("step") is not None]
        if new:
            first = min(r["step"] for r in new)
            rows = [r for r in rows if r["step"] < first] + new
    return rows
