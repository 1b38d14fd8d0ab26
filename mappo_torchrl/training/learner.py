"""Everything one agent group trains: its networks, loss and optimisers."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchrl.envs import EnvBase
from torchrl.modules import ProbabilisticActor, ValueNorm

from mappo_torchrl.config import LossConfig, ModelConfig, OptimConfig, PerfConfig
from mappo_torchrl.envs.keys import GroupKeys, group_keys
from mappo_torchrl.models import make_actor, make_critic
from mappo_torchrl.objectives import MultiAgentPPOLoss, make_loss, make_value_norm


@dataclass
class GroupLearner:
    """The trainable parts of one agent group.

    Attributes:
        keys: where the group's data lives.
        actor: the group's policy.
        loss: the PPO loss; ``loss.critic_network`` is the critic and
            ``loss.value_estimator`` the GAE module.
        value_norm: the value normaliser shared by critic and loss, or ``None``.
        actor_optim: Adam over the actor's parameters.
        critic_optim: Adam over the critic's parameters.
    """

    keys: GroupKeys
    actor: ProbabilisticActor
    loss: MultiAgentPPOLoss
    value_norm: ValueNorm | None
    actor_optim: torch.optim.Adam
    critic_optim: torch.optim.Adam

    @property
    def critic(self) -> torch.nn.Module:
        """The group's value function (the loss's ``critic_network``)."""
        return self.loss.critic_network


def make_group_learner(
    env: EnvBase,
    group: str,
    *,
    model: ModelConfig,
    loss: LossConfig,
    optim: OptimConfig,
    perf: PerfConfig,
    device: torch.device | str,
    shifted_budget: int = 1,
) -> GroupLearner:
    """Build actor, critic, loss and optimisers of ``group`` from the configs.

    This is what :class:`~mappo_torchrl.training.Trainer` does for every
    group of its env; call it yourself to train one group in your own loop.
    ``shifted_budget`` is the number of extra critic time slots GAE gets when
    ``perf.shifted_gae`` is on (one per time-limit reset a row can hold).

    Example:
        >>> from mappo_torchrl.config import RunConfig
        >>> from mappo_torchrl.envs import make_env
        >>> from mappo_torchrl.training import make_group_learner
        >>> cfg = RunConfig()
        >>> env = make_env("navigation", num_envs=2)
        >>> learner = make_group_learner(
        ...     env, "agents", model=cfg.model, loss=cfg.loss, optim=cfg.optim, perf=cfg.perf,
        ...     device="cpu",
        ... )
        >>> learner.keys.group, type(learner.loss).__name__, learner.value_norm
        ('agents', 'MultiAgentPPOLoss', None)
    """
    keys = group_keys(env, group)
    value_norm = make_value_norm(loss.value_norm, beta=loss.value_norm_beta, device=device)
    actor = make_actor(
        env,
        group,
        num_cells=model.actor_cells,
        depth=model.actor_depth,
        activation=model.activation,
        share_params=model.share_params,
        feature_norm=model.feature_norm,
        orthogonal_init=model.orthogonal_init,
        action_dist=model.action_dist,
        recurrent=model.recurrent,
        rnn_hidden=model.rnn_hidden,
        rnn_layers=model.rnn_layers,
        precision=perf.precision,
        device=device,
    )
    critic = make_critic(
        env,
        group,
        centralized=model.centralized_critic,
        critic_input=model.critic_input,
        agent_id=model.critic_agent_id,
        death_masking=model.death_masking,
        num_cells=model.critic_cells,
        depth=model.critic_depth,
        activation=model.activation,
        share_params=model.share_params,
        feature_norm=model.feature_norm,
        orthogonal_init=model.orthogonal_init,
        value_norm=value_norm,
        recurrent=model.recurrent if model.recurrent_critic else "none",
        rnn_hidden=model.rnn_hidden,
        rnn_layers=model.rnn_layers,
        precision=perf.precision,
        device=device,
    )
    ppo_loss = make_loss(
        actor,
        critic,
        keys,
        gamma=loss.gamma,
        lmbda=loss.lmbda,
        clip_epsilon=loss.clip_epsilon,
        entropy_coeff=loss.entropy_coeff,
        entropy_samples=loss.entropy_samples,
        critic_coeff=loss.critic_coeff,
        critic_loss=loss.critic_loss,
        huber_delta=loss.huber_delta,
        clip_value=loss.clip_value,
        advantage_norm=loss.advantage_norm,
        value_norm=value_norm,
        shifted=perf.shifted_gae,
        shifted_budget=shifted_budget,
        recurrent_critic=model.is_recurrent and model.recurrent_critic,
    )
    adam = {
        "eps": optim.adam_eps,
        "fused": perf.fused_adam or None,
        # A captured CUDA graph replays the step counter on the device.
        "capturable": perf.cudagraph_update,
    }
    return GroupLearner(
        keys=keys,
        actor=actor,
        loss=ppo_loss,
        value_norm=value_norm,
        actor_optim=torch.optim.Adam(actor.parameters(), lr=optim.actor_lr, **adam),
        critic_optim=torch.optim.Adam(critic.parameters(), lr=optim.critic_lr, **adam),
    )
