"""Collection across processes: PettingZoo MPE simple_spread with collector.workers 1 and N.

PettingZoo envs are not vectorised: one process steps one env. With
``collector.workers N`` TorchRL's MultiSyncCollector steps N copies in worker
processes (one torch thread each) and the update sees one batch of
``[N, T]`` steps. Each measurement runs in a fresh subprocess; the worker
counts alternate ``--repeats`` times in this one invocation and each one's
median run is shown.

    python benchmarks/workers.py --workers 1 2 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path


def make_spread_env():
    """simple_spread, 3 agents, discrete actions, 25 steps an episode: examples/'s env."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
    from pettingzoo_mpe import make_spread_env as example_env

    return example_env(seed=0, max_cycles=25)


def measure(workers: int, iterations: int, frames_per_batch: int) -> dict:
    import torch

    from mappo_torchrl.config import RunConfig
    from mappo_torchrl.training import Trainer

    torch.set_num_threads(1)
    config = RunConfig()
    config.env.num_envs = 1
    config.collector.frames_per_batch = frames_per_batch
    config.collector.total_frames = frames_per_batch * iterations
    config.collector.workers = workers
    config.optim.minibatch_size = frames_per_batch // 4
    config.model.actor_cells = config.model.critic_cells = 64
    history = Trainer(config, env_fn=make_spread_env).train(progress=False)
    timed = history[1:]  # the first iteration starts the workers
    collect = sum(m["time/collect_s"] for m in timed)
    update = sum(m["time/update_s"] for m in timed)
    frames = frames_per_batch * len(timed)
    return {"fps": frames / (collect + update), "collect_fps": frames / collect}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=6)
    parser.add_argument("--frames-per-batch", type=int, default=2_000)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.iterations, args.frames_per_batch)))
        return
    runs: dict[int, list[dict]] = {}
    for _ in range(args.repeats):
        for workers in args.workers:
            cmd = [sys.executable, __file__, "--child", str(workers)]
            cmd += ["--iterations", str(args.iterations)]
            cmd += ["--frames-per-batch", str(args.frames_per_batch)]
            env = {**os.environ, "PYTHONWARNINGS": "ignore"}
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
            runs.setdefault(workers, []).append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"# python benchmarks/workers.py {' '.join(sys.argv[1:])}")
    print(f"# {args.frames_per_batch} frames per batch, {os.cpu_count()} cores\n")
    print("| collector.workers | frames/s | collection frames/s | ratio |")
    print("|---|---|---|---|")
    medians = {w: sorted(r, key=lambda x: x["fps"])[len(r) // 2] for w, r in runs.items()}
    base = medians[args.workers[0]]["fps"]
    for workers, result in medians.items():
        print(
            f"| {workers} | {result['fps']:,.0f} | {result['collect_fps']:,.0f} | "
            f"{result['fps'] / base:.2f}x |"
        )


if __name__ == "__main__":
    main()
