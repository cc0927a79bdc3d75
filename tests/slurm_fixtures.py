"""Session fixtures `slurm_cluster` (the single-node Slurm cluster of slurm/local-cluster.sh) and
`slurm_cluster_2n` (its two-node cluster, `up --nodes 2`: node1 and node2 in their own network
namespaces).

Registered in tests/conftest.py. A test that needs Slurm takes a fixture and passes its `.env` to
every subprocess (sbatch, srun, sacct, ...): that env carries SLURM_CONF, without which the clients
look for /etc/slurm/slurm.conf and fail.

The two clusters may be up at once: the two-node one lives in `<CONVBENCH_CLUSTER_DIR>-2n` with
every port (slurmctld, slurmd, slurmdbd, mariadb) PORT_OFFSET_2N above the single-node one's and
its own cluster name. Each fixture starts its cluster only if it is not already running, and
stops it at the end only if it started it, so a cluster a developer brought up by hand survives.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import REPO

SCRIPT = REPO / "slurm" / "local-cluster.sh"
DEFAULT_STATE_DIR = "/tmp/convbench-cluster"
PORT_OFFSET_2N = 100
PORT_OFFSET_ARRAYS = 200  # slurm_cluster_arrays
_PORTS = {  # the knobs of slurm/local-cluster.sh and their defaults
    "CONVBENCH_SLURMCTLD_PORT": 6817, "CONVBENCH_SLURMD_PORT": 6818, "CONVBENCH_SLURMDBD_PORT": 6819,
    "CONVBENCH_CLUSTER_DB_PORT": 3316,
}  # fmt: skip

# Daemons live in /usr/sbin, which is not on every PATH.
_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
_REQUIRED = (
    "munged", "mungekey", "mariadbd", "mariadb-install-db", "slurmdbd", "slurmctld", "slurmd",
    "sbatch", "srun", "squeue", "sinfo", "sacct", "sacctmgr", "scontrol", "scancel",
)  # fmt: skip
# Variables of an enclosing Slurm job (tests run inside a job on a real cluster) would make
# sbatch/srun talk about the wrong job; the local cluster gets a clean slate.
_JOB_ENV_PREFIXES = ("SLURM_", "SBATCH_", "SRUN_", "SALLOC_", "SQUEUE_", "SACCT_")
# torch.distributed's env:// world, set in os.environ by any in-process DDP test before (Lightning does):
# sbatch exports it, and a job's ranks would meet at that address (127.0.0.1) instead of their first node
_TORCH_WORLD = ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK")


@dataclasses.dataclass(frozen=True)
class SlurmCluster:
    state_dir: Path
    env: dict[str, str]  # pass to subprocesses: has SLURM_CONF, CONVBENCH_CLUSTER_DIR, PATH
    started_here: bool  # True if the fixture ran `up` (and will run `down`)
    nodes: int = 1

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

    def script(self, action: str, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        """slurm/local-cluster.sh ACTION (up, down, status, env)."""
        return self.run(SCRIPT, action, *args, timeout=timeout)

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of every daemon log, for failure messages."""
        parts = []
        for log in sorted(self.log_dir.glob("*.log")):
            text = log.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {log} ---\n" + "\n".join(text))
        return "\n".join(parts) or f"(no logs under {self.log_dir})"


def _cluster_env(state_dir: Path, **knobs: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_JOB_ENV_PREFIXES) and k not in _TORCH_WORLD}
    env.update(
        CONVBENCH_CLUSTER_DIR=str(state_dir),
        SLURM_CONF=str(state_dir / "etc" / "slurm.conf"),
        PATH=_PATH,
        **knobs,
    )
    return env


def _describe(proc: subprocess.CompletedProcess) -> str:
    return f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"


def _session_cluster(state_dir: Path, env: dict[str, str], nodes: int) -> Iterator[SlurmCluster]:
    missing = [b for b in _REQUIRED if shutil.which(b, path=_PATH) is None]
    if missing:
        pytest.skip(
            f"Slurm is not installed (missing {', '.join(missing)}); "
            "`make system-packages` installs slurm-wlm munge slurmdbd mariadb-server"
        )
    if os.geteuid() != 0:
        pytest.skip("slurm/local-cluster.sh must run as root (it starts munged, mariadbd and the Slurm daemons)")

    already_running = SlurmCluster(state_dir, env, False, nodes).script("status").returncode == 0
    cluster = SlurmCluster(state_dir, env, started_here=not already_running, nodes=nodes)

    if not already_running:
        up = cluster.script("up", *(["--nodes", str(nodes)] if nodes > 1 else []))
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
                f"slurm/local-cluster.sh down left the cluster running: {_describe(down)}\nstatus: {_describe(status)}",
                pytrace=False,
            )


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    state_dir = Path(os.environ.get("CONVBENCH_CLUSTER_DIR", DEFAULT_STATE_DIR)).resolve()
    yield from _session_cluster(state_dir, _cluster_env(state_dir), nodes=1)


@pytest.fixture(scope="session")
def slurm_cluster_2n() -> Iterator[SlurmCluster]:
    """node1 and node2, one CPU set shared, a network namespace each (see slurm/local-cluster.sh)."""
    state_dir = Path(os.environ.get("CONVBENCH_CLUSTER_DIR", DEFAULT_STATE_DIR) + "-2n").resolve()
    ports = {k: str(int(os.environ.get(k, default)) + PORT_OFFSET_2N) for k, default in _PORTS.items()}
    name = os.environ.get("CONVBENCH_CLUSTER_NAME", "convbench") + "2n"
    yield from _session_cluster(state_dir, _cluster_env(state_dir, CONVBENCH_CLUSTER_NAME=name, **ports), nodes=2)


@pytest.fixture(scope="module")
def slurm_cluster_arrays() -> Iterator[SlurmCluster]:
    """A fresh single-node cluster for one module's tests, which lower MaxArraySize with `scontrol reconfigure`
    for the rest of the cluster's life, each test below the one before it (the module checks its order).
    Raising it back was not enough here (Slurm 22.05): arrays stayed rejected ("Invalid job array
    specification") on that slurmctld, and on a shared cluster every later test's arrays with them."""
    state_dir = Path(os.environ.get("CONVBENCH_CLUSTER_DIR", DEFAULT_STATE_DIR) + "-arrays").resolve()
    ports = {k: str(int(os.environ.get(k, default)) + PORT_OFFSET_ARRAYS) for k, default in _PORTS.items()}
    name = os.environ.get("CONVBENCH_CLUSTER_NAME", "convbench") + "arrays"
    shutil.rmtree(state_dir, ignore_errors=True)  # fresh: no saved state from an earlier session
    yield from _session_cluster(state_dir, _cluster_env(state_dir, CONVBENCH_CLUSTER_NAME=name, **ports), nodes=1)
