"""Rollout collection with TorchRL's collectors: in this process, in workers, or overlapped."""

from __future__ import annotations

import ast
import copy
import functools
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from queue import Empty
from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torchrl.collectors import BaseCollector, Collector, MultiAsyncCollector, MultiSyncCollector
from torchrl.envs import EnvBase
from torchrl.weight_update import SharedMemWeightSyncScheme

from mappo_torchrl.compat import (
    CARRIER_ATTR,
    WatchableMultiAsyncCollector,
    output_queue,
    shutdown_weight_sync,
    weight_ack_queue,
)
from mappo_torchrl.config.checks import check_int
from mappo_torchrl.envs.boundaries import boundary_file, read_boundary

EnvFn = Callable[[], EnvBase]
#: How long one look at the worker's queues waits, in seconds (between two checks for a stall).
POLL_S = 1.0
#: The line a worker writes first in its log (then its pid and the time).
_LOG_HEADER = "mappo: collecting worker pid"


class CollectorStalled(RuntimeError):
    """The collecting worker did not answer for longer than its limit; it was ended (one line)."""


class WorkerFailed(RuntimeError):
    """A collecting worker process died (one line: its pid, how it ended, where its log is)."""


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
    stall_timeout_s: float = 60.0,
    worker_log: str | Path | None = None,
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
        stall_timeout_s: with ``overlap``, the least time to wait for the worker
            (see :class:`~mappo_torchrl.data.collector.OverlappedCollector`).
        worker_log: a file the worker processes write their standard error to
            (appended; their tracebacks, if they fail); ``None``: this process's.

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
    if worker_log is not None:
        worker_env_fns = [
            functools.partial(_env_logging_to, str(worker_log), f) for f in worker_env_fns
        ]
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
            stall_timeout_s=stall_timeout_s,
            worker_log=worker_log,
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


