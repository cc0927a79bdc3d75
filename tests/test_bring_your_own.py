"""A user's own model and data module from a package outside the repository: found through a real
``.dist-info/entry_points.txt`` on ``sys.path`` and through ``--import``, then listed, summarised,
benched (one process and two DDP ranks), trained, swept (locally and as Slurm array tasks that import
it) and reported; and every way it can go wrong, as one line and exit 2."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from tests.helpers import convbench, in_process

MODELS = """
from torch import nn

import architectures


@architectures.register_model(family="tinynet", input_size=(1, 32, 32), num_classes=2, reference="a test's own net")
def tinynet(num_classes: int = 2, in_chans: int = 1, width: int = 8) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(in_chans, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4),
        nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(width, num_classes),
    )
"""

DATA = '''
from typing import ClassVar

import numpy as np

from datamodules import ConvDataModule, register_datamodule
from datamodules.samples import Samples


@register_datamodule
class Stripes(ConvDataModule):
    """Noise (class 0) or noise over vertical stripes (class 1): something a net learns in a few steps."""

    name: ClassVar[str] = "stripes"
    native_shape: ClassVar[tuple[int, int, int]] = (1, 32, 32)
    default_root: ClassVar[str | None] = None
    default_val_size: ClassVar[int] = 64
    default_flip: ClassVar[bool] = False
    dataset_mean: ClassVar[tuple[float, ...]] = (0.5,)
    dataset_std: ClassVar[tuple[float, ...]] = (0.3,)

    def native_num_classes(self) -> int:
        return 2

    def _load(self, split):
        rng = np.random.default_rng(0 if split == "train" else 1)
        labels = rng.integers(0, 2, size=320 if split == "train" else 64)
        stripes = (np.arange(32) // 2 % 2 * 120).astype(np.int16)
        images = labels[:, None, None] * stripes[None, None, :] + rng.integers(0, 128, size=(len(labels), 32, 32))
        return Samples(images.astype(np.uint8)[..., None], labels.astype(np.int64))
'''

ENTRY_POINTS = """
[convbench.architectures]
tinynet = my_convnets.models

