"""What one pytest session's throughput checks share: the settings, the baseline and what the checks found.
No torch here: the plugin holds it from the session's start."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .baseline import Baseline, Machine


@dataclass
class State:
    """The session's settings and what its checks found, for the fixture, the baseline's writing and the summary."""

    baseline_path: Path
    record: bool
    tolerance: float
    baseline: Baseline | None = None  # read when the first check needs it
    machine: Machine | None = None  # this machine as the last check saw it (its reference rate), for a recording
    ratios: dict[str, float] = field(default_factory=dict)  # measured / baseline
    missing: set[str] = field(default_factory=set)  # checked, with no baseline figure
    recorded: dict[str, float] = field(default_factory=dict)
    saved: bool = False  # the recorded figures are in the baseline file
    measured: dict[str, str] = field(default_factory=dict)  # key -> the test that timed it: two tests may not share one


def shown(path: Path, config: pytest.Config) -> str:
    """A path relative to the rootdir where it is inside it."""
    return str(path.relative_to(config.rootpath)) if path.is_relative_to(config.rootpath) else str(path)
