"""The MAPPO/IPPO objective: TorchRL's MAPPOLoss with the original critic loss, plus GAE."""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModule
from tensordict.utils import NestedKey
from torchrl.modules import PopArtValueNorm, ProbabilisticActor, RunningValueNorm, ValueNorm
from torchrl.objectives.multiagent import MAPPOLoss
from torchrl.objectives.utils import distance_loss

from mappo_torchrl.compat import ppo_current_log_prob, set_value_estimator
from mappo_torchrl.config.checks import check_choice
from mappo_torchrl.config.schema import (
    CRITIC_LOSSES,
    VALUE_NORMS,
    AdvantageNormName,
    CriticLossName,
    LossConfig,
    PerfConfig,
    ValueNormName,
)
from mappo_torchrl.envs.keys import GroupKeys
from mappo_torchrl.objectives.advantage import ActiveAgentGAE


class MultiAgentPPOLoss(MAPPOLoss):
    """:class:`~torchrl.objectives.multiagent.MAPPOLoss` with MAPPO's own critic loss.

    The policy and entropy terms are TorchRL's. The critic term is the
    original MAPPO code's (``cal_value_loss`` in marlbenchmark/on-policy):

    * with a value normaliser, the critic network's *own* output (a
      normalised value, ``normalized_value_key``) is compared with the
      normalised target, after the normaliser has been updated with the
      minibatch's targets; TorchRL's ``MAPPOLoss`` instead re-normalises the
      de-normalised prediction with statistics that moved in between, which
      shrinks the first minibatch's critic gradient and makes the value clip
      fire without any parameter change (tests/test_torchrl_workarounds.py);
    * the clipped value loss clips the network output around the one stored
      at collection, ``max(loss(v), loss(v_old + clamp(v - v_old, ±eps)))``;
    * ``huber_delta`` gives the Huber loss with that delta;
    * the clip fraction and explained variance count active agents only, as
      the loss itself does.

    MAPPO and IPPO differ only in the critic passed in (see
    :class:`~torchrl.objectives.multiagent.IPPOLoss`), so one class serves both.

    Keyword Args:
        huber_delta: if set, the critic loss is Huber with this delta and
            ``loss_critic_type`` must be left at its default.
        normalized_value_key: the critic's normalised output, read with a
            ``value_norm`` (see :func:`~mappo_torchrl.models.make_critic`).
        **kwargs: forwarded to :class:`~torchrl.objectives.multiagent.MAPPOLoss`.
    """

    def __init__(
        self,
        actor_network: ProbabilisticActor,
        critic_network: TensorDictModule,
        *,
        huber_delta: float | None = None,
        normalized_value_key: NestedKey | None = None,
        **kwargs,
    ) -> None:
        if huber_delta is not None:
            if kwargs.get("loss_critic_type", "smooth_l1") != "smooth_l1":
                raise ValueError("huber_delta needs loss_critic_type='smooth_l1'")
            kwargs["loss_critic_type"] = "smooth_l1"
        super().__init__(actor_network, critic_network, **kwargs)
        if self.value_norm is not None and normalized_value_key is None:
            raise ValueError("value_norm needs the critic's normalized_value_key")
        self.huber_delta = huber_delta
        self.normalized_value_key = normalized_value_key

    #: Where a minibatch may carry the proximal log-probability (``None``: never).
    proximal_log_prob_key: NestedKey | None = None

    def proximal_log_prob(self, tensordict: TensorDictBase) -> torch.Tensor:
        """The stored actions' log-probabilities under the actor as it is now.

        Computed once per batch before the epochs, when the batch was collected
        by older weights, and stored under :attr:`proximal_log_prob_key`.
        """
        with torch.no_grad():
            return ppo_current_log_prob(self, tensordict).detach()

    def _log_weight(self, tensordict: TensorDictBase, adv_shape: torch.Size):
        """TorchRL's ratios, with the clip taken around the proximal policy when the
        minibatch carries its log-probability (the decoupled objective of Hilton et al.
        2021, "Batch size-invariance for policy optimization"):

            loss = -(pi_prox / pi_behav) * min(r * A, clip(r, 1 - eps, 1 + eps) * A),
            r = pi / pi_prox.

        This is TorchRL's own ``delay_actor`` objective (PPO-EWMA) with the proximal
        log-probabilities read from the minibatch: computed once per batch instead of
        once per minibatch and epoch, and with no second copy of the actor's weights.
        ``ClipPPOLoss.forward`` weights by ``pi / pi_behav`` and clips ``pi / pi_prox``;
        without the entry the ratios are TorchRL's own.
        """
        log_weight, dist, kl_approx, log_is_weight = super()._log_weight(tensordict, adv_shape)
        key = self.proximal_log_prob_key
        proximal = None if key is None else tensordict.get(key, None)
        if proximal is None:
            return log_weight, dist, kl_approx, log_is_weight
        if self.delay_actor:
            raise ValueError("a stored proximal log-probability cannot be used with delay_actor")
        behaviour = tensordict.get(self.tensor_keys.sample_log_prob)
        shift = (proximal - behaviour).view(log_weight.shape)  # log(pi_prox / pi_behav)
        log_weight, kl_approx = log_weight - shift, kl_approx + shift
        if self.max_importance_ratio is not None:  # TorchRL's cap on pi / pi_behav
            shift = torch.minimum(shift, self.max_importance_ratio.log() - log_weight.detach())
        return log_weight, dist, kl_approx, shift

    def loss_critic(self, tensordict: TensorDictBase) -> tuple[torch.Tensor, ...]:
        """Elementwise critic loss (times ``critic_coeff``), clip fraction, explained variance."""
        value_key = self.tensor_keys.value
        if self.value_norm is not None:
            value_key = self.normalized_value_key
        target = tensordict.get(self.tensor_keys.value_target)
        old = tensordict.get(value_key) if self.clip_value else None
        prediction = self.critic_network(tensordict).get(value_key)
        if self.value_norm is not None:
            self.value_norm.update(target)
            target = self.value_norm.normalize(target)
        loss = self._distance(target, prediction)
        active = self._active_mask(tensordict, prediction)
        clip_fraction = None
        if self.clip_value:
            change = prediction - old
            clipped = change.clamp(-self.clip_value, self.clip_value)
            loss = torch.maximum(loss, self._distance(target, old + clipped))
            clip_fraction = _masked_mean((change != clipped).to(loss.dtype), active)
        explained_variance = _explained_variance(target, prediction, active)
        return self.critic_coeff * loss, clip_fraction, explained_variance

    def _distance(self, target: torch.Tensor, prediction: torch.Tensor) -> torch.Tensor:
        if self.huber_delta is not None:
            return F.huber_loss(prediction, target, delta=self.huber_delta, reduction="none")
        return distance_loss(target, prediction, loss_function=self.loss_critic_type)

    def _active_mask(self, tensordict: TensorDictBase, like: torch.Tensor) -> torch.Tensor | None:
        """``like``-shaped float mask of the active agents, or ``None`` if all are."""
        key = self.loss_mask_key
        mask = None if key is None or key == "auto" else tensordict.get(key, None)
        if mask is None:
            return None
        while mask.ndim < like.ndim:
            mask = mask.unsqueeze(-1)
        return mask.expand_as(like).to(like.dtype)


