"""GAE for agent groups whose agents can become inactive."""

from __future__ import annotations

from tensordict import TensorDictBase
from tensordict.utils import NestedKey
from torchrl.objectives.value import MultiAgentGAE


class ActiveAgentGAE(MultiAgentGAE):
    """:class:`~torchrl.objectives.value.MultiAgentGAE` that standardises over active agents only.

    With ``average_gae=True`` the advantage is standardised per agent over
    the batch. When agents can leave an episode early (an ``agent_mask_key``
    entry, true while the agent is active), the steps an agent spends inactive
    are left out of its mean and standard deviation, as the original MAPPO
    code does; they are also masked out of the loss. Without a mask this is
    exactly :class:`~torchrl.objectives.value.MultiAgentGAE`.

    Keyword Args:
        agent_mask_key: the ``[*B, T, n_agents]`` "agent is active" entry, or ``None``.
        **kwargs: forwarded to :class:`~torchrl.objectives.value.MultiAgentGAE`.
    """

    def __init__(self, *, agent_mask_key: NestedKey | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.agent_mask_key = agent_mask_key

    def forward(self, tensordict: TensorDictBase, **kwargs) -> TensorDictBase:
        standardize = self.average_gae
        if not standardize or self.agent_mask_key is None:
            return super().forward(tensordict, **kwargs)
        self.average_gae = False
        try:
            tensordict = super().forward(tensordict, **kwargs)
        finally:
            self.average_gae = standardize
        advantage = tensordict.get(self.tensor_keys.advantage)
        valid = tensordict.get(self.agent_mask_key)
        shifted_valid = tensordict.get("shifted_valid", None)
        if shifted_valid is not None:
            valid = valid & self._expand_to_match(shifted_valid, valid)
        tensordict.set(self.tensor_keys.advantage, self._normalize_advantage(advantage, valid))
        return tensordict
