"""Evaluation: N whole episodes side by side on a separate, separately seeded env.

Each of the env's ``N`` vectorised copies plays exactly one episode. TorchRL's
partial steps do this: ``env.rollout(break_when_all_done=True)`` steps on
until every copy is done, never resets one, and repeats a finished copy's last
step, so nobody's episode is cut short and none is counted twice.

Why not :class:`torchrl.collectors.Evaluator` (torchrl 0.14)? Three reasons:

- Which episodes: it collects the first ``num_trajectories`` episodes to *end*
  anywhere in the vectorised env (``Collector(trajs_per_batch=...)``). A copy
  that finishes early starts again and its second episode can be counted
  before a slow copy's first one ends, so the sample leans to short episodes.
- What it measures: it reads a root ``("next", "episode_reward")`` or sums a
  reward key over steps *and agents*; there are no per-agent or per-group
  returns, which multi-group envs and ``mappo eval`` need.
- Seeding: it resets its env itself, with no way to reseed it before each
  evaluation, so successive evaluations do not replay the same episodes.

Where agent groups compete (:func:`is_competitive`), a deterministic
evaluation also plays the same episodes with sampled actions, reported as
``eval/stochastic/*``: a policy trained by sampling can play very differently
at its mode against an opponent (a simple_tag prey returned -129 at its mode,
-7.5 sampled and about -10 in training).

All of it runs inside :func:`~mappo_torchrl.rng.isolated_rng`:
evaluating never moves a random stream that training reads, so a run with
evaluations trains exactly like one without.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torchrl.envs import EnvBase
from torchrl.envs.utils import ExplorationType, set_exploration_type

from mappo_torchrl.envs.keys import GroupKeys, all_group_keys, key_tuple
from mappo_torchrl.models.recurrent import add_recurrent_state
from mappo_torchrl.rng import isolated_rng
from mappo_torchrl.training.metrics import Metrics


@dataclass
class EpisodeResults:
    """One evaluation: an episode per vectorised env.

    Attributes:
        returns: per group, each agent's return, shape ``[episodes, n_agents]``.
        lengths: each episode's length in steps, shape ``[episodes]``.
        agent_names: per group, the agents' names (``env.group_map``).
        frames: the first episode's frames, if the env renders
            (:func:`~mappo_torchrl.viz.video.add_renderer`), else ``None``.
    """

    returns: dict[str, torch.Tensor]
    lengths: torch.Tensor
    agent_names: dict[str, list[str]]
    frames: list | None = None

    @property
    def team_returns(self) -> torch.Tensor:
        """Each episode's return summed over all agents of all groups, ``[episodes]``."""
        return sum(r.sum(-1) for r in self.returns.values())

    @property
    def mean_agent_returns(self) -> torch.Tensor:
        """Each episode's return averaged over all agents of all groups, ``[episodes]``."""
        return torch.cat(list(self.returns.values()), dim=-1).mean(-1)

    def metrics(self, prefix: str = "eval") -> Metrics:
        """``eval/*`` numbers: mean and std over episodes of return and length.

        ``episode_return`` is the mean per-agent return, like
        ``train/episode_return``; with several groups each also gets
        ``eval/<group>/episode_return`` and ``eval/<group>/team_return`` (the
        return summed over the group's agents).
        """
        out = {
            f"{prefix}/episode_return": _mean(self.mean_agent_returns),
            f"{prefix}/episode_return_std": _std(self.mean_agent_returns),
            f"{prefix}/team_return": _mean(self.team_returns),
            f"{prefix}/episode_length": _mean(self.lengths.float()),
            f"{prefix}/episode_length_std": _std(self.lengths.float()),
        }
        if len(self.returns) > 1:
            for group, returns in self.returns.items():
                out[f"{prefix}/{group}/episode_return"] = _mean(returns.mean(-1))
                out[f"{prefix}/{group}/episode_return_std"] = _std(returns.mean(-1))
                out[f"{prefix}/{group}/team_return"] = _mean(returns.sum(-1))
        return out


