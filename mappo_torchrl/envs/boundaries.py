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

The files live in a :class:`BoundaryFolder`, a temporary folder that its
trainer removes when done; one left behind by a process that was killed is
removed by the next trainer (:func:`remove_orphaned_folders`).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torchrl.envs import EnvBase, TransformedEnv

from mappo_torchrl.envs.vmas_state import load_vmas_state, vmas_state
from mappo_torchrl.rng import load_rng_state, rng_state

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; orphaned folders are then left alone
    fcntl = None

#: The start of a boundary folder's name (in the system's temporary folder); the
#: owner's pid follows.
FOLDER_PREFIX = "mappo-boundaries-"
#: The file in a boundary folder that its owner holds locked while it lives.
OWNER_FILE = ".owner"
_OWNED_NAME = re.compile(re.escape(FOLDER_PREFIX) + r"(\d+)-")


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


class BoundaryFolder:
    """A temporary folder for the boundary files of this process's collecting worker.

    Removed with its trainer (or when the program exits). A process ended by
    ``kill -9`` cannot remove it, so each new one first removes those whose
    owner is gone (:func:`remove_orphaned_folders`): its name holds its owner's
    pid (``mappo-boundaries-<pid>-...``), and its owner holds a lock on the
    ``.owner`` file in it while it lives.

    Args:
        root: where to make it (default: the system's temporary folder).

    Example:
        >>> folder = BoundaryFolder()
        >>> folder.path.name.startswith(f"mappo-boundaries-{os.getpid()}-")
        True
        >>> folder.cleanup()
        >>> folder.path.exists()
        False
    """

    def __init__(self, root: str | Path | None = None) -> None:
        remove_orphaned_folders(root)
        self._folder = tempfile.TemporaryDirectory(
            prefix=f"{FOLDER_PREFIX}{os.getpid()}-", dir=root
        )
        #: The folder.
        self.path = Path(self._folder.name)
        self._owner = (self.path / OWNER_FILE).open("w")
        if fcntl is not None:
            fcntl.flock(self._owner, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def cleanup(self) -> None:
        """Remove the folder now."""
        self._owner.close()
        self._folder.cleanup()


def remove_orphaned_folders(root: str | Path | None = None) -> list[Path]:
    """Remove the boundary folders in ``root`` (default: the system's temporary folder)
    whose owner process is gone, and return them.

    A folder is removed only when both say so: no process has its owner's pid,
    and no process holds its owner lock (which also covers a pid that another
    PID namespace sharing the folder reuses). Without POSIX locks (Windows)
    nothing is removed.
    """
    if fcntl is None:
        return []
    removed = []
    for path in sorted(Path(root or tempfile.gettempdir()).glob(f"{FOLDER_PREFIX}*")):
        owner = _OWNED_NAME.match(path.name)
        if owner is None or _is_alive(int(owner.group(1))) or not _lock_is_free(path):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process
        return True
    return True


def _lock_is_free(folder: Path) -> bool:
    """Whether no process holds ``folder``'s owner lock (false when it cannot be told)."""
    try:
        with (folder / OWNER_FILE).open("rb") as f:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # held (BlockingIOError), missing or not ours
        return False
    return True
