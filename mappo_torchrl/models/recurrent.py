"""Recurrent layers for agent groups: a GRU or LSTM per agent, its state carried by the env.

:class:`MultiAgentRNN` wraps TorchRL's :class:`~torchrl.modules.GRUModule` /
:class:`~torchrl.modules.LSTMModule` for tensordicts whose group entries carry
an agent dimension (``[*B, n_agents, F]``). The agent dimension is folded into
the batch, so one fused ``nn.GRU``/``nn.LSTM`` call serves every agent.

Two modes, switched by TorchRL's :class:`~torchrl.modules.set_recurrent_mode`:

- step mode (the default; collection, evaluation, GAE): every element of the
  batch is one step. The layer reads its input state from
  ``(group, "<name>_hidden")`` (and ``"<name>_cell"`` for an LSTM), resets it
  to zero where the root ``is_init`` flag (TorchRL's
  :class:`~torchrl.envs.InitTracker`) marks an episode start, and writes the
  new state to ``("next", group, "<name>_hidden")``, where the env's
  :class:`~torchrl.envs.TensorDictPrimer` (:meth:`MultiAgentRNN.make_tensordict_primer`)
  carries it to the next step.
- sequence mode (``with set_recurrent_mode(True)``; the PPO update): the last
  batch dimension is time. Each sequence starts from the state stored at its
  first step and is reset inside at every ``is_init``; TorchRL runs the
  fused kernel over the whole sequence (split at episode starts, padded and
  packed), with no Python loop over steps.
"""

from __future__ import annotations

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModule, TensorDictModuleBase, TensorDictSequential
from tensordict.utils import NestedKey
from torch import nn
from torchrl.data import Composite, Unbounded
from torchrl.envs import EnvBase, InitTracker, TensorDictPrimer, TransformedEnv
from torchrl.modules import GRUModule, LSTMModule, recurrent_mode

from mappo_torchrl.config.schema import RECURRENT, PerfConfig, PrecisionName
from mappo_torchrl.envs.keys import key_tuple
from mappo_torchrl.models.mlp import ACTIVATION_MODULES, AgentMLP, make_mlp

#: The recurrent layers ``model.recurrent`` names (every choice but "none").
RNN_KINDS = tuple(kind for kind in RECURRENT if kind != "none")
IS_INIT = "is_init"