def is_competitive(env: EnvBase) -> bool:
    """Whether ``env``'s agents may compete: the rule is "it has more than one agent group".

    VMAS groups agents by role (``adversary_0`` and ``agent_0`` in simple_tag),
    and its scenarios with several roles set them against each other
    (simple_tag, simple_adversary, simple_push, simple_world_comm...), so the
    group count answers without playing. It is declared rather than measured
    (from how the groups' returns move together) so that a run's evaluations
    all report the same columns. Its misses: a cooperative env with several
    groups (simple_speaker_listener, or ``env.group_map=one_group_per_agent``)
    counts as competitive and pays for a second evaluation; opponents put in
    one group (``env.group_map=all_in_one_group``) do not count.

    Example:
        >>> from mappo_torchrl.envs import make_env
        >>> from mappo_torchrl.runs.evaluation import is_competitive
        >>> is_competitive(make_env("simple_tag", num_envs=1))
        True
        >>> is_competitive(make_env("navigation", num_envs=1))
        False
    """
    return len(env.group_map) > 1


def run_episodes(
    env: EnvBase,
    policy: TensorDictModuleBase,
    *,
    max_steps: int,
    deterministic: bool = True,
) -> EpisodeResults:
    """Play one episode in each of ``env``'s vectorised copies and collect the returns.

    Args:
        env: a batched multi-agent env that tracks ``episode_reward``
            (:func:`~mappo_torchrl.envs.track_episode_returns`); for a recurrent
            policy, prepared by :func:`~mappo_torchrl.models.add_recurrent_state`
            (the hidden state is carried across each episode).
        policy: the joint policy of every group.
        max_steps: step limit; an episode still running then ends there.
        deterministic: act with the distributions' modes instead of sampling.

    Example:
        >>> from mappo_torchrl.envs import make_env
        >>> from mappo_torchrl.models import make_actor
        >>> from mappo_torchrl.runs.evaluation import run_episodes
        >>> env = make_env("navigation", num_envs=4, max_steps=10, seed=0)
        >>> actor = make_actor(env, "agents")
        >>> run_episodes(env, actor, max_steps=10).returns["agents"].shape
        torch.Size([4, 3])
    """
    rollout = _rollout(env, policy, max_steps=max_steps, deterministic=deterministic)
    groups = all_group_keys(env)
    # With partial steps a finished copy repeats its last step: the last entry is its end.
    last = rollout[..., -1]
    returns = {name: _agent_returns(last, keys) for name, keys in groups.items()}
    lengths = _episode_lengths(rollout)
    frames = None
    if "pixels" in rollout.keys():
        from mappo_torchrl.viz.video import rollout_frames

        frames = rollout_frames(rollout, int(lengths[0]))
    names = {group: list(agents) for group, agents in env.group_map.items()}
    return EpisodeResults(returns, lengths, names, frames)


