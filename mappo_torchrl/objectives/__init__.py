"""The PPO objective and advantage estimation, one loss per agent group."""

from mappo_torchrl.objectives.advantage import ActiveAgentGAE
from mappo_torchrl.objectives.loss import MultiAgentPPOLoss, make_loss, make_value_norm

__all__ = ["ActiveAgentGAE", "MultiAgentPPOLoss", "make_loss", "make_value_norm"]
