"""The PPO objective and advantage estimation, one loss per agent group."""

from mappo_torchrl.objectives.loss import MultiAgentPPOLoss, make_loss, make_value_norm

__all__ = ["MultiAgentPPOLoss", "make_loss", "make_value_norm"]