class MultiAgentRNN(TensorDictModuleBase):
    """A GRU or LSTM applied to every agent of a group, the agent dim folded into the batch.

    Args:
        kind: ``"gru"`` or ``"lstm"``.
        input_size: features per agent of ``in_key``.
        hidden_size: recurrent state size.
        num_layers: stacked recurrent layers.
        n_agents: agents in the group.
        in_key: per-agent input, ``[*B, n_agents, input_size]``.
        out_key: per-agent output, ``[*B, n_agents, hidden_size]`` (layer-normalised,
            as the original MAPPO code's ``RNNLayer``).
        state_prefix: where the state lives: ``("agents", "actor")`` keeps it under
            ``("agents", "actor_hidden")``, and an LSTM's cell state under
            ``("agents", "actor_cell")``. States have shape
            ``[*B, n_agents, num_layers, hidden_size]``.
        share_params: one recurrent layer for all agents (false: one per agent).
        orthogonal_init: orthogonal weights and zero biases, as the original.
        device: parameter device.

    Example:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from torchrl.modules import set_recurrent_mode
        >>> from mappo_torchrl.models.recurrent import MultiAgentRNN
        >>> rnn = MultiAgentRNN(
        ...     kind="gru", input_size=4, hidden_size=8, num_layers=1, n_agents=3,
        ...     in_key=("agents", "x"), out_key=("agents", "y"),
        ...     state_prefix=("agents", "actor"),
        ... )
        >>> step = TensorDict({"agents": {"x": torch.zeros(5, 3, 4)},
        ...                    "is_init": torch.ones(5, 1, dtype=torch.bool)}, [5])
        >>> rnn(step)["next", "agents", "actor_hidden"].shape  # [envs, agents, layers, hidden]
        torch.Size([5, 3, 1, 8])
        >>> chunk = TensorDict({"agents": {"x": torch.zeros(5, 10, 3, 4)},
        ...                     "is_init": torch.zeros(5, 10, 1, dtype=torch.bool)}, [5, 10])
        >>> with set_recurrent_mode(True):  # the last batch dim is time
        ...     rnn(chunk)["agents", "y"].shape
        torch.Size([5, 10, 3, 8])
    """

    def __init__(
        self,
        *,
        kind: str,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        n_agents: int,
        in_key: NestedKey,
        out_key: NestedKey,
        state_prefix: NestedKey,
        share_params: bool = True,
        orthogonal_init: bool = False,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        if kind not in RNN_KINDS:
            raise ValueError(f"kind={kind!r}: must be one of {', '.join(RNN_KINDS)}")
        *group, name = key_tuple(state_prefix)
        suffixes = ("hidden",) if kind == "gru" else ("hidden", "cell")
        self.state_keys = [(*group, f"{name}_{suffix}") for suffix in suffixes]
        self.kind, self.n_agents = kind, n_agents
        self.hidden_size, self.num_layers = hidden_size, num_layers
        self.in_keys = [in_key, *self.state_keys, IS_INIT]
        self.out_keys = [out_key, *(("next", *k) for k in self.state_keys)]
        self.share_params = share_params
        self.cores = nn.ModuleList(
            self._make_core(input_size, device) for _ in range(1 if share_params else n_agents)
        )
        self.norms = nn.ModuleList(
            nn.LayerNorm(hidden_size, device=device) for _ in range(len(self.cores))
        )
        if orthogonal_init:
            for core in self.cores:
                _orthogonal_rnn_(core)

    def _make_core(self, input_size: int, device) -> TensorDictModuleBase:
        states = [f"s{i}" for i in range(len(self.state_keys))]
        cls = GRUModule if self.kind == "gru" else LSTMModule
        return cls(
            input_size=input_size,
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            in_keys=["x", *states, IS_INIT],
            out_keys=["y", *(("next", s) for s in states)],
            device=device,
        )

    def make_tensordict_primer(self) -> TensorDictPrimer:
        """The primer that declares this layer's states to the env (zeros at reset)."""
        shape = (self.n_agents, self.num_layers, self.hidden_size)
        return TensorDictPrimer(
            {key: Unbounded(shape=shape) for key in self.state_keys}, expand_specs=True
        )

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """One step per batch element, or (in sequence mode) a sequence along the last dim."""
        sequence = recurrent_mode() is True
        x = tensordict.get(self.in_keys[0])
        is_init = tensordict.get(IS_INIT)
        batch = tensordict.batch_size
        if sequence and len(batch) == 0:
            raise ValueError("sequence mode needs a time dimension (the last batch dimension)")
        state_shape = (*batch, self.n_agents, self.num_layers, self.hidden_size)
        states = [
            tensordict.get(key, None)
            if tensordict.get(key, None) is not None
            else x.new_zeros(state_shape)
            for key in self.state_keys
        ]
        # One flag per agent; a state is zero where an episode starts.
        is_init = is_init.reshape(*batch, 1, 1).expand(*batch, self.n_agents, 1)
        states = [torch.where(is_init.unsqueeze(-1), 0.0, s) for s in states]
        if sequence:
            # Agents before time: [*C, T, n, ...] -> [*C, n, T, ...].
            x = x.transpose(-2, -3)
            states = [s.transpose(-3, -4) for s in states]
            is_init = is_init.transpose(-2, -3)
        inner = TensorDict(
            {"x": x, IS_INIT: is_init, **{f"s{i}": s for i, s in enumerate(states)}},
            batch_size=x.shape[:-1],
        )
        agent_dim = inner.ndim - 2 if sequence else inner.ndim - 1
        if self.share_params:
            out = self._run(0, inner)
        else:
            parts = inner.unbind(agent_dim)
            out = torch.stack([self._run(i, p) for i, p in enumerate(parts)], agent_dim)
        y = out.get("y")
        new_states = [out.get(("next", f"s{i}")) for i in range(len(states))]
        if sequence:
            y = y.transpose(-2, -3)
            new_states = [s.transpose(-3, -4) for s in new_states]
        tensordict.set(self.out_keys[0], y)
        for key, state in zip(self.out_keys[1:], new_states, strict=True):
            tensordict.set(key, state)
        return tensordict

    def _run(self, i: int, inner: TensorDictBase) -> TensorDictBase:
        out = self.cores[i](inner)
        return out.set("y", self.norms[i](out.get("y")))


def make_recurrent_body(
    *,
    kind: str,
    in_key: NestedKey,
    in_dim: int,
    name: NestedKey,
    n_agents: int,
    centralized: bool,
    share_params: bool,
    num_cells: int,
    depth: int,
    activation: str,
    feature_norm: bool,
    orthogonal_init: bool,
    rnn_hidden: int,
    rnn_layers: int,
    precision: PrecisionName = PerfConfig.precision,
    device: torch.device | str | None = None,
) -> TensorDictSequential:
    """The hidden layers then a :class:`MultiAgentRNN`, as the original rMAPPO networks.

    ``depth`` linear layers of ``num_cells`` (each followed by the activation;
    centralised if asked, like :func:`~mappo_torchrl.models.make_mlp`), then the
    recurrent layer. ``name`` is a ``(group, "actor")``-style prefix: the body
    writes ``(group, "actor_memory")`` and keeps its state under
    ``(group, "actor_hidden")`` (and ``"actor_cell"`` for an LSTM). An output
    head on ``rnn_hidden`` features completes the network.
    """
    group, prefix = name
    features = (group, f"{prefix}_features")
    encoder = make_mlp(
        n_agent_inputs=in_dim,
        n_agent_outputs=num_cells,
        n_agents=n_agents,
        centralized=centralized,
        share_params=share_params,
        num_cells=num_cells,
        depth=depth - 1,
        activation=activation,
        feature_norm=feature_norm,
        orthogonal_init=orthogonal_init,
        head_gain=nn.init.calculate_gain(activation),
        precision=precision,
        device=device,
    )
    rnn = MultiAgentRNN(
        kind=kind,
        input_size=num_cells,
        hidden_size=rnn_hidden,
        num_layers=rnn_layers,
        n_agents=n_agents,
        in_key=features,
        out_key=(group, f"{prefix}_memory"),
        state_prefix=(group, prefix),
        share_params=share_params,
        orthogonal_init=orthogonal_init,
        device=device,
    )
    return TensorDictSequential(
        TensorDictModule(
            nn.Sequential(encoder, ACTIVATION_MODULES[activation]()),
            in_keys=[in_key],
            out_keys=[features],
        ),
        rnn,
    )


def make_agent_network(
    *,
    recurrent: str,
    in_key: NestedKey,
    in_dim: int,
    n_outputs: int,
    name: NestedKey,
    n_agents: int,
    centralized: bool,
    share_params: bool,
    num_cells: int,
    depth: int,
    activation: str,
    feature_norm: bool,
    orthogonal_init: bool,
    head_gain: float,
    rnn_hidden: int,
    rnn_layers: int,
    precision: PrecisionName = PerfConfig.precision,
    device: torch.device | str | None = None,
) -> tuple[TensorDictSequential | None, AgentMLP, NestedKey]:
    """An actor's or critic's network: ``(recurrent body or None, MLP, the MLP's input key)``.

    Feed-forward (``recurrent="none"``): no body, and the MLP has ``depth``
    hidden layers over ``in_key``. Recurrent: :func:`make_recurrent_body`, then
    an MLP that is one linear head on the recurrent layer's output.
    """
    body = None
    if recurrent != "none":
        body = make_recurrent_body(
            kind=recurrent,
            in_key=in_key,
            in_dim=in_dim,
            name=name,
            n_agents=n_agents,
            centralized=centralized,
            share_params=share_params,
            num_cells=num_cells,
            depth=depth,
            activation=activation,
            feature_norm=feature_norm,
            orthogonal_init=orthogonal_init,
            rnn_hidden=rnn_hidden,
            rnn_layers=rnn_layers,
            precision=precision,
            device=device,
        )
        in_key, in_dim, depth, centralized = body.module[-1].out_keys[0], rnn_hidden, 0, False
    net = make_mlp(
        n_agent_inputs=in_dim,
        n_agent_outputs=n_outputs,
        n_agents=n_agents,
        centralized=centralized,
        share_params=share_params,
        num_cells=num_cells,
        depth=depth,
        activation=activation,
        feature_norm=feature_norm and body is None,
        orthogonal_init=orthogonal_init,
        head_gain=head_gain,
        precision=precision,
        device=device,
    )
    return body, net, in_key


def recurrent_layers(module: nn.Module) -> list[MultiAgentRNN]:
    """Every :class:`MultiAgentRNN` inside ``module``."""
    return [m for m in module.modules() if isinstance(m, MultiAgentRNN)]


def add_recurrent_state(env: EnvBase, policy: nn.Module) -> EnvBase:
    """``env`` ready to run ``policy``'s recurrent layers: an ``is_init`` flag and their states.

    Adds TorchRL's :class:`~torchrl.envs.InitTracker` (unless the env has one)
    and the primers of the recurrent layers (zero states at every reset, carried
    from step to step). Returns ``env`` unchanged if ``policy`` has no
    recurrent layer; wraps it in a :class:`~torchrl.envs.TransformedEnv` if needed.
    """
    if not recurrent_layers(policy):
        return env
    if not isinstance(env, TransformedEnv):
        env = TransformedEnv(env)
    if IS_INIT not in env.full_observation_spec.keys():
        env.append_transform(InitTracker())
    missing = [m for m in recurrent_layers(policy) if not _declared(env.full_observation_spec, m)]
    for layer in missing:
        env.append_transform(layer.make_tensordict_primer())
    return env


def _declared(spec: Composite, layer: MultiAgentRNN) -> bool:
    return all(key in spec.keys(True, True) for key in layer.state_keys)


@torch.no_grad()
def _orthogonal_rnn_(core: TensorDictModuleBase) -> None:
    rnn = core.gru if isinstance(core, GRUModule) else core.lstm
    for name, param in rnn.named_parameters():
        if name.startswith("weight"):
            nn.init.orthogonal_(param)
        else:
            param.zero_()


__all__ = [
    "MultiAgentRNN",
    "RNN_KINDS",
    "add_recurrent_state",
    "make_agent_network",
    "make_recurrent_body",
    "recurrent_layers",
]
