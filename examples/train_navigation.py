"""Train MAPPO on VMAS navigation with the library's Trainer, and save the curve.

python examples/train_navigation.py                 # defaults: 600k frames
python examples/train_navigation.py --smoke         # a few seconds, as CI runs it
python examples/train_navigation.py --frames 300000 --out runs/nav-example
"""

from __future__ import annotations

import argparse

from mappo_torchrl.config import RunConfig
from mappo_torchrl.runs.directory import RunDir
from mappo_torchrl.training import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--frames", type=int, default=None, help="total frames")
    parser.add_argument("--out", default="runs/train-navigation", help="run directory")
    parser.add_argument("--smoke", action="store_true", help="tiny budget, for CI")
    args = parser.parse_args()

    # -- config ---------------------------------------------------------------
    config = RunConfig()  # the defaults learn navigation with 3 agents
    if args.smoke:
        config.env.num_envs, config.env.max_steps = 4, 10
        config.collector.frames_per_batch, config.collector.total_frames = 40, 80
        config.optim.minibatch_size = 20
    if args.frames is not None:
        config.collector.total_frames = args.frames

    # -- run directory: config.yaml, metrics.csv, status.json -------------------
    run_dir = RunDir.create(args.out, config, overwrite=args.smoke)

    # -- train ----------------------------------------------------------------
    trainer = Trainer(config)
    history = trainer.train(progress=not args.smoke, callbacks=[run_dir.log_metrics])
    run_dir.write_status("finished", frames=trainer.frames)

    # -- report ---------------------------------------------------------------
    for metrics in history[-3:]:
        print(
            f"frames {metrics['frames']:7.0f}  episode return "
            f"{metrics['train/episode_return']:.3f}  fps {metrics['time/fps']:.0f}"
        )
    print(f"metrics: {run_dir.path / 'metrics.csv'}")


if __name__ == "__main__":
    main()
