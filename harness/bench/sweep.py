"""Bench sweeps: a YAML file of the zoo x devices x precision x channels_last that `convbench bench
--sweep FILE` submits as one Slurm array, one model a task (the train sweeps' schema is TrainConfig
runs, which a benchmark is not). Each task runs one `srun ... convbench bench MODEL --devices N
--nodes M` step per setting and appends to `<results>/<MODEL>.csv`; `convbench bench --merge
<results>/*.csv` joins them into one table, the way timm keeps its benchmark CSVs.

    name: bench-scaling            # default: the file's stem
    bench:
      models: [resnet20, resnet56, vgg11]
      devices: 8                   # ranks a node; scaling measured at 1, 2, 4, ... devices x nodes
      nodes: 1
      precision: ["32", bf16-mixed]
      channels_last: [false, true]
      batch_size: 128              # per rank; default the bench's
      args: [--repeats, "5"]       # more `convbench bench` flags, the same for every step
      results: results/bench/bench-scaling
    slurm: {partition: gpu, gpus_per_node: 8, cpus_per_task: 8, time: "01:00:00", mem: 64G}
"""

from __future__ import annotations

import itertools
import os
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import yaml
from annotated_types import Ge, MinLen

import architectures
from harness.bench.jobs import PRECISIONS
from harness.config import schema
from harness.config.files import read_text
from harness.config.schema import STRICT, ConfigError
from harness.errors import UserError
from harness.imports import load as import_modules
from harness.imports import loaded
from harness.sweep.slurm import TEMPLATES, _slurm
from harness.sweep.spec import SlurmConfig


@dataclass
class BenchSpec:
    """The ``bench:`` section: what every array task measures."""

    __pydantic_config__ = STRICT

    models: Annotated[list[str], MinLen(1)]
    devices: Annotated[int, Ge(1)] = 1  # ranks a node
    nodes: Annotated[int, Ge(1)] = 1
    precision: Annotated[list[str], MinLen(1)] = field(default_factory=lambda: ["32"])
    channels_last: Annotated[list[bool], MinLen(1)] = field(default_factory=lambda: [False])
    batch_size: Annotated[int, Ge(1)] | None = None  # per rank; default the bench's
    args: list[str] = field(default_factory=list)  # more `convbench bench` flags, the same for every step
    results: str | None = None  # default results/bench/<name>

    def __post_init__(self) -> None:
        known = set(architectures.names())
        for m in self.models:
            if m not in known:
                raise ConfigError(
                    ("bench", "models"), f"bench.models: unknown architecture {m!r} (see `convbench list`)"
                )
        for p in self.precision:
            if p not in PRECISIONS:
                raise ConfigError(
                    ("bench", "precision"), f"bench.precision: {p!r} is not one of {', '.join(PRECISIONS)}"
                )


@dataclass
class BenchSweepFile:
    __pydantic_config__ = STRICT

    bench: BenchSpec
    imports: list[str] = field(default_factory=list)  # modules where the models register (as `--import`)
    name: str | None = None
    description: str | None = None
    slurm: SlurmConfig = field(default_factory=SlurmConfig)

    def __post_init__(self) -> None:
        if self.slurm.signal != SlurmConfig.signal:
            raise ConfigError(
                ("slurm", "signal"), "slurm.signal: a bench has nothing to checkpoint on a signal; leave it out"
            )
        if self.slurm.array_parallelism is not None:
            raise ConfigError(
                ("slurm", "array_parallelism"),
                "slurm.array_parallelism: a bench sweep's tasks are not throttled; "
                "leave it out (each task holds whole nodes: --exclusive in slurm.extra)",
            )


@dataclass
class BenchSweep:
    path: Path
    name: str
    spec: BenchSpec
    slurm: SlurmConfig

    @property
    def models(self) -> list[str]:
        return self.spec.models

    @property
    def results(self) -> Path:
        return Path(self.spec.results or f"results/bench/{self.name}")

    def settings(self) -> list[list[str]]:
        """The bench flags of each step, precision x channels_last."""
        out = []
        for precision, nhwc in itertools.product(self.spec.precision, self.spec.channels_last):
            flags = ["--precision", precision] + (["--channels-last"] if nhwc else [])
            flags += ["--batch-size", str(self.spec.batch_size)] if self.spec.batch_size else []
            out.append(flags + self.spec.args)
        return out


