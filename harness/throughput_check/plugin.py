"""The pytest side of the throughput check: its options, the `throughput` fixture and the summary line.

pytest loads this module in every session of an environment that has convbench installed, so it imports neither
torch nor the timing (`measure`, imported when a test asks for the fixture) and adds no autouse fixture: a session
that uses no `throughput` is not slowed down or changed."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .baseline import Baseline, BaselineError
from .session import State, shown
from .verdict import RECORD, TOLERANCE

if TYPE_CHECKING:
    from .measure import Throughput

DEFAULT_BASELINE = "throughput-baseline.json"  # in the rootdir
UPDATE_ENV = "CONVBENCH_UPDATE_BASELINE"  # =1: as --throughput-record (`CONVBENCH_UPDATE_BASELINE=1 make bench`)


STATE = pytest.StashKey[State]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("throughput", "convbench's throughput check (the `throughput` fixture)")
    group.addoption(
        "--throughput-baseline",
        metavar="PATH",
        help=f"baseline JSON the checks compare with (default: ini throughput_baseline, else {DEFAULT_BASELINE} "
        "in the rootdir)",
    )
    group.addoption(
        RECORD,
        action="store_true",
        help=f"record the measured figures into the baseline instead of checking them (or {UPDATE_ENV}=1)",
    )
    group.addoption(
        "--throughput-tolerance",
        metavar="X",
        help=f"fail a check below 1/X of its baseline; X > 1 (default: ini throughput_tolerance, else {TOLERANCE:g})",
    )
    parser.addini(
        "throughput_baseline", f"baseline JSON of the throughput checks, relative to the ini file ({DEFAULT_BASELINE})"
    )
    parser.addini("throughput_tolerance", f"a throughput check fails below 1/X of its baseline; X > 1 ({TOLERANCE:g})")


def pytest_configure(config: pytest.Config) -> None:
    config.stash[STATE] = State(baseline_path(config), record(config), tolerance(config))
    if not config.pluginmanager.hasplugin("benchmark"):
        config.pluginmanager.register(NoBenchmark(), "convbench-throughput-no-benchmark")


def baseline_path(config: pytest.Config) -> Path:
    """The option relative to where pytest was started, the ini key relative to its file, else the rootdir's."""
    if option := config.getoption("throughput_baseline"):
        return config.invocation_params.dir / option
    if ini := config.getini("throughput_baseline"):
        return (config.inipath.parent if config.inipath else config.rootpath) / str(ini)
    return config.rootpath / DEFAULT_BASELINE


def record(config: pytest.Config) -> bool:
    return bool(config.getoption("throughput_record")) or os.environ.get(UPDATE_ENV) == "1"


def tolerance(config: pytest.Config) -> float:
    option, ini = config.getoption("throughput_tolerance"), config.getini("throughput_tolerance")
    value, source = (option, "--throughput-tolerance") if option is not None else (ini, "throughput_tolerance (ini)")
    if value in (None, ""):
        return TOLERANCE
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not number > 1 or math.isinf(number):
        raise pytest.UsageError(
            f"{source}={value}: must be a number above 1 (a check fails below 1/X of its baseline; "
            f"{TOLERANCE:g} by default)"
        )
    return number


class NoBenchmark:
    """Stands in for pytest-benchmark's fixture when it is not installed or is disabled, to say so in one line."""

    @pytest.fixture
    def benchmark(self) -> None:
        pytest.fail(
            "the throughput fixture times with pytest-benchmark, which is not installed or is disabled "
            "(-p no:benchmark): pip install pytest-benchmark",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def _throughput_state(pytestconfig: pytest.Config) -> Iterator[State]:
    """The session's state with its baseline read; after the last check, writes the figures recorded."""
    state = pytestconfig.stash[STATE]
    try:
        state.baseline = Baseline.load(state.baseline_path)
    except BaselineError as err:
        raise pytest.fail.Exception(str(err), pytrace=False) from None  # not "during handling of ..."
    yield state
    if state.recorded and state.machine is not None:
        try:
            state.baseline.save(state.recorded, state.machine)
        except OSError as err:
            message = f"{state.baseline_path}: cannot write the throughput baseline ({err.strerror})"
            raise pytest.fail.Exception(message, pytrace=False) from None
        state.saved = True


@pytest.fixture
def throughput(benchmark: Any, _throughput_state: State, request: pytest.FixtureRequest) -> Iterator[Throughput]:
    """Times one thing per test (pytest-benchmark's rule) and checks it against the baseline:

        throughput.train_step(model_or_name, batch_size, input_size=None, *, key=None, precision="32")
        throughput.infer_step(model_or_name, batch_size, input_size=None, *, key=None, precision="32")
        throughput(key, fn, items)    # any callable that processes `items` items a call

    The test runs at one torch (and OpenCV) thread; glibc's malloc thresholds are fixed from its start on for the
    rest of the process (docs/bench.md#the-throughput-check-a-pytest-plugin)."""
    from .measure import Throughput, pinned

    with pinned():
        yield Throughput(benchmark, _throughput_state, request)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    state = config.stash[STATE]
    path = shown(state.baseline_path, config)
    if state.saved:
        n = len(state.recorded)
        terminalreporter.write_line(f"throughput baseline: {n} figure{'s' * (n != 1)} recorded into {path}")
    if state.ratios:
        worst = min(state.ratios, key=state.ratios.__getitem__)
        terminalreporter.write_line(
            f"benchmarks vs baseline {path}: {len(state.ratios)} checked, worst {state.ratios[worst]:.2f}x ({worst}), "
            f"best {max(state.ratios.values()):.2f}x; fails below {1 / state.tolerance:.2f}x"
        )
    if state.missing:
        missing = ", ".join(sorted(state.missing))
        terminalreporter.write_line(f"throughput: no baseline in {path} for {missing}; record one with {RECORD}")
