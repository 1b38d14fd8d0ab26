"""Run configuration: one dataclass per concern, with YAML/JSON I/O and overrides."""

from mappo_torchrl.config.io import (
    apply_overrides,
    field_docs,
    flatten,
    from_dict,
    iter_options,
    load_config,
    read_config_file,
    save_config,
    to_dict,
)
from mappo_torchrl.config.presets import PRESETS, apply_preset
from mappo_torchrl.config.schema import (
    CollectorConfig,
    ConfigError,
    EnvConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    PerfConfig,
    RunConfig,
)

__all__ = [
    "CollectorConfig",
    "ConfigError",
    "EnvConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "PerfConfig",
    "PRESETS",
    "RunConfig",
    "apply_overrides",
    "apply_preset",
    "field_docs",
    "flatten",
    "from_dict",
    "iter_options",
    "load_config",
    "read_config_file",
    "save_config",
    "to_dict",
]
