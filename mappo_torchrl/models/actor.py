"""The decentralised policy: each agent acts on its own observation."""

from __future__ import annotations

import torch
from tensordict.nn import (
    NormalParamExtractor,
    TensorDictModule,
    TensorDictModuleBase,
    TensorDictSequential,
)
from torch import nn
from torchrl.data import Categorical, OneHot
from torchrl.envs import EnvBase
from torchrl.modules import IndependentNormal, MaskedCategorical, ProbabilisticActor, TanhNormal

from mappo_torchrl.config.checks import check_choice, check_int, check_multi_agent_env
from mappo_torchrl.config.schema import (
    ACTION_DISTS,
    ACTIVATIONS,
    MAX_CELLS,
    MAX_DEPTH,
    ActionDistName,
    ActivationName,
    ModelConfig,
    PerfConfig,
    PrecisionName,
    RecurrentName,
)
from mappo_torchrl.envs.keys import GroupKeys, group_keys
from mappo_torchrl.models.recurrent import make_agent_network

POLICY_HEAD_GAIN = 0.01


def make_actor(
    env: EnvBase,
    group: str,
    *,
    num_cells: int = ModelConfig.actor_cells,
    depth: int = ModelConfig.actor_depth,
    activation: ActivationName = ModelConfig.activation,
    share_params: bool = ModelConfig.share_params,
    feature_norm: bool = ModelConfig.feature_norm,
    orthogonal_init: bool = ModelConfig.orthogonal_init,
    action_dist: ActionDistName = ModelConfig.action_dist,
    recurrent: RecurrentName = ModelConfig.recurrent,
    rnn_hidden: int = ModelConfig.rnn_hidden,
    rnn_layers: int = ModelConfig.rnn_layers,
    precision: PrecisionName = PerfConfig.precision,
    device: torch.device | str | None = None,
) -> ProbabilisticActor:
    """The policy of one agent group.

    It is a :class:`~torchrl.modules.tensordict_module.ProbabilisticActor`.
    Continuous actions use a :class:`~torchrl.modules.TanhNormal` bounded by
    the action spec (``action_dist="tanh_normal"``) or the original MAPPO
    code's diagonal Gaussian (``"normal"``: an unbounded Normal whose log-std
    is a learned parameter independent of the state, initialised at 0, with a
    closed-form entropy; the env must clamp actions to its bounds, as
    :func:`~mappo_torchrl.envs.make_env` does); discrete actions a
    categorical distribution, masked with the env's ``action_mask`` when it
    has one (masked actions are never sampled). The actor reads
    ``(group, "observation")`` and writes ``(group, "action")`` and
    ``(group, "action_log_prob")``.

    Args:
        env: the multi-agent env (its specs size the network).
        group: agent group, a key of ``env.group_map``.
        num_cells: hidden width.
        depth: number of hidden layers.
        activation: ``"tanh"`` or ``"relu"``.
        share_params: one parameter set for all agents of the group.
        feature_norm: LayerNorm on the observation.
        orthogonal_init: MAPPO's orthogonal init (policy-head gain 0.01).
        action_dist: ``"tanh_normal"`` or ``"normal"``, for continuous actions.
        recurrent: ``"none"``, or ``"gru"``/``"lstm"`` for a recurrent policy: the
            hidden layers, then a :class:`~mappo_torchrl.models.recurrent.MultiAgentRNN`
            whose state lives under ``(group, "actor_hidden")``, then the head.
            The env then needs :func:`~mappo_torchrl.models.add_recurrent_state`.
        rnn_hidden: recurrent state size.
        rnn_layers: stacked recurrent layers.
        precision: ``"float32"``, ``"bfloat16"`` or ``"auto"``, the hidden layers'
            number format (:func:`~mappo_torchrl.models.resolve_precision`).
        device: parameter device (defaults to the env's).

    Example:
        >>> from mappo_torchrl.envs import make_env
        >>> from mappo_torchrl.models import make_actor
        >>> env = make_env("navigation", num_envs=2)
        >>> actor = make_actor(env, "agents")
        >>> actor(env.reset())["agents", "action"].shape
        torch.Size([2, 3, 2])
    """
    check_multi_agent_env("env", env, group)
    check_int("num_cells", num_cells, low=1, high=MAX_CELLS)
    check_int("depth", depth, low=1, high=MAX_DEPTH)
    check_choice("activation", activation, ACTIVATIONS)
    check_choice("action_dist", action_dist, ACTION_DISTS)
    keys = group_keys(env, group)
    device = env.device if device is None else device
    action_spec = env.full_action_spec_unbatched[keys.action]
    obs_dim = env.full_observation_spec_unbatched[keys.observation].shape[-1]
    discrete = isinstance(action_spec, (Categorical, OneHot))
    if isinstance(action_spec, OneHot):
        raise ValueError(
            f"group {group!r}: one-hot actions are not supported; build the env with "
            "categorical actions (VmasEnv(categorical_actions=True), the default)"
        )
    gaussian = not discrete and action_dist == "normal"
    if discrete:
        n_outputs = action_spec.space.n
    else:
        n_outputs = action_spec.shape[-1] * (1 if gaussian else 2)
    body, net, in_key = make_agent_network(
        recurrent=recurrent,
        in_key=keys.observation,
        in_dim=obs_dim,
        n_outputs=n_outputs,
        name=(keys.group, "actor"),
        n_agents=keys.n_agents,
        centralized=False,
        share_params=share_params,
        num_cells=num_cells,
        depth=depth,
        activation=activation,
        feature_norm=feature_norm,
        orthogonal_init=orthogonal_init,
        head_gain=POLICY_HEAD_GAIN,
        rnn_hidden=rnn_hidden,
        rnn_layers=rnn_layers,
        precision=precision,
        device=device,
    )
    if discrete:
        return _categorical_actor(net, keys, action_spec, in_key, body)
    if gaussian:
        scale = StateIndependentScale(
            action_spec.shape[-1], n_agents=1 if share_params else keys.n_agents, device=device
        )
        return _normal_actor(nn.Sequential(net, scale), keys, in_key, body)
    return _tanh_normal_actor(net, keys, action_spec, in_key, body)


