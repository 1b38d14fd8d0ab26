"""Recurrent MAPPO: a GRU policy against a feed-forward one where memory is needed.

The memory task (:class:`~mappo_torchrl.envs.toy.CueMemoryEnv`) shows each agent
a cue at the first step and asks for it three steps later: without memory the
answer is a guess (1/4 right). The partially observable navigation hides each
agent's goal after its first 5 steps (``env.goal_visible_steps``). Both arms get
the same frames and seed; only ``model.recurrent`` differs.

    python examples/recurrent.py                       # memory task, about a minute
    python examples/recurrent.py --task po-navigation  # 300k frames per arm
    python examples/recurrent.py --smoke               # a few seconds, as CI runs it
"""

from __future__ import annotations

import argparse
import math
import statistics

from mappo_torchrl.config import RunConfig
from mappo_torchrl.envs.toy import CueMemoryEnv
from mappo_torchrl.training import Trainer


def memory_config(recurrent: str, frames: int) -> RunConfig:
    """Small networks and short chunks for the 4-step memory episodes."""
    config = RunConfig()
    config.env.num_envs = 32
    config.collector.frames_per_batch = 32 * 16
    config.collector.total_frames = frames
    config.optim.minibatch_size, config.optim.chunk_length = 128, 8
    config.optim.actor_lr = config.optim.critic_lr = 3e-3
    config.model.actor_cells = config.model.critic_cells = config.model.rnn_hidden = 32
    config.model.recurrent = recurrent
    config.loss.entropy_coeff = 0.01
    config.update_threads = 1  # networks this small gain nothing from a second thread
    return config


def navigation_config(recurrent: str, frames: int) -> RunConfig:
    """Navigation whose goal is visible only in the first 5 steps of each episode."""
    config = RunConfig()
    config.env.goal_visible_steps = 5
    config.collector.total_frames = frames
    config.model.recurrent = recurrent  # chunks of optim.chunk_length = 10 steps
    return config


def final_return(config: RunConfig, task: str) -> float:
    """Train; the mean episode return of the last 3 iterations."""
    env = None
    if task == "memory":
        env = CueMemoryEnv(num_envs=config.env.num_envs, n_agents=2, seed=config.seed)
    history = Trainer(config, env=env).train(progress=False)
    returns = [m["train/episode_return"] for m in history[-3:]]
    returns = [r for r in returns if not math.isnan(r)]
    return statistics.fmean(returns) if returns else math.nan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=["memory", "po-navigation"], default="memory")
    parser.add_argument("--frames", type=int, help="frames per arm (default: per task)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="tiny budget, for CI")
    args = parser.parse_args()

    default_frames = {"memory": 32 * 16 * 16, "po-navigation": 300_000}[args.task]
    frames = args.frames or default_frames
    for name, recurrent in (("GRU", "gru"), ("feed-forward", "none")):
        # -- config: the two arms differ in model.recurrent only -------------------
        if args.task == "memory":
            config = memory_config(recurrent, 32 * 16 * 2 if args.smoke else frames)
        else:
            config = navigation_config(recurrent, frames)
            if args.smoke:
                config.env.num_envs, config.env.max_steps = 4, 10
                config.collector.frames_per_batch = config.collector.total_frames = 40
                config.optim.minibatch_size, config.optim.chunk_length = 20, 5
        config.seed = args.seed
        print(f"{name:<13} {args.task}: final episode return {final_return(config, args.task):.3f}")


if __name__ == "__main__":
    main()
