"""Partial resets of VMAS envs without TorchRL's per-env round trips.

TorchRL's :func:`~torchrl.envs.VmasEnv` resets the envs whose
episode ended early one at a time, through ``vmas.Environment.reset_at``,
which swaps the process's random states for VMAS's own and back (torch,
numpy and python) around every single env. :class:`LoopResetVmasEnv` swaps
them once for all the envs due and calls the scenario's per-env reset for each
in the same order, so every reset env gets exactly the state VMAS's own
per-env reset gives it from the same seed.

``benchmarks/resets.py`` measures what partial resets cost: with a trained
navigation policy that ends episodes early they took 30% of the collection
time. Most of it is the scenario's own per-env reset code and TorchRL's
recomputation of every env's observations after it, which stay: a vectorised
reset could only remove them by drawing other states than VMAS's per-env reset.
"""

from __future__ import annotations

import torch
from tensordict import TensorDictBase
from torchrl.envs.libs.vmas import VmasEnv
from vmas.simulator.environment.environment import Environment, local_seed


def reset_envs_where(venv: Environment, mask: torch.Tensor) -> None:
    """Reset the envs of the VMAS ``Environment`` ``venv`` where ``mask`` is true.

    The same as ``venv.reset_at(i)`` for each such ``i`` in order (the same
    random draws, so the same states), with VMAS's random state swapped in once.

    Example:
        >>> import torch
        >>> from mappo_torchrl.envs import make_env
        >>> from mappo_torchrl.envs.vmas_state import vmas_env
        >>> env = make_env("navigation", num_envs=3, seed=0)
        >>> venv = vmas_env(env)
        >>> before = venv.agents[0].state.pos.clone()
        >>> reset_envs_where(venv, torch.tensor([True, False, False]))
        >>> torch.equal(venv.agents[0].state.pos[1:], before[1:])
        True
    """
    indices = mask.reshape(-1).nonzero().flatten().tolist()
    with local_seed(Environment.vmas_random_state):
        for index in indices:
            venv.scenario.env_reset_world_at(index)
            venv.steps[index] = 0


class LoopResetVmasEnv(VmasEnv):
    """TorchRL's ``VmasEnv`` whose partial resets go through :func:`reset_envs_where`."""

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        if tensordict is None or "_reset" not in tensordict.keys():
            return super()._reset(tensordict, **kwargs)
        due = tensordict.get("_reset")
        if due.all() or not due.any():
            return super()._reset(tensordict, **kwargs)
        reset_envs_where(self._env, due)
        # Every env is where it should be now: let VmasEnv read them, resetting none.
        return super()._reset(tensordict.copy().set("_reset", torch.zeros_like(due)), **kwargs)