def _with_body(body: TensorDictSequential | None, head: TensorDictModule) -> TensorDictModuleBase:
    return head if body is None else TensorDictSequential(body, head)


class StateIndependentScale(nn.Module):
    """``loc -> (loc, exp(log_std))`` with a learned log-std that ignores the state.

    Args:
        action_dim: action size.
        n_agents: 1 for one log-std shared by all agents, else one per agent
            (the input then has an agent dimension of that size before the last).
        device: parameter device.
    """

    def __init__(
        self, action_dim: int, *, n_agents: int = 1, device: torch.device | str | None = None
    ) -> None:
        super().__init__()
        self.log_std = nn.Parameter(torch.zeros(n_agents, action_dim, device=device))

    def forward(self, loc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_std = self.log_std if self.log_std.shape[0] > 1 else self.log_std[0]
        return loc, log_std.exp().expand_as(loc)


def _normal_actor(module: nn.Module, keys: GroupKeys, in_key, body) -> ProbabilisticActor:
    loc, scale = (keys.group, "loc"), (keys.group, "scale")
    head = TensorDictModule(module, in_keys=[in_key], out_keys=[loc, scale])
    return ProbabilisticActor(
        _with_body(body, head),
        in_keys={"loc": loc, "scale": scale},
        out_keys=[keys.action],
        distribution_class=IndependentNormal,
        distribution_kwargs={"tanh_loc": False},
        return_log_prob=True,
        log_prob_key=keys.log_prob,
    )


def _tanh_normal_actor(
    net: nn.Module, keys: GroupKeys, action_spec, in_key, body
) -> ProbabilisticActor:
    loc, scale = (keys.group, "loc"), (keys.group, "scale")
    module = TensorDictModule(
        nn.Sequential(net, NormalParamExtractor()),
        in_keys=[in_key],
        out_keys=[loc, scale],
    )
    module = _with_body(body, module)
    return ProbabilisticActor(
        module,
        in_keys={"loc": loc, "scale": scale},
        out_keys=[keys.action],
        distribution_class=TanhNormal,
        distribution_kwargs={
            "low": action_spec.space.low,
            "high": action_spec.space.high,
        },
        return_log_prob=True,
        log_prob_key=keys.log_prob,
    )


def _categorical_actor(
    net: nn.Module, keys: GroupKeys, action_spec, in_key, body
) -> ProbabilisticActor:
    logits = (keys.group, "logits")
    module = _with_body(body, TensorDictModule(net, in_keys=[in_key], out_keys=[logits]))
    in_keys = {"logits": logits}
    distribution_class = torch.distributions.Categorical
    if keys.action_mask is not None:
        in_keys["mask"] = keys.action_mask
        distribution_class = MaskedCategorical
    return ProbabilisticActor(
        module,
        in_keys=in_keys,
        out_keys=[keys.action],
        distribution_class=distribution_class,
        return_log_prob=True,
        log_prob_key=keys.log_prob,
    )
