"""Reproducibility and CPU thread settings."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices).

    Example:
        >>> import torch
        >>> from mappo_torchrl.training import seed_everything
        >>> seed_everything(0); a = torch.rand(2)
        >>> seed_everything(0); torch.equal(a, torch.rand(2))
        True
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_threads(threads: int, device: torch.device) -> None:
    """Use ``threads`` torch threads for CPU work (0: one per core this process may use).

    VMAS steps many small tensors; more threads than free cores makes it many
    times slower, so this is set on purpose rather than left to torch, whose
    default counts the machine's cores, not the ones this process may use.
    """
    if device.type == "cpu":
        torch.set_num_threads(threads or available_cores())


@contextmanager
def threads_during(threads: int, device: torch.device) -> Iterator[None]:
    """Use ``threads`` torch threads inside the block, at most one per available core.

    The update's matrix products scale with threads where VMAS's small steps do
    not, so the trainer gives the update its own thread count. Nothing changes
    off the CPU.

    Example:
        >>> import torch
        >>> from mappo_torchrl.training.seeding import threads_during
        >>> torch.set_num_threads(1)
        >>> with threads_during(1, torch.device("cpu")):
        ...     torch.get_num_threads()
        1
        >>> torch.get_num_threads()
        1
    """
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    cores = available_cores()
    torch.set_num_threads(min(threads or cores, cores))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def available_cores() -> int:
    """Cores this process may run on (its affinity where the OS reports one)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1
