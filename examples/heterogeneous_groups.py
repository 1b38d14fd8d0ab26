"""Train two agent groups side by side: predators and prey in VMAS simple_tag.

simple_tag has two groups with different observations: three ``adversary``
agents (the predators, rewarded for touching the prey) and one ``agent`` (the
prey, penalised when touched). The Trainer builds one actor, critic, loss and
optimiser pair per group from ``env.group_map`` and trains them on the same
samples. A ``group_map`` can also regroup agents, e.g. one group per agent.

    python examples/heterogeneous_groups.py                  # 300k frames
    python examples/heterogeneous_groups.py --one-group-per-agent
    python examples/heterogeneous_groups.py --smoke          # a few seconds, as CI runs it
"""

from __future__ import annotations

import argparse

import torch
from torchrl.envs import MarlGroupMapType

from mappo_torchrl.config import RunConfig
from mappo_torchrl.envs import make_env
from mappo_torchrl.training import Trainer, finished_episode_returns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--frames", type=int, default=300_000, help="total frames")
    parser.add_argument(
        "--one-group-per-agent", action="store_true", help="no sharing: every agent its own group"
    )
    parser.add_argument("--smoke", action="store_true", help="tiny budget, for CI")
    args = parser.parse_args()

    # -- config ---------------------------------------------------------------
    config = RunConfig()
    config.env.scenario = "simple_tag"
    config.env.max_steps = 25 if not args.smoke else 10
    config.collector.total_frames = args.frames
    if args.smoke:  # one tiny iteration
        config.env.num_envs = 4
        config.collector.frames_per_batch, config.collector.total_frames = 40, 40
        config.optim.num_epochs, config.optim.minibatch_size = 1, 20

    # -- env: VMAS groups agents by name unless told otherwise ------------------
    group_map = MarlGroupMapType.ONE_GROUP_PER_AGENT if args.one_group_per_agent else None
    env = make_env(
        "simple_tag",
        num_envs=config.env.num_envs,
        max_steps=config.env.max_steps,
        seed=config.seed,
        group_map=group_map,
    )
    print("groups:", {group: agents for group, agents in env.group_map.items()})

    # -- train: one learner per group -------------------------------------------
    trainer = Trainer(config, env=env)
    history = trainer.train(progress=not args.smoke)
    last = history[-1]
    for group in trainer.groups:
        print(
            f"{group:<12} loss_objective {last[f'train/{group}/loss_objective']:+.4f}  "
            f"entropy {last[f'train/{group}/entropy']:.3f}"
        )

    # -- evaluate: one episode per env with the trained policies ----------------
    with torch.no_grad():
        rollout = env.rollout(config.env.max_steps, trainer.policy)
    for group, learner in trainer.groups.items():
        returns = finished_episode_returns(rollout, learner.keys)
        print(f"{group:<12} mean episode return {returns.mean():+.3f} over {returns.numel()}")


if __name__ == "__main__":
    main()
