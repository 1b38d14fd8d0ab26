"""The training loop and what it is built from: one learner per agent group, the
per-iteration metrics and the CPU thread settings.

Run management around the loop (run directory, checkpoints, loggers,
evaluation) is in :mod:`mappo_torchrl.runs`.
"""

from __future__ import annotations

from typing import Any

from mappo_torchrl import _moved
from mappo_torchrl.rng import seed_everything
from mappo_torchrl.training.learner import GroupLearner, make_group_learner
from mappo_torchrl.training.metrics import finished_episode_returns, mean_episode_return
from mappo_torchrl.training.threads import set_threads
from mappo_torchrl.training.trainer import Trainer

__all__ = [
    "GroupLearner",
    "Trainer",
    "finished_episode_returns",
    "make_group_learner",
    "mean_episode_return",
    "seed_everything",
    "set_threads",
]


def __getattr__(name: str) -> Any:  # names that moved: make_run_env
    return _moved.renamed(__name__, name)
