"""Benchmarks of convbench itself, at one thread. Those with a machine-normalised check against baseline.json (the
`throughput_baseline` key in pyproject.toml) use the `throughput` fixture of convbench's own pytest plugin,
harness/throughput_check (docs/bench.md#the-throughput-check-a-pytest-plugin):

    def test_my_step(throughput):
        throughput("my/step/key", step_callable, items=batch_size)

`make test` runs them briefly (pytest-benchmark's defaults: about a second, at least 5 rounds each);
`make bench` runs them longer and writes the JSON report. Refresh the baseline (after an intended speed change, or
on a new reference machine): `CONVBENCH_UPDATE_BASELINE=1 make bench`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.throughput_check.measure import pinned


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Every test of this folder under the throughput fixture's pinning (one thread, fixed malloc thresholds),
    the ones that time without it too; tests outside the folder keep their threads."""
    with pinned():
        yield
