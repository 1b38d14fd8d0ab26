"""Named hyper-parameter sets from the MAPPO literature, as overrides of the defaults.

``mappo train --preset NAME`` applies one before ``--config`` and the command
line, so any of its values can still be changed.
"""

from __future__ import annotations

from typing import Any

from mappo_torchrl.config.io import apply_overrides
from mappo_torchrl.config.schema import ConfigError, RunConfig

#: Each preset: where it comes from, and the options it sets.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "source": "Yu et al. 2022, defaults of marlbenchmark/on-policy onpolicy/config.py "
        "(recurrent GRU actor and critic, as the original's default; "
        "--model.recurrent none for the feed-forward variant)",
        "overrides": {
            "model.recurrent": "gru",
            "model.rnn_hidden": 64,
            "model.rnn_layers": 1,
            "model.recurrent_critic": True,
            "optim.chunk_length": 10,
            "model.actor_cells": 64,
            "model.critic_cells": 64,
            "model.actor_depth": 2,
            "model.critic_depth": 2,
            "model.activation": "relu",
            "model.feature_norm": True,
            "model.orthogonal_init": True,
            "model.action_dist": "normal",
            "loss.gamma": 0.99,
            "loss.lmbda": 0.95,
            "loss.entropy_coeff": 0.01,
            "loss.critic_loss": "huber",
            "loss.huber_delta": 10.0,
            "loss.clip_value": True,
            "loss.advantage_norm": "joint",
            "loss.value_norm": "popart",
            "loss.value_norm_beta": 0.99999,
            "optim.num_epochs": 15,
            "optim.num_minibatches": 1,
            "optim.actor_lr": 5e-4,
            "optim.critic_lr": 5e-4,
            "optim.adam_eps": 1e-5,
            "optim.max_grad_norm": 10.0,
            "env.truncate_at_max_steps": False,
        },
    },
    "tutorial": {
        "source": "TorchRL's multi-agent PPO tutorial (navigation), 4 epochs instead of its 30",
        "overrides": {
            "env.num_envs": 60,
            "env.max_steps": 100,
            "collector.frames_per_batch": 6_000,
            "collector.total_frames": 600_000,
            "model.actor_cells": 256,
            "model.critic_cells": 256,
            "model.activation": "tanh",
            "loss.gamma": 0.99,
            "loss.lmbda": 0.9,
            "loss.entropy_coeff": 1e-4,
            "loss.critic_loss": "smooth_l1",
            "loss.advantage_norm": "none",
            "optim.num_epochs": 4,
            "optim.minibatch_size": 400,
            "optim.actor_lr": 3e-4,
            "optim.critic_lr": 3e-4,
            "optim.max_grad_norm": 1.0,
            "env.truncate_at_max_steps": False,
        },
    },
    "benchmarl": {
        "source": "BenchMARL's fine-tuned VMAS configuration (fine_tuned/vmas/yaml)",
        "overrides": {
            "env.num_envs": 600,
            "env.max_steps": 100,
            "collector.frames_per_batch": 60_000,
            "collector.total_frames": 3_000_000,
            "model.actor_cells": 256,
            "model.critic_cells": 256,
            "model.activation": "tanh",
            "loss.gamma": 0.9,
            "loss.lmbda": 0.9,
            "loss.entropy_coeff": 0.0,
            "loss.critic_loss": "l2",
            "loss.advantage_norm": "none",
            "optim.num_epochs": 45,
            "optim.minibatch_size": 4096,
            "optim.actor_lr": 5e-5,
            "optim.critic_lr": 5e-5,
            "optim.adam_eps": 1e-6,
            "optim.max_grad_norm": 5.0,
            "env.truncate_at_max_steps": False,
        },
    },
}


def apply_preset(config: RunConfig, name: str) -> RunConfig:
    """``config`` with the preset's values set.

    Example:
        >>> from mappo_torchrl.config import RunConfig, apply_preset
        >>> apply_preset(RunConfig(), "paper").optim.num_epochs
        15
    """
    if name not in PRESETS:
        raise ConfigError("preset", name, "must be one of " + ", ".join(PRESETS))
    return apply_overrides(config, PRESETS[name]["overrides"])
