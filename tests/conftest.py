"""Shared pytest configuration for the convbench test suite."""

from tests.slurm_fixtures import slurm_cluster, slurm_cluster_2n  # noqa: F401  (session fixtures: local Slurm clusters)
