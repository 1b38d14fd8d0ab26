"""Where a collecting worker's envs stand between two batches, for an exact resume.

An overlapped collector's worker (:class:`~mappo_torchrl.data.collector.OverlappedCollector`)
steps its envs in another process, always one batch ahead of the update. A
checkpoint taken after an update must hold what that worker starts its next
batch from: the VMAS simulation, the worker's random streams and the
tensordict the collector acts on next. :class:`BatchBoundaryEnv` writes those
to a file after the last step of each batch (TorchRL's collector gives no other
channel out of its worker, and a queue handed over in the env's constructor
does not reach the parent); a resumed run sends them back with
:meth:`BatchBoundaryEnv.load_boundary` before its first batch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torchrl.envs import EnvBase, TransformedEnv

from mappo_torchrl.envs.vmas_state import load_vmas_state, vmas_state
from mappo_torchrl.rng import load_rng_state, rng_state


class BatchBoundaryEnv(TransformedEnv):
    """``env``, which saves its state after every ``steps_per_batch`` steps.

    After batch ``n`` (counting from 0) it writes ``boundary_file(folder, n)``
    (atomically): the VMAS state, every random stream of this process and the
    next tensordict the collector acts on (after the resets of the envs that
    just finished), taken when the collector's ``step_and_maybe_reset`` ends a
    batch. Two files take turns: the collector's parent reads batch ``n``'s
    before it lets the worker start batch ``n + 2``.

    Args:
        env: a VMAS env (with any transforms).
        steps_per_batch: collector steps per batch (``frames_per_batch // num_envs``).
        folder: where the files go.
    """

    def __init__(self, env: EnvBase, *, steps_per_batch: int, folder: str | Path) -> None:
        super().__init__(env)
        self._steps_per_batch = steps_per_batch
        self._folder = Path(folder)
        self._steps = 0

    def step_and_maybe_reset(self, tensordict):
        """The env's ``step_and_maybe_reset``; after a batch's last step, the state is saved."""
        out, carrier = super().step_and_maybe_reset(tensordict)
        self._steps += 1
        if self._steps % self._steps_per_batch == 0:
            batch = self._steps // self._steps_per_batch - 1
            write_boundary(self, carrier, boundary_file(self._folder, batch))
        return out, carrier

    def load_boundary(self, state: dict[str, Any]) -> None:
        """Put this env and the process's random streams where ``state`` (what
        :func:`read_boundary` returns) says; the collector's next tensordict,
        ``state["carrier"]``, is the caller's to restore."""
        load_vmas_state(self, state["env"])
        load_rng_state(state["rng"])
        self._steps = 0


def boundary_file(folder: str | Path, batch: int) -> Path:
    """The file holding the state after ``batch`` (two files take turns)."""
    return Path(folder) / f"boundary-{batch % 2}.pt"


def write_boundary(env: EnvBase, carrier, path: Path) -> None:
    """Save ``env``'s VMAS state, this process's random streams and ``carrier`` to ``path``."""
    state = {"env": vmas_state(env), "rng": rng_state(), "carrier": carrier.to_dict()}
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def read_boundary(path: str | Path) -> dict[str, Any]:
    """What :func:`write_boundary` saved: ``{"env": ..., "rng": ..., "carrier": dict}``
    (plain data, which a checkpoint loads with ``weights_only=True``)."""
    return torch.load(path, weights_only=True)
