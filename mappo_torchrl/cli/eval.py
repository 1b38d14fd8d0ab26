"""``mappo eval``: play a checkpoint's policy and print its returns (and a video)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch
from tensordict.nn import TensorDictSequential

from mappo_torchrl.cli.options import fail
from mappo_torchrl.config import ConfigError, RunConfig, from_saved_dict
from mappo_torchrl.config.checks import first_line
from mappo_torchrl.config.schema import MAX_NUM_ENVS, check_seed
from mappo_torchrl.envs import check_scenario, make_env_from_config
from mappo_torchrl.runs.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint
from mappo_torchrl.runs.directory import RunDirError, refuse_if_live
from mappo_torchrl.runs.evaluation import EpisodeResults, Evaluation
from mappo_torchrl.training.learner import make_group_learner
from mappo_torchrl.training.threads import set_threads


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a checkpoint: returns per agent and team, optionally a video",
        description=(
            "Load a checkpoint (a run directory's newest, or one ckpt-NNNNNN.pt file), play N "
            "episodes side by side and print each agent's and the team's return. "
            "--video renders the first episode (mp4; gif without the video extra)."
        ),
    )
    parser.add_argument("source", metavar="RUN_DIR|CHECKPOINT", help="run directory or .pt file")
    parser.add_argument("--episodes", type=int, default=20, metavar="N", help="default: 20")
    parser.add_argument(
        "--stochastic", action="store_true", help="sample actions instead of taking the mode"
    )
    parser.add_argument(
        "--seed", type=int, default=None, metavar="N", help="default: the run's eval.seed"
    )
    parser.add_argument("--video", metavar="FILE", help="write the first episode to FILE (.mp4)")
    parser.add_argument("--device", default="cpu", help="default: cpu")
    parser.set_defaults(func=eval_command)


def eval_command(args: argparse.Namespace) -> int:
    if not 0 < args.episodes <= MAX_NUM_ENVS:
        fail(
            f"mappo eval: error: --episodes={args.episodes}: must be a positive integer, "
            f"at most {MAX_NUM_ENVS} (one env per episode)"
        )
    try:
        if args.seed is not None:
            check_seed("--seed", args.seed)
        path = _checkpoint_path(Path(args.source))
        state = load_checkpoint(path)
        if not isinstance(state.get("config"), dict):
            raise CheckpointError(f"checkpoint {str(path)!r} holds no config")
        config = from_saved_dict(state["config"])
        config = dataclasses.replace(config, device=args.device)
        config.validate()
        check_scenario(config.env.scenario)
    except (CheckpointError, ConfigError, RunDirError) as err:
        fail(f"mappo eval: error: {err}")
    except ValueError as err:  # an unknown scenario
        fail(f"mappo eval: error: checkpoint {str(path)!r}: {err}")
    if args.video:
        from mappo_torchrl.viz.video import VideoUnavailable, video_format

        try:
            video_format(args.video)
        except VideoUnavailable as err:
            fail(f"mappo eval: error: --video={args.video!r}: {err}")
    seed = config.eval.seed if args.seed is None else args.seed
    set_threads(config.threads, torch.device(config.device))
    evaluation = _evaluation(config, state, path, args, seed)
    try:
        results = evaluation.run()
    except Exception as err:
        from mappo_torchrl.viz.video import VideoUnavailable

        if isinstance(err, VideoUnavailable):
            fail(f"mappo eval: error: --video: {err}")
        raise
    mode = "stochastic" if args.stochastic else "deterministic"
    print(
        f"mappo eval: {path} ({config.env.scenario}, iteration {state['iteration']}, "
        f"{state['frames']} frames): {args.episodes} {mode} episodes, seed {seed}"
    )
    print(format_table(results))
    if evaluation.last_stochastic is not None:
        print(f"mappo eval: {format_modes(results, evaluation.last_stochastic)}")
    if args.video:
        from mappo_torchrl.viz.video import write_video

        written = write_video(args.video, results.frames)
        note = "" if written.suffix == Path(args.video).suffix else " (no mp4 encoder: gif)"
        print(f"mappo eval: video of episode 1 -> {written}{note}")
    evaluation.close()
    return 0


def format_table(results: EpisodeResults) -> str:
    """Per-agent and team returns (mean ± std over episodes) and episode length.

    With one group the team is every agent. With several (a competitive env
    such as simple_tag) each group is a team of its own and gets its own sum;
    a sum over all groups would mix opponents' returns and is left out.
    """
    rows = [("group", "agent", "return (mean ± std)")]
    for group, returns in results.returns.items():
        for i, name in enumerate(results.agent_names[group]):
            rows.append((group, name, _pm(returns[:, i])))
    if len(results.returns) == 1:
        rows.append(("team", "sum of all agents", _pm(results.team_returns)))
    else:
        for group, returns in results.returns.items():
            n = returns.shape[-1]
            sum_of = f"sum of its {n} agents" if n > 1 else "its one agent"
            rows.append((f"{group} team", sum_of, _pm(returns.sum(-1))))
    rows.append(("episode", "length (steps)", _pm(results.lengths.float())))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def format_modes(deterministic: EpisodeResults, stochastic: EpisodeResults) -> str:
    """Each group's mean return per agent, deterministic beside stochastic, on one line.

    ``mappo eval`` prints it for envs whose groups compete
    (:func:`~mappo_torchrl.runs.evaluation.is_competitive`): the same episodes,
    at the policy's mode and sampled as in training, since against an opponent
    the two can differ far more than the spread of either.
    """
    groups = "; ".join(
        f"{group} {_pm(returns.mean(-1)).strip()} deterministic, "
        f"{_pm(stochastic.returns[group].mean(-1)).strip()} stochastic"
        for group, returns in deterministic.returns.items()
    )
    episodes = len(deterministic.lengths)
    return (
        f"competing groups, return per agent over the same {episodes} episodes "
        f"(mean ± std): {groups} (training samples its actions; at its mode a policy "
        "can play very differently against an opponent)"
    )


def _pm(values: torch.Tensor) -> str:
    std = float(values.std()) if values.numel() > 1 else 0.0
    return f"{float(values.mean()):8.3f} ± {std:.3f}"


def _checkpoint_path(source: Path) -> Path:
    if source.is_dir():
        # A live run's newest checkpoint changes under us: name a checkpoint file instead.
        refuse_if_live(source, "source")
        return latest_checkpoint(source)
    if not source.exists():
        raise CheckpointError(f"{str(source)!r}: no such run directory or checkpoint file")
    return source


def _evaluation(
    config: RunConfig, state: dict, path: Path, args: argparse.Namespace, seed: int
) -> Evaluation:
    """An :class:`Evaluation` of the checkpoint's actors (a one-line exit if they do not fit)."""

    def make_env(num_envs: int, env_seed: int):
        env = make_env_from_config(config, seed=env_seed, num_envs=num_envs)
        if args.video:
            from mappo_torchrl.viz.video import add_renderer

            env = add_renderer(env)
        return env

    # The spec-only env for building the networks; the evaluation builds its own.
    spec_env = make_env_from_config(config, num_envs=1)
    actors = []
    try:
        for group in spec_env.group_map:
            learner = make_group_learner(
                spec_env,
                group,
                model=config.model,
                loss=config.loss,
                optim=config.optim,
                perf=config.perf,
                device=config.device,
            )
            learner.loss.load_state_dict(state["groups"][group]["loss"])
            actors.append(learner.actor)
    except (RuntimeError, KeyError) as err:
        fail(
            f"mappo eval: error: checkpoint {str(path)!r} does not fit its config "
            f"({first_line(err)})"
        )
    finally:
        spec_env.close()
    return Evaluation(
        make_env,
        TensorDictSequential(*actors),
        episodes=args.episodes,
        max_steps=config.env.max_steps,
        seed=seed,
        deterministic=not args.stochastic,
    )
