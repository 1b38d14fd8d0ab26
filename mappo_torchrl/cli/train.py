"""``mappo train``: train on a VMAS scenario and write a run directory."""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import statistics
import sys
from collections.abc import Iterator
from pathlib import Path

from mappo_torchrl.cli.options import add_config_options, config_overrides, fail
from mappo_torchrl.config import (
    PRESETS,
    ConfigError,
    RunConfig,
    apply_overrides,
    apply_preset,
    flatten,
    load_run_config,
    read_config_file,
    save_config,
)
from mappo_torchrl.config.checks import first_line
from mappo_torchrl.envs import check_scenario, make_env_from_config
from mappo_torchrl.models.mlp import resolve_precision
from mappo_torchrl.rng import isolated_rng
from mappo_torchrl.runs.checkpoint import (
    CheckpointError,
    checkpoint_files,
    latest_checkpoint,
    load_checkpoint,
    load_trainer_state,
    load_weights,
    newest_valid_checkpoint,
)
from mappo_torchrl.runs.directory import (
    CONFIG_FILE,
    RunDir,
    RunDirError,
    default_run_dir,
    read_metrics,
    read_status,
    refuse_if_live,
)
from mappo_torchrl.runs.loggers import (
    LoggerUnavailable,
    check_logger_backend,
    make_loggers,
    wandb_mode,
)
from mappo_torchrl.runs.session import StopRequested, TrainingSession
from mappo_torchrl.training import Trainer


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` sub-command and its options to ``subparsers``."""
    parser = subparsers.add_parser(
        "train",
        help="train MAPPO on a VMAS scenario",
        description=(
            "Train MAPPO on a VMAS scenario. Options are read from the defaults, "
            "then --preset, then --config, then --scenario and the --section.field options "
            "(also written as Hydra-style key=value words: env.scenario=balance loss.gamma=0.99; "
            "- and _ are alike in option names). "
            "The run directory gets config.yaml, metrics.csv, status.json and checkpoints/; "
            "--resume RUN_DIR continues a stopped run exactly where its last checkpoint left it. "
            "Ctrl-C or SIGTERM stops after the current iteration, with a checkpoint (a second "
            "one stops at once); a run directory is locked while a process trains in it."
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
        "--overwrite",
        action="store_true",
        help="replace --run-dir if it holds a stopped run (only a directory mappo wrote as a "
        "run is ever removed; anything else is refused)",
    )
    parser.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR from its newest checkpoint, with its saved config; "
        "with --collector.total_frames N, extend it (also a finished run) exactly as if it had "
        "been started with N; only " + ", ".join(f"--{o}" for o in RESUME_OPTIONS) + ", "
        "--logger and --no-progress may be given with it",
    )
    parser.add_argument(
        "--init-from",
        metavar="CHECKPOINT",
        help="start a new run from the networks and value normalisers of CHECKPOINT (a .pt "
        "file or a run directory's newest), for fine-tuning or transfer; optimisers, counters "
        "and hyper-parameters come from this run's config",
    )
    parser.add_argument(
        "--logger",
        metavar="NAME",
        help="csv, tensorboard, wandb or mlflow, or several joined by commas "
        "(same as --logger.backend; default: csv)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_config_options(parser)
    parser.set_defaults(func=train_command)


#: The options ``--resume`` accepts: they change where the run ends, or nothing it learns.
RESUME_OPTIONS = (
    "collector.total_frames",
    "threads",
    "update_threads",
    "eval.interval",
    "logger.backend",
    "logger.project",
)


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
    if args.logger is not None:
        overrides["logger.backend"] = args.logger
    config = apply_overrides(config, overrides)
    config.validate()
    check_scenario(config.env.scenario)
    return config


def check_env_builds(config: RunConfig) -> None:
    """Build the run's env once (one vectorised copy) so that scenario options a scenario
    rejects fail now, before a run directory exists (a one-line ``ValueError``)."""
    with isolated_rng():  # building a VMAS env seeds streams all VMAS envs share
        try:
            make_env_from_config(config, num_envs=1).close()
        except (ValueError, TypeError) as err:
            text = str(err)
            raise ValueError(
                f"env.{text}" if text.startswith("scenario_kwargs=") else text
            ) from None


def train_command(args: argparse.Namespace) -> int:
    """Train as ``args`` say, writing the run directory; return the exit code."""
    if args.resume is not None:
        return resume(args)
    if args.run_dir is not None and not args.run_dir.strip():
        fail(f"mappo train: error: --run-dir={args.run_dir!r}: must be a directory path")
    try:
        config = resolve_config(args)
        _check_extras(config)
        check_env_builds(config)
        init = _init_state(args.init_from)
        trainer = None
        if init is not None:  # built now, so that networks that do not fit stop here
            trainer = Trainer(config)
            load_weights(trainer, init, source=f"--init-from={args.init_from!r}")
        run_dir = RunDir.create(
            args.run_dir or default_run_dir(config), config, overwrite=args.overwrite
        )
    except ConfigError as err:
        fail(f"mappo train: error: --{err}")
    except CheckpointError as err:
        fail(f"mappo train: error: {err}")
    except (ValueError, RunDirError, LoggerUnavailable) as err:
        fail(f"mappo train: error: {err}")
    start = f" from the weights of {args.init_from}" if init is not None else ""
    print(f"mappo: training {config.env.scenario}{start} -> {run_dir.path}")
    if config.perf.precision == "auto" and resolve_precision("auto", config.device) == "bfloat16":
        print("mappo: perf.precision auto: bfloat16 hidden layers (this CPU has bfloat16)")
    return _train(
        run_dir,
        lambda: TrainingSession(
            trainer if trainer is not None else Trainer(config),
            run_dir,
            logger=_make_loggers(config, run_dir.path),
        ),
        progress=not args.no_progress,
    )


def resume(args: argparse.Namespace) -> int:
    """``mappo train --resume RUN_DIR``: check everything, then continue the run.

    Nothing in RUN_DIR is changed until the run is locked and its checkpoint
    has loaded into a trainer built from the run's config. The newest
    checkpoint that reads back is used: a damaged newer one is skipped (and
    kept, renamed ``*.corrupt``), saying so in one line.
    """
    overrides = config_overrides(args)
    if args.logger is not None:
        overrides["logger.backend"] = args.logger
    given = [f"--{name}" for name in overrides if name not in RESUME_OPTIONS]
    given += [
        f"--{flag.replace('_', '-')}"
        for flag in ("scenario", "preset", "config", "run_dir", "overwrite", "init_from")
        if getattr(args, flag) not in (None, False)
    ]
    if given:
        fail(
            f"mappo train: error: --resume continues a run with its saved config; "
            f"drop {', '.join(given)} (only "
            + ", ".join(f"--{o}" for o in RESUME_OPTIONS)
            + ", --logger and --no-progress may change)"
        )
    path = Path(args.resume)
    try:
        if not (path / CONFIG_FILE).is_file():
            raise RunDirError(f"--resume={str(path)!r}: not a run directory (no {CONFIG_FILE})")
        refuse_if_live(path, "--resume")
        status = read_status(path)
        saved_config = load_run_config(path / CONFIG_FILE)
        config = apply_overrides(saved_config, overrides)
        config.validate()
        check_scenario(config.env.scenario)
        if status.get("status") == "finished":
            done = status.get("frames", saved_config.collector.total_frames)
            if config.collector.total_frames <= done:
                raise RunDirError(
                    f"--resume={str(path)!r}: the run has finished ({done} frames); extend it "
                    f"with a larger --collector.total_frames (or start a new run, "
                    f"--init-from {path})"
                )
        check_logger_backend(config.logger.backend)
        checkpoint, state, skipped = newest_valid_checkpoint(path)
        trainer = Trainer(config)
        load_trainer_state(trainer, state, source=f"checkpoint {str(checkpoint)!r}")
        if trainer.frames > config.collector.total_frames:
            raise RunDirError(
                f"--collector.total_frames={config.collector.total_frames}: must be at least "
                f"the {trainer.frames} frames of {checkpoint.name}"
            )
        run_dir = RunDir.reopen(path, keep_through=trainer.iteration)
    except ConfigError as err:
        fail(f"mappo train: error: --resume: {path / CONFIG_FILE}: {err}")
    except CheckpointError as err:
        fail(f"mappo train: error: --resume: {err}")
    except (ValueError, RunDirError, LoggerUnavailable) as err:
        fail(f"mappo train: error: {err}")
    for bad, why in skipped:  # renamed, so that a new save cannot replace it
        kept = bad.with_name(bad.name + ".corrupt")
        bad.rename(kept)
        print(f"mappo: skipped {why}; kept as {kept.name}", file=sys.stderr)
    if run_dir.repair_note:
        print(f"mappo: repaired {run_dir.repair_note}", file=sys.stderr)
    extra = state.get("extra", {})
    if config != saved_config:
        save_config(config, path / CONFIG_FILE)
    run_dir.write_status("running", resumed_from=checkpoint.name)
    print(f"mappo: resuming {path} from {checkpoint.name} (iteration {trainer.iteration})")
    if trainer.collects_in_workers and not trainer.saves_worker_envs:
        print(
            "mappo: the envs ran in worker processes whose state a checkpoint cannot hold "
            "(collector.workers, or collector.overlap with a non-VMAS env): they start fresh "
            "episodes, so the run continues but not bit for bit"
        )

    def make_session() -> TrainingSession:
        logger = _make_loggers(config, path, state=extra.get("logger"))
        session = TrainingSession(
            trainer, run_dir, logger=logger, elapsed_s=extra.get("elapsed_s", 0.0)
        )
        _finish_pending_iteration(session, extra.get("metrics"))
        return session

    return _train(run_dir, make_session, progress=not args.no_progress)


def _finish_pending_iteration(session: TrainingSession, metrics: dict | None) -> None:
    """Log the checkpoint's own iteration if the run stopped before its row was written.

    The checkpoint is saved before the iteration's evaluation and logging; a
    crash in between leaves metrics.csv one row short, which this writes
    (the evaluation plays the same episodes: it is seeded on its own).
    """
    trainer, last = session.trainer, session.run_dir.last_row
    if last >= trainer.iteration:
        return
    if metrics is None or last != trainer.iteration - 1:
        print(
            f"mappo: note: metrics.csv ends at iteration {last}, the checkpoint at "
            f"{trainer.iteration}; the rows in between cannot be recreated",
            file=sys.stderr,
        )
        return
    session.finish_iteration(dict(metrics))


def _init_state(source: str | None) -> dict | None:
    """The checkpoint ``--init-from`` names (a file, or a run directory's newest), loaded."""
    if source is None:
        return None
    path = Path(source)
    try:
        if path.is_dir():
            path = latest_checkpoint(path)
        elif not path.is_file():
            raise CheckpointError(f"{source!r}: no such checkpoint file or run directory")
        return load_checkpoint(path)
    except CheckpointError as err:
        raise CheckpointError(f"--init-from: {err}") from None


def _make_loggers(config: RunConfig, path: Path, state: dict | None = None) -> dict:
    """The run's TorchRL loggers, named after its directory; says where W&B logs."""
    if "wandb" in config.logger.backends():
        mode = wandb_mode()
        how = mode
        if mode == "offline" and "WANDB_MODE" not in os.environ:
            how += (
                " (not logged in: 'wandb login' makes later runs sync live; upload this one "
                f"with 'wandb sync {path / 'wandb'}/offline-run-*')"
            )
        print(f"mappo: W&B project {config.logger.project!r}, run {path.name!r}: {how}")
    return make_loggers(config.logger, path, exp_name=path.name, state=state)


def _check_extras(config: RunConfig) -> None:
    """Fail before anything starts if the chosen logger or video needs a missing package."""
    check_logger_backend(config.logger.backend)
    if config.eval.video_interval > 0:
        from mappo_torchrl.viz.video import VideoUnavailable, add_renderer, video_format

        try:
            video_format("video.mp4")
            # Render once now: without GL or a display, the first evaluation
            # video would otherwise fail in the middle of training.
            with isolated_rng():  # building a VMAS env seeds streams all VMAS envs share
                add_renderer(make_env_from_config(config, num_envs=1)).close()
        except VideoUnavailable as err:
            raise ValueError(f"eval.video_interval={config.eval.video_interval}: {err}") from None


def _train(run_dir: RunDir, make_session, *, progress: bool) -> int:
    """Build the session and train; every ending leaves a status and a resumable checkpoint.

    Returns 0 when finished, 128 + the signal number when stopped by Ctrl-C
    (130) or SIGTERM (143), and 1 when something failed (one line on stderr).
    """
    stop = _StopSignals()
    session = None
    try:
        with stop.installed():
            session = make_session()
            stop.session = session
            session.train(progress=progress)
    except StopRequested:
        trainer = session.trainer
        run_dir.write_status("interrupted", iteration=trainer.iteration, frames=trainer.frames)
        print(
            f"\nmappo: stopped after iteration {trainer.iteration} ({trainer.frames} frames), "
            f"checkpoint saved; continue with: mappo train --resume {run_dir.path}"
        )
        return 128 + stop.signum
    except KeyboardInterrupt:
        with contextlib.suppress(OSError):
            run_dir.write_status("interrupted")
        where = "before training started"
        if session is not None:
            where = f"during iteration {session.trainer.iteration + 1}"
        print(
            f"\nmappo: interrupted {where}; "
            f"continue from the last checkpoint with: mappo train --resume {run_dir.path}"
        )
        return 128 + stop.signum
    except Exception as err:
        return _failed(run_dir, session, err)
    finally:
        run_dir.close()
    trainer = session.trainer
    rows = read_metrics(run_dir.path)
    last = rows[-5:]
    groups = list(trainer.groups) if len(trainer.groups) > 1 else []
    final = _final_returns(last, rows[-1] if rows else {}, groups)
    wall = session.elapsed()
    run_dir.write_status(
        "finished",
        iteration=trainer.iteration,
        frames=trainer.frames,
        **final,
        wall_time_s=round(wall, 1),
    )
    span = "the last iteration" if len(last) == 1 else f"the last {len(last)} iterations"
    if groups:
        train = ", ".join(f"{g} {final['final_group_returns'][g]:.3f}" for g in groups)
        evaluation = ", ".join(f"{g} {final['final_group_eval_returns'][g]:.3f}" for g in groups)
        summary = (
            f"mean episode return per agent over {span}, by group: {train}; "
            f"final evaluation, by group: {evaluation}"
        )
    else:
        summary = (
            f"mean episode return over {span}: {final['final_episode_return']:.3f}; "
            f"final evaluation: {final['final_eval_return']:.3f}"
        )
    print(f"mappo: done: {trainer.frames} frames in {wall:.0f} s; {summary}; run: {run_dir.path}")
    return 0


def _final_returns(last: list[dict], final_row: dict, groups: list[str]) -> dict:
    """The closing figures for status.json: pooled, and by group when there are several.

    The pooled figures mix the groups' returns; with several groups (a
    competitive env) the per-group figures are the ones that mean something.
    """

    def mean(column: str) -> float:
        return statistics.fmean(m[column] for m in last) if last else math.nan

    out = {
        "final_episode_return": mean("train/episode_return"),
        "final_eval_return": final_row.get("eval/episode_return", math.nan),
    }
    if groups:
        out["final_group_returns"] = {g: mean(f"train/{g}/episode_return") for g in groups}
        out["final_group_eval_returns"] = {
            g: final_row.get(f"eval/{g}/episode_return", math.nan) for g in groups
        }
    return out


def _failed(run_dir: RunDir, session: TrainingSession | None, err: Exception) -> int:
    """Status "failed", then one line: what failed, and what is saved to resume from."""
    iteration = session.trainer.iteration if session is not None else 0
    what = f"{type(err).__name__}: {first_line(err, limit=300) if str(err).strip() else '-'}"
    saved = checkpoint_files(run_dir.path)
    if saved:
        keep = f"training through {saved[-1].name} is saved; continue with: "
        keep += f"mappo train --resume {run_dir.path}"
    else:
        keep = "no checkpoint was written yet"
    with contextlib.suppress(OSError):
        run_dir.write_status("failed", iteration=iteration, error=what)
    print(f"mappo train: error: iteration {iteration}: {what}; {keep}", file=sys.stderr)
    return 1


class _StopSignals:
    """First Ctrl-C or SIGTERM: stop after this iteration, with a checkpoint. Second: at once."""

    def __init__(self) -> None:
        self.session: TrainingSession | None = None
        self.signum = signal.SIGINT
        self.requested = False

    def handler(self, signum, frame) -> None:
        self.signum = signum
        if self.requested or self.session is None:
            raise KeyboardInterrupt
        self.requested = True
        self.session.request_stop()
        print(
            f"\nmappo: {signal.Signals(signum).name}: stopping after this iteration "
            "(Ctrl-C again to stop at once)",
            file=sys.stderr,
        )

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        previous = {s: signal.signal(s, self.handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
