"""The training loop and what it is built from."""

from mappo_torchrl.training.groups import GroupLearner, make_group_learner
from mappo_torchrl.training.metrics import finished_episode_returns, mean_episode_return
from mappo_torchrl.training.seeding import seed_everything, set_threads
from mappo_torchrl.training.trainer import Trainer, make_run_env

__all__ = [
    "GroupLearner",
    "Trainer",
    "finished_episode_returns",
    "make_group_learner",
    "make_run_env",
    "mean_episode_return",
    "seed_everything",
    "set_threads",
]
