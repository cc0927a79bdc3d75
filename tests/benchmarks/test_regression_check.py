"""The regression check's decision, fed figures directly (no timing): it must be able to fail."""

from __future__ import annotations

from harness.throughput_check.verdict import TOLERANCE, compare, normalised


def test_a_2x_slowdown_fails() -> None:
    verdict = compare("train_step/resnet20", measured=0.5, baseline=1.0)
    assert not verdict.ok and verdict.ratio == 0.5 and "2.00x slower" in verdict.message


def test_noise_within_tolerance_passes_and_a_speedup_is_noted() -> None:
    assert compare("k", measured=1.0 / TOLERANCE * 1.01, baseline=1.0).ok
    faster = compare("k", measured=2.0, baseline=1.0)
    assert faster.ok and "faster" in faster.message


def test_missing_baseline_passes_with_a_hint() -> None:
    verdict = compare("new/benchmark", measured=1.0, baseline=None)
    assert verdict.ok and verdict.ratio is None and "--throughput-record" in verdict.message


def test_normalisation_cancels_a_uniformly_slower_machine() -> None:
    assert normalised(1000.0, 100e9) == normalised(500.0, 50e9) == 10.0
