"""Turning a batch of rollouts and loss outputs into per-iteration numbers."""

from __future__ import annotations

import torch
from tensordict import TensorDictBase

from mappo_torchrl.envs.keys import GroupKeys, key_tuple

#: One iteration's numbers by metric name (``train/episode_return``, ``time/fps``...).
Metrics = dict[str, float]

#: Loss outputs averaged over an iteration's minibatches.
LOSS_METRICS = (
    "loss_objective",
    "loss_critic",
    "loss_entropy",
    "entropy",
    "kl_approx",
    "clip_fraction",
    "value_clip_fraction",
    "explained_variance",
)


def finished_episode_returns(batch: TensorDictBase, keys: GroupKeys) -> torch.Tensor:
    """Per-agent returns of the episodes that ended in ``batch``, flattened.

    ``batch`` is a collector batch. An agent's episode return is the sum of its
    rewards over the team's episode (tracked by
    :class:`~torchrl.envs.transforms.RewardSum`); each finished episode
    contributes one value per agent. Episodes end with the team's done flag
    (VMAS, PettingZoo: shape ``[..., 1]`` at the root); envs with only
    per-agent flags use those.

    Example:
        >>> from mappo_torchrl.envs import group_keys, make_env
        >>> from mappo_torchrl.training import finished_episode_returns
        >>> env = make_env("navigation", num_envs=2, max_steps=5)
        >>> batch = env.rollout(5)  # every env finishes one episode at step 5
        >>> finished_episode_returns(batch, group_keys(env, "agents")).shape  # 2 envs x 3 agents
        torch.Size([6])
    """
    returns = batch.get(("next", *key_tuple(keys.episode_reward)))
    done = batch.get(("next", *key_tuple(keys.team_done or keys.done)))
    if done.ndim < returns.ndim:  # a team flag: the same for every agent
        done = done.unsqueeze(-2)
    return returns[done.expand_as(returns)]


def mean_episode_return(batch: TensorDictBase, groups: list[GroupKeys]) -> torch.Tensor:
    """Mean per-agent episode return over all groups' finished episodes (NaN if none).

    This is the ``train/episode_return`` metric.
    """
    returns = torch.cat([finished_episode_returns(batch, keys) for keys in groups])
    if returns.numel() == 0:
        return torch.tensor(float("nan"), device=returns.device)
    return returns.mean()
