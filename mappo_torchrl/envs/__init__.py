"""Environments: VMAS scenarios by name, and the key layout of any multi-agent env.

The names below are imported on first use (PEP 562), so that reading the
scenario catalogue (:mod:`mappo_torchrl.envs.catalog`) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_MODULES = {
    "make_env": "factory",
    "make_env_from_config": "factory",
    "track_episode_returns": "factory",
    "GroupKeys": "keys",
    "all_group_keys": "keys",
    "group_keys": "keys",
    "SCENARIO_DEFAULTS": "scenarios",
    "check_scenario": "scenarios",
    "vmas_scenarios": "scenarios",
}

__all__ = [
    "GroupKeys",
    "SCENARIO_DEFAULTS",
    "all_group_keys",
    "check_scenario",
    "group_keys",
    "make_env",
    "make_env_from_config",
    "track_episode_returns",
    "vmas_scenarios",
]

if TYPE_CHECKING:
    from mappo_torchrl.envs.factory import (
        make_env,
        make_env_from_config,
        track_episode_returns,
    )
    from mappo_torchrl.envs.keys import GroupKeys, all_group_keys, group_keys
    from mappo_torchrl.envs.scenarios import SCENARIO_DEFAULTS, check_scenario, vmas_scenarios


def __getattr__(name: str) -> Any:
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_MODULES[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
