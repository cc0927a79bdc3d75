"""Shared pytest configuration for the convbench test suite."""

import os
from collections.abc import Iterator

import pytest

from tests.slurm_fixtures import slurm_cluster, slurm_cluster_2n, slurm_cluster_arrays  # noqa: F401  (local Slurm clusters)


@pytest.fixture(autouse=True)
def _restore_environment() -> Iterator[None]:
    """Each test sees the environment the session started with: an in-process DDP fit sets MASTER_ADDR
    and MASTER_PORT in os.environ (Lightning does), and every later subprocess, sbatch job and DDP
    launch would inherit that world and meet at a stale address or port."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)
