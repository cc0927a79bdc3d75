"""One training run's pipeline: `run.train(config)` builds the data module, the model, the
LightningModule (`module`), its epoch metrics (`metrics`), the callbacks (`callbacks`, `preemption`)
and the logging interval (`cadence`), then fits, tests and records the run."""
