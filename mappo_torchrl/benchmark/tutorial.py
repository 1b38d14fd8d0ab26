"""A plain TorchRL MAPPO pipeline in the style of TorchRL's multi-agent PPO tutorial.

This is the baseline the benchmarks compare mappo_torchrl against: ``mappo
benchmark --baseline tutorial`` runs it as an extra arm of the grid, and
``benchmarks/throughput.py`` times it. Its training code
(:func:`run_tutorial_pipeline`) is written the way the tutorial writes it
(``ClipPPOLoss`` + ``GAE``, done flags expanded to the agents by hand,
``replay_buffer.sample()`` per minibatch), with the tutorial's hyper-parameters
as defaults, and none of this project's training code. It lives in the package,
not in ``benchmarks/``, so that the benchmark command can run it from an
installed ``mappo_torchrl``.

:func:`run_tutorial_cell` wraps it into a run directory like ``mappo train``
writes (``metrics.csv``, ``status.json``; the settings in ``baseline.yaml``
instead of ``config.yaml``), evaluated the way ``mappo train`` evaluates
(:func:`~mappo_torchrl.runs.evaluation.run_episodes`, same episodes, seed
and interval), so the two arms are measured alike. A baseline cell has no
checkpoint: an interrupted one starts again.

Run one cell on its own::

    python -m mappo_torchrl.benchmark.tutorial --run-dir DIR --scenario balance --seed 0 \\
        --total-frames 60000 --set num_envs=30
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import shutil
import statistics
import sys
import time
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from tensordict.nn import NormalParamExtractor, TensorDictModule
from torchrl.collectors import Collector
from torchrl.data import LazyTensorStorage, ReplayBuffer, SamplerWithoutReplacement
from torchrl.envs import RewardSum, TransformedEnv
from torchrl.envs.libs.vmas import VmasEnv
from torchrl.modules import MultiAgentMLP, ProbabilisticActor, TanhNormal
from torchrl.objectives import ClipPPOLoss, ValueEstimators

from mappo_torchrl.config import ConfigError, EvalConfig
from mappo_torchrl.envs.scenarios import SCENARIO_DEFAULTS, check_scenario

#: The file a baseline cell keeps its settings in (``config.yaml`` is for ``mappo train`` runs).
SETTINGS_FILE = "baseline.yaml"
#: Where :class:`TutorialSettings` differ from TorchRL's tutorial (the benchmark report
#: lists them beside the baseline's results).
DEVIATIONS = (
    "4 epochs over each batch instead of the tutorial's 30 (which suit its 5 iterations, "
    "not a run of 100)",
    "the total frames the benchmark sets (the tutorial runs 30 000)",
)


@dataclass
class TutorialSettings:
    """The tutorial's hyper-parameters (VMAS navigation with 3 agents by default).

    TorchRL's multi-agent PPO tutorial (``tutorials/sphinx-tutorials/multiagent_ppo.py``)
    sets each of these values but two, its deviations here: ``num_epochs`` is 4, not
    the tutorial's 30 (the tutorial's 30 passes over each batch suit its 5 iterations,
    not a run of 100; 4 is what ``mappo train`` uses), and ``total_frames`` is set by
    the benchmark (the tutorial runs 5 iterations, 30 000 frames).
    """

    scenario: str = "navigation"
    """VMAS scenario; it must have one agent group, ``agents``, as the tutorial assumes."""
    scenario_kwargs: dict[str, Any] | None = None
    """Scenario keyword arguments; ``None`` means what ``mappo train`` passes
    (:data:`~mappo_torchrl.envs.scenarios.SCENARIO_DEFAULTS`: 3 navigation agents)."""
    num_envs: int = 60
    """Vectorised environments."""
    frames_per_batch: int = 6_000
    """Frames collected per iteration."""
    total_frames: int = 60_000
    """Frames for the whole run."""
    num_epochs: int = 4
    """PPO epochs over each batch (the tutorial's 30: a deviation, see above)."""
    minibatch_size: int = 400
    """Samples per gradient step."""
    lr: float = 3e-4
    """Adam learning rate of actor and critic."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip."""
    clip_epsilon: float = 0.2
    """PPO ratio clip."""
    gamma: float = 0.99
    """Discount factor (the tutorial's 0.99)."""
    lmbda: float = 0.9
    """GAE lambda."""
    entropy_coeff: float = 1e-4
    """Entropy bonus weight."""
    max_steps: int = 100
    """Episode length (VMAS's own limit, which marks the last step terminated)."""
    seed: int = 0
    """Seed of torch and of the env."""
    device: str = "cpu"
    """Simulation and training device."""

    def env_kwargs(self) -> dict[str, Any]:
        """The scenario's keyword arguments, with ``mappo train``'s defaults when unset."""
        if self.scenario_kwargs is None:
            return dict(SCENARIO_DEFAULTS.get(self.scenario, {}))
        return dict(self.scenario_kwargs)

    def validate(self) -> None:
        """Raise :class:`~mappo_torchrl.config.ConfigError` on a value the pipeline cannot use."""
        for name in ("num_envs", "frames_per_batch", "total_frames", "num_epochs"):
            value = getattr(self, name)
            if value <= 0:
                raise ConfigError(name, value, "must be a positive integer")
        if self.frames_per_batch % self.num_envs:
            raise ConfigError(
                "frames_per_batch",
                self.frames_per_batch,
                f"must be a multiple of num_envs ({self.num_envs})",
            )
        if self.total_frames < self.frames_per_batch:
            raise ConfigError(
                "total_frames",
                self.total_frames,
                f"must be at least frames_per_batch ({self.frames_per_batch})",
            )
        if not 0 < self.minibatch_size <= self.frames_per_batch:
            raise ConfigError(
                "minibatch_size",
                self.minibatch_size,
                f"must be in [1, frames_per_batch ({self.frames_per_batch})]",
            )


def tutorial_settings(overrides: Mapping[str, Any], base: TutorialSettings | None = None):
    """``base`` (default: the tutorial's) with ``overrides`` set (typed, or as YAML text).

    Raises:
        ConfigError: on an unknown name or a value of the wrong type.

    Example:
        >>> from mappo_torchrl.benchmark.tutorial import tutorial_settings
        >>> tutorial_settings({"gamma": "0.99", "num_envs": 4}).gamma
        0.99
    """
    settings = dataclasses.replace(base or TutorialSettings())
    hints = typing.get_type_hints(TutorialSettings)
    for name, raw in overrides.items():
        if name not in hints:
            allowed = ", ".join(f.name for f in dataclasses.fields(TutorialSettings))
            raise ConfigError(name, raw, f"not a tutorial setting; allowed: {allowed}")
        value = yaml.safe_load(raw) if isinstance(raw, str) and hints[name] is not str else raw
        setattr(settings, name, _coerce(name, value, hints[name]))
    settings.validate()
    return settings


def _coerce(name: str, value: Any, hint: Any) -> Any:
    if hint in (int, float, str):
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        if hint is float and numeric:
            return float(value)
        if hint is int and numeric and float(value).is_integer():
            return int(value)
        if hint is str and isinstance(value, str):
            return value
        raise ConfigError(name, value, f"must be of type {hint.__name__}")
    if value is None or isinstance(value, dict):  # scenario_kwargs
        return value
    raise ConfigError(name, value, 'must be a mapping, e.g. {"n_agents": 4}')


def make_tutorial_env(s: TutorialSettings, *, num_envs: int, seed: int) -> TransformedEnv:
    """The scenario as the tutorial builds it: ``VmasEnv`` plus a ``RewardSum`` per agent."""
    env = VmasEnv(
        scenario=s.scenario,
        num_envs=num_envs,
        continuous_actions=True,
        max_steps=s.max_steps,
        device=s.device,
        seed=seed,
        **s.env_kwargs(),
    )
    if list(env.group_map) != ["agents"]:
        raise ValueError(
            f"scenario={s.scenario!r}: the tutorial pipeline needs one agent group 'agents', "
            f"this scenario has {sorted(env.group_map)}"
        )
    return TransformedEnv(
        env, RewardSum(in_keys=[env.reward_key], out_keys=[("agents", "episode_reward")])
    )


def run_tutorial_pipeline(
    s: TutorialSettings,
    *,
    callback: Callable[[dict[str, float], ProbabilisticActor], None] | None = None,
) -> list[dict[str, float]]:
    """Train with the tutorial pipeline; one dict of numbers per iteration.

    Args:
        s: the settings.
        callback: called after each iteration with that iteration's dict (it may
            add to it) and the policy.
    """
    torch.manual_seed(s.seed)
    env = make_tutorial_env(s, num_envs=s.num_envs, seed=s.seed)
    n_agents = len(env.group_map["agents"])
    action_spec = env.full_action_spec_unbatched[env.action_key]
    obs_dim = env.observation_spec["agents", "observation"].shape[-1]
    policy_net = torch.nn.Sequential(
        MultiAgentMLP(
            n_agent_inputs=obs_dim,
            n_agent_outputs=2 * action_spec.shape[-1],
            n_agents=n_agents,
            centralized=False,
            share_params=True,
            device=s.device,
            depth=2,
            num_cells=256,
            activation_class=torch.nn.Tanh,
        ),
        NormalParamExtractor(),
    )
    policy = ProbabilisticActor(
        TensorDictModule(
            policy_net,
            in_keys=[("agents", "observation")],
            out_keys=[("agents", "loc"), ("agents", "scale")],
        ),
        spec=env.full_action_spec_unbatched,
        in_keys=[("agents", "loc"), ("agents", "scale")],
        out_keys=[env.action_key],
        distribution_class=TanhNormal,
        distribution_kwargs={"low": action_spec.space.low, "high": action_spec.space.high},
        return_log_prob=True,
    )
    critic = TensorDictModule(
        MultiAgentMLP(
            n_agent_inputs=obs_dim,
            n_agent_outputs=1,
            n_agents=n_agents,
            centralized=True,
            share_params=True,
            device=s.device,
            depth=2,
            num_cells=256,
            activation_class=torch.nn.Tanh,
        ),
        in_keys=[("agents", "observation")],
        out_keys=[("agents", "state_value")],
    )
    collector = Collector(
        env,
        policy,
        device=s.device,
        storing_device=s.device,
        frames_per_batch=s.frames_per_batch,
        total_frames=s.total_frames,
        auto_register_policy_transforms=False,
    )
    replay_buffer = ReplayBuffer(
        storage=LazyTensorStorage(s.frames_per_batch, device=s.device),
        sampler=SamplerWithoutReplacement(),
        batch_size=s.minibatch_size,
    )
    loss_module = ClipPPOLoss(
        actor_network=policy,
        critic_network=critic,
        clip_epsilon=s.clip_epsilon,
        entropy_coeff=s.entropy_coeff,
        normalize_advantage=False,
    )
    loss_module.set_keys(
        reward=env.reward_key,
        action=env.action_key,
        value=("agents", "state_value"),
        done=("agents", "done"),
        terminated=("agents", "terminated"),
    )
    loss_module.make_value_estimator(ValueEstimators.GAE, gamma=s.gamma, lmbda=s.lmbda)
    gae = loss_module.value_estimator
    optim = torch.optim.Adam(loss_module.parameters(), s.lr)

    history = []
    frames = 0
    start = time.perf_counter()
    try:
        for tensordict_data in collector:
            collect_s = time.perf_counter() - start
            update_start = time.perf_counter()
            for key in ("done", "terminated"):
                tensordict_data.set(
                    ("next", "agents", key),
                    tensordict_data.get(("next", key))
                    .unsqueeze(-1)
                    .expand(tensordict_data.get_item_shape(("next", env.reward_key))),
                )
            with torch.no_grad():
                gae(
                    tensordict_data,
                    params=loss_module.critic_network_params,
                    target_params=loss_module.target_critic_network_params,
                )
            replay_buffer.extend(tensordict_data.reshape(-1))
            for _ in range(s.num_epochs):
                for _ in range(s.frames_per_batch // s.minibatch_size):
                    subdata = replay_buffer.sample()
                    loss_vals = loss_module(subdata)
                    loss_value = (
                        loss_vals["loss_objective"]
                        + loss_vals["loss_critic"]
                        + loss_vals["loss_entropy"]
                    )
                    loss_value.backward()
                    torch.nn.utils.clip_grad_norm_(loss_module.parameters(), s.max_grad_norm)
                    optim.step()
                    optim.zero_grad()
            collector.update_policy_weights_()
            update_s = time.perf_counter() - update_start
            frames += tensordict_data.numel()
            done = tensordict_data.get(("next", "agents", "done"))
            episode_reward = tensordict_data.get(("next", "agents", "episode_reward"))
            history.append(
                {
                    "frames": tensordict_data.numel(),
                    "total_frames": frames,
                    "episode_return": float(episode_reward[done].mean()),
                    "collect_s": collect_s,
                    "update_s": update_s,
                }
            )
            if callback is not None:
                callback(history[-1], policy)
            start = time.perf_counter()
    finally:
        collector.shutdown()
    return history


# -- one benchmark cell: the pipeline in a run directory -----------------------------------


def run_tutorial_cell(
    s: TutorialSettings,
    run_dir: str | Path,
    *,
    eval_interval: int = EvalConfig.interval,
    eval_episodes: int = EvalConfig.episodes,
    eval_seed: int = EvalConfig.seed,
) -> dict[str, Any]:
    """Train ``s`` into ``run_dir`` (which must be new or empty) and return the final status.

    Writes ``baseline.yaml``, ``metrics.csv`` (``iteration``, ``frames``,
    ``train/episode_return``, ``time/*``, ``eval/*`` as ``mappo train`` names
    them) and ``status.json``. Evaluation is ``mappo train``'s: ``eval_episodes``
    deterministic episodes on an env seeded ``eval_seed``, every
    ``eval_interval`` iterations and after the last, never moving a random
    stream that training reads.
    """
    from mappo_torchrl.rng import isolated_rng
    from mappo_torchrl.runs.directory import RunDir, read_metrics
    from mappo_torchrl.runs.evaluation import run_episodes

    path = Path(run_dir)
    if path.exists() and any(path.iterdir()):
        raise FileExistsError(f"run_dir={str(path)!r}: already holds files")
    path.mkdir(parents=True, exist_ok=True)
    (path / SETTINGS_FILE).write_text(yaml.safe_dump(dataclasses.asdict(s), sort_keys=False))
    run = RunDir(path)
    run.write_status("running")
    iterations = -(-s.total_frames // s.frames_per_batch)
    started = time.perf_counter()
    eval_env = None

    def after_iteration(row: dict[str, float], policy) -> None:
        nonlocal eval_env
        iteration = len(history_rows) + 1
        metrics = {
            "iteration": iteration,
            "frames": row["total_frames"],
            "train/episode_return": row["episode_return"],
            "time/collect_s": row["collect_s"],
            "time/update_s": row["update_s"],
        }
        if (eval_interval > 0 and iteration % eval_interval == 0) or iteration >= iterations:
            eval_start = time.perf_counter()
            with isolated_rng():
                if eval_env is None:
                    eval_env = make_tutorial_env(s, num_envs=eval_episodes, seed=eval_seed)
                eval_env.set_seed(eval_seed)
                results = run_episodes(eval_env, policy, max_steps=s.max_steps)
            metrics.update(results.metrics())
            metrics["time/eval_s"] = time.perf_counter() - eval_start
        metrics["time/elapsed_s"] = time.perf_counter() - started
        run.log_metrics(metrics)
        history_rows.append(metrics)

    history_rows: list[dict[str, float]] = []
    try:
        run_tutorial_pipeline(s, callback=after_iteration)
    except KeyboardInterrupt:
        run.write_status("interrupted", iteration=len(history_rows))
        raise
    finally:
        if eval_env is not None:
            eval_env.close()
    rows = read_metrics(path)
    last = [
        r["train/episode_return"] for r in rows[-10:] if math.isfinite(r["train/episode_return"])
    ]
    status = {
        "iteration": len(rows),
        "frames": int(rows[-1]["frames"]),
        "final_episode_return": statistics.fmean(last) if last else math.nan,
        "final_eval_return": rows[-1].get("eval/episode_return", float("nan")),
        "wall_time_s": round(time.perf_counter() - started, 1),
    }
    run.write_status("finished", **status)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """Run one baseline cell from the command line (what ``mappo benchmark`` starts)."""
    parser = argparse.ArgumentParser(
        prog="python -m mappo_torchrl.benchmark.tutorial",
        description="Train the tutorial-style TorchRL pipeline into a run directory.",
    )
    parser.add_argument("--run-dir", required=True, help="a new or empty directory")
    parser.add_argument("--scenario", default=TutorialSettings.scenario, help="VMAS scenario")
    parser.add_argument("--seed", type=int, default=TutorialSettings.seed, help="seed")
    parser.add_argument("--total-frames", type=int, default=TutorialSettings.total_frames)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument(
        "--overwrite", action="store_true", help="delete what --run-dir holds first"
    )
    parser.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="change a tutorial setting, e.g. num_envs=30 lr=0.001",
    )
    args = parser.parse_args(argv)
    try:
        check_scenario(args.scenario)
        overrides = dict(_pair(item) for item in args.set)
        overrides.update(scenario=args.scenario, seed=args.seed, total_frames=args.total_frames)
        settings = tutorial_settings(overrides)
    except (ConfigError, ValueError) as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    if args.overwrite and Path(args.run_dir).is_dir():
        shutil.rmtree(args.run_dir)
    torch.set_num_threads(max(1, args.threads))
    logging.getLogger("torchrl").setLevel(logging.WARNING)
    print(f"tutorial pipeline: training {settings.scenario} -> {args.run_dir}", flush=True)
    try:
        status = run_tutorial_cell(settings, args.run_dir)
    except KeyboardInterrupt:
        print("tutorial pipeline: interrupted (a baseline cell restarts from scratch)")
        return 130
    print(
        f"tutorial pipeline: done: {status['frames']} frames in {status['wall_time_s']:.0f} s; "
        f"final return {status['final_episode_return']:.3f}; "
        f"final evaluation {status['final_eval_return']:.3f}"
    )
    return 0


def _pair(item: str) -> tuple[str, str]:
    if "=" not in item:
        raise ConfigError("set", item, "must be KEY=VALUE, e.g. num_envs=30")
    key, value = item.split("=", 1)
    return key, value


if __name__ == "__main__":
    sys.exit(main())
