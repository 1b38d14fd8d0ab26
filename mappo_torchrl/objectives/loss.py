"""The MAPPO/IPPO objective: TorchRL's MAPPOLoss with a Huber delta, plus MultiAgentGAE."""

from __future__ import annotations

import torch
from tensordict.nn import TensorDictModule
from torchrl.modules import PopArtValueNorm, ProbabilisticActor, RunningValueNorm, ValueNorm
from torchrl.objectives.multiagent import MAPPOLoss

from mappo_torchrl.envs.groups import GroupKeys
from mappo_torchrl.objectives.advantage import ActiveAgentGAE

CRITIC_LOSSES = ("smooth_l1", "huber", "l2", "l1")
VALUE_NORMS = ("none", "popart", "running")


class MultiAgentPPOLoss(MAPPOLoss):
    """:class:`~torchrl.objectives.multiagent.MAPPOLoss` with a Huber delta.

    TorchRL's critic distances are ``l1``, ``l2`` and ``smooth_l1`` (a Huber
    loss whose delta is fixed at 1). MAPPO uses Huber with delta 10. Since
    ``huber_delta(x) = delta**2 * smooth_l1(x / delta)`` exactly, this class
    scales the target, the prediction and the old prediction by ``1/delta``
    after value normalisation, multiplies ``critic_coeff`` by ``delta**2`` and
    divides the value-clip radius by ``delta``. Everything else (value clip,
    explained variance, masks) is TorchRL's own code.

    MAPPO and IPPO differ only in the critic passed in (see
    :class:`~torchrl.objectives.multiagent.IPPOLoss`), so one class serves both.

    Keyword Args:
        huber_delta: if set, the critic loss is Huber with this delta and
            ``loss_critic_type`` must be left at its default.
        critic_coeff: weight of the critic loss.
        clip_value: value-clip radius (in normalised units when a value
            normaliser is attached), or ``None``.
        **kwargs: forwarded to :class:`~torchrl.objectives.multiagent.MAPPOLoss`.
    """

    def __init__(
        self,
        actor_network: ProbabilisticActor,
        critic_network: TensorDictModule,
        *,
        huber_delta: float | None = None,
        critic_coeff: float = 1.0,
        clip_value: float | None = None,
        **kwargs,
    ) -> None:
        scale = 1.0
        if huber_delta is not None:
            if kwargs.get("loss_critic_type", "smooth_l1") != "smooth_l1":
                raise ValueError("huber_delta needs loss_critic_type='smooth_l1'")
            scale = float(huber_delta)
            kwargs["loss_critic_type"] = "smooth_l1"
        super().__init__(
            actor_network,
            critic_network,
            critic_coeff=critic_coeff * scale**2,
            clip_value=None if clip_value is None else clip_value / scale,
            **kwargs,
        )
        self.huber_delta = huber_delta

    def _critic_loss_inputs(self, target_return, state_value, old_state_value):
        target_return, state_value, old_state_value = super()._critic_loss_inputs(
            target_return, state_value, old_state_value
        )
        if self.huber_delta is None:
            return target_return, state_value, old_state_value
        inv = 1.0 / self.huber_delta
        old = None if old_state_value is None else old_state_value * inv
        return target_return * inv, state_value * inv, old


def make_value_norm(
    kind: str, *, beta: float = 0.99999, device: torch.device | str | None = None
) -> ValueNorm | None:
    """A value normaliser by name, to share between a critic and its loss.

    Args:
        kind: ``"popart"`` (an exponential moving average, the original MAPPO
            ``ValueNorm``), ``"running"`` (exact running statistics) or
            ``"none"``.
        beta: decay of the ``"popart"`` averages.
        device: where the statistics live.

    Returns:
        A :class:`~torchrl.modules.PopArtValueNorm`, a
        :class:`~torchrl.modules.RunningValueNorm`, or ``None`` for ``"none"``.

    Example:
        >>> from mappo_torchrl.objectives import make_value_norm
        >>> type(make_value_norm("popart")).__name__, make_value_norm("none")
        ('PopArtValueNorm', None)
    """
    if kind == "none":
        return None
    if kind == "popart":
        return PopArtValueNorm(shape=1, beta=beta, device=device)
    if kind == "running":
        return RunningValueNorm(shape=1, device=device)
    raise ValueError(f"value_norm={kind!r}: must be one of {', '.join(VALUE_NORMS)}")


