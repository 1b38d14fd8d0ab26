"""Train MAPPO on a PettingZoo MPE task through TorchRL's PettingZoo wrapper.

Nothing in the pipeline is VMAS-specific: any TorchRL multi-agent env with
``env.group_map`` and group-nested keys trains the same way. PettingZoo's MPE
tasks live in the ``mpe2`` package (``pip install -e ".[pettingzoo]"``).

    python examples/pettingzoo_mpe.py                   # simple_spread, 3 agents, 150k frames
    python examples/pettingzoo_mpe.py --smoke           # a few seconds, as CI runs it
"""

from __future__ import annotations

import argparse

from mpe2 import simple_spread_v3
from torchrl.envs.libs.pettingzoo import PettingZooWrapper

from mappo_torchrl.config import RunConfig
from mappo_torchrl.training import Trainer


def make_spread_env(*, seed: int, max_cycles: int = 25) -> PettingZooWrapper:
    """simple_spread with discrete actions, per-agent masks and the global state."""
    return PettingZooWrapper(
        simple_spread_v3.parallel_env(N=3, max_cycles=max_cycles, continuous_actions=False),
        use_mask=True,  # ("agent", "mask"): which agents are still acting
        return_state=True,  # a root "state" entry for a state-based critic
        seed=seed,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--frames", type=int, default=150_000)
    parser.add_argument("--critic-input", default="state", choices=["observations", "state"])
    parser.add_argument("--smoke", action="store_true", help="tiny budget, for CI")
    args = parser.parse_args()

    # -- config: the env is unbatched, so a "frame" is one step of the one env --
    config = RunConfig()
    config.collector.frames_per_batch = 100 if args.smoke else 1_000
    config.collector.total_frames = 200 if args.smoke else args.frames
    config.optim.minibatch_size = 50 if args.smoke else 250
    config.loss.gamma, config.loss.entropy_coeff = 0.99, 0.01
    config.model.actor_cells = config.model.critic_cells = 64
    config.model.critic_input = args.critic_input

    # -- env and training ---------------------------------------------------
    env = make_spread_env(seed=config.seed, max_cycles=25)
    print(f"groups: {env.group_map}")
    history = Trainer(config, env=env).train(progress=not args.smoke)

    # -- report -------------------------------------------------------------
    step = max(1, len(history) // 10)
    for i in sorted({*range(0, len(history), step), len(history) - 1}):  # the last one once
        metrics = history[i]
        print(
            f"frames {metrics['frames']:7.0f}  episode return "
            f"{metrics['train/episode_return']:8.3f}"
        )


if __name__ == "__main__":
    main()
