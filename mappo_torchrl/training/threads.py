"""How many CPU threads the loop uses: while collecting, and while updating."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch


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
        >>> from mappo_torchrl.training.threads import threads_during
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
