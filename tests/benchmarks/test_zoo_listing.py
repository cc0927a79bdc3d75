"""`convbench list` counts every architecture's parameters. It counts them on the meta device
(`architectures.count_params`); building the real weights instead costs seconds for the big nets.
The benchmark times the whole zoo's count; the check compares the two ways on the nets that
dominate a real build (a ratio of one run, not a timed limit)."""

from __future__ import annotations

import time

from pytest_benchmark.fixture import BenchmarkFixture

import architectures

BIG = ("vgg16", "resnet1202")


def seconds(fn: object, *args: object) -> float:
    start = time.perf_counter()
    fn(*args)  # type: ignore[operator]
    return time.perf_counter() - start


def test_the_zoo_counts_on_the_meta_device_without_building_weights(benchmark: BenchmarkFixture) -> None:
    zoo = architectures.names()
    counts = benchmark.pedantic(lambda: {name: architectures.count_params(name) for name in zoo}, rounds=3)
    assert counts["vgg16"] == 138_357_544
    real = meta = 0.0
    for name in BIG:  # alternating, so that a burst of host load hits both
        real += seconds(lambda n: sum(p.numel() for p in architectures.create(n).parameters()), name)
        meta += seconds(architectures.count_params, name)
    assert real / meta > 3, f"meta-device counting should be far cheaper than real builds: {real:.2f} s vs {meta:.2f} s"
