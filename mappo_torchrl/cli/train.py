"""``mappo train``: train on a VMAS scenario and write a run directory."""

from __future__ import annotations

import argparse
import statistics
import time

from mappo_torchrl.cli.options import add_config_options, config_overrides, fail
from mappo_torchrl.config import (
    PRESETS,
    ConfigError,
    RunConfig,
    apply_overrides,
    apply_preset,
    flatten,
    read_config_file,
)
from mappo_torchrl.envs import check_scenario
from mappo_torchrl.training import Trainer
from mappo_torchrl.training.rundir import RunDir, RunDirError, default_run_dir


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` sub-command and its options to ``subparsers``."""
    parser = subparsers.add_parser(
        "train",
        help="train MAPPO on a VMAS scenario",
        description=(
            "Train MAPPO on a VMAS scenario. Options are read from the defaults, "
            "then --preset, then --config, then --scenario and the --section.field options. "
            "The run directory gets config.yaml, metrics.csv and status.json."
        ),
    )
    parser.add_argument(
        "--scenario",
        metavar="NAME",
        help="VMAS scenario (same as --env.scenario; default: navigation)",
    )
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="start from a named hyper-parameter set: "
        + "; ".join(f"{name}: {p['source']}" for name, p in PRESETS.items()),
    )
    parser.add_argument("--config", metavar="FILE", help="YAML or JSON config file")
    parser.add_argument(
        "--run-dir",
        metavar="DIR",
        help="where to write the run (default: runs/<scenario>-seed<seed>-<time>)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace --run-dir if it already holds a run"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_config_options(parser)
    parser.set_defaults(func=run)


def resolve_config(args: argparse.Namespace) -> RunConfig:
    """The config a ``mappo train`` command line describes (validated)."""
    config = RunConfig()
    if args.preset:
        config = apply_preset(config, args.preset)
    if args.config:
        config = apply_overrides(config, flatten(read_config_file(args.config)))
    overrides = config_overrides(args)
    if args.scenario is not None:
        overrides["env.scenario"] = args.scenario
    config = apply_overrides(config, overrides)
    config.validate()
    check_scenario(config.env.scenario)
    return config


def run(args: argparse.Namespace) -> int:
    """Train as ``args`` say, writing the run directory; return the exit code."""
    try:
        config = resolve_config(args)
        run_dir = RunDir.create(
            args.run_dir or default_run_dir(config), config, overwrite=args.overwrite
        )
    except ConfigError as err:
        fail(f"mappo train: error: --{err}")
    except (ValueError, RunDirError) as err:
        fail(f"mappo train: error: {err}")
    print(f"mappo: training {config.env.scenario} -> {run_dir.path}")
    trainer = Trainer(config)
    start = time.perf_counter()
    try:
        history = trainer.train(progress=not args.no_progress, callbacks=[run_dir.log_metrics])
    except KeyboardInterrupt:
        run_dir.write_status("interrupted", iteration=trainer.iteration, frames=trainer.frames)
        print(f"\nmappo: interrupted at {trainer.frames} frames; metrics in {run_dir.path}")
        return 130
    wall = time.perf_counter() - start
    last = history[-5:]
    final = statistics.fmean(m["train/episode_return"] for m in last)
    run_dir.write_status(
        "finished",
        iteration=trainer.iteration,
        frames=trainer.frames,
        final_episode_return=final,
        wall_time_s=round(wall, 1),
    )
    print(
        f"mappo: done: {trainer.frames} frames in {wall:.0f} s; "
        f"mean episode return over the last {len(last)} iterations: {final:.3f}; "
        f"run: {run_dir.path}"
    )
    return 0
