"""The training loop: collect, advantage, epochs x minibatches, step, sync weights."""

from __future__ import annotations

import dataclasses
import functools
import time
import warnings
import weakref
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from pathlib import Path

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictSequential
from torchrl.envs import EnvBase
from torchrl.modules import set_recurrent_mode
from tqdm.auto import tqdm

from mappo_torchrl.config import PerfConfig, RunConfig
from mappo_torchrl.config.checks import check_multi_agent_env
from mappo_torchrl.config.schema import ConfigError
from mappo_torchrl.data import make_collector, make_replay_buffer
from mappo_torchrl.data.collector import (
    CollectorStalled,
    WorkerFailed,
    env_rows,
    main_module_is_guarded,
    next_batch_ready,
    shutdown_collector,
    worker_failure,
)
from mappo_torchrl.envs import make_env_from_config, track_episode_returns
from mappo_torchrl.envs.boundaries import BatchBoundaryEnv, BoundaryFolder
from mappo_torchrl.envs.vmas_state import is_vmas_env
from mappo_torchrl.models import add_recurrent_state
from mappo_torchrl.models.mlp import resolve_precision
from mappo_torchrl.models.recurrent import recurrent_layers
from mappo_torchrl.objectives.advantage import shifted_budget
from mappo_torchrl.rng import seed_everything
from mappo_torchrl.training.divergence import check_divergence
from mappo_torchrl.training.learner import GroupLearner, make_group_learner
from mappo_torchrl.training.metrics import LOSS_METRICS, Metrics, mean_episode_return
from mappo_torchrl.training.threads import available_cores, set_threads, threads_during

Callback = Callable[[Metrics], None]


def make_worker_env(
    config: RunConfig,
    policy: TensorDictSequential,
    *,
    worker: int,
    workers: int = 1,
    env_fn: Callable[[], EnvBase] | None = None,
    boundaries=None,
) -> EnvBase:
    """One collection worker's env: ``1 / workers`` of the VMAS envs, or ``env_fn()``.

    Worker ``i`` seeds its VMAS envs with ``seed + i``, so that workers do not
    repeat each other. The env is ready for ``policy``'s recurrent layers. With
    ``boundaries`` (a folder), it saves its state there after each batch
    (:class:`~mappo_torchrl.envs.boundaries.BatchBoundaryEnv`). It runs in a
    worker process, so everything it needs is pickled there.
    """
    # This runs in the worker process: its own random streams (the policy's
    # samples) are seeded too, so that a run is reproducible.
    seed_everything(config.seed + worker)
    if env_fn is not None:
        env = env_fn()
        if not _tracks_episode_returns(env):
            env = track_episode_returns(env)
    else:
        env = make_env_from_config(
            config, seed=config.seed + worker, num_envs=config.env.num_envs // workers
        )
    env = add_recurrent_state(env, policy)
    if boundaries is not None:
        steps = config.collector.frames_per_batch // max(env.batch_size.numel(), 1)
        env = BatchBoundaryEnv(env, steps_per_batch=steps, folder=boundaries)
    return env