def _masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return x.mean()
    return (x * mask).sum() / mask.sum().clamp_min(1)


@torch.no_grad()
def _explained_variance(
    target: torch.Tensor, prediction: torch.Tensor, mask: torch.Tensor | None
) -> torch.Tensor:
    """``1 - Var(target - prediction) / Var(target)`` over the active entries."""
    residual = target - prediction

    def variance(x: torch.Tensor) -> torch.Tensor:
        mean = _masked_mean(x, mask)
        return _masked_mean((x - mean) ** 2, mask)

    return 1.0 - variance(residual) / (variance(target) + torch.finfo(target.dtype).eps)


class MAPPOValueNorm(PopArtValueNorm):
    """The original MAPPO ``ValueNorm``: TorchRL's PopArt averages with its variance floor.

    TorchRL's :class:`~torchrl.modules.PopArtValueNorm` floors the variance at
    its ``epsilon`` (1e-5, a standard deviation of 0.003 on a first batch of
    near-constant returns); the original code floors it at 1e-2 and uses
    1e-5 only for the debiasing term. The running averages and their update
    are TorchRL's, so state dicts are interchangeable.

    Keyword Args:
        var_floor: the smallest variance used to normalise.
        **kwargs: forwarded to :class:`~torchrl.modules.PopArtValueNorm`.
    """

    def __init__(self, *, var_floor: float = 1e-2, **kwargs) -> None:
        super().__init__(**kwargs)
        self.var_floor = var_floor

    def running_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The debiased running mean and the floored variance."""
        debias = self.debiasing_term.clamp(min=self.epsilon)
        mean = self.running_mean / debias
        var = (self.running_mean_sq / debias - mean.pow(2)).clamp(min=self.var_floor)
        return mean, var

    def normalize(self, value_target: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / std`` with the running statistics."""
        mean, var = self.running_stats()
        return (value_target - mean) / var.sqrt()

    def denormalize(self, normalised_value: torch.Tensor) -> torch.Tensor:
        """``x * std + mean``: back to the return scale."""
        mean, var = self.running_stats()
        return normalised_value * var.sqrt() + mean

    def scale(self) -> torch.Tensor:
        """The running standard deviation (floored)."""
        return self.running_stats()[1].sqrt()


