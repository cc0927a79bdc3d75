"""Shared pytest configuration for the convbench test suite."""

from tests.slurm_fixtures import slurm_cluster  # noqa: F401  (session fixture: local Slurm cluster)
