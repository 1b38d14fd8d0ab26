"""Every random-number stream a run draws from: seeded, saved, restored or fenced off.

A run draws from torch's global generator (policy sampling, minibatch
permutations, network init), from numpy and python's ``random`` where a
scenario does, and from VMAS's own streams. VMAS keeps those in a class
attribute, ``Environment.vmas_random_state``, shared by every VMAS env of the
process and swapped in around each reset and step. Seeding a second VMAS env
(an evaluation env) therefore reseeds the training env too:
:func:`isolated_rng` fences such work off.

States are converted to tensors and builtins so that ``torch.load`` can read
them back with ``weights_only=True``.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices).

    Example:
        >>> import torch
        >>> from mappo_torchrl.rng import seed_everything
        >>> seed_everything(0); a = torch.rand(2)
        >>> seed_everything(0); torch.equal(a, torch.rand(2))
        True
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """The state of every stream: torch (CPU and CUDA), numpy, python and VMAS."""
    state = {
        "torch": torch.get_rng_state(),
        "numpy": _numpy_to_saveable(np.random.get_state()),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    vmas = _vmas_streams()
    if vmas is not None:
        state["vmas"] = [
            vmas[0].clone(),
            _numpy_to_saveable(vmas[1]),
            vmas[2],
        ]
    return state


def load_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(_numpy_from_saveable(state["numpy"]))
    random.setstate(_python_state(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    vmas = _vmas_streams()
    if vmas is not None and "vmas" in state:
        torch_state, numpy_state, python_state = state["vmas"]
        vmas[:] = [
            torch_state.clone(),
            _numpy_from_saveable(numpy_state),
            _python_state(python_state),
        ]


@contextlib.contextmanager
def isolated_rng() -> Iterator[None]:
    """Run a block without moving any random stream the caller sees.

    Example:
        >>> before = torch.get_rng_state()
        >>> with isolated_rng():
        ...     _ = torch.rand(3)
        >>> torch.equal(before, torch.get_rng_state())
        True
    """
    saved = rng_state()
    try:
        yield
    finally:
        load_rng_state(saved)


def _vmas_streams() -> list | None:
    try:
        from vmas.simulator.environment.environment import Environment
    except ImportError:  # pragma: no cover - vmas is a dependency
        return None
    return Environment.vmas_random_state


def _numpy_to_saveable(state: tuple) -> tuple:
    name, keys, pos, has_gauss, cached = state
    return (
        name,
        torch.from_numpy(np.asarray(keys, dtype=np.uint32).astype(np.int64)),
        pos,
        has_gauss,
        cached,
    )


def _numpy_from_saveable(state: tuple) -> tuple:
    name, keys, pos, has_gauss, cached = state
    if isinstance(keys, torch.Tensor):
        keys = keys.numpy().astype(np.uint32)
    return (name, keys, int(pos), int(has_gauss), float(cached))


def _python_state(state: Any) -> tuple:
    # torch.load gives lists back where random.getstate() had tuples.
    version, internal, gauss = state
    return (version, tuple(internal), gauss)
