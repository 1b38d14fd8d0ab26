"""mappo_torchrl: Multi-Agent PPO as small, composable TorchRL modules, trained on VMAS.

The subpackages follow the pipeline: :mod:`~mappo_torchrl.envs`,
:mod:`~mappo_torchrl.models`, :mod:`~mappo_torchrl.objectives`,
:mod:`~mappo_torchrl.data`, :mod:`~mappo_torchrl.training` (the loop), with
:mod:`~mappo_torchrl.runs` for what runs around the loop (run directory,
checkpoints, loggers, evaluation), :mod:`~mappo_torchrl.config` for the run's
options and :mod:`~mappo_torchrl.cli` for the ``mappo`` command. The most used
names are re-exported here.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from mappo_torchrl import _moved

_moved.install()

try:
    __version__ = version("mappo_torchrl")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

# Imported on first use (PEP 562): ``mappo --version`` and ``mappo scenarios``
# answer without importing torch.
_MODULES = {
    "RunConfig": "mappo_torchrl.config",
    "Trainer": "mappo_torchrl.training",
    "group_keys": "mappo_torchrl.envs",
    "make_actor": "mappo_torchrl.models",
    "make_collector": "mappo_torchrl.data",
    "make_critic": "mappo_torchrl.models",
    "make_env": "mappo_torchrl.envs",
    "make_loss": "mappo_torchrl.objectives",
    "make_replay_buffer": "mappo_torchrl.data",
}

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

if TYPE_CHECKING:
    from mappo_torchrl.config import RunConfig
    from mappo_torchrl.data import make_collector, make_replay_buffer
    from mappo_torchrl.envs import group_keys, make_env
    from mappo_torchrl.models import make_actor, make_critic
    from mappo_torchrl.objectives import make_loss
    from mappo_torchrl.training import Trainer


def __getattr__(name: str) -> Any:
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_MODULES[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