def make_value_norm(
    kind: ValueNormName,
    *,
    beta: float = LossConfig.value_norm_beta,
    device: torch.device | str | None = None,
) -> ValueNorm | None:
    """A value normaliser by name, to share between a critic and its loss.

    Args:
        kind: ``"popart"`` (an exponential moving average, the original MAPPO
            ``ValueNorm``), ``"running"`` (exact running statistics) or
            ``"none"``.
        beta: decay of the ``"popart"`` averages.
        device: where the statistics live.

    Returns:
        A :class:`MAPPOValueNorm`, a :class:`~torchrl.modules.RunningValueNorm`,
        or ``None`` for ``"none"``.

    Example:
        >>> from mappo_torchrl.objectives import make_value_norm
        >>> type(make_value_norm("popart")).__name__, make_value_norm("none")
        ('MAPPOValueNorm', None)
    """
    check_choice("value_norm", kind, VALUE_NORMS)
    if kind == "none":
        return None
    if kind == "popart":
        return MAPPOValueNorm(shape=1, beta=beta, device=device)
    return RunningValueNorm(shape=1, device=device)


def make_loss(
    actor: ProbabilisticActor,
    critic: TensorDictModule,
    keys: GroupKeys,
    *,
    gamma: float = LossConfig.gamma,
    lmbda: float = LossConfig.lmbda,
    clip_epsilon: float = LossConfig.clip_epsilon,
    entropy_coeff: float = LossConfig.entropy_coeff,
    entropy_samples: int = LossConfig.entropy_samples,
    critic_coeff: float = LossConfig.critic_coeff,
    critic_loss: CriticLossName = LossConfig.critic_loss,
    huber_delta: float = LossConfig.huber_delta,
    clip_value: bool = LossConfig.clip_value,
    advantage_norm: AdvantageNormName = LossConfig.advantage_norm,
    value_norm: ValueNorm | None = None,
    shifted: bool = PerfConfig.shifted_gae,
    shifted_budget: int = 1,
    normalize_advantage: bool | None = None,
    recurrent_critic: bool = False,
) -> MultiAgentPPOLoss:
    """The PPO loss of one agent group, with its :class:`~torchrl.objectives.value.MultiAgentGAE`.

    The value estimator (:class:`~mappo_torchrl.objectives.advantage.ActiveAgentGAE`,
    a :class:`~torchrl.objectives.value.MultiAgentGAE`) is attached as
    ``loss.value_estimator``; call it on a batch (under ``torch.no_grad()``)
    before the epochs, as the trainer does. Advantages are standardised there,
    over the whole batch, not per minibatch.

    For envs whose agents can become inactive (``keys.agent_mask``), inactive
    agents are left out of the advantage statistics and their policy, value
    and entropy terms are masked out of the loss (MAPPO's death masking; the
    critic side is :func:`~mappo_torchrl.models.make_critic`'s ``death_masking``).

    The defaults are :class:`~mappo_torchrl.config.LossConfig`'s.

    Args:
        actor: the group's policy (:func:`~mappo_torchrl.models.make_actor`).
        critic: the group's value function (:func:`~mappo_torchrl.models.make_critic`),
            built with the same ``value_norm``.
        keys: the group's keys (:func:`~mappo_torchrl.envs.group_keys`).
        gamma: discount.
        lmbda: GAE lambda.
        clip_epsilon: PPO ratio clip.
        entropy_coeff: entropy bonus weight; 0 skips the entropy term entirely.
        entropy_samples: samples of the Monte-Carlo entropy estimate, for
            distributions without a closed-form entropy (TanhNormal).
        critic_coeff: critic loss weight.
        critic_loss: ``"smooth_l1"``, ``"huber"`` (with ``huber_delta``), ``"l2"`` or ``"l1"``.
        huber_delta: delta of the ``"huber"`` critic loss.
        clip_value: clip the value loss with radius ``clip_epsilon`` around the
            critic output stored at collection (normalised, with a value norm).
        advantage_norm: ``"joint"`` (one mean and std over all agents, the
            original code), ``"per_agent"`` or ``"none"``.
        value_norm: the normaliser shared with the critic, or ``None``.
        shifted: GAE calls the critic once over ``T + shifted_budget`` steps
            instead of twice over ``T`` (torchrl's ``shifted=True``). A batch
            with more time-limit resets in a row than the budget holds is
            computed with two passes instead, so the result is always exact.
        shifted_budget: extra critic time slots for ``shifted``
            (:func:`~mappo_torchrl.objectives.shifted_budget`).
        normalize_advantage: deprecated; ``True`` is ``advantage_norm="per_agent"``,
            ``False`` is ``advantage_norm="none"``.
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
    from mappo_torchrl.config.checks import check_int, check_number

    check_number("gamma", gamma, low=0.0, high=1.0)
    check_number("lmbda", lmbda, low=0.0, high=1.0)
    check_number("clip_epsilon", clip_epsilon, low=0.0, open_low=True)
    check_number("entropy_coeff", entropy_coeff, low=0.0)
    check_number("critic_coeff", critic_coeff, low=0.0, open_low=True)
    check_number("huber_delta", huber_delta, low=0.0, open_low=True)
    check_int("shifted_budget", shifted_budget, low=1)
    check_choice("critic_loss", critic_loss, CRITIC_LOSSES)
    if normalize_advantage is not None:
        warnings.warn(
            "make_loss(normalize_advantage=...) is deprecated; use advantage_norm="
            "'per_agent' | 'joint' | 'none'",
            FutureWarning,
            stacklevel=2,
        )
        advantage_norm = "per_agent" if normalize_advantage else "none"
    if entropy_samples < 1:
        raise ValueError(f"entropy_samples={entropy_samples!r}: must be a positive integer")
    normalized_value = None if value_norm is None else keys.normalized_value
    loss = MultiAgentPPOLoss(
        actor,
        critic,
        clip_epsilon=clip_epsilon,
        entropy_bonus=entropy_coeff > 0,
        entropy_coeff=entropy_coeff,
        samples_mc_entropy=entropy_samples,
        critic_coeff=critic_coeff,
        loss_critic_type="smooth_l1" if critic_loss == "huber" else critic_loss,
        huber_delta=huber_delta if critic_loss == "huber" else None,
        clip_value=clip_epsilon if clip_value else None,
        # Standardised once per batch by the value estimator instead.
        normalize_advantage=False,
        value_norm=value_norm,
        normalized_value_key=normalized_value,
        # Plain modules: no functional parameter swapping on every call.
        functional=False,
    )
    # MultiAgentGAE, standardising over active agents where agents can leave early.
    set_value_estimator(
        loss,
        ActiveAgentGAE(
            gamma=gamma,
            lmbda=lmbda,
            value_network=None if recurrent_critic else critic,
            recurrent_critic=critic if recurrent_critic else None,
            advantage_norm=advantage_norm,
            differentiable=False,
            shifted=shifted,
            shifted_budget=shifted_budget,
            agent_mask_key=keys.agent_mask,
            value_norm=value_norm,
            normalized_value_key=normalized_value,
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
    # Read only from minibatches collected by older weights (overlapped collection).
    loss.proximal_log_prob_key = keys.proximal_log_prob
    return loss
