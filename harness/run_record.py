"""A run's durable record: its directory under the results root, the resolved config, the W&B run
id (so a resumed run continues the same W&B run), and ``result.json``, written atomically once the
run has finished."""
from __future__ import annotations

import json
import os
import platform
import socket
import sys
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

RESULT = "result.json"
STATUSES = ("completed", "diverged", "failed")


def write_atomic(path: Path, text: str) -> None:
    """Temp file in the same directory + rename: readers see the old file or the new, never half."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("torch", "pytorch-lightning", "torchmetrics", "albumentations", "wandb", "convbench"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


@dataclass
class RunDir:
    path: Path

    @classmethod
    def create(cls, results: str, run_id: str) -> RunDir:
        path = Path(results) / run_id
        path.mkdir(parents=True, exist_ok=True)
        return cls(path)

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def last_checkpoint(self) -> Path | None:
        p = self.checkpoints / "last.ckpt"
        return p if p.is_file() else None

    @property
    def result_path(self) -> Path:
        return self.path / RESULT

    def result(self) -> dict[str, Any] | None:
        return json.loads(self.result_path.read_text()) if self.result_path.is_file() else None

    def write_config(self, config: dict[str, Any]) -> None:
        write_atomic(self.path / "config.yaml", yaml.safe_dump(config, sort_keys=False))

    def wandb_id(self, new_id: str) -> str:
        """The W&B run id of this run: created once, reused on every resume and requeue."""
        p = self.path / "wandb_id"
        if p.is_file():
            return p.read_text().strip()
        write_atomic(p, new_id)
        return new_id

    def set_wandb_id(self, wandb_id: str) -> None:
        """Adopt an id given from outside (a `wandb agent` run's): the sweep server waits for that run."""
        write_atomic(self.path / "wandb_id", wandb_id)

    def write_result(self, result: dict[str, Any]) -> None:
        assert result["status"] in STATUSES, result["status"]
        result = {**result, "versions": versions(), "host": socket.gethostname(), "argv": sys.argv}
        write_atomic(self.result_path, json.dumps(result, indent=1, default=str) + "\n")
