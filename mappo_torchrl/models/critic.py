"""The value function: centralised (MAPPO) or decentralised (IPPO)."""

from __future__ import annotations

import torch
from tensordict.nn import TensorDictModule, TensorDictSequential
from torch import nn
from torchrl.envs import EnvBase
from torchrl.modules import ValueNorm

from mappo_torchrl.envs.groups import group_keys
from mappo_torchrl.models.mlp import make_mlp

VALUE_HEAD_GAIN = 1.0
CRITIC_INPUTS = ("observations", "state", "agent_state")


def make_critic(
    env: EnvBase,
    group: str,
    *,
    centralized: bool = True,
    critic_input: str = "observations",
    num_cells: int = 256,
    depth: int = 2,
    activation: str = "tanh",
    share_params: bool = True,
    feature_norm: bool = False,
    orthogonal_init: bool = False,
    value_norm: ValueNorm | None = None,
    device: torch.device | str | None = None,
) -> TensorDictModule:
    """The value function of one agent group, writing ``(group, "state_value")``.

    Args:
        env: the multi-agent env (its specs size the network).
        group: agent group, a key of ``env.group_map``.
        centralized: MAPPO's centralised critic if true, IPPO's local one if false.
        critic_input: what a centralised critic sees: ``"observations"`` (all
            agents' observations concatenated, the VMAS default), ``"state"``
            (the env's root ``state`` entry) or ``"agent_state"`` (the state
            plus the agent's one-hot id).
        num_cells: hidden width.
        depth: number of hidden layers.
        activation: ``"tanh"`` or ``"relu"``.
        share_params: one parameter set for all agents of the group.
        feature_norm: LayerNorm on the critic input.
        orthogonal_init: MAPPO's orthogonal init (value-head gain 1).
        value_norm: if given, the network predicts *normalised* values and the
            module writes ``value_norm.denormalize(prediction)``, as in the
            original MAPPO code. The loss then normalises it back (see
            :func:`~mappo_torchrl.objectives.make_loss`).
        device: parameter device (defaults to the env's).

    Example:
        >>> from mappo_torchrl.envs import make_env
        >>> from mappo_torchrl.models import make_critic
        >>> env = make_env("navigation", num_envs=2)
        >>> critic = make_critic(env, "agents")
        >>> critic(env.reset())["agents", "state_value"].shape
        torch.Size([2, 3, 1])
    """
    if critic_input not in CRITIC_INPUTS:
        raise ValueError(
            f"critic_input={critic_input!r}: must be one of {', '.join(CRITIC_INPUTS)}"
        )
    keys = group_keys(env, group)
    device = env.device if device is None else device
    modules: list[TensorDictModule] = []
    if not centralized or critic_input == "observations":
        in_key = keys.observation
        in_dim = env.full_observation_spec_unbatched[in_key].shape[-1]
    else:
        if keys.state is None:
            raise ValueError(
                f"critic_input={critic_input!r}: the env has no root 'state' entry "
                "(VMAS has none); use critic_input='observations'"
            )
        in_key = (group, "critic_input")
        in_dim = env.full_observation_spec_unbatched[keys.state].shape[-1]
        with_id = critic_input == "agent_state"
        in_dim += keys.n_agents if with_id else 0
        modules.append(
            TensorDictModule(
                AgentState(keys.n_agents, with_id=with_id),
                in_keys=[keys.state],
                out_keys=[in_key],
            )
        )
        # Every agent already sees the global state: no concatenation over agents.
        centralized = False
    net = make_mlp(
        n_agent_inputs=in_dim,
        n_agent_outputs=1,
        n_agents=keys.n_agents,
        centralized=centralized,
        share_params=share_params,
        num_cells=num_cells,
        depth=depth,
        activation=activation,
        feature_norm=feature_norm,
        orthogonal_init=orthogonal_init,
        head_gain=VALUE_HEAD_GAIN,
        device=device,
    )
    if value_norm is None:
        modules.append(TensorDictModule(net, in_keys=[in_key], out_keys=[keys.state_value]))
    else:
        normalized = (group, "state_value_normalized")
        modules.append(TensorDictModule(net, in_keys=[in_key], out_keys=[normalized]))
        modules.append(
            TensorDictModule(
                Denormalize(value_norm), in_keys=[normalized], out_keys=[keys.state_value]
            )
        )
    if len(modules) == 1:
        return modules[0]
    return TensorDictSequential(*modules)


class AgentState(nn.Module):
    """Broadcast a global state ``[*B, d]`` to ``[*B, n_agents, d]``, optionally with ids.

    The ids are one-hot agent indices appended to each agent's copy of the state.
    """

    def __init__(self, n_agents: int, *, with_id: bool) -> None:
        super().__init__()
        self.n_agents = n_agents
        self.with_id = with_id

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        per_agent = state.unsqueeze(-2).expand(*state.shape[:-1], self.n_agents, state.shape[-1])
        if not self.with_id:
            return per_agent
        ids = torch.eye(self.n_agents, dtype=state.dtype, device=state.device)
        ids = ids.expand(*state.shape[:-1], self.n_agents, self.n_agents)
        return torch.cat([per_agent, ids], dim=-1)


class Denormalize(nn.Module):
    """Map a normalised value prediction back to the return scale."""

    def __init__(self, value_norm: ValueNorm) -> None:
        super().__init__()
        self.value_norm = value_norm

    def forward(self, normalized: torch.Tensor) -> torch.Tensor:
        return self.value_norm.denormalize(normalized)
