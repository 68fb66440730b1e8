"""Typed run configuration: the schema (:mod:`.schema`) and reading YAML with overrides (:mod:`.loading`)."""

from lossensemble.config.loading import (
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
    read_yaml,
    save_config,
)
from lossensemble.config.schema import (
    CompressionConfig,
    Config,
    ConfigError,
    DataConfig,
    EvalConfig,
    LearningRates,
    LossConfig,
    ModelConfig,
    TrainConfig,
    WeightingConfig,
)

__all__ = [
    "CompressionConfig",
    "Config",
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "LearningRates",
    "LossConfig",
    "ModelConfig",
    "TrainConfig",
    "WeightingConfig",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "read_yaml",
    "save_config",
]
