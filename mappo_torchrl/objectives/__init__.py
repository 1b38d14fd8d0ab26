"""The PPO objective and advantage estimation, one loss per agent group."""

from mappo_torchrl.objectives.advantage import ActiveAgentGAE, shifted_budget
from mappo_torchrl.objectives.loss import (
    MAPPOValueNorm,
    MultiAgentPPOLoss,
    make_loss,
    make_value_norm,
)

__all__ = [
    "ActiveAgentGAE",
    "MAPPOValueNorm",
    "MultiAgentPPOLoss",
    "make_loss",
    "make_value_norm",
    "shifted_budget",
]
