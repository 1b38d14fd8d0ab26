"""``mappo train``: train on a VMAS scenario and write a run directory."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

from mappo_torchrl.cli.options import add_config_options, config_overrides, fail
from mappo_torchrl.config import (
    PRESETS,
    ConfigError,
    ConfigFileError,
    RunConfig,
    apply_overrides,
    apply_preset,
    flatten,
    in_config_file,
    read_config_file,
)
from mappo_torchrl.config.checks import first_line
from mappo_torchrl.envs import check_scenario, make_env_from_config
from mappo_torchrl.rng import isolated_rng
from mappo_torchrl.runs.checkpoint import (
    RESUME_OPTIONS,
    CheckpointError,
    checkpoint_files,
    latest_checkpoint,
    load_checkpoint,
    load_weights,
)
from mappo_torchrl.runs.directory import (
    CONFIG_FILE,
    WORKER_LOG,
    RunDir,
    RunDirError,
    default_run_dir,
)
from mappo_torchrl.runs.loggers import (
    LoggerUnavailable,
    check_logger_backend,
    check_wandb_reachable,
    make_loggers,
    wandb_mode,
)
from mappo_torchrl.runs.resume import resume_session
from mappo_torchrl.runs.session import StopRequested, TrainingSession
from mappo_torchrl.training import Trainer
from mappo_torchrl.training.divergence import TrainingDiverged
from mappo_torchrl.training.trainer import resolve_auto


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
    parser.add_argument(
        "--config", metavar="FILE", type=os.path.expanduser, help="YAML or JSON config file"
    )
    parser.add_argument(
        "--run-dir",
        metavar="DIR",
        type=os.path.expanduser,
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
        type=os.path.expanduser,
        help="continue the run in RUN_DIR from its newest checkpoint, with its saved config; "
        "with --collector.total_frames N, extend it (also a finished run) exactly as if it had "
        "been started with N; only " + ", ".join(f"--{o}" for o in RESUME_OPTIONS) + ", "
        "--logger and --no-progress may be given with it",
    )
    parser.add_argument(
        "--from-checkpoint",
        metavar="N",
        type=int,
        help="with --resume: continue from the checkpoint of iteration N instead of the newest "
        "(after a divergence, say, with smaller --optim.actor_lr/--optim.critic_lr); newer "
        "checkpoints are kept, renamed with a .superseded suffix, and metrics.csv rows after N "
        "are dropped",
    )
    parser.add_argument(
        "--init-from",
        metavar="CHECKPOINT",
        type=os.path.expanduser,
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
    try:
        config.validate()
    except ConfigError as err:  # a value the --config file set is reported there
        raise in_config_file(err, args.config, overridden=overrides) from None
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
    if args.from_checkpoint is not None:
        fail("mappo train: error: --from-checkpoint goes with --resume RUN_DIR")
    if args.run_dir is not None and not args.run_dir.strip():
        fail(f"mappo train: error: --run-dir={args.run_dir!r}: must be a directory path")
    try:
        config = resolve_config(args)
        _check_extras(config)
        check_env_builds(config)
        init = _init_state(args.init_from)
        # What each "auto" means here is what the run records (config.yaml, checkpoints).
        chosen, config = config, resolve_auto(config)
        if init is not None:  # checked now, so that networks that do not fit stop here
            load_weights(Trainer(config), init, source=f"--init-from={args.init_from!r}")
        run_dir = RunDir.create(
            args.run_dir or default_run_dir(config), config, overwrite=args.overwrite
        )
    except ConfigFileError as err:
        fail(f"mappo train: error: {err}")
    except ConfigError as err:
        fail(f"mappo train: error: --{err}")
    except CheckpointError as err:
        fail(f"mappo train: error: {err}")
    except (ValueError, RunDirError, LoggerUnavailable) as err:
        fail(f"mappo train: error: {err}")
    start = f" from the weights of {args.init_from}" if init is not None else ""
    print(f"mappo: training {config.env.scenario}{start} -> {run_dir.path}")
    if chosen.perf.precision == "auto" and config.perf.precision == "bfloat16":
        print("mappo: perf.precision auto: bfloat16 hidden layers (this CPU has bfloat16)")

    def make_session() -> TrainingSession:
        _announce_wandb(config, run_dir.path)
        logger = make_loggers(config.logger, run_dir.path, exp_name=run_dir.path.name)
        trainer = Trainer(config, worker_log=run_dir.path / WORKER_LOG)
        if init is not None:
            load_weights(trainer, init, source=f"--init-from={args.init_from!r}")
        return TrainingSession(trainer, run_dir, logger=logger)

    return _train(make_session, run_dir=run_dir, progress=not args.no_progress)


def resume(args: argparse.Namespace) -> int:
    """``mappo train --resume RUN_DIR``: check everything, then continue the run
    (:func:`~mappo_torchrl.runs.resume.resume_session`)."""
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
            + ", --from-checkpoint, --logger and --no-progress may change)"
        )
    path = Path(args.resume)

    def make_session() -> TrainingSession:
        try:
            session = resume_session(
                path, overrides=overrides, from_checkpoint=args.from_checkpoint
            )
        except ConfigFileError as err:
            fail(f"mappo train: error: --resume: {err}")
        except ConfigError as err:
            fail(f"mappo train: error: --resume: {path / CONFIG_FILE}: {err}")
        except CheckpointError as err:
            fail(f"mappo train: error: --resume: {err}")
        except (ValueError, RunDirError, LoggerUnavailable) as err:
            fail(f"mappo train: error: {err}")
        trainer = session.trainer
        for note in session.notes:
            print(f"mappo: {note}", file=sys.stderr)
        where = f"iteration {trainer.iteration}"
        if session.resumed_from is None:
            print(f"mappo: starting {path} again from its config (it has no checkpoint)")
        else:
            print(f"mappo: resuming {path} from {session.resumed_from} ({where})")
        if trainer.collects_in_workers and not trainer.saves_worker_envs:
            print(
                "mappo: the envs ran in worker processes whose state a checkpoint cannot hold "
                "(collector.workers, or collector.overlap with a non-VMAS env): they start "
                "fresh episodes, so the run continues but not bit for bit"
            )
        _announce_wandb(trainer.config, path)
        return session

    return _train(make_session, progress=not args.no_progress)


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


def _announce_wandb(config: RunConfig, path: Path) -> None:
    """Say where W&B logs the run, when it is one of the run's loggers."""
    if "wandb" not in config.logger.backends():
        return
    how = mode = wandb_mode()
    if mode == "offline" and "WANDB_MODE" not in os.environ:
        how += (
            " (not logged in: 'wandb login' makes later runs sync live; upload this one "
            f"with 'wandb sync {path / 'wandb'}/offline-run-*')"
        )
    print(f"mappo: W&B project {config.logger.project!r}, run {path.name!r}: {how}")