class Evaluation:
    """Evaluates a policy on its own env, seeded the same way every time.

    The env is built lazily by ``make_env(num_envs=episodes, seed=seed)``,
    inside :func:`~mappo_torchrl.rng.isolated_rng` (building a VMAS
    env seeds the streams that every VMAS env shares). Calling the object
    returns ``eval/*`` metrics and ``time/eval_s``.

    A deterministic evaluation of an env whose groups compete
    (:func:`is_competitive`) also plays the same episodes (same seed, same
    count) with sampled actions: ``last_stochastic``, and
    ``eval/stochastic/*`` metrics beside the ``eval/*`` ones. Other
    evaluations play once and leave ``last_stochastic`` ``None``.

    Args:
        make_env: ``(num_envs, seed) -> env``.
        policy: the joint policy (shared with training: evaluates its current weights).
        episodes: episodes per evaluation (= vectorised envs).
        max_steps: episode step limit.
        seed: the evaluation env's seed.
        deterministic: act with the modes of the action distributions.
    """

    def __init__(
        self,
        make_env: Callable[[int, int], EnvBase],
        policy: TensorDictModuleBase,
        *,
        episodes: int,
        max_steps: int,
        seed: int,
        deterministic: bool = True,
    ) -> None:
        self.make_env = make_env
        self.policy = policy
        self.episodes = episodes
        self.max_steps = max_steps
        self.seed = seed
        self.deterministic = deterministic
        self.env: EnvBase | None = None
        self.last: EpisodeResults | None = None
        self.last_stochastic: EpisodeResults | None = None
        self.rendering = True

    def render(self, on: bool) -> None:
        """Record frames in the next evaluations (if ``make_env`` adds a renderer)."""
        self.rendering = on

    def run(self) -> EpisodeResults:
        """Play the evaluation episodes; random streams are left as they were.

        Returns the episodes in the ``deterministic`` mode; the stochastic
        ones of competing groups go to ``last_stochastic``.
        """
        with isolated_rng():
            if self.env is None:
                # A recurrent policy's states need an is_init flag and primers.
                self.env = add_recurrent_state(self.make_env(self.episodes, self.seed), self.policy)
            self.last = self._play(deterministic=self.deterministic, render=self.rendering)
            self.last_stochastic = None
            if self.deterministic and is_competitive(self.env):
                self.last_stochastic = self._play(deterministic=False, render=False)
        return self.last

    def __call__(self) -> Metrics:
        start = time.perf_counter()
        metrics = self.run().metrics()
        if self.last_stochastic is not None:
            metrics.update(self.last_stochastic.metrics("eval/stochastic"))
        metrics["time/eval_s"] = time.perf_counter() - start
        return metrics

    def _play(self, *, deterministic: bool, render: bool) -> EpisodeResults:
        """The episodes from the seeded starts, in one mode (both modes start alike)."""
        _switch_renderer(self.env, render)
        self.env.set_seed(self.seed)
        torch.manual_seed(self.seed)  # stochastic evaluation samples from it
        return run_episodes(
            self.env, self.policy, max_steps=self.max_steps, deterministic=deterministic
        )

    def close(self) -> None:
        """Close the evaluation env, if it was built."""
        if self.env is not None and not self.env.is_closed:
            self.env.close()


def _switch_renderer(env: EnvBase, on: bool) -> None:
    from torchrl.record import PixelRenderTransform

    for module in env.modules():
        if isinstance(module, PixelRenderTransform):
            module.switch(on)


def _rollout(
    env: EnvBase, policy: TensorDictModuleBase, *, max_steps: int, deterministic: bool
) -> TensorDictBase:
    mode = ExplorationType.DETERMINISTIC if deterministic else ExplorationType.RANDOM
    was_training = getattr(policy, "training", False)
    policy.eval()
    try:
        with torch.no_grad(), set_exploration_type(mode):
            return env.rollout(
                max_steps,
                policy,
                break_when_any_done=False,
                break_when_all_done=True,
            )
    finally:
        policy.train(was_training)


def _agent_returns(last: TensorDictBase, keys: GroupKeys) -> torch.Tensor:
    returns = last.get(("next", *key_tuple(keys.episode_reward)))
    return returns.reshape(*last.batch_size, keys.n_agents, -1).sum(-1).cpu()


def _episode_lengths(rollout: TensorDictBase) -> torch.Tensor:
    steps = rollout.get(("next", "step_count"), None)
    if steps is not None:
        return steps[..., -1, :].reshape(-1).cpu()
    # No StepCounter: count the steps up to and including the first done.
    done = rollout.get(("next", "done")).reshape(*rollout.batch_size, -1).any(-1)
    first = torch.where(done.any(-1), done.float().argmax(-1) + 1, done.shape[-1])
    return first.cpu()


def _mean(x: torch.Tensor) -> float:
    return float(x.mean())


def _std(x: torch.Tensor) -> float:
    return float(x.std()) if x.numel() > 1 else (0.0 if x.numel() else math.nan)
