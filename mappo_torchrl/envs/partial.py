"""Partial observability from any env: features that vanish after the first steps of an episode.

:class:`HideAfterSteps` is a TorchRL transform; :func:`hide_goal_after` applies it
to VMAS navigation, whose goal then shows only at the start of each episode.
An agent that remembers where the goal was (relative to where it stood) can
still reach it; one without memory cannot.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tensordict import TensorDictBase
from tensordict.utils import NestedKey
from torchrl.envs import StepCounter, Transform, TransformedEnv

from mappo_torchrl.envs.keys import all_group_keys


class HideAfterSteps(Transform):
    """Zero some features of the observations from a given step of each episode on.

    The step comes from :class:`~torchrl.envs.transforms.StepCounter`'s
    ``step_count`` entry (the env must count steps before this transform), so
    the transform holds no state of its own and a checkpointed env resumes
    exactly.

    Args:
        in_keys: observation entries, ``[*B, (n_agents,) features]``.
        features: indices of the last dimension to hide.
        visible_steps: observations of steps ``0 .. visible_steps - 1`` are left
            whole; later ones have ``features`` set to zero.
        step_count_key: where the step count is.

    Example:
        >>> from torchrl.envs import StepCounter
        >>> from mappo_torchrl.envs import make_env
        >>> from mappo_torchrl.envs.partial import HideAfterSteps
        >>> env = make_env("navigation", num_envs=2, max_steps=10, seed=0)
        >>> env = env.append_transform(
        ...     HideAfterSteps([("agents", "observation")], features=[4, 5], visible_steps=2)
        ... )
        >>> goal = env.rollout(4)["agents", "observation"][0, :, 0, 4:6]  # env 0, agent 0
        >>> (goal[:2] != 0).all().item(), (goal[2:] == 0).all().item()
        (True, True)
    """

    def __init__(
        self,
        in_keys: Sequence[NestedKey],
        *,
        features: Sequence[int],
        visible_steps: int,
        step_count_key: NestedKey = "step_count",
    ) -> None:
        if visible_steps < 0:
            raise ValueError(f"visible_steps={visible_steps}: must be >= 0")
        super().__init__(in_keys=list(in_keys), out_keys=list(in_keys))
        self.features = list(features)
        self.visible_steps = visible_steps
        self.step_count_key = step_count_key

    def _hide(self, data: TensorDictBase) -> TensorDictBase:
        steps = data.get(self.step_count_key)  # [*B, 1]
        hidden = steps >= self.visible_steps
        for key in self.in_keys:
            obs = data.get(key)
            mask = torch.ones(obs.shape[-1], dtype=torch.bool, device=obs.device)
            mask[self.features] = False
            extra = obs.ndim - hidden.ndim  # agent dims between the batch and the features
            gone = hidden.reshape(*hidden.shape[:-1], *([1] * extra), 1)
            data.set(key, obs * (mask | ~gone).to(obs.dtype))
        return data

    def _step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> TensorDictBase:
        return self._hide(next_tensordict)

    def _reset(
        self, tensordict: TensorDictBase, tensordict_reset: TensorDictBase
    ) -> TensorDictBase:
        return self._hide(tensordict_reset)


def hide_goal_after(env: TransformedEnv, visible_steps: int, *, observe_all_goals: bool = False):
    """VMAS navigation whose goal-relative entries vanish after ``visible_steps`` steps.

    Navigation's observation is ``[position (2), velocity (2), position - goal
    (2, or 2 per agent with observe_all_goals), lidar...]``. Adds a
    :class:`~torchrl.envs.transforms.StepCounter` if the env does not count
    steps, then :class:`HideAfterSteps` on every group's observation.

    Example:
        >>> from mappo_torchrl.envs import make_env
        >>> from mappo_torchrl.envs.partial import hide_goal_after
        >>> env = hide_goal_after(make_env("navigation", num_envs=2, seed=0), 1)
        >>> env.rollout(3)["agents", "observation"][0, 1:, :, 4:6].abs().sum().item()
        0.0
    """
    if "step_count" not in env.full_observation_spec.keys():
        env.append_transform(StepCounter())
    n_goals = sum(len(agents) for agents in env.group_map.values()) if observe_all_goals else 1
    obs_keys = [keys.observation for keys in all_group_keys(env).values()]
    hide = HideAfterSteps(obs_keys, features=range(4, 4 + 2 * n_goals), visible_steps=visible_steps)
    return env.append_transform(hide)
