"""The shipped sweep files as `wandb agent` runs them: for every run of every sweep, the command line
W&B's own code builds from the file's ``command:`` resolves, through convbench's CLI, to the config
and run id of convbench's own expansion. Also: ``key=value`` arguments mean what ``--set`` means."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.cli import build_parser
from harness.commands.train import resolve_args
from harness.errors import UserError
from harness.sweep.spec import load
from tests.helpers import REPO

SWEEPS = sorted((REPO / "sweeps").glob("*.yaml"))


def agent_command(command: list[str], params: dict[str, Any]) -> list[str]:
    """The argv `wandb agent` runs for one run with these parameters: W&B's create_sweep_command and
    create_sweep_command_args, then the agent's own macro step (wandb_agent.Agent._command_run: a
    chunk that is exactly ``${name}`` becomes that list of arguments)."""
    from wandb.sdk.launch.sweeps.utils import create_sweep_command, create_sweep_command_args

    macros = create_sweep_command_args({"args": {k: {"value": v} for k, v in params.items()}})
    argv: list[str] = []
    for chunk in create_sweep_command(list(command)):
        chunk = str(chunk)
        argv += (macros.get(chunk[2:-1]) or []) if chunk.startswith("${") and chunk.endswith("}") else [chunk]
    return argv


def parse(argv: list[str]) -> argparse.Namespace:
    assert argv[:2] == ["convbench", "train"], argv
    return build_parser("train").parse_args(argv[1:])


def comparable(config: dict[str, Any]) -> dict[str, Any]:
    """Everything but where results go (the agent runs from the repository root: `results` there) and
    the W&B mode (an agent logs online; not part of the run id)."""
    return {**config, "results": str(Path(config["results"]).absolute()), "wandb": {**config["wandb"], "mode": None}}


@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_wandb_agent_runs_each_shipped_sweep_as_convbench_does(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # where `wandb agent` is started (the sweep file paths in command: are relative to it)
    raw = yaml.safe_load(path.read_text())
    sweep = load(path.relative_to(REPO))
    grid = [r for r in sweep.runs if r.params is not None]
    assert grid and raw["command"][:2] == ["convbench", "train"] and "${args_no_hyphens}" in raw["command"]
    # W&B's grid is the product of the parameters' values: convbench's grid runs are exactly those
    axes = [len(spec["values"]) for spec in raw["parameters"].values() if "values" in spec]
    assert len(grid) == math.prod(axes)
    for run in grid:
        args = parse(agent_command(raw["command"], run.params))
        config = resolve_args(args)
        assert config.run_id() == run.run_id, (path.name, run.params)
        assert comparable(config.to_dict()) == comparable(run.config.to_dict()), (path.name, run.params)
        assert args.resume and config.wandb.mode == "online"


def test_positional_overrides_mean_what_set_means() -> None:
    common = ["train", "--arch", "lenet5", "--data", "synthetic"]
    by_set = resolve_args(
        build_parser("train").parse_args(
            common + ["--set", "optim.lr=0.05", "--set", "data.classes=[0, 1]", "--set", "trainer.deterministic=True"]
        )
    )
    by_arg = resolve_args(
        build_parser("train").parse_args(
            common + ["optim.lr=0.05", "data.classes=[0, 1]", "trainer.deterministic=True"]
        )
    )
    assert by_arg.to_dict() == by_set.to_dict() and by_arg.optim.lr == 0.05 and by_arg.data["classes"] == [0, 1]
    with pytest.raises(UserError, match="'lenet5': expected KEY=VALUE"):
        resolve_args(build_parser("train").parse_args(["train", "lenet5"]))


def test_sweep_argument_errors_name_the_parameter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    p = build_parser("train")
    with pytest.raises(UserError, match="unknown parameter optim.lr.*its parameters: arch, data.classes"):
        resolve_args(p.parse_args(["train", "--sweep", "sweeps/transfer.yaml", "arch=lenet5", "optim.lr=0.1"]))
    with pytest.raises(UserError, match="no grid run has these values"):
        resolve_args(p.parse_args(["train", "--sweep", "sweeps/transfer.yaml", "arch=vgg11"]))
    pretrain = resolve_args(p.parse_args(["train", "--sweep", "sweeps/transfer.yaml", "pretrain-lenet5"]))
    assert pretrain.run_id() == next(r.run_id for r in load("sweeps/transfer.yaml").runs if r.name == "pretrain-lenet5")
    with pytest.raises(UserError, match="not --epochs"):
        resolve_args(p.parse_args(["train", "--sweep", "sweeps/transfer.yaml", "--epochs", "3", "arch=lenet5"]))
