"""Rollout collection with TorchRL's collectors: in this process, in workers, or overlapped."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torchrl.collectors import BaseCollector, Collector, MultiAsyncCollector, MultiSyncCollector
from torchrl.envs import EnvBase

from mappo_torchrl.compat import output_queue
from mappo_torchrl.config.checks import check_int

EnvFn = Callable[[], EnvBase]


def make_collector(
    env: EnvBase,
    policy: TensorDictModuleBase,
    *,
    frames_per_batch: int,
    total_frames: int,
    device: torch.device | str | None = None,
    compile_policy: bool = False,
    cudagraph_policy: bool = False,
    worker_env_fns: list[EnvFn] = (),
    workers: int = 1,
    overlap: bool = False,
    worker_threads: int = 1,
) -> BaseCollector:
    """A TorchRL collector yielding ``[num_envs, frames_per_batch // num_envs]`` batches.

    By default a :class:`~torchrl.collectors.Collector` (formerly
    ``SyncDataCollector``) steps ``env`` in this process. With ``workers > 1``, a
    :class:`~torchrl.collectors.MultiSyncCollector` steps ``workers`` copies made
    by ``worker_env_fn`` in worker processes and the batch stacks their envs
    (for envs that are not vectorised). With ``overlap``, a
    :class:`~torchrl.collectors.MultiAsyncCollector` with one worker collects
    the next batch while this process learns from the last one: each batch is
    collected by one version of the weights, the one before the latest update
    (one iteration of policy lag; the stored log-probs are the behaviour
    policy's, so PPO's ratio stays correct).

    Args:
        env: the env to roll out (already batched, e.g. a VMAS env); with workers
            it only gives the batch size and device.
        policy: the joint policy of every agent group.
        frames_per_batch: env steps per yielded batch, over all vectorised envs.
        total_frames: env steps after which iteration stops.
        device: where the policy runs and data is stored (defaults to the env's).
        compile_policy: ``torch.compile`` the policy.
        cudagraph_policy: capture the policy as a CUDA graph (CUDA only).
        worker_env_fns: one function per worker making its env, which holds
            ``1 / workers`` of ``env``'s vectorised envs; needed with
            ``workers > 1`` or ``overlap``.
        workers: env copies stepped in worker processes (1: in this process).
        overlap: collect in one worker process while the update runs.
        worker_threads: torch threads of each worker process.

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
    check_int("workers", workers, low=1)
    check_int("worker_threads", worker_threads, low=1)
    num_envs = max(env.batch_size.numel(), 1)
    if frames_per_batch % num_envs:
        raise ValueError(
            f"frames_per_batch={frames_per_batch}: must be a multiple of the env's batch "
            f"size ({num_envs} vectorised envs)"
        )
    if overlap and workers > 1:
        raise ValueError(f"workers={workers}: must be 1 with overlap (one collecting worker)")
    if (overlap or workers > 1) and len(worker_env_fns) != workers:
        raise ValueError(
            f"worker_env_fns: {len(worker_env_fns)} given, workers={workers} need one each"
        )
    device = env.device if device is None else device
    common = {
        "frames_per_batch": frames_per_batch,
        "total_frames": total_frames,
        "device": device,
        "storing_device": device,
        "compile_policy": compile_policy or None,
        "cudagraph_policy": cudagraph_policy or None,
    }
    if overlap:
        return OverlappedCollector(
            list(worker_env_fns),
            # The worker runs a copy: TorchRL shares the given policy's parameters
            # with it, so the trained ones would change under it mid-batch.
            copy.deepcopy(policy),
            trained=policy,
            # The weights are sent when the worker is between two batches, so a
            # batch never mixes two versions of the policy.
            update_at_each_batch=True,
            num_sub_threads=worker_threads,
            num_threads=torch.get_num_threads(),
            **common,
        )
    if workers > 1:
        # Batches come stacked as [workers, *worker_env_batch, T]: see env_rows.
        return MultiSyncCollector(
            list(worker_env_fns),
            policy,
            cat_results="stack",
            num_sub_threads=worker_threads,
            num_threads=torch.get_num_threads(),
            **common,
        )
    return Collector(
        env,
        policy,
        # The env already carries its transforms; nothing to move onto the policy.
        auto_register_policy_transforms=False,
        **common,
    )


class OverlappedCollector(MultiAsyncCollector):
    """A one-worker :class:`~torchrl.collectors.MultiAsyncCollector` that follows ``trained``.

    TorchRL sends the weights of the policy it was given (which the worker
    shares) at the start of each of the worker's batches; here those are
    copied from ``trained``, the module the update steps, so that each batch is
    collected by exactly one version of the weights: the latest one at the
    moment the worker starts the batch.
    """

    def __init__(self, *args, trained: torch.nn.Module, **kwargs) -> None:
        self._trained = trained
        super().__init__(*args, **kwargs)

    def update_policy_weights_(self, policy_or_weights=None, **kwargs) -> None:
        if policy_or_weights is None:
            policy_or_weights = TensorDict.from_module(self._trained).data
        super().update_policy_weights_(policy_or_weights, **kwargs)


def env_rows(batch: TensorDictBase) -> TensorDictBase:
    """``batch`` as ``[envs, T]``: the workers' stacked ``[workers, *envs, T]`` flattened.

    A batch from one process (``[envs, T]`` or an unbatched env's ``[T]``) is
    returned as it is.

    Example:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> env_rows(TensorDict(batch_size=[2, 30, 100])).batch_size
        torch.Size([60, 100])
    """
    return batch.reshape(-1, batch.shape[-1]) if batch.ndim > 2 else batch


def next_batch_ready(collector: BaseCollector) -> bool:
    """Whether an overlapped collector's worker has finished the batch it is collecting.

    Reads the :class:`~torchrl.collectors.MultiAsyncCollector`'s output queue
    without taking from it (``False`` for any other collector).
    """
    queue = output_queue(collector)
    return isinstance(collector, MultiAsyncCollector) and queue is not None and not queue.empty()
