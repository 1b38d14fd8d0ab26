"""Old module paths and names, still importable (with a ``FutureWarning``) after a move.

``import mappo_torchrl.training.checkpoint`` gives a module holding the names of
:mod:`mappo_torchrl.runs.checkpoint`, and so on for every path in :data:`MOVED`;
the renamed names in :data:`RENAMED` still resolve in their old module. New code
should use the new paths and names; these go away in a later version.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings

#: Old module path -> the module(s) that now hold its names.
MOVED: dict[str, tuple[str, ...]] = {
    "mappo_torchrl.training.session": ("mappo_torchrl.runs.session",),
    "mappo_torchrl.training.checkpoint": ("mappo_torchrl.runs.checkpoint",),
    "mappo_torchrl.training.rundir": ("mappo_torchrl.runs.directory",),
    "mappo_torchrl.training.evaluation": ("mappo_torchrl.runs.evaluation",),
    "mappo_torchrl.training.loggers": ("mappo_torchrl.runs.loggers",),
    "mappo_torchrl.training.rng": ("mappo_torchrl.rng",),
    "mappo_torchrl.training.groups": ("mappo_torchrl.training.learner",),
    "mappo_torchrl.training.seeding": ("mappo_torchrl.training.threads", "mappo_torchrl.rng"),
    "mappo_torchrl.envs.groups": ("mappo_torchrl.envs.keys",),
    "mappo_torchrl.envs.snapshot": ("mappo_torchrl.envs.vmas_state",),
}


#: (module, old name) -> (module, new name) of what it is now.
RENAMED: dict[tuple[str, str], tuple[str, str]] = {
    ("mappo_torchrl.training", "make_run_env"): ("mappo_torchrl.envs", "make_env_from_config"),
    ("mappo_torchrl.runs.session", "TrainingRun"): (
        "mappo_torchrl.runs.session",
        "TrainingSession",
    ),
}


def renamed(module: str, name: str):
    """What ``module.name`` is now called, with a ``FutureWarning``; the module's
    ``__getattr__`` for names it no longer has."""
    if (module, name) not in RENAMED:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    new_module, new_name = RENAMED[module, name]
    warnings.warn(f"{module}.{name} is now {new_module}.{new_name}", FutureWarning, stacklevel=3)
    return getattr(importlib.import_module(new_module), new_name)


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec):
        return None  # the default: a fresh, empty module

    def exec_module(self, module: types.ModuleType) -> None:
        targets = MOVED[module.__name__]
        warnings.warn(
            f"{module.__name__} moved to {' and '.join(targets)}; import it from there",
            FutureWarning,
            stacklevel=2,
        )
        for target in targets:
            new = importlib.import_module(target)
            names = {
                k: v for k, v in vars(new).items() if not k.startswith("__") or k == "__getattr__"
            }
            module.__dict__.update(names)


def install() -> None:
    """Make the old paths importable (once per process)."""
    if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
        sys.meta_path.append(_MovedModules())
