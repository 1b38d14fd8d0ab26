"""Build environments: VMAS scenarios by name, or any TorchRL multi-agent env."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from torchrl.envs import EnvBase, RewardSum, StepCounter, TransformedEnv
from torchrl.envs.utils import MarlGroupMapType

from mappo_torchrl.config.checks import check_int, first_line
from mappo_torchrl.config.schema import MAX_NUM_ENVS, MAX_SEED, EnvConfig
from mappo_torchrl.envs.keys import all_group_keys
from mappo_torchrl.envs.partial import hide_goal_after
from mappo_torchrl.envs.resets import LoopResetVmasEnv
from mappo_torchrl.envs.scenarios import SCENARIO_DEFAULTS, check_scenario, check_scenario_kwargs

if TYPE_CHECKING:
    from mappo_torchrl.config import RunConfig

#: What each ``env.group_map`` choice (:data:`~mappo_torchrl.config.schema.GROUP_MAPS`)
#: passes to VMAS; ``None`` is VMAS's own grouping by agent-name prefix.
GROUP_MAP_TYPES: dict[str, MarlGroupMapType | None] = {
    "by_name": None,
    "all_in_one_group": MarlGroupMapType.ALL_IN_ONE_GROUP,
    "one_group_per_agent": MarlGroupMapType.ONE_GROUP_PER_AGENT,
}


def make_env(
    scenario: str = EnvConfig.scenario,
    *,
    num_envs: int = EnvConfig.num_envs,
    max_steps: int = EnvConfig.max_steps,
    continuous_actions: bool = EnvConfig.continuous_actions,
    truncate_at_max_steps: bool = EnvConfig.truncate_at_max_steps,
    device: str | torch.device = "cpu",
    seed: int | None = None,
    scenario_kwargs: Mapping[str, Any] | None = None,
    group_map: Any = None,
) -> TransformedEnv:
    """A VMAS scenario as a TorchRL env that tracks each agent's episode return.

    Args:
        scenario: VMAS scenario name; an unknown name raises a ``ValueError``
            listing the valid ones and suggesting the closest.
        num_envs: vectorised environments simulated together.
        max_steps: episode length.
        continuous_actions: continuous forces if true, discrete actions if false.
        truncate_at_max_steps: end episodes at ``max_steps`` with ``truncated``
            (TorchRL's :class:`~torchrl.envs.transforms.StepCounter`), so that GAE
            bootstraps from the last state's value. If false, VMAS's own limit
            is used, which sets ``terminated``: the time limit then looks like
            a terminal state and is not bootstrapped.
        device: simulation device.
        seed: environment seed (``None`` leaves VMAS unseeded).
        scenario_kwargs: passed to the scenario (``n_agents``, ...), on top of
            :data:`~mappo_torchrl.envs.scenarios.SCENARIO_DEFAULTS`.
        group_map: a :obj:`~torchrl.envs.MarlGroupMapType` or a dict
            ``{group: [agent names]}``; VMAS groups agents by name by default.

    Example:
        >>> from mappo_torchrl.envs import make_env
        >>> env = make_env("navigation", num_envs=4, seed=0)
        >>> env.group_map
        {'agents': ['agent_0', 'agent_1', 'agent_2']}
        >>> env.rollout(3)["next", "agents", "episode_reward"].shape
        torch.Size([4, 3, 3, 1])
    """
    if not isinstance(scenario, str):
        raise TypeError(f"scenario={scenario!r}: must be a VMAS scenario name (a str)")
    check_scenario(scenario)
    check_int("num_envs", num_envs, low=1, high=MAX_NUM_ENVS)
    check_int("max_steps", max_steps, low=1)
    if seed is not None:
        check_int("seed", seed, low=0, high=MAX_SEED)
    if scenario_kwargs is not None and not isinstance(scenario_kwargs, Mapping):
        raise TypeError(f"scenario_kwargs={scenario_kwargs!r}: must be a mapping or None")
    check_scenario_kwargs(scenario, scenario_kwargs or {})
    # VMAS clamps actions to their bounds: an unbounded action distribution
    # (model.action_dist=normal) relies on it; a no-op for bounded ones.
    kwargs = {
        "clamp_actions": True,
        **SCENARIO_DEFAULTS.get(scenario, {}),
        **(scenario_kwargs or {}),
    }
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            # VmasEnv with cheaper partial resets (the same states, see envs/resets.py).
            base = LoopResetVmasEnv(
                scenario=scenario,
                num_envs=num_envs,
                continuous_actions=continuous_actions,
                max_steps=None if truncate_at_max_steps else max_steps,
                device=device,
                seed=seed,
                group_map=group_map,
                **kwargs,
            )
        except (AssertionError, TypeError, ValueError, KeyError, IndexError) as err:
            raise ValueError(
                f"scenario_kwargs={dict(scenario_kwargs or {})!r}: scenario {scenario!r} cannot "
                f"be built with them ({first_line(err)})"
            ) from None
    for warning in caught:  # pass on every warning but the one check_scenario_kwargs covers
        if "passed but not used by the scenario" in str(warning.message):
            raise ValueError(
                f"scenario_kwargs={dict(scenario_kwargs or {})!r}: scenario {scenario!r} "
                f"does not use them ({warning.message})"
            )
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    env = track_episode_returns(base)
    if truncate_at_max_steps:
        env.append_transform(StepCounter(max_steps=max_steps))
    return env


def track_episode_returns(env: EnvBase) -> TransformedEnv:
    """Add a :class:`~torchrl.envs.transforms.RewardSum` per group, writing ``episode_reward``.

    This is all the pipeline needs from an env beyond TorchRL's multi-agent
    layout, so any TorchRL multi-agent env (PettingZoo, SMACv2, MeltingPot,
    your own) can be wrapped with it and trained without other changes.

    Example:
        >>> from torchrl.envs.libs.vmas import VmasEnv
        >>> from mappo_torchrl.envs import track_episode_returns
        >>> env = track_episode_returns(VmasEnv("navigation", num_envs=2, n_agents=2))
        >>> env.rollout(3)["next", "agents", "episode_reward"].shape
        torch.Size([2, 3, 2, 1])
    """
    keys = all_group_keys(env)
    rewards = list(dict.fromkeys(k.reward for k in keys.values()))
    episode_rewards = list(dict.fromkeys(k.episode_reward for k in keys.values()))
    return TransformedEnv(env, RewardSum(in_keys=rewards, out_keys=episode_rewards))


def make_env_from_config(
    config: RunConfig, *, seed: int | None = None, num_envs: int | None = None
) -> EnvBase:
    """The VMAS env ``config.env`` describes, on ``config.device``.

    This is the env :class:`~mappo_torchrl.training.Trainer` trains on and
    evaluation plays on.

    Args:
        config: the run's configuration.
        seed: the env seed; ``config.seed`` if ``None``.
        num_envs: vectorised envs; ``config.env.num_envs`` if ``None`` (evaluation
            envs run one episode per env).
    """
    env = make_env(
        config.env.scenario,
        num_envs=config.env.num_envs if num_envs is None else num_envs,
        max_steps=config.env.max_steps,
        continuous_actions=config.env.continuous_actions,
        truncate_at_max_steps=config.env.truncate_at_max_steps,
        device=config.device,
        seed=config.seed if seed is None else seed,
        scenario_kwargs=config.env.scenario_kwargs,
        group_map=GROUP_MAP_TYPES[config.env.group_map],
    )
    if config.env.goal_visible_steps > 0:
        all_goals = bool(config.env.scenario_kwargs.get("observe_all_goals", False))
        env = hide_goal_after(env, config.env.goal_visible_steps, observe_all_goals=all_goals)
    return env
