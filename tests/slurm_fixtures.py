"""Session fixture `slurm_cluster`: the single-node Slurm cluster of slurm/local-cluster.sh.

Registered in tests/conftest.py. A test that needs Slurm takes `slurm_cluster` and passes
`slurm_cluster.env` to every subprocess (sbatch, srun, sacct, ...): that env carries SLURM_CONF,
without which the clients look for /etc/slurm/slurm.conf and fail.

The fixture starts the cluster only if it is not already running, and stops it at the end only
if it started it, so a cluster a developer brought up by hand survives the test run.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "slurm" / "local-cluster.sh"
DEFAULT_STATE_DIR = "/tmp/convbench-cluster"

# Daemons live in /usr/sbin, which is not on every PATH.
_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
_REQUIRED = (
    "munged", "mungekey", "mariadbd", "mariadb-install-db", "slurmdbd", "slurmctld", "slurmd",
    "sbatch", "srun", "squeue", "sinfo", "sacct", "sacctmgr", "scontrol", "scancel",
)  # fmt: skip
# Variables of an enclosing Slurm job (tests run inside a job on a real cluster) would make
# sbatch/srun talk about the wrong job; the local cluster gets a clean slate.
_JOB_ENV_PREFIXES = ("SLURM_", "SBATCH_", "SRUN_", "SALLOC_", "SQUEUE_", "SACCT_")


@dataclasses.dataclass(frozen=True)
class SlurmCluster:
    state_dir: Path
    env: dict[str, str]  # pass to subprocesses: has SLURM_CONF, CONVBENCH_CLUSTER_DIR, PATH
    started_here: bool  # True if the fixture ran `up` (and will run `down`)

    @property
    def slurm_conf(self) -> Path:
        return Path(self.env["SLURM_CONF"])

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "log"

    def run(self, *cmd: str | os.PathLike, timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
        """Run a command against this cluster; never raises on a non-zero exit."""
        return subprocess.run(
            [str(c) for c in cmd], env=self.env, capture_output=True, text=True, timeout=timeout, **kwargs
        )

    def script(self, action: str, timeout: float = 180) -> subprocess.CompletedProcess:
        """slurm/local-cluster.sh ACTION (up, down, status, env)."""
        return self.run(SCRIPT, action, timeout=timeout)

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of every daemon log, for failure messages."""
        parts = []
        for log in sorted(self.log_dir.glob("*.log")):
            text = log.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {log} ---\n" + "\n".join(text))
        return "\n".join(parts) or f"(no logs under {self.log_dir})"


def _cluster_env(state_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_JOB_ENV_PREFIXES)}
    env.update(
        CONVBENCH_CLUSTER_DIR=str(state_dir),
        SLURM_CONF=str(state_dir / "etc" / "slurm.conf"),
        PATH=_PATH,
    )
    return env


def _describe(proc: subprocess.CompletedProcess) -> str:
    return f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    missing = [b for b in _REQUIRED if shutil.which(b, path=_PATH) is None]
    if missing:
        pytest.skip(
            f"Slurm is not installed (missing {', '.join(missing)}); "
            "`make system-packages` installs slurm-wlm munge slurmdbd mariadb-server"
        )
    if os.geteuid() != 0:
        pytest.skip("slurm/local-cluster.sh must run as root (it starts munged, mariadbd and the Slurm daemons)")

    state_dir = Path(os.environ.get("CONVBENCH_CLUSTER_DIR", DEFAULT_STATE_DIR)).resolve()
    env = _cluster_env(state_dir)
    already_running = SlurmCluster(state_dir, env, False).script("status").returncode == 0
    cluster = SlurmCluster(state_dir, env, started_here=not already_running)

    if not already_running:
        up = cluster.script("up")
        if up.returncode != 0:
            # The binaries are there, so a cluster that does not come up is a bug, not a skip.
            logs = cluster.log_tail()
            cluster.script("down")  # stop the daemons this half-finished `up` did start
            pytest.fail(f"slurm/local-cluster.sh up failed: {_describe(up)}\n{logs}", pytrace=False)

    yield cluster

    if cluster.started_here:
        down = cluster.script("down")
        status = cluster.script("status")
        if down.returncode != 0 or status.returncode == 0 or "running" in status.stdout:
            pytest.fail(
                f"slurm/local-cluster.sh down left the cluster running: {_describe(down)}\n"
                f"status: {_describe(status)}",
                pytrace=False,
            )
