"""How much of collection goes to VMAS's partial resets, TorchRL's loop against ours.

TorchRL's ``VmasEnv`` resets the envs whose episode ended early one by one, in a
Python loop over ``vmas.Environment.reset_at``, each swapping VMAS's random state
in and out; this project's env (``mappo_torchrl.envs.resets``) swaps it once for
all the envs due. This script collects a few batches with
the policy of a finished run (or an untrained one), both ways, alternating, in
this one process, and prints the time spent in partial resets against the whole
collection.

    python benchmarks/resets.py --run RUN_DIR [--run RUN_DIR ...] --batches 10
    python benchmarks/resets.py --scenario balance          # untrained policy
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path
from unittest.mock import patch

import torch
from torchrl.envs.libs.vmas import VmasEnv

from mappo_torchrl.config import RunConfig
from mappo_torchrl.config.io import load_config
from mappo_torchrl.envs import factory
from mappo_torchrl.envs.resets import LoopResetVmasEnv
from mappo_torchrl.runs.checkpoint import checkpoint_files, load_checkpoint, load_weights
from mappo_torchrl.training import Trainer


class ResetClock:
    """Wraps ``cls._reset`` to time partial resets and count the envs they reset."""

    def __init__(self, cls: type[VmasEnv]) -> None:
        self.seconds = 0.0
        self.calls = 0
        self.envs = 0
        self.cls = cls
        self._own = "_reset" in cls.__dict__
        self._real = cls._reset

    def __enter__(self) -> ResetClock:
        clock = self

        def _reset(env, tensordict=None, **kwargs):
            partial = tensordict is not None and "_reset" in tensordict.keys()
            mask = tensordict.get("_reset").squeeze(-1) if partial else None
            if mask is None or bool(mask.all()):
                return clock._real(env, tensordict, **kwargs)
            start = time.perf_counter()
            out = clock._real(env, tensordict, **kwargs)
            clock.seconds += time.perf_counter() - start
            clock.calls += 1
            clock.envs += int(mask.sum())
            return out

        self.cls._reset = _reset
        return self

    def __exit__(self, *exc) -> None:
        if self._own:
            self.cls._reset = self._real
        else:
            del self.cls._reset


def measure(
    config: RunConfig, weights: dict | None, batches: int, label: str, batched: bool
) -> dict:
    config.collector.overlap = "off"
    config.collector.total_frames = config.collector.frames_per_batch * batches
    if batched:
        trainer = Trainer(config)
    else:  # TorchRL's own VmasEnv, for comparison
        with patch.object(factory, "LoopResetVmasEnv", VmasEnv):
            trainer = Trainer(config)
    if weights is not None:
        load_weights(trainer, weights)
    collected = 0
    cls = LoopResetVmasEnv if batched else VmasEnv
    with ResetClock(cls) as clock, torch.no_grad():
        start = time.perf_counter()
        for batch in trainer.collector:
            collected += batch.numel()
        total = time.perf_counter() - start
    trainer.collector.shutdown()
    return {
        "label": label,
        "resets": "mappo_torchrl (one RNG swap)" if batched else "TorchRL VmasEnv",
        "scenario": config.env.scenario,
        "fps": collected / total,
        "reset_share": clock.seconds / total,
        "envs_reset": clock.envs,
        "ms_per_env": 1000 * clock.seconds / max(clock.envs, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--run", action="append", default=[], help="a finished run directory")
    parser.add_argument("--scenario", action="append", default=[], help="untrained, defaults")
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cases = []
    for run in args.run:
        config = load_config(Path(run) / "config.yaml")
        state = load_checkpoint(checkpoint_files(Path(run))[-1])
        cases.append((config, state, f"trained ({Path(run).parent.name}/{Path(run).name})"))
    for scenario in args.scenario:
        config = RunConfig()
        config.env.scenario = scenario
        cases.append((config, None, "untrained"))
    print(f"# python benchmarks/resets.py {' '.join(sys.argv[1:])}")
    print(
        "| scenario | policy | partial resets | collection frames/s | envs reset | ms per env "
        "| share of collection |"
    )
    print("|---|---|---|---|---|---|---|")
    for config, state, label in cases:
        config.threads = args.threads
        rows = [
            measure(copy.deepcopy(config), state, args.batches, label, b) for b in (False, True)
        ]
        for r in rows:
            print(
                f"| {r['scenario']} | {r['label']} | {r['resets']} | {r['fps']:,.0f} | "
                f"{r['envs_reset']} | {r['ms_per_env']:.2f} | {r['reset_share']:.0%} |"
            )
        print(f"| | | speed-up of collection | {rows[1]['fps'] / rows[0]['fps']:.2f}x | | | |")


if __name__ == "__main__":
    main()
