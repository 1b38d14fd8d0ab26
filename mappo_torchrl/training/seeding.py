"""Reproducibility and CPU thread settings."""

from __future__ import annotations

import os
import random

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


def available_cores() -> int:
    """Cores this process may run on (its affinity where the OS reports one)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1
