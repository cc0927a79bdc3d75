"""The baseline file: the normalised figures the checks compare with and the machine they were recorded on, as
JSON committed beside the tests. A file that is not one is a one-line error naming it, never a traceback."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .verdict import RECORD, WHAT

SHAPE = f'an object with "normalised": {{"name": positive number, ...}}, as {RECORD} writes'


class BaselineError(Exception):
    """A baseline file that cannot be read or is not one: the message names the file and what is accepted."""


@dataclass(frozen=True)
class Machine:
    """Where figures were measured: a slowdown against a baseline from another CPU or torch may be the machine's."""

    cpu: str
    torch: str
    reference_gflops: float

    def __str__(self) -> str:
        return f"{self.cpu}, torch {self.torch}, reference {self.reference_gflops:.0f} GFLOP/s"


@dataclass
class Baseline:
    path: Path
    figures: dict[str, float] = field(default_factory=dict)
    recorded_on: Machine | None = None

    @classmethod
    def load(cls, path: Path) -> Baseline:
        """The file's figures; none when it does not exist yet."""
        if not path.exists():
            return cls(path)
        try:
            data = json.loads(path.read_text())
        except OSError as err:
            raise BaselineError(f"{path}: cannot read the throughput baseline ({err.strerror})") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise BaselineError(f"{path}: not JSON ({err}); a throughput baseline is {SHAPE}") from None
        figures = data.get("normalised") if isinstance(data, dict) else None
        if not isinstance(figures, dict) or not all(positive(v) for v in figures.values()):
            raise BaselineError(f"{path}: not a throughput baseline; expected {SHAPE}")
        return cls(path, {k: float(v) for k, v in figures.items()}, machine(data.get("recorded_on")))

    def save(self, recorded: dict[str, float], on: Machine) -> None:
        """The recorded figures over the file's others, and this machine as the one they were recorded on."""
        figures = {**self.figures, **recorded}
        data = {
            "what": WHAT,
            "recorded_on": {"cpu": on.cpu, "torch": on.torch, "reference_gflops": round(on.reference_gflops, 2)},
            "normalised": {k: float(f"{v:.4g}") for k, v in sorted(figures.items())},
        }
        self.path.write_text(json.dumps(data, indent=1) + "\n")


def positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def machine(record: Any) -> Machine | None:
    """The recorded_on block, where it names all three (a hand-written baseline may have none)."""
    if not isinstance(record, dict):
        return None
    cpu, torch, gflops = record.get("cpu"), record.get("torch"), record.get("reference_gflops")
    if isinstance(cpu, str) and isinstance(torch, str) and positive(gflops):
        return Machine(cpu, torch, float(gflops))
    return None