def make_loss(
    actor: ProbabilisticActor,
    critic: TensorDictModule,
    keys: GroupKeys,
    *,
    gamma: float = 0.99,
    lmbda: float = 0.9,
    clip_epsilon: float = 0.2,
    entropy_coeff: float = 1e-4,
    critic_coeff: float = 1.0,
    critic_loss: str = "smooth_l1",
    huber_delta: float = 10.0,
    clip_value: bool = False,
    normalize_advantage: bool = True,
    value_norm: ValueNorm | None = None,
    shifted: bool = False,
    shifted_budget: int = 1,
    recurrent_critic: bool = False,
) -> MultiAgentPPOLoss:
    """The PPO loss of one agent group, with its :class:`~torchrl.objectives.value.MultiAgentGAE`.

    The value estimator (:class:`~mappo_torchrl.objectives.advantage.ActiveAgentGAE`,
    a :class:`~torchrl.objectives.value.MultiAgentGAE`) is attached as
    ``loss.value_estimator``; call it on a batch (under ``torch.no_grad()``)
    before the epochs, as the trainer does. Advantages are standardised there,
    over the whole batch and separately for each agent, not per minibatch.

    For envs whose agents can become inactive (``keys.agent_mask``), inactive
    agents are left out of the advantage statistics and their policy, value
    and entropy terms are masked out of the loss (MAPPO's death masking; the
    critic side is :func:`~mappo_torchrl.models.make_critic`'s ``death_masking``).

    Args:
        actor: the group's policy (:func:`~mappo_torchrl.models.make_actor`).
        critic: the group's value function (:func:`~mappo_torchrl.models.make_critic`).
        keys: the group's keys (:func:`~mappo_torchrl.envs.group_keys`).
        gamma: discount.
        lmbda: GAE lambda.
        clip_epsilon: PPO ratio clip.
        entropy_coeff: entropy bonus weight; 0 skips the entropy term entirely.
        critic_coeff: critic loss weight.
        critic_loss: ``"smooth_l1"``, ``"huber"`` (with ``huber_delta``), ``"l2"`` or ``"l1"``.
        huber_delta: delta of the ``"huber"`` critic loss.
        clip_value: clip the value loss with radius ``clip_epsilon``.
        normalize_advantage: standardise advantages per agent over the batch.
        value_norm: the normaliser shared with the critic, or ``None``.
        shifted: GAE calls the critic once over ``T + shifted_budget`` steps
            instead of twice over ``T`` (torchrl's ``shifted=True``). Exact as
            long as a row holds at most ``shifted_budget - 1`` truncations.
        shifted_budget: extra critic time slots for ``shifted``.
        recurrent_critic: the critic is recurrent and runs in the collector's
            policy: GAE uses the values it stored there (see
            :class:`~mappo_torchrl.objectives.ActiveAgentGAE`).

    Example:
        >>> import torch
        >>> from mappo_torchrl.envs import group_keys, make_env
        >>> from mappo_torchrl.models import make_actor, make_critic
        >>> from mappo_torchrl.objectives import make_loss
        >>> env = make_env("navigation", num_envs=2)
        >>> keys = group_keys(env, "agents")
        >>> loss = make_loss(make_actor(env, "agents"), make_critic(env, "agents"), keys)
        >>> with torch.no_grad():  # collected data carries no gradients
        ...     data = env.rollout(5, loss.actor_network)
        ...     _ = loss.value_estimator(data)
        >>> sorted(k for k in loss(data.reshape(-1)).keys() if k.startswith("loss_"))
        ['loss_critic', 'loss_entropy', 'loss_objective']
    """
    if critic_loss not in CRITIC_LOSSES:
        raise ValueError(f"critic_loss={critic_loss!r}: must be one of {', '.join(CRITIC_LOSSES)}")
    loss = MultiAgentPPOLoss(
        actor,
        critic,
        clip_epsilon=clip_epsilon,
        entropy_bonus=entropy_coeff > 0,
        entropy_coeff=entropy_coeff,
        critic_coeff=critic_coeff,
        loss_critic_type="smooth_l1" if critic_loss == "huber" else critic_loss,
        huber_delta=huber_delta if critic_loss == "huber" else None,
        clip_value=clip_epsilon if clip_value else None,
        # Standardised once per batch by the value estimator instead.
        normalize_advantage=False,
        value_norm=value_norm,
        # Plain modules: no functional parameter swapping on every call.
        functional=False,
    )
    # MultiAgentGAE, standardising over active agents where agents can leave early.
    # ``loss.value_estimator = ...`` would be swallowed by nn.Module.__setattr__
    # (it registers a submodule and skips the property setter; see
    # tests/test_torchrl_workarounds.py), so the setter is called explicitly.
    type(loss).value_estimator.fset(
        loss,
        ActiveAgentGAE(
            gamma=gamma,
            lmbda=lmbda,
            value_network=None if recurrent_critic else critic,
            recurrent_critic=critic if recurrent_critic else None,
            average_gae=normalize_advantage,
            differentiable=False,
            shifted=shifted,
            shifted_budget=shifted_budget,
            agent_mask_key=keys.agent_mask,
        ),
    )
    loss.set_keys(
        action=keys.action,
        sample_log_prob=keys.log_prob,
        value=keys.state_value,
        advantage=keys.advantage,
        value_target=keys.value_target,
        reward=keys.reward,
        done=keys.done,
        terminated=keys.terminated,
    )
    # Inactive agents' policy, value and entropy terms are left out of the loss.
    loss.loss_mask_key = keys.agent_mask
    return loss