def _check_extras(config: RunConfig) -> None:
    """Fail before anything starts if the chosen logger or video needs a missing package."""
    check_logger_backend(config.logger.backend)
    if "wandb" in config.logger.backends():
        check_wandb_reachable()
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


def _train(make_session, *, run_dir: RunDir | None = None, progress: bool) -> int:
    """Build the session and train; every ending leaves a status and a resumable run.

    Returns 0 when finished, 128 + the signal number when stopped by Ctrl-C
    (130) or SIGTERM (143), and 1 when something failed (one line on stderr).
    A stop asked for while the session is being built takes effect once it is
    built, before anything is trained.
    """
    stop = _StopSignals()
    session = None
    try:
        with stop.installed():
            session = make_session()
            run_dir = session.run_dir
            stop.attach(session)
            session.train(progress=progress)
    except StopRequested:
        return _interrupted(run_dir, session, stop.signum)
    except KeyboardInterrupt:
        return _interrupted(run_dir, session, stop.signum, at_once=True)
    except Exception as err:
        if stop.requested:  # cut short by the stop itself: not a failure of the run
            return _interrupted(run_dir, session, stop.signum, at_once=True)
        return _failed(run_dir, session, err)
    finally:
        if run_dir is not None:
            run_dir.close()
    print(f"mappo: done: {_summary(session)}; run: {run_dir.path}")
    return 0