[convbench.datamodules]
stripes = my_convnets.data:Stripes
"""

QUICK = ["--epochs", "3", "--workers", "0", "--wandb", "disabled", "--batch-size", "32"]


def write_package(root: Path, entry_points: str | None = ENTRY_POINTS, package: str = "my_convnets") -> Path:
    """`package` (models.py, data.py) under `root`; with `entry_points`, installed as a distribution would be:
    a `.dist-info` beside it that importlib.metadata finds on sys.path."""
    (root / package).mkdir(parents=True)
    (root / package / "__init__.py").write_text("")
    (root / package / "models.py").write_text(MODELS)
    (root / package / "data.py").write_text(DATA)
    if entry_points is not None:
        dist = root / f"{package}-0.1.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package.replace('_', '-')}\nVersion: 0.1\n")
        (dist / "entry_points.txt").write_text(entry_points.replace("my_convnets", package))
    return root


def on_path(root: Path) -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}


def one_error_line(proc, *fragments: str) -> str:  # type: ignore[no-untyped-def]
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.mark.slow
def test_an_installed_package_is_listed_summarised_trained_and_reported(tmp_path: Path) -> None:
    env = on_path(write_package(tmp_path / "site"))
    listed = json.loads(convbench("list", "tiny*", "--json", env=env, check=True).stdout)
    assert [(r["name"], r["family"], r["depth"], r["origin"]) for r in listed] == [
        ("tinynet", "tinynet", 3, "my_convnets.models:tinynet")  # depth measured: two convs and the linear
    ]
    assert listed[0]["params"] == 8 * 9 + 8 + 8 * 8 * 9 + 8 + 8 * 2 + 2
    summary = convbench("summary", "tinynet", env=env, check=True).stdout
    assert "tinynet  (a test's own net)" in summary and "depth 3" in summary

    results = tmp_path / "results"
    convbench("train", "--arch", "tinynet", "--data", "stripes", "--results", results, *QUICK, env=env, check=True)
    (run,) = results.iterdir()
    result = json.loads((run / "result.json").read_text())
    assert result["status"] == "completed" and result["test_acc1"] > 0.9, result  # the stripes were learned
    assert run.name.startswith("tinynet-stripes-s0-")
    report = convbench("report", results, "--out", tmp_path / "report", env=env, check=True)
    assert "tinynet" in (tmp_path / "report" / "report.md").read_text(), report.stdout


@pytest.mark.slow
def test_an_imported_module_is_benched_in_one_process_and_across_two_ranks(tmp_path: Path) -> None:
    env = on_path(write_package(tmp_path / "src", entry_points=None))
    timing = ["--warmup", "0", "--iters", "1", "--repeats", "1", "--min-block", "0.01", "--json"]
    imports = ["--import", "my_convnets.models"]
    assert convbench("list", "tinynet", env=env).returncode == 2  # not found without the import
    # MFU against a given peak, as on hardware that Lightning's table lacks (and no peak measured: 4-7 s here)
    given = ["--peak-flops", "2e11"]
    one = json.loads(
        convbench("bench", *imports, "tinynet", "--mode", "train", *given, *timing, env=env, check=True).stdout
    )
    assert [(r["name"], r["mode"]) for r in one] == [("tinynet", "train")] and one[0]["samples_per_s"] > 0
    assert (one[0]["peak_flops_per_s"], one[0]["peak_flops_source"]) == (2e11, "given with --peak-flops")
    assert one[0]["mfu"] == pytest.approx(one[0]["flops_per_s"] / 2e11)
    ddp = json.loads(convbench("bench", *imports, "tinynet", "--devices", "2", *timing, env=env, check=True).stdout)
    assert sorted(r["world_size"] for r in ddp) == [1, 2]
    # a bench sweep's Slurm tasks are told to import it too
    (tmp_path / "bench.yaml").write_text("imports: [my_convnets.models]\nbench: {models: [tinynet, lenet5]}\n")
    script = convbench("bench", "--sweep", tmp_path / "bench.yaml", "--dry-run", env=env, check=True).stdout
    assert "harness.cli bench --import my_convnets.models " in script


def sweep_file(path: Path, **convbench_section: object) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "parameters": {
                    "arch": {"value": "tinynet"},
                    "dataset": {"value": "stripes"},
                    "model.width": {"values": [4, 8]},
                    "trainer.max_steps": {"value": 4},
                    "data.num_workers": {"value": 0},
                    "data.batch_size": {"value": 32},
                    "wandb.mode": {"value": "disabled"},
                },
                "convbench": convbench_section,
            }
        )
    )
    return path


@pytest.mark.slow
def test_a_local_sweep_imports_the_module_in_every_run_and_its_ids_name_the_origin(tmp_path: Path) -> None:
    src = write_package(tmp_path / "src", entry_points=None)
    write_package(tmp_path / "src", entry_points=None, package="other_nets")  # another tinynet, another origin
    file = sweep_file(tmp_path / "tiny.yaml", imports=["my_convnets.models", "my_convnets.data"])
    done = convbench("sweep", file, "--results", tmp_path / "results", env=on_path(src), check=True)
    assert "2/2 completed" in done.stdout
    ids = {p.name for p in (tmp_path / "results").iterdir() if p.name != "sweeps"}
    config = yaml.safe_load((tmp_path / "results" / "sweeps" / "tiny" / "runs" / "0.yaml").read_text())
    assert config["imports"] == ["my_convnets.models", "my_convnets.data"]  # what each run's process imports

    other = sweep_file(tmp_path / "other.yaml", imports=["other_nets.models", "other_nets.data"])
    listed = convbench("sweep", other, "--dry-run", "--results", tmp_path / "results", env=on_path(src), check=True)
    other_ids = {line.split()[1] for line in listed.stdout.splitlines()[1:]}
    assert len(other_ids) == 2 and not other_ids & ids  # same names and values, another module: other runs


@pytest.mark.slurm
def test_slurm_array_tasks_import_the_module_from_the_working_directory(slurm_cluster, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from tests.helpers import wait_for_allocations

    work = write_package(tmp_path / "work", entry_points=None)  # the module sits in the submit directory only
    file = sweep_file(work / "tiny.yaml", imports=["my_convnets.models", "my_convnets.data"])
    results = tmp_path / "results"
    submitted = convbench("sweep", file, "--backend", "slurm", "--results", results, cluster=slurm_cluster, cwd=work)
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    (job,) = json.loads((results / "sweeps" / "tiny" / "jobs.json").read_text())
    wait_for_allocations(slurm_cluster, str(job["job_id"]), count=2, timeout=240)
    status = json.loads(
        convbench("sweep", "status", file, "--results", results, "--json", cluster=slurm_cluster, cwd=work).stdout
    )
    assert [r["status"] for r in status] == ["completed", "completed"], status


def test_every_bad_way_in_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    modules = {
        "broken": "import architectures\n\nx = nn.Conv2d(1, 1, 1)\n",
        "twice": (
            "import architectures\nfrom torch import nn\n\n"
            "architectures.register('resnet20', lambda num_classes, in_chans: nn.Identity(), "
            "family='x', input_size=(3, 32, 32))\n"
        ),
        "notnet": (
            "import architectures\n\n"
            "@architectures.register_model(input_size=(1, 8, 8))\n"
            "def notnet(num_classes=2, in_chans=1):\n    return 'a string'\n"
        ),
        "nokwargs": (
            "import architectures\nfrom torch import nn\n\n"
            "@architectures.register_model(input_size=(1, 8, 8))\ndef fixed(width=2):\n    return nn.Identity()\n"
        ),
    }
    for name, text in modules.items():
        (src / f"{name}.py").write_text(text)
    # in this process where the import registers nothing (a failed import leaves no module behind)
    monkeypatch.syspath_prepend(str(src))
    (tmp_path / "run.yaml").write_text("arch: lenet5\nimports: [broken]\n")
    for args, fragments in [
        (["list", "--import", "broken"], ["--import: cannot import broken", "NameError: name 'nn' is not defined"]),
        (
            ["list", "--import", "twice"],
            ["'resnet20' registered twice: by architectures.resnet:resnet20 and by twice:resnet20"],
        ),
        (["list", "--import", "nokwargs"], ["nokwargs:fixed", "it lacks num_classes and in_chans"]),
        (["train", "--config", str(tmp_path / "run.yaml")], [f"config file {tmp_path / 'run.yaml'}: imports: cannot"]),
    ]:
        code, out, err = in_process(capsys, *args)
        assert code == 2 and err.count("\n") == 1 and all(f in err for f in fragments), (args, err)
    # in a process of its own where a model does get registered, or entry points are read (once a process)
    env = on_path(src)
    one_error_line(convbench("summary", "notnet", "--import", "notnet", env=env), "returned str, not an nn.Module")
    nowhere = write_package(tmp_path / "site", entry_points="[convbench.architectures]\nghost = no_such_module\n")
    one_error_line(
        convbench("list", env=on_path(nowhere)),
        "entry point ghost = no_such_module (convbench.architectures, distribution my-convnets)",
        "points nowhere: no module no_such_module",
    )
    bad_data = write_package(
        tmp_path / "site2", entry_points="[convbench.datamodules]\nghostdata = my_convnets.data:NoSuchClass\n"
    )
    one_error_line(
        convbench("train", "--arch", "lenet5", "--data", "ghostdata", *QUICK, env=on_path(bad_data)),
        "points nowhere: my_convnets.data has no NoSuchClass",
    )
