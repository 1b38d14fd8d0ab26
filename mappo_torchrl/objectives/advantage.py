"""GAE for agent groups: advantage standardisation modes, inactive agents, shifted calls."""

from __future__ import annotations

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from tensordict.utils import NestedKey
from torchrl.modules import ValueNorm
from torchrl.objectives.value import MultiAgentGAE

from mappo_torchrl.compat import standardize_per_agent
from mappo_torchrl.config.checks import check_choice
from mappo_torchrl.config.schema import ADVANTAGE_NORMS, AdvantageNormName, LossConfig
from mappo_torchrl.envs.keys import key_tuple

#: The original MAPPO code's ``(adv - mean) / (std + 1e-5)``.
JOINT_STD_EPS = 1e-5


class ActiveAgentGAE(MultiAgentGAE):
    """:class:`~torchrl.objectives.value.MultiAgentGAE` for MAPPO's batches.

    Three things on top of TorchRL's estimator:

    * **Standardisation** over the batch, ``joint`` (one mean and population
      standard deviation over every active agent and step, divided by
      ``std + 1e-5``: the original code's ``nanmean``/``nanstd``) or
      ``per_agent`` (TorchRL's per-agent statistics), or none. When agents can
      leave an episode early (an ``agent_mask_key`` entry, true while the
      agent is active), inactive steps are left out of the statistics, as the
      original does; the loss masks them out too.
    * **The critic's raw output.** With a ``value_norm``, the critic writes
      de-normalised values (what GAE needs); the estimator also stores their
      normalised form under ``normalized_value_key``, with the statistics used
      for GAE. That is the network's own output at collection time, which the
      clipped value loss compares against, as the original code stores
      ``value_preds``.
    * **Exact shifted calls.** With ``shifted=True`` TorchRL drops the samples
      that do not fit in ``T + shifted_budget`` critic slots. If a batch has
      more time-limit resets in a row than the budget holds, this estimator
      recomputes it with two critic passes instead, so no sample is ever
      dropped (see :func:`shifted_budget` for the budget that avoids this).

    A recurrent critic (``recurrent_critic``, with ``value_network=None``) is
    not called by TorchRL: its values are those it wrote during collection,
    from the hidden states it carried then (as the original rMAPPO stores
    ``value_preds``), and each next value is one step of it from the stored
    next hidden state, so truncated episodes bootstrap with the right memory.

    Keyword Args:
        advantage_norm: ``"joint"``, ``"per_agent"`` or ``"none"``.
        agent_mask_key: the ``[*B, T, n_agents]`` "agent is active" entry, or ``None``.
        recurrent_critic: a recurrent critic that ran during collection, or ``None``.
        value_norm: the normaliser shared with the critic, or ``None``.
        normalized_value_key: where the normalised value goes (with ``value_norm``).
        **kwargs: forwarded to :class:`~torchrl.objectives.value.MultiAgentGAE`
            (``average_gae`` is set from ``advantage_norm``).
    """

    def __init__(
        self,
        *,
        advantage_norm: AdvantageNormName = LossConfig.advantage_norm,
        agent_mask_key: NestedKey | None = None,
        recurrent_critic: TensorDictModuleBase | None = None,
        value_norm: ValueNorm | None = None,
        normalized_value_key: NestedKey | None = None,
        **kwargs,
    ) -> None:
        check_choice("advantage_norm", advantage_norm, ADVANTAGE_NORMS)
        if value_norm is not None and normalized_value_key is None:
            raise ValueError("value_norm needs a normalized_value_key")
        super().__init__(average_gae=False, **kwargs)
        self.advantage_norm = advantage_norm
        self.agent_mask_key = agent_mask_key
        # A plain attribute list, not a submodule: the loss already owns the critic.
        self._recurrent_critic = [] if recurrent_critic is None else [recurrent_critic]
        self.value_norm = value_norm
        self.normalized_value_key = normalized_value_key

    def forward(self, tensordict: TensorDictBase, **kwargs) -> TensorDictBase:
        """Write advantages, value targets and (with a value norm) normalised values."""
        if self._recurrent_critic:
            critic = self._recurrent_critic[0]
            value_key = self.tensor_keys.value
            if value_key not in tensordict.keys(True, True):
                raise KeyError(
                    f"{value_key}: a recurrent critic's values are stored at collection; "
                    "run it in the collector's policy"
                )
            step = tensordict.get("next").select(*critic.in_keys, strict=False)
            tensordict.set(("next", *key_tuple(value_key)), critic(step).get(value_key))
        out = super().forward(tensordict, **kwargs)
        valid = out.pop("shifted_valid", None)
        if valid is not None and not bool(valid.all()):
            # More resets in a row than the budget holds: two plain passes instead.
            self.shifted = False
            try:
                out = super().forward(out, **kwargs)
            finally:
                self.shifted = True
        if self.value_norm is not None:
            value = out.get(self.tensor_keys.value)
            out.set(self.normalized_value_key, self.value_norm.normalize(value))
        if self.advantage_norm != "none":
            advantage = out.get(self.tensor_keys.advantage)
            active = self._active(out, advantage)
            if self.advantage_norm == "joint":
                advantage = _standardize_jointly(advantage, active)
            else:
                advantage = standardize_per_agent(self, advantage, active)
            out.set(self.tensor_keys.advantage, advantage)
        return out

    def _active(self, tensordict: TensorDictBase, advantage: torch.Tensor) -> torch.Tensor:
        """``[*B, T, n_agents]``, true where the agent is active.

        Always a tensor: TorchRL's per-agent statistics use Bessel's correction
        without a mask and not with one (tests/test_torchrl_workarounds.py), so
        one is always given, for one formula in every case.
        """
        active = torch.ones(advantage.shape[:-1], dtype=torch.bool, device=advantage.device)
        mask = None if self.agent_mask_key is None else tensordict.get(self.agent_mask_key, None)
        if mask is not None:
            while mask.ndim < active.ndim:
                mask = mask.unsqueeze(-1)
            active = active & mask.expand_as(active)
        return active


def _standardize_jointly(advantage: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """One mean and population std over all active entries: ``(a - mean) / (std + 1e-5)``."""
    weight = active.unsqueeze(-1).expand_as(advantage).to(advantage.dtype)
    count = weight.sum().clamp_min(1)
    mean = (advantage * weight).sum() / count
    std = ((advantage - mean).pow(2) * weight).sum().div(count).sqrt()
    return (advantage - mean) / (std + JOINT_STD_EPS)


def shifted_budget(steps_per_row: int, max_steps: int) -> int:
    """Critic slots beyond ``T`` that shifted GAE needs so that it never drops a sample.

    A row of ``T = steps_per_row`` steps can hold a time-limit reset at any of
    its first ``T - 1`` steps (a reset at the last step costs nothing), and two
    resets are at least ``max_steps`` apart, so at most
    ``ceil((T - 1) / max_steps)`` resets fall inside a row, whatever step of
    its episode the row starts at; each needs one slot, plus one for the
    row's own end.

    Example:
        >>> from mappo_torchrl.objectives.advantage import shifted_budget
        >>> shifted_budget(100, 100), shifted_budget(10, 15), shifted_budget(20, 7)
        (2, 2, 4)
    """
    if steps_per_row < 1 or max_steps < 1:
        raise ValueError(
            f"steps_per_row={steps_per_row}, max_steps={max_steps}: both must be positive"
        )
    return -(-(steps_per_row - 1) // max_steps) + 1