class Trainer:
    """MAPPO/IPPO for every agent group of a TorchRL multi-agent env.

    One iteration collects ``frames_per_batch`` env steps, computes each
    group's advantages with its GAE module, then runs ``num_epochs`` passes of
    fixed-size minibatches (of whole chunks of ``optim.chunk_length`` steps for
    a recurrent model, see :meth:`~mappo_torchrl.training.Trainer.samples`);
    each minibatch takes one step (:meth:`update_step`) on every group's actor
    and critic. Groups of a heterogeneous env train side by side on the same
    samples.

    Reading order: :meth:`train` runs :meth:`iterations`, which holds the
    loop's five stages in order (collect; :meth:`compute_advantages`; epochs x
    :meth:`minibatches`; :meth:`update_step`, the gradient step with
    ``backward()``; sync the collector's weights).

    Each group has two Adam optimisers, one for the actor and one for the
    critic, each with its own learning rate and its own gradient clipping, as
    the original MAPPO code does (separate actor and critic optimisers and
    ``max_grad_norm`` per network). The loop in the README and
    ``examples/custom_loop.py`` is shorter on purpose: one Adam over the
    whole loss with one joint clipping, which is what TorchRL's multi-agent
    PPO tutorial does.

    Args:
        config: the run's configuration (validated here).
        env: any TorchRL multi-agent env; by default the VMAS scenario of
            ``config.env``, whose options are then ignored except for checks
            against this env's batch size. An env without ``episode_reward``
            tracking gets :func:`~mappo_torchrl.envs.track_episode_returns` added.
        env_fn: makes such an env, instead of ``env``; needed for
            ``collector.workers > 1`` or ``collector.overlap`` with an env that
            is not the config's VMAS scenario, since worker processes make
            their own copies. It is called once here and once in each worker.
        worker_log: a file that worker processes (``collector.overlap``,
            ``collector.workers``) append their standard error to, e.g. the run
            directory's ``worker.log``: a worker's traceback goes there, and the
            one-line error that reports its failure names the file. ``None``:
            they write to this process's standard error.

    Attributes:
        config: the validated configuration.
        env: the env being trained on.
        groups: one :class:`~mappo_torchrl.training.GroupLearner` per agent
            group, by group name.
        policy: every group's actor in one module, the collector's policy (with
            recurrent critics, the collector runs them after it, to store their states).
        collector: the TorchRL collector (:func:`~mappo_torchrl.data.make_collector`).
        buffer: the :class:`~torchrl.data.ReplayBuffer` minibatches come from.
        iteration: iterations done so far.
        frames: env steps collected so far.

    Example:
        >>> from mappo_torchrl.config import RunConfig
        >>> from mappo_torchrl.training import Trainer
        >>> cfg = RunConfig()
        >>> cfg.env.num_envs, cfg.env.max_steps = 4, 10
        >>> cfg.collector.frames_per_batch, cfg.collector.total_frames = 40, 80
        >>> cfg.optim.minibatch_size = 20
        >>> history = Trainer(cfg).train(progress=False)
        >>> [m["frames"] for m in history]
        [40, 80]
        >>> sorted(k for k in history[-1] if k.startswith("train/"))[:4]
        ['train/actor_lr', 'train/behaviour_kl', 'train/clip_fraction', 'train/entropy']
    """

    def __init__(
        self,
        config: RunConfig,
        *,
        env: EnvBase | None = None,
        env_fn: Callable[[], EnvBase] | None = None,
        worker_log: str | Path | None = None,
    ) -> None:
        if not isinstance(config, RunConfig):
            raise TypeError(f"config={type(config).__name__}: must be a RunConfig")
        if env is not None and env_fn is not None:
            raise TypeError("env and env_fn: pass one of them, not both")
        if env_fn is not None:
            env = env_fn()
        elif env is not None and config.collector.uses_workers():
            on = config.collector.overlap == "on"
            raise ConfigError(
                "collector.overlap" if on else "collector.workers",
                config.collector.overlap if on else config.collector.workers,
                "needs Trainer(env_fn=...) with an env instance: worker processes make their "
                "own copies of the env",
            )
        if env is not None:
            check_multi_agent_env("env", env)
        config.validate(num_envs=None if env is None else max(env.batch_size.numel(), 1))
        self.config = config
        self.device = torch.device(config.device)
        set_threads(config.threads, self.device)
        seed_everything(config.seed)
        env_is_config = env is None
        if env is None:
            env = make_env_from_config(config)
        elif not _tracks_episode_returns(env):
            env = track_episode_returns(env)
        self.groups: dict[str, GroupLearner] = {
            group: make_group_learner(
                env,
                group,
                model=config.model,
                loss=config.loss,
                optim=config.optim,
                perf=config.perf,
                device=self.device,
                shifted_budget=_shifted_budget(config, max(env.batch_size.numel(), 1)),
            )
            for group in env.group_map
        }
        self.policy = TensorDictSequential(*(g.actor for g in self.groups.values()))
        self.recurrent = config.model.is_recurrent
        collect_policy = self.policy
        recurrent_critics = [g.critic for g in self.groups.values() if recurrent_layers(g.critic)]
        if recurrent_critics:
            # Recurrent critics step along during collection, so that their hidden
            # states are stored with the data (the original's rnn_states_critic).
            collect_policy = TensorDictSequential(self.policy, *recurrent_critics)
        self.env = env = add_recurrent_state(env, collect_policy)
        self.overlap = _resolve_overlap(config, env_is_config=env_is_config)
        # What "auto" chose on this machine is what the run records (config.yaml,
        # checkpoints): a resume elsewhere keeps it, or says why it cannot.
        self.config = config = resolve_auto(config, overlap=self.overlap)
        workers = 1 if self.overlap else config.collector.workers
        #: Whether worker processes step the envs.
        self.collects_in_workers = self.overlap or workers > 1
        #: Where the worker processes write their standard error (``None``: to this one's).
        self.worker_log = Path(worker_log) if worker_log and self.collects_in_workers else None
        # An overlapped VMAS worker saves its state after each batch, for
        # checkpoints that resume exactly.
        boundaries = None
        if self.overlap and is_vmas_env(env):
            self._boundaries = BoundaryFolder()
            boundaries = str(self._boundaries.path)
        #: Whether a checkpoint holds the state of the envs in worker processes
        #: (an overlapped VMAS worker's), so that a resumed run is the same run.
        self.saves_worker_envs = boundaries is not None
        self.collector = make_collector(
            env,
            collect_policy,
            frames_per_batch=config.collector.frames_per_batch,
            total_frames=config.collector.total_frames,
            device=self.device,
            compile_policy=config.perf.compile_policy,
            cudagraph_policy=config.perf.cudagraph_policy,
            worker_env_fns=[
                functools.partial(
                    make_worker_env,
                    config,
                    collect_policy,
                    worker=i,
                    workers=workers,
                    env_fn=env_fn,
                    boundaries=boundaries,
                )
                for i in range(workers)
            ],
            workers=workers,
            overlap=self.overlap,
            boundaries=boundaries,
            worker_threads=max(config.threads, 1),
            stall_timeout_s=config.collector.stall_timeout_s,
            worker_log=self.worker_log,
        )
        if self.collects_in_workers:
            # Worker processes wait for orders until shut down: a trainer that never
            # trains (say, one that loads a checkpoint to evaluate) must not keep its
            # program from exiting.
            weakref.finalize(self, shutdown_collector, self.collector)
        frames = config.collector.frames_per_batch
        # A recurrent model's samples are chunks of chunk_length steps of one env.
        self.chunk_length = config.optim.chunk_length if self.recurrent else 1
        samples = frames // self.chunk_length
        if self.recurrent:
            self.minibatch_size = config.optim.chunks_per_minibatch(frames)
        else:
            self.minibatch_size = config.optim.resolved_minibatch_size(frames)
        self.steps_per_epoch = samples // self.minibatch_size
        # The buffer hands out one epoch at a time (one permutation, the ragged
        # tail dropped); the epoch is then split into fixed-size minibatches.
        self.buffer = make_replay_buffer(
            size=samples,
            minibatch_size=self.steps_per_epoch * self.minibatch_size,
            device=self.device,
        )
        self.num_iterations = -(-config.collector.total_frames // config.collector.frames_per_batch)
        self.schedulers = self._make_schedulers() if config.optim.lr_decay else []
        # update_step itself, or compiled / captured as a CUDA graph as config.perf says.
        self.compiled_update_step = compile_update_step(
            self.update_step, config.perf, device=self.device
        )
        # Overlapped, the collecting worker keeps a core busy during the first part
        # of the update: the update starts on the cores left and takes them all
        # once the worker's batch is in (see _widen_threads).
        cores = available_cores()
        self.update_threads = self._all_update_threads = min(config.update_threads or cores, cores)
        if self.overlap and self.device.type == "cpu":
            left = cores - (config.threads or 1)
            self.update_threads = max(min(self.update_threads, left), 1)
        self._narrow_threads = False
        self.iteration = 0
        self.frames = 0
        #: Whether each group's actor and critic weights were finite after the last
        #: iteration (``"agents actor": True``...), checked once per iteration.
        self.weights_finite: dict[str, bool] = {}
        #: True while stage 1 waits for the collector's next batch.
        self.collecting = False
        #: Whether each batch is one update old (overlapped) and the update corrects for
        #: it (loss.stale_correction decoupled).
        self.corrects_stale_data = self.overlap and config.loss.stale_correction == "decoupled"
        self._behaviour_kl: dict[str, torch.Tensor] = {}

    # -- the loop ---------------------------------------------------------------

    def iterations(self) -> Iterator[Metrics]:
        """Run the remaining iterations, yielding each one's metrics.

        The loop's five stages, in order: collect a batch, compute its
        advantages, run epochs x minibatches, each minibatch one gradient
        step (:meth:`update_step`), then sync the collector's weights.
        Overlapped (``collector.overlap``), the collector's worker already
        collects the next batch during stages 2-4, with the weights before them.
        """
        # Workers start from the weights of now (a resumed run has loaded its own).
        self.collector.update_policy_weights_()
        total = self.config.collector.total_frames
        if self.frames >= total:
            return
        collect_start = time.perf_counter()
        for batch in self._batches():  # 1. collect (in a worker when overlapped)
            batch = env_rows(batch)
            collect_s = time.perf_counter() - collect_start
            update_start = time.perf_counter()
            self._narrow_threads = self.update_threads < self._all_update_threads
            with threads_during(self.update_threads, self.device):
                self.compute_advantages(batch)  # 2. advantage
                stats = []
                with set_recurrent_mode(True) if self.recurrent else nullcontext():
                    # Recurrent layers run over each chunk (time is its last dim).
                    for minibatch in self.minibatches(batch):  # 3. epochs x minibatches
                        # 4. step: update_step, compiled or captured if config.perf says so.
                        stats.append(self.compiled_update_step(minibatch))
                for scheduler in self.schedulers:
                    scheduler.step()
            update_s = time.perf_counter() - update_start
            if not self.overlap:  # 5. sync the collector's weights
                # Overlapped, the collector sends the weights itself when its
                # worker starts the next batch, so no batch mixes two policies.
                self.collector.update_policy_weights_()
            self.iteration += 1
            self.frames += batch.numel()
            metrics = self._summarise(batch, stats)
            # Before the metrics leave: a diverged iteration is never checkpointed.
            check_divergence(
                metrics,
                self.weights_finite,
                iteration=self.iteration,
                mode=self.config.optim.divergence,
            )
            metrics.update(
                {
                    "iteration": self.iteration,
                    "frames": self.frames,
                    "time/collect_s": collect_s,
                    "time/update_s": update_s,
                    "time/fps": batch.numel() / (collect_s + update_s),
                    "collector/policy_lag": float(self.overlap),
                }
            )
            yield metrics
            if self.frames >= total:
                # The collector of a resumed overlapped run counts its frames from zero.
                break
            collect_start = time.perf_counter()

    def _batches(self) -> Iterator[TensorDictBase]:
        """The collector's batches, with :attr:`collecting` true while one is awaited; a
        worker process that died is reported as a one-line ``WorkerFailed``."""
        batches = iter(self.collector)
        while True:
            self.collecting = True
            try:
                batch = next(batches, None)
            except (CollectorStalled, WorkerFailed):
                raise
            except RuntimeError as err:  # TorchRL's, when a worker is found dead
                failure = worker_failure(self.collector, self.worker_log)
                if failure is None:
                    raise
                raise failure from err
            finally:
                self.collecting = False
            if batch is None:
                return
            yield batch

    def train(self, *, progress: bool = True, callbacks: list[Callback] = ()) -> list[Metrics]:
        """Train to ``total_frames``; return every iteration's metrics.

        Args:
            progress: show a tqdm bar with frames and the mean episode return.
            callbacks: called with each iteration's metrics, in order.
        """
        history = []
        total = self.config.collector.total_frames
        with tqdm(
            total=total,
            initial=self.frames,
            unit="frames",
            disable=not progress,
            dynamic_ncols=True,
        ) as bar:
            try:
                for metrics in self.iterations():
                    history.append(metrics)
                    for callback in callbacks:
                        callback(metrics)
                    bar.update(metrics["frames"] - bar.n)
                    bar.set_postfix(_progress_returns(metrics, self.groups))
            finally:
                shutdown_collector(self.collector)
        return history

    # -- the stages' parts -------------------------------------------------------

    def compute_advantages(self, batch: TensorDictBase) -> None:
        """Write each group's advantages and value targets into ``batch`` (``[num_envs, T]``).

        Over whole trajectories; a recurrent critic runs step by step from the
        hidden states stored at collection.
        """
        with torch.no_grad():
            for group in self.groups.values():
                group.loss.value_estimator(batch)

    def minibatches(self, batch: TensorDictBase) -> Iterator[TensorDictBase]:
        """``optim.num_epochs`` passes over ``batch`` in minibatches of ``optim.minibatch_size``."""
        self.buffer.empty()
        samples = self.samples(batch)
        if self.corrects_stale_data:
            self._set_proximal_log_probs(samples)
        self.buffer.extend(samples)
        for _ in range(self.config.optim.num_epochs):
            # Drawn at once, these are the same minibatches as sampling them one
            # by one without replacement, without a buffer call per step.
            epoch = self.buffer.sample()
            for minibatch in epoch.split(self.minibatch_size):
                self._widen_threads()
                yield minibatch

    def update(self, batch: TensorDictBase) -> Metrics:
        """Deprecated: stages 2-4 of :meth:`iterations` on one ``[num_envs, T]`` batch.

        Call :meth:`compute_advantages`, then :meth:`update_step` on each of
        :meth:`minibatches`, as :meth:`iterations` does.
        """
        warnings.warn(
            "Trainer.update is folded into Trainer.iterations; call compute_advantages, "
            "then update_step on each of minibatches(batch)",
            FutureWarning,
            stacklevel=2,
        )
        self.compute_advantages(batch)
        with set_recurrent_mode(True) if self.recurrent else nullcontext():
            stats = [self.compiled_update_step(minibatch) for minibatch in self.minibatches(batch)]
        for scheduler in self.schedulers:
            scheduler.step()
        return self._summarise(batch, stats)

    def _set_proximal_log_probs(self, samples: TensorDictBase) -> None:
        """Each group's log-probabilities of the stored actions under the weights the
        update starts from (the decoupled objective's proximal policy), once per batch;
        and how far the collecting weights were from them (``train/behaviour_kl``)."""
        self._behaviour_kl = {}
        for name, group in self.groups.items():
            proximal = group.loss.proximal_log_prob(samples)
            samples.set(group.keys.proximal_log_prob, proximal)
            behaviour = samples.get(group.keys.log_prob)
            self._behaviour_kl[name] = (behaviour - proximal).mean()

    def _widen_threads(self) -> None:
        """Overlapped, the update takes the collecting worker's core once its batch is in."""
        if self._narrow_threads and next_batch_ready(self.collector):
            torch.set_num_threads(self._all_update_threads)
            self._narrow_threads = False

    def samples(self, batch: TensorDictBase) -> TensorDictBase:
        """The batch as the buffer stores it: single steps, or chunks for a recurrent model.

        A ``[num_envs, T]`` batch becomes ``num_envs * T`` steps, or
        ``num_envs * T / chunk_length`` chunks ``[chunk_length]`` of consecutive
        steps of one env (all its agents together). A chunk's first step carries
        the hidden states stored at collection, which its sequence starts from.
        """
        if not self.recurrent:
            return batch.reshape(-1)
        envs, steps = batch.batch_size
        chunks = steps // self.chunk_length
        return batch.reshape(envs * chunks, self.chunk_length)

    def update_step(self, minibatch: TensorDictBase) -> TensorDict:
        """Loss, backward, clipping and an Adam step for every group; detached stats.

        Actor and critic are clipped and stepped separately (see the class
        docstring). No host synchronisation happens here, so it can be compiled
        or captured as a CUDA graph (``compile_update_step`` in this module).
        """
        max_norm = self.config.optim.max_grad_norm
        keep_grads = self.config.perf.cudagraph_update  # a graph needs static grad tensors
        stats = {}
        for name, group in self.groups.items():
            out = group.loss(minibatch)
            total = out["loss_objective"] + out["loss_critic"]
            if "loss_entropy" in out.keys():
                total = total + out["loss_entropy"]
            total.backward()
            actor_norm = torch.nn.utils.clip_grad_norm_(group.actor.parameters(), max_norm)
            critic_norm = torch.nn.utils.clip_grad_norm_(group.critic.parameters(), max_norm)
            group.actor_optim.step()
            group.critic_optim.step()
            group.actor_optim.zero_grad(set_to_none=not keep_grads)
            group.critic_optim.zero_grad(set_to_none=not keep_grads)
            summary = {k: out[k].detach().mean() for k in LOSS_METRICS if k in out.keys()}
            summary["grad_norm_actor"] = actor_norm.detach()
            summary["grad_norm_critic"] = critic_norm.detach()
            stats[name] = summary
        return TensorDict(stats)

    def _summarise(self, batch: TensorDictBase, stats: list[TensorDict]) -> Metrics:
        """The iteration's ``train/*`` metrics: the batch's mean episode return, and
        the loss terms and gradient norms averaged over its minibatches."""
        episode_return = mean_episode_return(batch, [g.keys for g in self.groups.values()])
        group_returns = {
            name: mean_episode_return(batch, [group.keys]) for name, group in self.groups.items()
        }
        # One stack and one host transfer per iteration: no sync inside the epochs.
        means = torch.stack(stats).apply(lambda x: x.float().mean(), batch_size=[])
        # Whether each network's weights are finite, in the same host transfer.
        finite = {
            name: {
                "actor": _all_finite(group.actor.parameters()),
                "critic": _all_finite(group.critic.parameters()),
            }
            for name, group in self.groups.items()
        }
        values = TensorDict(
            {
                "episode_return": episode_return,
                "groups": means,
                "returns": group_returns,
                "finite": finite,
                "behaviour_kl": self._behaviour_kl,
            }
        ).cpu()
        metrics = {"train/episode_return": float(values["episode_return"])}
        several = len(self.groups) > 1
        for name in self.groups:
            prefix = f"train/{name}/" if several else "train/"
            if several:
                metrics[prefix + "episode_return"] = float(values["returns", name])
            for key, value in values["groups", name].items():
                metrics[prefix + key] = float(value)
        for name in self.groups:
            # Before any step of this iteration: 0 when the batch was collected by
            # these very weights, the policy lag's size when it was collected earlier.
            prefix = f"train/{name}/" if several else "train/"
            if name in self._behaviour_kl:
                metrics[prefix + "behaviour_kl"] = float(values["behaviour_kl", name])
            elif "kl_approx" in stats[0][name].keys():
                metrics[prefix + "behaviour_kl"] = float(stats[0][name, "kl_approx"])
        self.weights_finite = {
            f"{name} {net}": bool(values["finite", name, net])
            for name in self.groups
            for net in ("actor", "critic")
        }
        first = next(iter(self.groups.values()))
        metrics["train/actor_lr"] = float(first.actor_optim.param_groups[0]["lr"])
        return metrics

    def _make_schedulers(self) -> list[torch.optim.lr_scheduler.LRScheduler]:
        n = self.num_iterations
        return [
            torch.optim.lr_scheduler.LambdaLR(optim, lambda i: 1.0 - i / n)
            for group in self.groups.values()
            for optim in (group.actor_optim, group.critic_optim)
        ]


def compile_update_step(
    step: Callable[[TensorDictBase], TensorDict], perf: PerfConfig, *, device: torch.device
) -> Callable[[TensorDictBase], TensorDict]:
    """``step`` compiled with ``torch.compile`` (``perf.compile_update``) and/or captured
    as a CUDA graph (``perf.cudagraph_update``); ``step`` itself when neither is on."""
    if perf.compile_update:
        step = torch.compile(step)
    if perf.cudagraph_update:
        from tensordict.nn import CudaGraphModule

        step = CudaGraphModule(step, in_keys=[], warmup=3, device=device)
    return step


def _progress_returns(metrics: Metrics, groups) -> dict[str, str]:
    """The progress bar's returns: one per group when there are several."""
    if len(groups) == 1:
        return {"episode_return": f"{metrics['train/episode_return']:.3f}"}
    return {f"{name}_return": f"{metrics[f'train/{name}/episode_return']:.3f}" for name in groups}


def _shifted_budget(config: RunConfig, num_envs: int) -> int:
    """Critic time slots GAE needs beyond T for the time-limit resets a row can hold."""
    return shifted_budget(config.collector.frames_per_batch // num_envs, config.env.max_steps)


def resolve_auto(config: RunConfig, *, overlap: bool | None = None) -> RunConfig:
    """A copy of ``config`` with each ``auto`` replaced by what it means on this machine.

    ``perf.precision`` becomes ``float32`` or ``bfloat16``
    (:func:`~mappo_torchrl.models.mlp.resolve_precision`) and
    ``collector.overlap`` ``on`` or ``off`` (``overlap``, or as a ``mappo``
    command resolves it). A run records these, so that it continues, and is
    compared, as it ran, whatever machine reads it later.

    Example:
        >>> from mappo_torchrl.config import RunConfig
        >>> resolved = resolve_auto(RunConfig(device="cuda"))
        >>> resolved.perf.precision, resolved.collector.overlap
        ('float32', 'off')
    """
    if overlap is None:
        overlap = _resolve_overlap(config, env_is_config=True)
    return dataclasses.replace(
        config,
        perf=dataclasses.replace(
            config.perf, precision=resolve_precision(config.perf.precision, config.device)
        ),
        collector=dataclasses.replace(config.collector, overlap="on" if overlap else "off"),
    )


def _resolve_overlap(config: RunConfig, *, env_is_config: bool) -> bool:
    """``collector.overlap`` as on or off. ``auto`` is on for a CPU run with one
    collector worker, the config's VMAS env and a program the worker process can
    start from (:func:`~mappo_torchrl.data.collector.main_module_is_guarded`)."""
    if config.collector.overlap != "auto":
        return config.collector.overlap == "on"
    if not (config.collector.overlap_enabled(config.device) and env_is_config):
        return False
    if main_module_is_guarded():
        return True
    warnings.warn(
        "collector.overlap=auto is off: the program's main file trains outside "
        "'if __name__ == \"__main__\":', which the collecting worker process would run "
        "again; put the training under that line to collect while learning, or set "
        "collector.overlap off to silence this",
        UserWarning,
        stacklevel=3,
    )
    return False


def _all_finite(parameters: Iterator[torch.Tensor]) -> torch.Tensor:
    """A 0-d bool tensor: whether every value of ``parameters`` is finite (no host sync).

    Tensors on the meta device hold no values and are left out: after
    ``torch.compile`` (``perf.compile_update``), the meta-device template network
    of TorchRL's ``MultiAgentMLP`` shows up among ``parameters()``.
    """
    return torch.stack([torch.isfinite(p).all() for p in parameters if not p.is_meta]).all()


def _tracks_episode_returns(env: EnvBase) -> bool:
    keys = env.full_observation_spec.keys(True, True)
    return any(isinstance(k, tuple) and k[-1] == "episode_reward" for k in keys)
