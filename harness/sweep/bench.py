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
from typing import Any

import yaml

import architectures
from harness.bench.jobs import PRECISIONS
from harness.errors import UserError
from harness.sweep.slurm import TEMPLATES, _slurm
from harness.sweep.spec import SLURM_KEYS

BENCH_KEYS = {"models", "devices", "nodes", "precision", "channels_last", "batch_size", "args", "results"}
SLURM = {k: v for k, v in SLURM_KEYS.items() if k != "signal"}  # a bench has nothing to checkpoint on a signal


@dataclass
class BenchSweep:
    path: Path
    name: str
    models: list[str]
    devices: int
    nodes: int
    precision: list[str]
    channels_last: list[bool]
    batch_size: int | None
    args: list[str]
    results: Path
    slurm: dict[str, Any] = field(default_factory=dict)

    def settings(self) -> list[list[str]]:
        """The bench flags of each step, precision x channels_last."""
        out = []
        for precision, nhwc in itertools.product(self.precision, self.channels_last):
            flags = ["--precision", precision] + (["--channels-last"] if nhwc else [])
            flags += ["--batch-size", str(self.batch_size)] if self.batch_size else []
            out.append(flags + self.args)
        return out


def load(path: Path) -> BenchSweep:
    """Validated: every mistake is one line naming the file and key."""
    if not path.is_file():
        raise UserError(f"--sweep {path}: no such file")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise UserError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("bench"), dict):
        raise UserError(f"{path}: a bench sweep needs a `bench:` mapping (models, devices, ...); train sweeps run with `convbench sweep`")
    unknown = set(raw) - {"name", "description", "bench", "slurm"}
    if unknown:
        raise UserError(f"{path}: unknown top-level key(s) {sorted(unknown)}; accepted: name, description, bench, slurm")
    b, s = raw["bench"], raw.get("slurm") or {}

    def fail(key: str, what: str) -> UserError:
        return UserError(f"{path}: {key}: {what}")

    if set(b) - BENCH_KEYS:
        raise fail("bench", f"unknown key(s) {sorted(set(b) - BENCH_KEYS)}; accepted: {', '.join(sorted(BENCH_KEYS))}")
    models = b.get("models")
    if not isinstance(models, list) or not models or not all(isinstance(m, str) for m in models):
        raise fail("bench.models", "a non-empty list of architecture names")
    zoo = set(architectures.names())
    for m in models:
        if m not in zoo:
            raise fail("bench.models", f"unknown architecture {m!r} (see `convbench list`)")
    for key in ("devices", "nodes"):
        if not isinstance(b.get(key, 1), int) or isinstance(b.get(key, 1), bool) or b.get(key, 1) < 1:
            raise fail(f"bench.{key}", f"an integer >= 1, got {b.get(key)!r}")
    precision = [str(p) for p in _as_list(b.get("precision", ["32"]))]
    if not precision or any(p not in PRECISIONS for p in precision):
        raise fail("bench.precision", f"a list of {', '.join(PRECISIONS)}, got {b.get('precision')!r}")
    nhwc = _as_list(b.get("channels_last", [False]))
    if not nhwc or not all(isinstance(v, bool) for v in nhwc):
        raise fail("bench.channels_last", f"a list of true/false, got {b.get('channels_last')!r}")
    batch = b.get("batch_size")
    if batch is not None and (not isinstance(batch, int) or isinstance(batch, bool) or batch < 1):
        raise fail("bench.batch_size", f"an integer >= 1, got {batch!r}")
    args = b.get("args", [])
    if not isinstance(args, list) or not all(isinstance(a, (str, int, float)) for a in args):
        raise fail("bench.args", "a list of convbench bench flags and values")
    if not isinstance(s, dict):
        raise fail("slurm", "a mapping")
    for key, value in s.items():
        if key not in SLURM:
            raise fail("slurm", f"unknown key {key!r}; accepted: {', '.join(SLURM)}")
        if not isinstance(value, SLURM[key]) or isinstance(value, bool):
            raise fail(f"slurm.{key}", f"expected {SLURM[key].__name__}, got {value!r}")
    name = str(raw.get("name") or path.stem)
    return BenchSweep(path=path, name=name, models=models, devices=b.get("devices", 1), nodes=b.get("nodes", 1),
                      precision=precision, channels_last=nhwc, batch_size=batch, args=[str(a) for a in args],
                      results=Path(b.get("results") or f"results/bench/{name}"), slurm=s)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def directives(sweep: BenchSweep) -> list[str]:
    s = sweep.slurm
    gpus = s.get("gpus_per_node", 0)
    if gpus and gpus != sweep.devices:
        raise UserError(f"{sweep.path}: slurm.gpus_per_node={gpus} but bench.devices={sweep.devices}: one rank per GPU, make them equal")
    lines = [f"--job-name=convbench-bench-{sweep.name}", f"--array=0-{len(sweep.models) - 1}", f"--nodes={sweep.nodes}",
             f"--ntasks-per-node={sweep.devices}", f"--cpus-per-task={s.get('cpus_per_task', 1)}"]
    lines += [f"--gres=gpu:{gpus}"] if gpus else []
    lines += [f"--{key}={s[key]}" for key in ("mem", "time", "partition", "account", "qos", "constraint") if s.get(key)]
    lines += [f"--output={sweep.results.resolve()}/logs/%A_%a.out"]
    lines += [str(x) for x in s.get("extra", [])]
    return [f"#SBATCH {line}" for line in lines]


def render(sweep: BenchSweep) -> str:
    out = sweep.results.resolve()
    python = shlex.quote(sys.executable)
    steps = [f"srun --kill-on-bad-exit=1 {python} -m harness.cli bench \"${{MODEL}}\" --devices {sweep.devices} --nodes {sweep.nodes} "
             f"{shlex.join(flags)} --csv {shlex.quote(str(out))}/\"${{MODEL}}.csv\"" for flags in sweep.settings()]
    values = {"name": sweep.name, "out": shlex.quote(str(out)), "workdir": shlex.quote(os.getcwd()),
              "directives": "\n".join(directives(sweep)), "setup": "\n".join(sweep.slurm.get("setup", [])),
              "models": " ".join(shlex.quote(m) for m in sweep.models), "steps": "\n".join(steps)}
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