def _summary(session: TrainingSession) -> str:
    """The closing line's figures (:attr:`TrainingSession.final`)."""
    trainer, final = session.trainer, session.final
    count = final["final_iterations"]
    span = "the last iteration" if count == 1 else f"the last {count} iterations"
    if "final_group_returns" in final:
        groups = final["final_group_returns"]
        train = ", ".join(f"{g} {v:.3f}" for g, v in groups.items())
        evaluation = ", ".join(f"{g} {v:.3f}" for g, v in final["final_group_eval_returns"].items())
        summary = (
            f"mean episode return per agent over {span}, by group: {train}; "
            f"final evaluation, by group: {evaluation}"
        )
    else:
        summary = (
            f"mean episode return over {span}: {final['final_episode_return']:.3f}; "
            f"final evaluation: {final['final_eval_return']:.3f}"
        )
    return f"{trainer.frames} frames in {session.elapsed():.0f} s; {summary}"


def _interrupted(
    run_dir: RunDir | None, session: TrainingSession | None, signum: int, *, at_once: bool = False
) -> int:
    """Status "interrupted", then what is saved and how to continue; 128 + ``signum``."""
    code = 128 + signum
    if run_dir is None:  # stopped while a resume was still checking the run: nothing changed
        print("\nmappo: stopped before the run was resumed; nothing changed")
        return code
    trainer = session.trainer if session is not None else None
    done = dict(iteration=trainer.iteration, frames=trainer.frames) if trainer else {}
    with contextlib.suppress(OSError):
        run_dir.write_status("interrupted", **done)
    saved = checkpoint_files(run_dir.path)
    if not saved:
        what = "before its first checkpoint; nothing is lost but the iterations it ran"
        if trainer is None or trainer.iteration == 0:
            what = "before its first iteration; nothing was trained yet"
        how = "start it again with"
    elif at_once:
        what = f"at once; training through {saved[-1].name} is saved"
        how = "continue with"
    else:
        what = f"after iteration {trainer.iteration} ({trainer.frames} frames), checkpoint saved"
        how = "continue with"
    print(f"\nmappo: stopped {what}; {how}: mappo train --resume {run_dir.path}")
    return code


def _failed(run_dir: RunDir, session: TrainingSession | None, err: Exception) -> int:
    """Status "failed", then one line: what failed, and what is saved to resume from."""
    iteration = session.trainer.iteration if session is not None else 0
    what = f"{type(err).__name__}: {first_line(err, limit=300) if str(err).strip() else '-'}"
    saved = checkpoint_files(run_dir.path)
    if saved:
        keep = f"training through {saved[-1].name} is saved; continue with: "
        keep += f"mappo train --resume {run_dir.path}"
        if isinstance(err, TrainingDiverged):
            keep += (
                f" --from-checkpoint {int(saved[-1].stem.split('-')[1])}, with smaller steps "
                "(--optim.actor_lr, --optim.critic_lr, --optim.max_grad_norm)"
            )
    else:
        keep = "no checkpoint was written yet"
    with contextlib.suppress(OSError):
        run_dir.write_status("failed", iteration=iteration, error=what)
    if isinstance(err, TrainingDiverged):  # its message names the iteration
        what = f"training diverged: {first_line(err, limit=300)}"
    else:
        what = f"iteration {iteration}: {what}"
    print(f"mappo train: error: {what}; {keep}", file=sys.stderr)
    return 1


class _StopSignals:
    """First Ctrl-C or SIGTERM: stop after this iteration, with a checkpoint (at once when
    the run waits for its collecting worker, with a checkpoint too). Second: at once."""

    def __init__(self) -> None:
        self.session: TrainingSession | None = None
        self.signum = signal.SIGINT
        self.requested = False

    def attach(self, session: TrainingSession) -> None:
        """Follow ``session``; a stop asked for while it was built ends it now."""
        self.session = session
        if self.requested:
            raise StopRequested

    def handler(self, signum, frame) -> None:
        self.signum = signum
        name = signal.Signals(signum).name
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        if self.session is None:
            print(
                f"\nmappo: {name} received: stopping as soon as the run is set up, before "
                "it trains (a second Ctrl-C or SIGTERM stops at once)",
                file=sys.stderr,
            )
            return
        self.session.request_stop()
        if self.session.waiting_for_worker():
            print(
                f"\nmappo: {name} received while waiting for the collecting worker: "
                "stopping now, with a checkpoint",
                file=sys.stderr,
            )
            raise StopRequested
        print(
            f"\nmappo: {name} received: stopping after this iteration, with a checkpoint "
            "(a second Ctrl-C or SIGTERM stops at once, keeping the last checkpoint)",
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