class OverlappedCollector(WatchableMultiAsyncCollector):
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

    A worker that stops answering (``kill -STOP``, a frozen machine) is not
    waited for without end: a wait for its batch, or for it to take new
    weights, that lasts longer than ``stall_limit()`` ends the worker
    (SIGKILL) and raises ``CollectorStalled``.

    Args:
        trained: the module whose weights the worker collects with.
        boundaries: the folder the worker's env saves its state in after each batch.
        stall_timeout_s: the least time to wait for the worker, in seconds.
        worker_log: where the worker writes its standard error, for the message
            that reports its death (see ``worker_failure``).

    The other arguments are TorchRL's ``MultiAsyncCollector``'s.
    """

    def __init__(
        self,
        *args,
        trained: torch.nn.Module,
        boundaries=None,
        stall_timeout_s: float = 60.0,
        worker_log: str | Path | None = None,
        **kwargs,
    ) -> None:
        self._trained = trained
        self._worker_log = worker_log
        self._boundaries = boundaries
        self._batches = 0
        self._boundary: Path | None = None  # what the current batch started from
        #: The weights the worker collects its current batch with.
        self.behaviour_weights: TensorDictBase | None = None
        self._resumed_weights: TensorDictBase | None = None
        #: The least time to wait for the worker before it counts as stalled, in seconds.
        self.stall_timeout_s = stall_timeout_s
        #: The longest this process has waited for a batch so far, in seconds.
        self.slowest_wait_s = 0.0
        self._waiting_since: float | None = None
        # TorchRL's scheme would wait for the worker to take new weights with no
        # time limit (sync=True); _await_weights waits, a second at a time.
        schemes = {"policy": SharedMemWeightSyncScheme(sync=False)}
        super().__init__(*args, weight_sync_schemes=schemes, **kwargs)

    def update_policy_weights_(self, policy_or_weights=None, **kwargs) -> None:
        ours = policy_or_weights is None
        if ours:
            if self._resumed_weights is not None and self._frames == 0:
                # A resumed run's first batch is collected by the weights that
                # collected it in the run that stopped.
                policy_or_weights = self._resumed_weights
            else:
                self._resumed_weights = None
                policy_or_weights = TensorDict.from_module(self._trained).data
        super().update_policy_weights_(policy_or_weights, **kwargs)
        self._await_weights()
        if ours:
            # Only once the worker holds them: a checkpoint taken after a wait cut
            # short keeps the weights of the batch the worker was given before.
            self.behaviour_weights = policy_or_weights.clone()

    def iterator(self):
        batches = super().iterator()
        while True:
            self._waiting_since = time.monotonic()
            try:
                batch = next(batches, None)
            finally:
                waited, self._waiting_since = time.monotonic() - self._waiting_since, None
            if batch is None:
                return
            self.slowest_wait_s = max(self.slowest_wait_s, waited)
            if self._boundaries is not None:
                # Written before the batch was sent; the worker writes the other
                # file next, and this one again only after the next batch is taken.
                self._boundary = boundary_file(self._boundaries, self._batches)
            self._batches += 1
            yield batch

    def stall_limit(self) -> float:
        """How long a wait for the worker may last, in seconds: 10 times the slowest
        wait for a batch so far, and at least ``stall_timeout_s``."""
        return max(self.stall_timeout_s, 10 * self.slowest_wait_s)

    def still_waiting(self) -> None:
        """Raise ``CollectorStalled`` (ending the worker) once the wait for a
        batch has lasted longer than ``stall_limit()``."""
        if self._waiting_since is not None:
            self._check_stall(self._waiting_since)

    def _await_weights(self) -> None:
        """Wait until the worker has taken the weights just sent (it says so on a queue)."""
        queue = weight_ack_queue(self)
        since = self._waiting_since or time.monotonic()
        while True:
            try:
                queue.get(timeout=POLL_S)
                return
            except Empty:
                failure = worker_failure(self, self._worker_log)
                if failure is not None:
                    raise failure from None
                self._check_stall(since)

    def _check_stall(self, since: float) -> None:
        waited, limit = time.monotonic() - since, self.stall_limit()
        if waited <= limit:
            return
        process = self.procs[0]
        process.kill()  # SIGKILL: a stopped process would not act on SIGTERM
        process.join(timeout=10)
        raise CollectorStalled(
            f"the collecting worker (pid {process.pid}) has not answered for {waited:.1f} s, "
            f"over its limit of {limit:.1f} s (10x its slowest batch so far, at least "
            f"collector.stall_timeout_s={self.stall_timeout_s:g}); it was ended with SIGKILL"
        )

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


def worker_failure(collector: BaseCollector, log: str | Path | None = None) -> WorkerFailed | None:
    """A ``WorkerFailed`` naming the first of ``collector``'s worker processes that
    has died (its pid, exit code or signal, and the last line of ``log``), or ``None``
    while they all live (or for a collector without worker processes)."""
    for process in getattr(collector, "procs", None) or []:
        try:
            code = process.exitcode
        except ValueError:  # closed by TorchRL: it was alive, and was ended after another died
            continue
        if code is None:
            continue
        how = f"exited with code {code}"
        if code < 0:
            how = f"was killed by {signal.Signals(-code).name}"
        text = f"the collecting worker (pid {process.pid}) {how}"
        last = _last_line(log)
        if last:
            text += f" (traceback in {log}): {last[:200]}"
        return WorkerFailed(text)
    return None


def _last_line(log: str | Path | None) -> str:
    """The last line the latest worker wrote in ``log`` (a traceback's error), or ``""``."""
    try:
        with open(log, "rb") as f:
            f.seek(max(f.seek(0, os.SEEK_END) - 8192, 0))
            lines = f.read().decode(errors="replace").splitlines()
    except (OSError, TypeError):
        return ""
    for line in reversed(lines):
        if line.startswith(_LOG_HEADER):  # the lines above are an earlier worker's
            return ""
        if line.strip():
            return line.strip()
    return ""


def _env_logging_to(log: str, env_fn: EnvFn) -> EnvBase:
    """``env_fn()``, in a worker process whose standard error now goes to the end of ``log``.

    The worker's own messages (its traceback, if it fails) then stay out of the
    terminal, where the trainer reports the failure in one line. In the main
    process (where TorchRL may call ``env_fn`` too) nothing is redirected, nor
    where ``log`` cannot be opened (its folder does not exist yet, say).
    """
    if multiprocessing.parent_process() is not None:
        sys.stderr.flush()
        try:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError:
            return env_fn()
        os.dup2(fd, sys.stderr.fileno())
        os.close(fd)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        print(f"{_LOG_HEADER} {os.getpid()} started {stamp}", file=sys.stderr)
    return env_fn()


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
