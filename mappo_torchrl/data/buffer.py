"""The on-policy replay buffer the PPO epochs sample minibatches from."""

from __future__ import annotations

import torch
from torchrl.data import LazyTensorStorage, ReplayBuffer, SamplerWithoutReplacement

from mappo_torchrl.config.checks import check_int


def make_replay_buffer(
    *,
    size: int,
    minibatch_size: int,
    device: torch.device | str = "cpu",
) -> ReplayBuffer:
    """A buffer holding one batch, sampled in fixed-size minibatches without replacement.

    ``size`` is the number of flattened samples (``frames_per_batch``). The
    ragged tail of each epoch is dropped (``drop_last=True``), so every
    minibatch has exactly ``minibatch_size`` samples and an epoch is
    ``size // minibatch_size`` gradient steps.

    Example:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from mappo_torchrl.data import make_replay_buffer
        >>> rb = make_replay_buffer(size=100, minibatch_size=32)
        >>> _ = rb.extend(TensorDict({"x": torch.arange(100)}, [100]))
        >>> rb.sample()["x"].shape
        torch.Size([32])
    """
    check_int("size", size, low=1)
    check_int("minibatch_size", minibatch_size, low=1)
    if minibatch_size > size:
        raise ValueError(
            f"minibatch_size={minibatch_size}: must be at most the buffer size ({size})"
        )
    return ReplayBuffer(
        storage=LazyTensorStorage(size, device=device),
        sampler=SamplerWithoutReplacement(drop_last=True),
        batch_size=minibatch_size,
    )
