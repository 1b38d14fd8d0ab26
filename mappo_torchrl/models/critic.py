"""The value function: centralised (MAPPO) or decentralised (IPPO)."""

from __future__ import annotations

import torch
from tensordict.nn import TensorDictModule, TensorDictSequential
from torch import nn
from torchrl.envs import EnvBase
from torchrl.modules import ValueNorm

from mappo_torchrl.config.checks import check_choice, check_int, check_multi_agent_env
from mappo_torchrl.config.schema import (
    ACTIVATIONS,
    CRITIC_INPUTS,
    MAX_CELLS,
    MAX_DEPTH,
    ActivationName,
    CriticInputName,
    ModelConfig,
    PerfConfig,
    PrecisionName,
    RecurrentName,
)
from mappo_torchrl.envs.keys import group_keys
from mappo_torchrl.models.recurrent import make_agent_network

VALUE_HEAD_GAIN = 1.0


def make_critic(
    env: EnvBase,
    group: str,
    *,
    centralized: bool = ModelConfig.centralized_critic,
    critic_input: CriticInputName = ModelConfig.critic_input,
    agent_id: bool = ModelConfig.critic_agent_id,
    death_masking: bool = ModelConfig.death_masking,
    num_cells: int = ModelConfig.critic_cells,
    depth: int = ModelConfig.critic_depth,
    activation: ActivationName = ModelConfig.activation,
    share_params: bool = ModelConfig.share_params,
    feature_norm: bool = ModelConfig.feature_norm,
    orthogonal_init: bool = ModelConfig.orthogonal_init,
    value_norm: ValueNorm | None = None,
    recurrent: RecurrentName = ModelConfig.recurrent,
    rnn_hidden: int = ModelConfig.rnn_hidden,
    rnn_layers: int = ModelConfig.rnn_layers,
    precision: PrecisionName = PerfConfig.precision,
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
        agent_id: append the agent's one-hot id to a centralised critic's
            ``"observations"`` input (a shared critic then tells agents apart;
            ``"agent_state"`` always has it).
        death_masking: for envs whose agents can become inactive (a
            ``(group, "mask")`` entry), an inactive agent's critic sees zeros
            plus its one-hot id, as in the original MAPPO code. Ignored for envs
            without such a mask.
        num_cells: hidden width.
        depth: number of hidden layers.
        activation: ``"tanh"`` or ``"relu"``.
        share_params: one parameter set for all agents of the group.
        feature_norm: LayerNorm on the critic input.
        orthogonal_init: MAPPO's orthogonal init (value-head gain 1).
        value_norm: if given, the network predicts *normalised* values, written
            to ``(group, "state_value_normalized")``, and the module also writes
            ``value_norm.denormalize(prediction)`` as the state value, as in the
            original MAPPO code: GAE reads the de-normalised value, the critic
            loss the network's own output (see
            :func:`~mappo_torchrl.objectives.make_loss`).
        recurrent: ``"none"``, or ``"gru"``/``"lstm"``: a recurrent critic whose
            state lives under ``(group, "critic_hidden")`` (see
            :func:`~mappo_torchrl.models.make_actor`). It reads the same inputs.
        rnn_hidden: recurrent state size.
        rnn_layers: stacked recurrent layers.
        precision: ``"float32"``, ``"bfloat16"`` or ``"auto"``, the hidden layers'
            number format (:func:`~mappo_torchrl.models.resolve_precision`).
        device: parameter device (defaults to the env's).

    Example:
        >>> from mappo_torchrl.envs import make_env
        >>> from mappo_torchrl.models import make_critic
        >>> env = make_env("navigation", num_envs=2)
        >>> critic = make_critic(env, "agents")
        >>> critic(env.reset())["agents", "state_value"].shape
        torch.Size([2, 3, 1])
    """
    check_multi_agent_env("env", env, group)
    check_int("num_cells", num_cells, low=1, high=MAX_CELLS)
    check_int("depth", depth, low=1, high=MAX_DEPTH)
    check_choice("activation", activation, ACTIVATIONS)
    check_choice("critic_input", critic_input, CRITIC_INPUTS)
    keys = group_keys(env, group)
    device = env.device if device is None else device
    from_state = centralized and critic_input != "observations"
    if from_state and keys.state is None:
        raise ValueError(
            f"critic_input={critic_input!r}: the env has no root 'state' entry "
            "(VMAS has none); use critic_input='observations'"
        )
    source_key = keys.state if from_state else keys.observation
    source_dim = env.full_observation_spec_unbatched[source_key].shape[-1]
    death_mask = death_masking and keys.agent_mask is not None
    with_id = (from_state and critic_input == "agent_state") or (
        agent_id and centralized and not from_state
    )
    modules: list[TensorDictModule] = []
    if not from_state and not death_mask and not with_id:
        # Plain observations: MultiAgentMLP concatenates them itself when centralised.
        in_key, in_dim, mlp_centralized = keys.observation, source_dim, centralized
    else:
        shaper = CriticInput(
            keys.n_agents,
            from_state=from_state,
            centralized=centralized,
            with_id=with_id,
            death_mask=death_mask,
        )
        in_key, mlp_centralized = (group, "critic_input"), False
        in_dim = shaper.output_dim(source_dim)
        in_keys = [source_key, keys.agent_mask] if death_mask else [source_key]
        modules.append(TensorDictModule(shaper, in_keys=in_keys, out_keys=[in_key]))
    body, net, in_key = make_agent_network(
        recurrent=recurrent,
        in_key=in_key,
        in_dim=in_dim,
        n_outputs=1,
        name=(group, "critic"),
        n_agents=keys.n_agents,
        centralized=mlp_centralized,
        share_params=share_params,
        num_cells=num_cells,
        depth=depth,
        activation=activation,
        feature_norm=feature_norm,
        orthogonal_init=orthogonal_init,
        head_gain=VALUE_HEAD_GAIN,
        rnn_hidden=rnn_hidden,
        rnn_layers=rnn_layers,
        precision=precision,
        device=device,
    )
    if body is not None:
        modules.append(body)
    if value_norm is None:
        modules.append(TensorDictModule(net, in_keys=[in_key], out_keys=[keys.state_value]))
    else:
        normalized = keys.normalized_value
        modules.append(TensorDictModule(net, in_keys=[in_key], out_keys=[normalized]))
        modules.append(
            TensorDictModule(
                Denormalize(value_norm), in_keys=[normalized], out_keys=[keys.state_value]
            )
        )
    if len(modules) == 1:
        return modules[0]
    return TensorDictSequential(*modules)


class CriticInput(nn.Module):
    """Each agent's critic input, ``[*B, n_agents, d]``, from observations or a global state.

    Args:
        n_agents: agents in the group.
        from_state: the source is a global state ``[*B, s]`` (broadcast to every
            agent) rather than per-agent observations ``[*B, n_agents, o]``.
        centralized: with observations, every agent sees all agents' observations.
        with_id: append the agent's one-hot id.
        death_mask: ``forward`` takes an ``[*B, n_agents]`` "active" mask; an
            inactive agent's input becomes zeros plus its one-hot id.
    """

    def __init__(
        self,
        n_agents: int,
        *,
        from_state: bool,
        centralized: bool,
        with_id: bool,
        death_mask: bool,
    ) -> None:
        super().__init__()
        self.n_agents = n_agents
        self.from_state, self.centralized = from_state, centralized
        self.with_id = with_id or death_mask
        self.death_mask = death_mask

    def output_dim(self, source_dim: int) -> int:
        """Width of the output for a source of width ``source_dim``."""
        per_agent = (
            source_dim * self.n_agents if self.centralized and not self.from_state else (source_dim)
        )
        return per_agent + (self.n_agents if self.with_id else 0)

    def forward(self, source: torch.Tensor, active: torch.Tensor | None = None) -> torch.Tensor:
        if self.from_state:
            shared = source
        elif self.centralized:
            shared = source.flatten(-2, -1)
        else:
            shared = None
        if shared is not None:
            x = shared.unsqueeze(-2).expand(*shared.shape[:-1], self.n_agents, shared.shape[-1])
        else:
            x = source
        if self.death_mask:
            x = x * active.unsqueeze(-1).to(x.dtype)
        if self.with_id:
            ids = torch.eye(self.n_agents, dtype=x.dtype, device=x.device)
            x = torch.cat([x, ids.expand(*x.shape[:-1], self.n_agents)], dim=-1)
        return x


class Denormalize(nn.Module):
    """Map a normalised value prediction back to the return scale."""

    def __init__(self, value_norm: ValueNorm) -> None:
        super().__init__()
        self.value_norm = value_norm

    def forward(self, normalized: torch.Tensor) -> torch.Tensor:
        return self.value_norm.denormalize(normalized)
