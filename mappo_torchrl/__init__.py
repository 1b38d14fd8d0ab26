"""mappo_torchrl: Multi-Agent PPO as small, composable TorchRL modules, trained on VMAS.

The subpackages follow the pipeline: :mod:`~mappo_torchrl.envs`,
:mod:`~mappo_torchrl.models`, :mod:`~mappo_torchrl.objectives`,
:mod:`~mappo_torchrl.data`, :mod:`~mappo_torchrl.training`, with
:mod:`~mappo_torchrl.config` for the run's options and
:mod:`~mappo_torchrl.cli` for the ``mappo`` command. The most used names are
re-exported here.
"""

from importlib.metadata import PackageNotFoundError, version

from mappo_torchrl.config import RunConfig
from mappo_torchrl.data import make_collector, make_replay_buffer
from mappo_torchrl.envs import group_keys, make_env
from mappo_torchrl.models import make_actor, make_critic
from mappo_torchrl.objectives import make_loss
from mappo_torchrl.training import Trainer

try:
    __version__ = version("mappo_torchrl")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "RunConfig",
    "Trainer",
    "group_keys",
    "make_actor",
    "make_collector",
    "make_critic",
    "make_env",
    "make_loss",
    "make_replay_buffer",
]
