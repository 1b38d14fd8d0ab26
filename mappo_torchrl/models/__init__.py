"""Actor and critic networks, parameters shared across agents by default."""

from mappo_torchrl.models.actor import make_actor
from mappo_torchrl.models.critic import make_critic
from mappo_torchrl.models.mlp import (
    AgentMLP,
    Float32Linear,
    make_mlp,
    orthogonal_init_,
    resolve_precision,
)
from mappo_torchrl.models.recurrent import MultiAgentRNN, add_recurrent_state

__all__ = [
    "AgentMLP",
    "Float32Linear",
    "MultiAgentRNN",
    "add_recurrent_state",
    "make_actor",
    "make_critic",
    "make_mlp",
    "orthogonal_init_",
    "resolve_precision",
]
