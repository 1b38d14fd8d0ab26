"""Where each agent group's data lives in a TorchRL multi-agent tensordict.

TorchRL envs group agents (``env.group_map``) and nest per-agent entries under
the group name: ``("agents", "observation")``, ``("agents", "action")``. Team
signals may sit at the root instead (VMAS ``done`` has shape ``[B, 1]``).
:class:`GroupKeys` resolves all of that once, from the env's specs, so that no
other module hard-codes a key.
"""

from __future__ import annotations

from dataclasses import dataclass

from tensordict.utils import NestedKey
from torchrl.envs import EnvBase


@dataclass(frozen=True)
class GroupKeys:
    """Tensordict keys of one agent group.

    Attributes:
        group: the group name, e.g. ``"agents"``.
        n_agents: number of agents in the group.
        observation: per-agent observation, shape ``[*B, n_agents, obs_dim]``.
        action: per-agent action.
        reward: the group's reward (per agent, or a team reward at the root).
        done: done flag (per agent, or the team's at the root).
        terminated: terminated flag, laid out like ``done``.
        team_done: the team's done flag at the root, or ``None`` if the env has
            only per-agent flags. A team episode ends when it is set.
        episode_reward: running episode return, written by
            :class:`~torchrl.envs.transforms.RewardSum`.
        state: global state at the root, if the env provides one, else ``None``.
        action_mask: boolean mask of available discrete actions, or ``None``.
        agent_mask: boolean "agent is active" mask, shape ``[*B, n_agents]``, or ``None``.
    """

    group: str
    n_agents: int
    observation: NestedKey
    action: NestedKey
    reward: NestedKey
    done: NestedKey
    terminated: NestedKey
    team_done: NestedKey | None
    episode_reward: NestedKey
    state: NestedKey | None = None
    action_mask: NestedKey | None = None
    agent_mask: NestedKey | None = None

    # Keys the policy, critic and loss write.
    @property
    def log_prob(self) -> NestedKey:
        """``(group, "action_log_prob")``: the log-probability the actor writes."""
        return (self.group, "action_log_prob")

    @property
    def proximal_log_prob(self) -> NestedKey:
        """``(group, "proximal_log_prob")``: the log-probability of the stored action under
        the weights an update starts from, when they are not the ones that collected it."""
        return (self.group, "proximal_log_prob")

    @property
    def state_value(self) -> NestedKey:
        """``(group, "state_value")``: the value the critic writes, one per agent."""
        return (self.group, "state_value")

    @property
    def normalized_value(self) -> NestedKey:
        """``(group, "state_value_normalized")``: the critic network's own output when a
        value normaliser is used (``state_value`` is then its de-normalised form)."""
        return (self.group, "state_value_normalized")

    @property
    def advantage(self) -> NestedKey:
        """``(group, "advantage")``: the advantage GAE writes, one per agent."""
        return (self.group, "advantage")

    @property
    def value_target(self) -> NestedKey:
        """``(group, "value_target")``: the critic's regression target GAE writes."""
        return (self.group, "value_target")


def group_keys(env: EnvBase, group: str) -> GroupKeys:
    """Resolve the keys of ``group`` from ``env``'s specs.

    Raises:
        ValueError: if the group is unknown or has no ``observation`` entry.

    Example:
        >>> from mappo_torchrl.envs import group_keys, make_env
        >>> keys = group_keys(make_env("navigation", num_envs=2), "agents")
        >>> keys.observation, keys.action, keys.n_agents
        (('agents', 'observation'), ('agents', 'action'), 3)
        >>> keys.done  # VMAS's done flag is the team's, at the root
        'done'
    """
    group_map = env.group_map
    if group not in group_map:
        raise ValueError(f"group={group!r}: not in the env's groups {sorted(group_map)}")
    observation_keys = set(env.full_observation_spec.keys(True, True))
    reward_keys = [key_tuple(k) for k in env.reward_keys]
    done_keys = [key_tuple(k) for k in env.done_keys]
    action_keys = [key_tuple(k) for k in env.action_keys]

    observation = (group, "observation")
    if observation not in observation_keys:
        raise ValueError(
            f"group {group!r} has no {observation} entry; the pipeline needs one per group"
        )
    action = next((k for k in action_keys if k[0] == group), None)
    if action is None:
        raise ValueError(f"group {group!r} has no action entry among {action_keys}")
    reward = _group_or_root(reward_keys, group, "reward")
    done = _group_or_root(done_keys, group, "done")
    terminated = _group_or_root(done_keys, group, "terminated", fallback=done)
    return GroupKeys(
        group=group,
        n_agents=len(group_map[group]),
        observation=observation,
        action=action,
        reward=reward,
        done=done,
        terminated=terminated,
        team_done="done" if ("done",) in done_keys else None,
        episode_reward=(*key_tuple(reward)[:-1], "episode_reward"),
        state="state" if "state" in observation_keys else None,
        action_mask=(group, "action_mask") if (group, "action_mask") in observation_keys else None,
        agent_mask=(group, "mask") if (group, "mask") in observation_keys else None,
    )


def all_group_keys(env: EnvBase) -> dict[str, GroupKeys]:
    """:func:`group_keys` for every group of ``env``, in ``env.group_map`` order.

    Example:
        >>> from mappo_torchrl.envs import all_group_keys, make_env
        >>> keys = all_group_keys(make_env("simple_tag", num_envs=2))
        >>> {group: k.n_agents for group, k in keys.items()}
        {'adversary': 3, 'agent': 1}
    """
    return {group: group_keys(env, group) for group in env.group_map}


def key_tuple(key: NestedKey) -> tuple[str, ...]:
    """``key`` as a tuple, whether it is a plain string or already nested.

    Example:
        >>> from mappo_torchrl.envs.keys import key_tuple
        >>> key_tuple("done"), key_tuple(("agents", "reward"))
        (('done',), ('agents', 'reward'))
    """
    return (key,) if isinstance(key, str) else tuple(key)


def _group_or_root(keys, group, name, fallback=None):
    if (group, name) in keys:
        return (group, name)
    if (name,) in keys:
        return name
    if fallback is not None:
        return fallback
    raise ValueError(f"no {name!r} entry for group {group!r} nor at the root; env has {keys}")
