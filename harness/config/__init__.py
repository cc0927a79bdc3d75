"""A run's configuration: the `TrainConfig` dataclasses (the schema), their validator, the dotted
keys, the recipes, and the checks on every file a user names. The names below are the public API
(`from harness.config import TrainConfig, resolve`); inside the project, import the module that
defines a name."""

from harness.config.recipes import OptimConfig
from harness.config.schema import ConfigError
from harness.config.train_config import TrainConfig, TrainerConfig, TransferConfig, WandbConfig, resolve

__all__ = ["ConfigError", "OptimConfig", "TrainConfig", "TrainerConfig", "TransferConfig", "WandbConfig", "resolve"]
