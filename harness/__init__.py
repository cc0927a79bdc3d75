"""The harness: composes architectures and datamodules into training runs, benchmarks and sweeps."""
