"""MAPPO against IPPO: the same run with a centralised and a local critic, over seeds.

MAPPO's critic sees every agent's observation; IPPO's sees only the agent's
own. Nothing else changes (``model.centralized_critic``), so the difference
in return is the critic's input alone. Results are mean ± std over seeds.

    python examples/mappo_vs_ippo.py                       # balance, 3 seeds, 300k frames
    python examples/mappo_vs_ippo.py --scenario navigation --seeds 0 1 2 3 4
    python examples/mappo_vs_ippo.py --smoke               # a few seconds, as CI runs it
"""

from __future__ import annotations

import argparse
import math
import statistics

from mappo_torchrl.config import RunConfig
from mappo_torchrl.training import Trainer


def final_return(config: RunConfig) -> float:
    """Train with ``config``; the mean episode return of its last 5 iterations."""
    history = Trainer(config).train(progress=False)
    returns = [m["train/episode_return"] for m in history[-5:]]
    returns = [r for r in returns if not math.isnan(r)]
    return statistics.fmean(returns) if returns else math.nan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--scenario", default="balance", help="VMAS scenario")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds")
    parser.add_argument("--frames", type=int, default=300_000, help="frames per run")
    parser.add_argument("--smoke", action="store_true", help="tiny budget, for CI")
    args = parser.parse_args()

    seeds = [0] if args.smoke else args.seeds

    results: dict[str, list[float]] = {"MAPPO": [], "IPPO": []}
    for name, centralized in (("MAPPO", True), ("IPPO", False)):
        for seed in seeds:
            # -- config: the two runs differ in one switch ------------------------
            config = RunConfig(seed=seed)
            config.env.scenario = args.scenario
            config.model.centralized_critic = centralized
            config.collector.total_frames = args.frames
            if args.smoke:  # one tiny iteration
                config.env.num_envs, config.env.max_steps = 4, 10
                config.collector.frames_per_batch, config.collector.total_frames = 40, 40
                config.optim.num_epochs, config.optim.minibatch_size = 1, 20
            results[name].append(final_return(config))
            print(f"{name} seed {seed}: {results[name][-1]:.3f}")

    # -- report: mean ± std over seeds ------------------------------------------
    print(f"\n{args.scenario}, {len(seeds)} seed(s), final episode return")
    for name, values in results.items():
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"{name:<6} {statistics.fmean(values):.3f} ± {std:.3f}")


if __name__ == "__main__":
    main()
