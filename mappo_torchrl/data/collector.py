"""Rollout collection with TorchRL's collectors: in this process, in workers, or overlapped."""

from __future__ import annotations

import ast
import copy
import functools
import multiprocessing
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torchrl.collectors import BaseCollector, Collector, MultiAsyncCollector, MultiSyncCollector
from torchrl.envs import EnvBase

from mappo_torchrl.compat import CARRIER_ATTR, output_queue, shutdown_weight_sync
from mappo_torchrl.config.checks import check_int
from mappo_torchrl.envs.boundaries import boundary_file, read_boundary

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
    boundaries=None,
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
        boundaries: with ``overlap``, the folder the worker's env saves its state
            in after each batch (``worker_env_fns`` wrapping their env in a
            :class:`~mappo_torchrl.envs.boundaries.BatchBoundaryEnv`), for
            checkpoints that resume exactly.
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
            boundaries=boundaries,
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

    With ``boundaries`` (the folder the worker's
    :class:`~mappo_torchrl.envs.boundaries.BatchBoundaryEnv` saves to), it
    keeps what the worker starts its current batch from, so that a checkpoint
    can hold it: :meth:`resume_state` and :meth:`load_resume_state`.
    """

    def __init__(self, *args, trained: torch.nn.Module, boundaries=None, **kwargs) -> None:
        self._trained = trained
        self._boundaries = boundaries
        self._batches = 0
        self._boundary: Path | None = None  # what the current batch started from
        #: The weights the worker collects its current batch with.
        self.behaviour_weights: TensorDictBase | None = None
        self._resumed_weights: TensorDictBase | None = None
        super().__init__(*args, **kwargs)

    def update_policy_weights_(self, policy_or_weights=None, **kwargs) -> None:
        if policy_or_weights is None:
            if self._resumed_weights is not None and self._frames == 0:
                # A resumed run's first batch is collected by the weights that
                # collected it in the run that stopped.
                policy_or_weights = self._resumed_weights
            else:
                self._resumed_weights = None
                policy_or_weights = TensorDict.from_module(self._trained).data
            self.behaviour_weights = policy_or_weights.clone()
        super().update_policy_weights_(policy_or_weights, **kwargs)

    def iterator(self):
        for batch in super().iterator():
            if self._boundaries is not None:
                # Written before the batch was sent; the worker writes the other
                # file next, and this one again only after the next batch is taken.
                self._boundary = boundary_file(self._boundaries, self._batches)
            self._batches += 1
            yield batch

    def resume_state(self) -> dict[str, Any] | None:
        """What the worker's current batch starts from, as plain data (``None``
        before the first batch, or without ``boundaries``): the worker's env
        state, random streams and next tensordict, and the weights it uses."""
        if self._boundary is None:
            return None
        weights = self.behaviour_weights.to_dict()
        return {"boundary": read_boundary(self._boundary), "weights": weights}

    def load_resume_state(self, state: dict[str, Any]) -> None:
        """Make the worker's next batch the one :meth:`resume_state` describes.

        Call it before iterating: the worker must be waiting between batches.
        """
        boundary = state["boundary"]
        self.map_fn(f"{CARRIER_ATTR}.update", [(boundary["carrier"],)])
        # Last: loads the worker's random streams.
        self.map_fn("env.load_boundary", [(boundary,)])
        self._resumed_weights = TensorDict(state["weights"])
        self._batches = 0  # the worker counts its batches from here


def main_module_is_guarded() -> bool:
    """Whether a collecting worker process can start from this program.

    TorchRL starts its workers with ``spawn``, which runs the program's main
    file again in the worker: training there must sit under
    ``if __name__ == "__main__":``, or every worker would train too. True in an
    interactive session, with ``python -c`` and for the ``mappo`` command; false
    inside a worker process itself.
    """
    if multiprocessing.parent_process() is not None:
        return False
    path = getattr(sys.modules.get("__main__"), "__file__", None)
    if path is None:
        return True
    return _has_main_guard(str(path))


@functools.cache
def _has_main_guard(path: str) -> bool:
    try:
        tree = ast.parse(Path(path).read_text())
    except (OSError, SyntaxError, ValueError):
        return False
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Compare):
            names = [node.test.left, *node.test.comparators]
            sides = {ast.unparse(side) for side in names}
            if sides == {"__name__", "'__main__'"}:
                return True
    return False


def shutdown_collector(collector: BaseCollector) -> None:
    """``collector.shutdown()``, and for worker processes the weight-sync schemes
    too, so that the program can exit (see :func:`mappo_torchrl.compat.shutdown_weight_sync`)."""
    collector.shutdown()
    shutdown_weight_sync(collector)


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