def load(path: Path) -> BenchSweep:
    """Validated against the dataclasses above: every mistake is one line naming the file and key."""
    text = read_text(path, "--sweep")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise UserError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict) or not isinstance(data.get("bench"), dict):
        raise UserError(
            f"{path}: a bench sweep needs a `bench:` mapping (models, devices, ...); "
            "train sweeps run with `convbench sweep`"
        )
    imports = data.get("imports") or []
    if not (isinstance(imports, list) and all(isinstance(m, str) for m in imports)):
        raise UserError(f"{path}: imports={imports!r}: expected a list of module names")
    import_modules(imports, f"{path}: imports")
    try:
        doc: BenchSweepFile = schema.parse(BenchSweepFile, data)
    except ConfigError as err:
        raise UserError(f"{path}: {err.problem}") from None
    name = doc.name or path.stem
    if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
        raise UserError(f"{path}: name {name!r}: letters, digits, '.', '_', '-' only")
    return BenchSweep(path=path, name=name, spec=doc.bench, slurm=doc.slurm)


def directives(sweep: BenchSweep) -> list[str]:
    s, b = sweep.slurm, sweep.spec
    if s.gpus_per_node and s.gpus_per_node != b.devices:
        raise UserError(
            f"{sweep.path}: slurm.gpus_per_node={s.gpus_per_node} but bench.devices={b.devices}: "
            "one rank per GPU, make them equal"
        )
    lines = [
        f"--job-name=convbench-bench-{sweep.name}",
        f"--array=0-{len(b.models) - 1}",
        f"--nodes={b.nodes}",
        f"--ntasks-per-node={b.devices}",
        f"--cpus-per-task={s.cpus_per_task}",
    ]
    lines += [f"--gres=gpu:{s.gpus_per_node}"] if s.gpus_per_node else []
    lines += [
        f"--{key}={getattr(s, key)}"
        for key in ("mem", "time", "partition", "account", "qos", "constraint")
        if getattr(s, key)
    ]
    lines += [f"--output={sweep.results.resolve()}/logs/%A_%a.out"]
    lines += [str(x) for x in s.extra]
    return [f"#SBATCH {line}" for line in lines]


def render(sweep: BenchSweep) -> str:
    out = sweep.results.resolve()
    python = shlex.quote(sys.executable)
    imports = "".join(f"--import {shlex.quote(m)} " for m in loaded())
    steps = [
        f'srun --kill-on-bad-exit=1 {python} -m harness.cli bench {imports}"${{MODEL}}" '
        f"--devices {sweep.spec.devices} --nodes {sweep.spec.nodes} "
        f'{shlex.join(flags)} --csv {shlex.quote(str(out))}/"${{MODEL}}.csv"'
        for flags in sweep.settings()
    ]
    values = {
        "name": sweep.name,
        "out": shlex.quote(str(out)),
        "workdir": shlex.quote(os.getcwd()),
        "directives": "\n".join(directives(sweep)),
        "setup": "\n".join(sweep.slurm.setup),
        "models": " ".join(shlex.quote(m) for m in sweep.models),
        "steps": "\n".join(steps),
    }
    return re.sub(r"\{\{(\w+)\}\}", lambda m: values[m.group(1)], (TEMPLATES / "bench-array.sbatch").read_text())


def submit(sweep: BenchSweep) -> tuple[str, Path]:
    """sbatch the array; returns (job id, script path). The script is kept beside the results."""
    (sweep.results / "logs").mkdir(parents=True, exist_ok=True)
    script = sweep.results / "bench-array.sbatch"
    script.write_text(render(sweep))
    proc = _slurm(["sbatch", "--parsable", str(script)])
    if proc.returncode != 0:
        raise UserError(f"sbatch {script} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout.strip().split(";")[0], script
