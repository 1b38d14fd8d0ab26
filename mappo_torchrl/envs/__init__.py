"""Environments: VMAS scenarios by name, and the key layout of any multi-agent env."""

from mappo_torchrl.envs.factory import make_env, track_episode_returns
from mappo_torchrl.envs.groups import GroupKeys, all_group_keys, group_keys
from mappo_torchrl.envs.scenarios import SCENARIO_DEFAULTS, check_scenario, vmas_scenarios

__all__ = [
    "GroupKeys",
    "SCENARIO_DEFAULTS",
    "all_group_keys",
    "check_scenario",
    "group_keys",
    "make_env",
    "track_episode_returns",
    "vmas_scenarios",
]
