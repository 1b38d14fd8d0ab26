"""Run configuration: one dataclass per concern, with YAML/JSON I/O and overrides."""

from mappo_torchrl.config.io import (
    apply_overrides,
    field_docs,
    from_dict,
    iter_options,
    load_config,
    save_config,
    to_dict,
)
from mappo_torchrl.config.schema import (
    CheckpointConfig,
    CollectorConfig,
    ConfigError,
    EnvConfig,
    EvalConfig,
    LoggerConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
)

__all__ = [
    "CheckpointConfig",
    "CollectorConfig",
    "ConfigError",
    "EnvConfig",
    "EvalConfig",
    "LoggerConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "RunConfig",
    "apply_overrides",
    "field_docs",
    "from_dict",
    "iter_options",
    "load_config",
    "save_config",
    "to_dict",
]
