"""Compose mappo_torchrl's factories into your own TorchRL training loop.

Everything here is a plain TorchRL object: the env is a ``TransformedEnv``, the
actor a ``ProbabilisticActor``, the critic a ``TensorDictModule``, the loss a
``MAPPOLoss`` subclass with a ``MultiAgentGAE`` value estimator, the collector
a ``torchrl.collectors.Collector`` and the buffer a ``ReplayBuffer``. Swap any
of them for your own.

    python examples/custom_loop.py            # 300k frames of navigation
    python examples/custom_loop.py --smoke    # a few seconds, as CI runs it
"""

from __future__ import annotations

import argparse

import torch

from mappo_torchrl.data import make_collector, make_replay_buffer
from mappo_torchrl.envs import group_keys, make_env
from mappo_torchrl.models import make_actor, make_critic
from mappo_torchrl.objectives import make_loss
from mappo_torchrl.training import finished_episode_returns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--smoke", action="store_true", help="tiny budget, for CI")
    args = parser.parse_args()

    # -- config ---------------------------------------------------------------
    torch.set_num_threads(1)
    torch.manual_seed(0)
    num_envs, max_steps = (4, 10) if args.smoke else (60, 100)
    frames_per_batch = num_envs * max_steps
    total_frames = 2 * frames_per_batch if args.smoke else 300_000
    num_epochs, minibatch_size = 4, (20 if args.smoke else 400)

    # -- env ------------------------------------------------------------------
    env = make_env("navigation", num_envs=num_envs, max_steps=max_steps, seed=0)
    keys = group_keys(env, "agents")

    # -- modules --------------------------------------------------------------
    actor = make_actor(env, "agents")
    critic = make_critic(env, "agents", centralized=True)  # False gives IPPO

    # -- collector and buffer -------------------------------------------------
    collector = make_collector(
        env, actor, frames_per_batch=frames_per_batch, total_frames=total_frames
    )
    buffer = make_replay_buffer(size=frames_per_batch, minibatch_size=minibatch_size)

    # -- loss -----------------------------------------------------------------
    loss = make_loss(actor, critic, keys, gamma=0.9, lmbda=0.9)
    # One Adam over actor and critic with one joint gradient clipping, as TorchRL's
    # multi-agent PPO tutorial does. mappo_torchrl's Trainer follows the original MAPPO
    # code instead: per group, one Adam for the actor and one for the critic, each with
    # its own learning rate and gradient clipping (Trainer.update_step).
    optim = torch.optim.Adam(loss.parameters(), lr=5e-4)

    # -- loop -----------------------------------------------------------------
    for iteration, batch in enumerate(collector, start=1):
        with torch.no_grad():
            # writes ("agents", "advantage") and ("agents", "value_target")
            loss.value_estimator(batch)
        buffer.extend(batch.reshape(-1))
        for _ in range(num_epochs):
            for _ in range(frames_per_batch // minibatch_size):
                out = loss(buffer.sample())
                total = out["loss_objective"] + out["loss_critic"] + out["loss_entropy"]
                total.backward()
                torch.nn.utils.clip_grad_norm_(loss.parameters(), 1.0)
                optim.step()
                optim.zero_grad()
        collector.update_policy_weights_()

        # -- evaluation: per-agent returns of the episodes that ended in this batch
        episode_return = finished_episode_returns(batch, keys).mean()
        print(
            f"iteration {iteration:3d}  frames {iteration * frames_per_batch:7d}  "
            f"episode return {episode_return:.3f}"
        )
    collector.shutdown()


if __name__ == "__main__":
    main()
