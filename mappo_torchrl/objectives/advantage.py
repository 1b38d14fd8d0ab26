"""GAE for agent groups whose agents can become inactive."""

from __future__ import annotations

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from tensordict.utils import NestedKey
from torchrl.objectives.value import MultiAgentGAE


class ActiveAgentGAE(MultiAgentGAE):
    """:class:`~torchrl.objectives.value.MultiAgentGAE` that standardises over active agents only.

    With ``average_gae=True`` the advantage is standardised per agent over the
    batch (population mean and standard deviation). When agents can leave an
    episode early (an ``agent_mask_key`` entry, true while the agent is
    active), the steps an agent spends inactive are left out of its
    statistics, as the original MAPPO code does; the loss masks them out too.
    Positions that ``shifted=True`` drops for lack of budget are left out as
    well.

    TorchRL standardises with Bessel's correction when no mask is given and
    without it when one is, so ``shifted=True`` would change the advantages
    slightly; here one formula serves every case, and ``shifted`` is exact.

    A recurrent critic (``recurrent_critic``, with ``value_network=None``) is
    not called by TorchRL: its values are those it wrote during collection,
    from the hidden states it carried then (as the original rMAPPO stores
    ``value_preds``), and each next value is one step of it from the stored
    next hidden state, so truncated episodes bootstrap with the right memory.

    Keyword Args:
        agent_mask_key: the ``[*B, T, n_agents]`` "agent is active" entry, or ``None``.
        recurrent_critic: a recurrent critic that ran during collection, or ``None``.
        **kwargs: forwarded to :class:`~torchrl.objectives.value.MultiAgentGAE`.
    """

    def __init__(
        self,
        *,
        agent_mask_key: NestedKey | None = None,
        recurrent_critic: TensorDictModuleBase | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.agent_mask_key = agent_mask_key
        # A plain attribute list, not a submodule: the loss already owns the critic.
        self._recurrent_critic = [] if recurrent_critic is None else [recurrent_critic]

    def forward(self, tensordict: TensorDictBase, **kwargs) -> TensorDictBase:
        """Write advantages and value targets, standardised over active agents only."""
        if self._recurrent_critic:
            critic = self._recurrent_critic[0]
            value_key = self.tensor_keys.value
            if value_key not in tensordict.keys(True, True):
                raise KeyError(
                    f"{value_key}: a recurrent critic's values are stored at collection; "
                    "run it in the collector's policy"
                )
            step = tensordict.get("next").select(*critic.in_keys, strict=False)
            tensordict.set(("next", *_tuple(value_key)), critic(step).get(value_key))
        standardize = self.average_gae
        self.average_gae = False
        try:
            tensordict = super().forward(tensordict, **kwargs)
        finally:
            self.average_gae = standardize
        if standardize:
            advantage = tensordict.get(self.tensor_keys.advantage)
            valid = torch.ones(advantage.shape[:-1], dtype=torch.bool, device=advantage.device)
            for key in (self.agent_mask_key, "shifted_valid"):
                mask = None if key is None else tensordict.get(key, None)
                if mask is not None:
                    valid = valid & self._expand_to_match(mask, valid)
            tensordict.set(self.tensor_keys.advantage, self._normalize_advantage(advantage, valid))
        return tensordict


def _tuple(key: NestedKey) -> tuple[str, ...]:
    return (key,) if isinstance(key, str) else tuple(key)
