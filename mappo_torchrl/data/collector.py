"""Rollout collection with TorchRL's :class:`~torchrl.collectors.Collector`."""

from __future__ import annotations

import torch
from tensordict.nn import TensorDictModuleBase
from torchrl.collectors import Collector
from torchrl.envs import EnvBase


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
    """
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
