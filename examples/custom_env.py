"""Train on your own TorchRL multi-agent env: discrete actions with an action mask.

The pipeline needs nothing VMAS-specific. Any TorchRL env works if it has a
``group_map`` and nests each group's ``observation``, ``action`` and ``reward``
under the group name (``done`` may be per agent or the team's, at the root).
Here ``LineWorld`` is such an env, written from scratch: agents walk left, stay
or right on a line of cells towards their own goal cell, and an
``("agents", "action_mask")`` entry forbids stepping off the line. The actor
sees the mask and becomes a ``MaskedCategorical``, so masked actions are never
sampled.

    python examples/custom_env.py             # 200k frames
    python examples/custom_env.py --smoke     # a few seconds, as CI runs it
"""

from __future__ import annotations

import argparse

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Binary, Categorical, Composite, Unbounded
from torchrl.envs import EnvBase, StepCounter

from mappo_torchrl.config import RunConfig
from mappo_torchrl.envs import track_episode_returns
from mappo_torchrl.training import Trainer

LEFT, STAY, RIGHT = 0, 1, 2


class LineWorld(EnvBase):
    """``n_agents`` agents on cells ``0 .. size - 1``, each rewarded for nearing its goal."""

    def __init__(self, *, num_envs: int, n_agents: int = 2, size: int = 8, seed: int = 0):
        super().__init__(batch_size=torch.Size([num_envs]))
        self.n_agents, self.size = n_agents, size
        self.group_map = {"agents": [f"agent_{i}" for i in range(n_agents)]}
        b, n = num_envs, n_agents
        self.observation_spec = Composite(
            agents=Composite(
                observation=Unbounded((b, n, 2)),
                action_mask=Binary(n=3, shape=(b, n, 3), dtype=torch.bool),
                shape=(b, n),
            ),
            shape=(b,),
        )
        self.action_spec = Composite(
            agents=Composite(action=Categorical(3, shape=(b, n)), shape=(b, n)), shape=(b,)
        )
        self.reward_spec = Composite(
            agents=Composite(reward=Unbounded((b, n, 1)), shape=(b, n)), shape=(b,)
        )
        # The episode ends for the whole team at once: done sits at the root.
        self.done_spec = Composite(
            done=Categorical(2, (b, 1), dtype=torch.bool),
            terminated=Categorical(2, (b, 1), dtype=torch.bool),
            shape=(b,),
        )
        self.rng = torch.Generator().manual_seed(seed)
        self.pos = torch.zeros(b, n, dtype=torch.long)
        self.goal = torch.zeros(b, n, dtype=torch.long)

    def _observe(self, reward: torch.Tensor | None = None) -> TensorDict:
        at_goal = (self.pos == self.goal).all(-1, keepdim=True)
        mask = torch.stack(
            [self.pos > 0, torch.ones_like(self.pos, dtype=torch.bool), self.pos < self.size - 1],
            dim=-1,
        )
        agents = {
            "observation": torch.stack([self.pos, self.goal], -1).float() / self.size,
            "action_mask": mask,
        }
        if reward is not None:
            agents["reward"] = reward
        # Per-agent entries: the group's batch size ends with the agent dimension.
        agents = TensorDict(agents, batch_size=(*self.batch_size, self.n_agents))
        return TensorDict(
            {"agents": agents, "done": at_goal, "terminated": at_goal.clone()},
            batch_size=self.batch_size,
        )

    def _reset(self, tensordict: TensorDictBase | None = None) -> TensorDict:
        reset = torch.ones(self.batch_size, dtype=torch.bool)
        if tensordict is not None and "_reset" in tensordict.keys():
            reset = tensordict["_reset"].reshape(self.batch_size)  # only the envs that ended
        shape = (*self.batch_size, self.n_agents)
        new_pos = torch.randint(self.size, shape, generator=self.rng)
        new_goal = torch.randint(self.size, shape, generator=self.rng)
        self.pos = torch.where(reset[:, None], new_pos, self.pos)
        self.goal = torch.where(reset[:, None], new_goal, self.goal)
        return self._observe()

    def _step(self, tensordict: TensorDictBase) -> TensorDict:
        action = tensordict["agents", "action"]
        self.pos = (self.pos + action - STAY).clamp(0, self.size - 1)
        distance = (self.pos - self.goal).abs().float() / self.size
        return self._observe(reward=-distance.unsqueeze(-1))

    def _set_seed(self, seed: int | None) -> None:
        self.rng.manual_seed(seed or 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--frames", type=int, default=200_000, help="total frames")
    parser.add_argument("--smoke", action="store_true", help="tiny budget, for CI")
    args = parser.parse_args()

    # -- config: only the sizes and budgets matter for a custom env ---------------
    config = RunConfig()
    config.env.num_envs, config.env.max_steps = (4, 10) if args.smoke else (32, 20)
    steps_per_batch = config.env.max_steps * (1 if args.smoke else 5)
    config.collector.frames_per_batch = config.env.num_envs * steps_per_batch
    config.collector.total_frames = (
        2 * config.collector.frames_per_batch if args.smoke else args.frames
    )
    config.optim.minibatch_size = 20 if args.smoke else 320
    config.loss.entropy_coeff = 0.01

    # -- env: track episode returns; cut episodes after max_steps, as truncation --
    env = track_episode_returns(LineWorld(num_envs=config.env.num_envs, seed=config.seed))
    env.append_transform(StepCounter(max_steps=config.env.max_steps))

    # -- train --------------------------------------------------------------------
    trainer = Trainer(config, env=env)
    distribution = trainer.groups["agents"].actor.get_dist(trainer.env.reset())
    print("actor distribution:", type(distribution).__name__)
    history = trainer.train(progress=not args.smoke)
    for i in sorted({0, len(history) // 2, len(history) - 1}):
        metrics = history[i]
        print(
            f"frames {metrics['frames']:7d}  episode return {metrics['train/episode_return']:.3f}"
        )

    # -- check: no agent ever took a masked action ----------------------------------
    with torch.no_grad():
        rollout = trainer.env.rollout(config.env.max_steps, trainer.policy)
    taken = rollout["agents", "action_mask"].gather(-1, rollout["agents", "action"].unsqueeze(-1))
    print(f"masked actions taken: {int((~taken).sum())} of {taken.numel()}")


if __name__ == "__main__":
    main()
