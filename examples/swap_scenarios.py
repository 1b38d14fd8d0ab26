"""Train several VMAS scenarios through one function, changing only the config.

Any VMAS scenario runs with no code change: the env's specs size the networks
and its ``group_map`` decides how many actors, critics and losses there are.
Scenario options (``n_agents``, ...) go in ``env.scenario_kwargs``.

    python examples/swap_scenarios.py            # 3 scenarios, 120k frames each
    python examples/swap_scenarios.py --smoke    # a few seconds, as CI runs it
"""

from __future__ import annotations

import argparse
import math
import statistics

from mappo_torchrl.config import RunConfig
from mappo_torchrl.training import Trainer

# scenario -> keyword arguments for the scenario itself
SCENARIOS = {
    "navigation": {"n_agents": 3},
    "balance": {"n_agents": 3},
    "sampling": {"n_agents": 4},
}


def train_scenario(
    scenario: str, scenario_kwargs: dict, *, total_frames: int, smoke: bool
) -> dict[str, float]:
    """Train MAPPO on one scenario; return its final return and its agent groups."""
    # -- config ---------------------------------------------------------------
    config = RunConfig()
    config.env.scenario = scenario
    config.env.scenario_kwargs = dict(scenario_kwargs)
    config.collector.total_frames = total_frames
    if smoke:  # one tiny iteration
        config.env.num_envs, config.env.max_steps = 4, 10
        config.collector.frames_per_batch = 40
        config.optim.num_epochs, config.optim.minibatch_size = 1, 20

    # -- train ----------------------------------------------------------------
    trainer = Trainer(config)
    history = trainer.train(progress=False)

    # -- summarise: mean of the last iterations that finished an episode --------
    returns = [m["train/episode_return"] for m in history]
    finished = [r for r in returns if not math.isnan(r)][-3:]
    return {
        "groups": {group: len(agents) for group, agents in trainer.env.group_map.items()},
        "episode_return": statistics.fmean(finished) if finished else math.nan,
        "frames": trainer.frames,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--frames", type=int, default=120_000, help="frames per scenario")
    parser.add_argument("--smoke", action="store_true", help="tiny budget, for CI")
    args = parser.parse_args()
    total_frames = 40 if args.smoke else args.frames

    print(f"{'scenario':<12} {'groups':<24} {'frames':>8} {'episode return':>15}")
    for scenario, kwargs in SCENARIOS.items():
        result = train_scenario(scenario, kwargs, total_frames=total_frames, smoke=args.smoke)
        groups = ", ".join(f"{g}×{n}" for g, n in result["groups"].items())
        print(
            f"{scenario:<12} {groups:<24} {result['frames']:>8} {result['episode_return']:>15.3f}"
        )


if __name__ == "__main__":
    main()
