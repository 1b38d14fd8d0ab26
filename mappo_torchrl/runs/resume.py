"""Continuing a stopped run directory, from Python or from ``mappo train --resume``.

:func:`resume_session` is the one call: it checks everything, locks the run,
loads its newest checkpoint that reads back (or an older one, to leave a
diverged stretch behind), and returns a :class:`~mappo_torchrl.runs.session.TrainingSession`
that continues the run's status, wall time, metrics and loggers.

Nothing in the run directory changes until the checkpoint has loaded into a
trainer built from the run's config. What it then changes, it keeps:

- a damaged checkpoint is renamed ``*.corrupt``, so a new save cannot replace it;
- checkpoints newer than the one resumed from (``from_checkpoint``) are
  renamed ``*.superseded``, and the rows of metrics.csv after it are dropped
  (the resumed run writes them again);
- options changed on resume are saved in config.yaml, and every resume is a
  line of ``history.jsonl`` (which checkpoint, what changed).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torchrl.record.loggers import Logger

from mappo_torchrl.compat import cpu_has_bfloat16
from mappo_torchrl.config import (
    ConfigError,
    RunConfig,
    apply_overrides,
    flatten,
    load_run_config,
    to_dict,
)
from mappo_torchrl.config import save_config as write_config
from mappo_torchrl.envs import check_scenario
from mappo_torchrl.runs.checkpoint import (
    RESUME_OPTIONS,
    CheckpointError,
    checkpoint_files,
    load_checkpoint,
    load_trainer_state,
    newest_valid_checkpoint,
)
from mappo_torchrl.runs.directory import (
    CONFIG_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    RESTARTED_PREFIX,
    WORKER_LOG,
    RunDir,
    RunDirError,
    read_status,
    refuse_if_live,
)
from mappo_torchrl.runs.loggers import (
    check_logger_backend,
    check_wandb_reachable,
    make_loggers,
)
from mappo_torchrl.runs.session import TrainingSession
from mappo_torchrl.training import Trainer


def resume_session(
    run_dir: str | Path,
    *,
    overrides: Mapping[str, Any] | None = None,
    from_checkpoint: int | None = None,
    logger: Logger | Sequence[Logger] | Mapping[str, Logger] | None = None,
) -> TrainingSession:
    """A session that continues the run in ``run_dir`` as ``mappo train --resume`` does.

    Args:
        run_dir: a run directory ``mappo train`` or
            :class:`~mappo_torchrl.runs.session.TrainingSession` wrote.
        overrides: ``{"section.field": value}`` for the options a resume may
            change (:data:`~mappo_torchrl.runs.checkpoint.RESUME_OPTIONS`):
            a larger ``collector.total_frames`` extends the run; the learning
            rates and loss coefficients restart a diverged run with other step sizes.
        from_checkpoint: continue from the checkpoint of this iteration instead
            of the newest one.
        logger: TorchRL loggers to use; by default the run's own
            (``logger.backend``), continuing their saved state.

    Returns:
        The session; ``session.train()`` runs the rest and records ``finished``.
        ``session.notes`` says what was found and done (damaged or superseded
        checkpoints, a repaired metrics.csv).

    Raises:
        ConfigError, CheckpointError, RunDirError, ValueError: one line each,
            before anything in ``run_dir`` has changed.

    Example:
        >>> import tempfile
        >>> from mappo_torchrl.config import RunConfig
        >>> from mappo_torchrl.runs.directory import RunDir
        >>> from mappo_torchrl.runs.resume import resume_session
        >>> from mappo_torchrl.runs.session import TrainingSession
        >>> from mappo_torchrl.training import Trainer
        >>> cfg = RunConfig()
        >>> cfg.env.num_envs, cfg.env.max_steps, cfg.eval.episodes = 4, 10, 2
        >>> cfg.collector.frames_per_batch, cfg.collector.total_frames = 40, 80
        >>> cfg.optim.minibatch_size = 20
        >>> folder = tempfile.TemporaryDirectory()
        >>> _ = TrainingSession(Trainer(cfg), RunDir.create(folder.name, cfg)).train(progress=False)
        >>> session = resume_session(folder.name, overrides={"collector.total_frames": 120})
        >>> _ = session.train(progress=False)
        >>> session.trainer.frames, session.final["final_iterations"]
        (120, 3)
        >>> folder.cleanup()
    """
    path = Path(run_dir).expanduser()
    overrides = dict(overrides or {})
    refused = [name for name in overrides if name not in RESUME_OPTIONS]
    if refused:
        raise ConfigError(
            refused[0],
            overrides[refused[0]],
            "cannot change on resume; only " + ", ".join(RESUME_OPTIONS) + " may",
        )
    if not (path / CONFIG_FILE).is_file():
        raise RunDirError(f"--resume={str(path)!r}: not a run directory (no {CONFIG_FILE})")
    refuse_if_live(path, "--resume")
    saved_config = load_run_config(path / CONFIG_FILE)
    config = apply_overrides(saved_config, overrides)
    config.validate()
    check_scenario(config.env.scenario)
    _check_not_finished(path, config, saved_config)
    _check_precision(config, chosen=overrides)
    check_logger_backend(config.logger.backend)
    if "wandb" in config.logger.backends():
        check_wandb_reachable()
    checkpoint, state, skipped = _pick_checkpoint(path, from_checkpoint)
    trainer = Trainer(config, worker_log=path / WORKER_LOG)
    if state is not None:
        load_trainer_state(trainer, state, source=f"checkpoint {str(checkpoint)!r}")
    if trainer.frames > config.collector.total_frames:
        raise RunDirError(
            f"--collector.total_frames={config.collector.total_frames}: must be at least "
            f"the {trainer.frames} frames of {checkpoint.name}"
        )
    extra = state.get("extra", {}) if state is not None else {}
    # A run with nothing left to train logs its last row again, with the final evaluation.
    pending = trainer.frames >= config.collector.total_frames and "metrics" in extra
    notes = [] if checkpoint else _keep_rows_of_a_restart(path)
    run = RunDir.reopen(path, keep_through=trainer.iteration - pending)
    notes += _set_aside(skipped, ".corrupt", "skipped {why}; kept as {name}")
    if from_checkpoint is not None:
        newer = [p for p in checkpoint_files(path) if _iteration(p) > trainer.iteration]
        notes += _set_aside(
            [(p, "") for p in newer],
            ".superseded",
            "{old} is newer than the resumed checkpoint; kept as {name}",
        )
    if run.repair_note:
        notes.append(f"repaired {run.repair_note}")
    changed = _changed(saved_config, config)
    if changed:
        write_config(trainer.config, path / CONFIG_FILE)
    _record(path, checkpoint, trainer, changed)
    run.write_status("running", resumed_from=checkpoint.name if checkpoint else None)
    if logger is None:
        logger = make_loggers(config.logger, path, exp_name=path.name, state=extra.get("logger"))
    session = TrainingSession(trainer, run, logger=logger, elapsed_s=extra.get("elapsed_s", 0.0))
    session.notes = notes
    session.resumed_from = checkpoint.name if checkpoint else None
    _finish_pending_iteration(session, extra.get("metrics"))
    return session


def _check_not_finished(path: Path, config: RunConfig, saved: RunConfig) -> None:
    status = read_status(path)
    if status.get("status") != "finished":
        return
    done = status.get("frames", saved.collector.total_frames)
    if config.collector.total_frames <= done:
        raise RunDirError(
            f"--resume={str(path)!r}: the run has finished ({done} frames); extend it "
            f"with a larger --collector.total_frames (or start a new run, --init-from {path})"
        )


def _check_precision(config: RunConfig, *, chosen: Mapping[str, Any]) -> None:
    """A run recorded bfloat16 (its ``auto`` on a CPU with bfloat16 instructions): on a
    CPU without them, continuing asks for an explicit choice."""
    if (
        config.perf.precision == "bfloat16"
        and config.device == "cpu"
        and "perf.precision" not in chosen
        and not cpu_has_bfloat16()
    ):
        raise ConfigError(
            "perf.precision",
            "bfloat16",
            "this run computed its hidden layers in bfloat16, and this CPU has no bfloat16 "
            "instructions; choose: --perf.precision bfloat16 (emulated: slower) or "
            "--perf.precision float32 (continues in float32, not bit for bit)",
        )


def _pick_checkpoint(
    path: Path, iteration: int | None
) -> tuple[Path | None, dict[str, Any] | None, list[tuple[Path, str]]]:
    """The checkpoint to resume from, its state, and the damaged newer ones skipped."""
    files = checkpoint_files(path)
    if iteration is not None:
        chosen = [p for p in files if _iteration(p) == iteration]
        if not chosen:
            have = ", ".join(str(_iteration(p)) for p in files) or "none"
            raise CheckpointError(
                f"--from-checkpoint={iteration}: {str(path)!r} has no checkpoint of that "
                f"iteration (it has: {have})"
            )
        return chosen[0], load_checkpoint(chosen[0]), []
    if not files:
        return None, None, []
    return newest_valid_checkpoint(path)


def _keep_rows_of_a_restart(path: Path) -> list[str]:
    """A run with no checkpoint starts again: the rows it logged are kept aside."""
    rows = path / METRICS_FILE
    if not rows.is_file() or rows.stat().st_size == 0:
        return []
    kept = rows.with_name(RESTARTED_PREFIX + time.strftime("%Y%m%d-%H%M%S"))
    shutil.copy2(rows, kept)
    return [f"no checkpoint to continue from: the rows logged so far are kept as {kept.name}"]


def _iteration(checkpoint: Path) -> int:
    return int(checkpoint.stem.split("-")[1])


def _set_aside(files: list[tuple[Path, str]], suffix: str, note: str) -> list[str]:
    """Rename each file with ``suffix`` (a save can then never replace it); one note each."""
    notes = []
    for old, why in files:
        kept = old.with_name(old.name + suffix)
        if kept.exists():
            kept = old.with_name(f"{old.name}{suffix}-{time.strftime('%Y%m%d-%H%M%S')}")
        old.rename(kept)
        notes.append(note.format(why=why, name=kept.name, old=old.name))
    return notes


def _changed(before: RunConfig, after: RunConfig) -> dict[str, list[Any]]:
    """``{option: [old, new]}`` for the options a resume changed."""
    old, new = flatten(to_dict(before)), flatten(to_dict(after))
    return {k: [old.get(k), v] for k, v in new.items() if old.get(k) != v}


def _record(path: Path, checkpoint: Path | None, trainer: Trainer, changed: dict) -> None:
    """Append this resume to the run's ``history.jsonl``."""
    entry = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "event": "resumed",
        "checkpoint": checkpoint.name if checkpoint else None,
        "iteration": trainer.iteration,
        "frames": trainer.frames,
        "changed": changed,
    }
    with (path / HISTORY_FILE).open("a") as f:
        f.write(json.dumps(entry) + "\n")


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
        session.notes.append(
            f"note: metrics.csv ends at iteration {last}, the checkpoint at "
            f"{trainer.iteration}; the rows in between cannot be recreated"
        )
        return
    session.finish_iteration(dict(metrics))
