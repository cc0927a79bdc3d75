"""Sweeps: W&B-style sweep files expanded into runs, run locally or on SLURM (see harness.sweep.spec)."""
