"""`convbench list` and `convbench summary` as a user runs them: each kind of outcome once in a real process (its
output and exit code: a success, an unknown name, a bad flag, a net that cannot take the input); the other cases
of the same kind through `harness.cli.main` in this process, sparing a start-up each."""

from __future__ import annotations

import json

import pytest

from tests.helpers import convbench, in_process


def test_summary_json_reports_the_published_resnet56() -> None:
    r = convbench("summary", "resnet56", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert (out["name"], out["params"], out["depth"], out["input_size"]) == ("resnet56", 853_018, 56, [3, 32, 32])
    assert round(out["macs"] / 1e6, 1) == 125.5
    assert sum(layer["params"] for layer in out["layers"]) == out["params"]
    assert sum(layer["macs"] for layer in out["layers"]) == out["macs"]


def test_summary_table_with_input_size_and_classes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = in_process(capsys, "summary", "resnet18", "--input-size", "1", "32", "32", "--num-classes", "10")
    assert code == 0, err
    # resnet18 minus the 1000-way fc and two of the stem's three input planes, plus a 10-way fc
    params = 11_689_512 - (512 * 1000 + 1000) - 2 * 7 * 7 * 64 + (512 * 10 + 10)
    assert "stages.3.1.residual.4" in out and f"params {params:,}" in out


def test_unknown_name_is_one_line_with_suggestions(capsys: pytest.CaptureFixture[str]) -> None:
    r = convbench("summary", "nosuchnet")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "unknown architecture 'nosuchnet'" in r.stderr and "closest:" in r.stderr
    code, _, err = in_process(capsys, "summary", "resnet5")
    assert "resnet50" in err and code == 2


def test_bad_input_size_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    r = convbench("summary", "resnet56", "--input-size", "3", "x", "32")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--input-size" in r.stderr
    code, _, err = in_process(capsys, "summary", "resnet56", "--input-size", "0", "32", "32")
    assert code == 2 and err.count("\n") == 1 and "--input-size" in err
    r = convbench("summary", "alexnet", "--input-size", "3", "16", "16")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "cannot run on input 3x16x16" in r.stderr
    code, _, err = in_process(capsys, "summary", "resnet56", "--input-size", "3", "32")
    assert code == 2 and err.count("\n") == 1


def test_list_filters_by_glob_and_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    r = convbench("list", "plain*", "--json")
    rows = json.loads(r.stdout)
    assert {row["name"] for row in rows} == {f"plain{d}" for d in (18, 34, 50, 101, 152, 20, 32, 44, 56, 110, 1202)}
    assert all(not row["residual"] for row in rows)
    code, _, err = in_process(capsys, "list", "nomatch*")
    assert code == 2 and "no architecture matches" in err
