"""Rollout collection with TorchRL's :class:`~torchrl.collectors.Collector`."""

from __future__ import annotations

import torch
from tensordict.nn import TensorDictModuleBase
from torchrl.collectors import Collector
from torchrl.envs import EnvBase

from mappo_torchrl.config.checks import check_int


def make_collector(
    env: EnvBase,
    policy: TensorDictModuleBase,
    *,
    frames_per_batch: int,
    total_frames: int,
    device: torch.device | str | None = None,
    compile_policy: bool = False,
    cudagraph_policy: bool = False,
) -> Collector:
    """A :class:`~torchrl.collectors.Collector` (formerly ``SyncDataCollector``).

    Each iteration yields a ``[num_envs, frames_per_batch // num_envs]``
    tensordict: one row per vectorised env, one column per step.

    Args:
        env: the env to roll out (already batched, e.g. a VMAS env).
        policy: the joint policy of every agent group.
        frames_per_batch: env steps per yielded batch, over all vectorised envs.
        total_frames: env steps after which iteration stops.
        device: where the policy runs and data is stored (defaults to the env's).
        compile_policy: ``torch.compile`` the policy.
        cudagraph_policy: capture the policy as a CUDA graph (CUDA only).

    Example:
        >>> from mappo_torchrl.data import make_collector
        >>> from mappo_torchrl.envs import make_env
        >>> from mappo_torchrl.models import make_actor
        >>> env = make_env("navigation", num_envs=4, max_steps=10)
        >>> collector = make_collector(
        ...     env, make_actor(env, "agents"), frames_per_batch=40, total_frames=80
        ... )
        >>> [batch.batch_size for batch in collector]
        [torch.Size([4, 10]), torch.Size([4, 10])]
        >>> collector.shutdown()
    """
    if not isinstance(env, EnvBase):
        raise TypeError(f"env={type(env).__name__}: must be a TorchRL env (EnvBase)")
    check_int("frames_per_batch", frames_per_batch, low=1)
    check_int("total_frames", total_frames, low=1)
    num_envs = max(env.batch_size.numel(), 1)
    if frames_per_batch % num_envs:
        raise ValueError(
            f"frames_per_batch={frames_per_batch}: must be a multiple of the env's batch "
            f"size ({num_envs} vectorised envs)"
        )
    device = env.device if device is None else device
    return Collector(
        env,
        policy,
        frames_per_batch=frames_per_batch,
        total_frames=total_frames,
        device=device,
        storing_device=device,
        # The env already carries its transforms; nothing to move onto the policy.
        auto_register_policy_transforms=False,
        compile_policy=compile_policy or None,
        cudagraph_policy=cudagraph_policy or None,
    )
