"""Checkpoints that continue a run exactly where it stopped.

A checkpoint is taken between two iterations and holds everything the next
iteration reads:

- each group's loss module (actor, critic and value normaliser) and optimisers,
  and the learning-rate schedulers;
- the collector: its counters, and the tensordict it acts on next (the last
  observation, running episode returns and step counts of
  :class:`~torchrl.envs.RewardSum` / :class:`~torchrl.envs.StepCounter`);
- the VMAS simulation (:mod:`mappo_torchrl.envs.vmas_state`); other envs'
  internal state cannot be saved in general, so their resumed runs start new
  episodes (see :func:`resumable_env`);
- with an overlapped collector, what its worker started the batch in progress
  from (:mod:`mappo_torchrl.envs.boundaries`) and the weights collecting it;
- every random stream (:mod:`mappo_torchrl.rng`);
- the iteration and frame counters and the config.

The replay buffer is not saved: the trainer empties it at the start of every
update, so nothing in it outlives an iteration.

Files are written to a temporary name and renamed, so a crash leaves either
the old or the new checkpoint, never half of one. They load with
``torch.load(weights_only=True)``: no pickled code runs when reading one.
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mappo_torchrl.compat import collector_carrier, load_trajectory_ids
from mappo_torchrl.config import ConfigError, from_saved_dict, to_dict
from mappo_torchrl.config.checks import first_line
from mappo_torchrl.data.collector import OverlappedCollector
from mappo_torchrl.envs.vmas_state import (
    EnvStateError,
    is_vmas_env,
    load_vmas_state,
    vmas_state,
)
from mappo_torchrl.rng import load_rng_state, rng_state

if TYPE_CHECKING:
    from mappo_torchrl.training.trainer import Trainer

CHECKPOINT_DIR = "checkpoints"
FORMAT = 1
_NAME = re.compile(r"ckpt-(\d+)\.pt")
#: Options that may differ between a checkpoint and the run that loads it, the
#: ones ``mappo train --resume`` accepts. The first ones change nothing the run
#: learns (the total frames only where the end is, not with optim.lr_decay, whose
#: schedule spans them; evaluation never moves a random stream training reads).
#: The rest are for continuing a run that went wrong from an earlier checkpoint
#: with other step sizes (applied over the checkpoint's own values when loading,
#: and recorded in the run's history.jsonl), and for a machine whose CPU cannot
#: run the precision a run recorded.
RESUME_OPTIONS = (
    "collector.total_frames",
    "collector.stall_timeout_s",
    "device",
    "threads",
    "update_threads",
    "eval.interval",
    "logger.backend",
    "logger.project",
    "optim.actor_lr",
    "optim.critic_lr",
    "optim.max_grad_norm",
    "optim.divergence",
    "loss.entropy_coeff",
    "loss.clip_epsilon",
    "perf.precision",
)
#: Options whose ``auto`` a run records as what it resolved to (perf.precision,
#: collector.overlap); a checkpoint of an older version may still hold ``auto``.
_RESOLVED_OPTIONS = ("perf.precision", "collector.overlap")
#: What :func:`load_weights` takes from each group's loss state: the networks and
#: the value normaliser, not the loss coefficients (gamma, clip_epsilon...).
_WEIGHTS = ("actor_network.", "critic_network.", "value_norm.")


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used: missing, unreadable or for another run (one line)."""


def trainer_state(trainer: Trainer, **extra: Any) -> dict[str, Any]:
    """Everything needed to continue ``trainer`` exactly, as ``torch.save``-able data.

    ``extra`` holds plain values to keep alongside (e.g. the elapsed wall time).
    """
    collector = trainer.collector
    # This process's env and collector state, when they are the ones stepping;
    # an overlapped worker's state is the "overlap" entry; several workers' is not kept.
    exact = not trainer.collects_in_workers and resumable_env(trainer.env)
    return {
        "format": FORMAT,
        "config": to_dict(trainer.config),
        "iteration": trainer.iteration,
        "frames": trainer.frames,
        "groups": {
            name: {
                "loss": group.loss.state_dict(),
                "actor_optim": group.actor_optim.state_dict(),
                "critic_optim": group.critic_optim.state_dict(),
            }
            for name, group in trainer.groups.items()
        },
        "schedulers": [s.state_dict() for s in trainer.schedulers],
        "collector": None if trainer.collects_in_workers else collector.state_dict(),
        # Collector.state_dict leaves out the tensordict it acts on next. It only
        # matches the env's internal state where that state can be saved (VMAS).
        "carrier": collector_carrier(collector).to_dict() if exact else None,
        "env": vmas_state(trainer.env) if exact else None,
        # An overlapped worker's batch in progress: where it started, and its weights.
        "overlap": _overlap_state(collector),
        "rng": rng_state(),
        "extra": extra,
    }


def resumable_env(env) -> bool:
    """Whether a checkpoint can hold ``env``'s simulation state (VMAS envs) for an exact resume.

    For other envs a checkpoint keeps everything else; a resumed run then
    starts new episodes where the old ones were cut.
    """
    return is_vmas_env(env)


def load_trainer_state(trainer: Trainer, state: dict[str, Any], *, source: str = "") -> None:
    """Put ``trainer`` back in the state :func:`trainer_state` recorded.

    Raises:
        CheckpointError: if the state was written for another config (another
            scenario, other network sizes...) or does not fit the trainer.
    """
    where = f"{source}: " if source else ""
    saved_config = _with_defaults(state["config"])
    _check_config(saved_config, to_dict(trainer.config), where)
    if set(state["groups"]) != set(trainer.groups):
        raise CheckpointError(
            f"{where}agent groups {sorted(state['groups'])} do not match this run's "
            f"{sorted(trainer.groups)}"
        )
    try:
        for name, group in trainer.groups.items():
            saved = state["groups"][name]
            group.loss.load_state_dict(saved["loss"])
            group.actor_optim.load_state_dict(saved["actor_optim"])
            group.critic_optim.load_state_dict(saved["critic_optim"])
        for scheduler, saved in zip(trainer.schedulers, state["schedulers"], strict=True):
            scheduler.load_state_dict(saved)
        if state.get("overlap") is not None and isinstance(trainer.collector, OverlappedCollector):
            # The worker collects again the batch it was collecting, from where it started.
            trainer.collector.load_resume_state(state["overlap"])
        elif trainer.collects_in_workers:
            pass  # the workers' envs start fresh episodes
        elif state["env"] is None:
            # An env whose state cannot be saved starts fresh episodes on resume.
            if state["collector"] is not None:
                trainer.collector.load_state_dict(state["collector"])
        else:
            _load_collector(trainer.collector, state["collector"], state["carrier"])
            load_vmas_state(trainer.env, state["env"])
    except (RuntimeError, ValueError, KeyError, EnvStateError) as err:
        raise CheckpointError(f"{where}does not fit this run ({first_line(err)})") from None
    _apply_step_sizes(trainer, _differences(saved_config, to_dict(trainer.config)))
    trainer.iteration = state["iteration"]
    trainer.frames = state["frames"]
    # Last: loading may itself have drawn random numbers.
    load_rng_state(state["rng"])


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with tmp.open("wb") as f:
            try:
                torch.save(state, f)
            except RuntimeError:
                _raise_write_error(f)
                raise
            f.flush()
            os.fsync(f.fileno())
    except BaseException:  # a full disk, a second Ctrl-C: no half-written file stays
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return path


def _raise_write_error(f) -> None:
    """Raise the ``OSError`` behind a failed ``torch.save`` (a full disk, ``ulimit -f``).

    torch's zip writer reports a failed write as "unexpected pos"; one more
    byte written at the end of the file brings back the system's own reason.
    """
    f.seek(0, os.SEEK_END)
    f.write(b"\0")
    f.flush()


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint file; any problem is a one-line :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r}: no such file")
    try:
        # torch.load does not check the zip's CRCs: flipped bytes would load silently.
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
        if damaged is not None:
            raise ValueError(f"{damaged} fails its checksum")
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as err:
        raise CheckpointError(
            f"checkpoint {str(path)!r} is truncated or corrupt ({first_line(err)})"
        ) from None
    except Exception as err:  # e.g. UnpicklingError from a file that is not a checkpoint
        raise CheckpointError(
            f"checkpoint {str(path)!r} is not a mappo checkpoint ({first_line(err)})"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {str(path)!r} is not a mappo checkpoint")
    bad = nonfinite_values(state)
    if bad:
        raise CheckpointError(
            f"checkpoint {str(path)!r} holds non-finite values (training had diverged): "
            f"{_listed(bad)}"
        )
    return state


def nonfinite_values(state: dict[str, Any]) -> list[str]:
    """Where a checkpoint's networks, normalisers or optimisers hold NaN or infinity.

    Each entry names the group and the tensor (``agents: actor_network...weight``).
    """
    bad = []
    for name, group in state.get("groups", {}).items():
        for part, tensors in (
            ("", group.get("loss", {})),
            ("actor_optim.", group.get("actor_optim", {})),
            ("critic_optim.", group.get("critic_optim", {})),
        ):
            for key, value in _tensor_leaves(tensors):
                if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                    bad.append(f"{name}: {part}{key}")
    return bad


def _tensor_leaves(data: Any, prefix: str = "") -> list[tuple[str, torch.Tensor]]:
    if isinstance(data, torch.Tensor):
        return [(prefix.rstrip("."), data)]
    if isinstance(data, dict):
        items = data.items()
    elif isinstance(data, (list, tuple)):
        items = enumerate(data)
    else:
        return []
    return [leaf for key, value in items for leaf in _tensor_leaves(value, f"{prefix}{key}.")]


def _listed(names: list[str], shown: int = 2) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def checkpoint_files(run_dir: str | Path) -> list[Path]:
    """The run's checkpoints, oldest first."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.fullmatch(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | Path) -> Path:
    """The newest checkpoint of a run.

    Raises:
        CheckpointError: if the run has none.
    """
    files = checkpoint_files(run_dir)
    if not files:
        raise CheckpointError(
            f"{str(run_dir)!r} has no checkpoint (no {CHECKPOINT_DIR}/ckpt-*.pt files)"
        )
    return files[-1]


def newest_valid_checkpoint(
    run_dir: str | Path,
) -> tuple[Path, dict[str, Any], list[tuple[Path, str]]]:
    """The newest checkpoint of a run that reads back, its state, and the ones skipped.

    A checkpoint that fails to load (truncated, flipped bytes) is skipped for
    the next older one; the returned list holds each skipped file and why.

    Raises:
        CheckpointError: if the run has no checkpoint, or none that loads (the
            newest one's error).
    """
    files = checkpoint_files(run_dir)
    latest_checkpoint(run_dir)  # raises when there is none
    skipped: list[tuple[Path, str]] = []
    first_error = None
    for path in reversed(files):
        try:
            return path, load_checkpoint(path), skipped
        except CheckpointError as err:
            first_error = first_error or err
            skipped.append((path, str(err)))
    raise first_error


class Checkpointer:
    """Writes ``RUN_DIR/checkpoints/ckpt-<iteration>.pt`` and keeps the last ``keep``.

    Args:
        run_dir: the run directory.
        trainer: the trainer to save.
        interval: save every ``interval`` iterations (0: only when asked).
        keep: how many checkpoints to keep (older ones are deleted).
    """

    def __init__(self, run_dir: str | Path, trainer: Trainer, *, interval: int, keep: int) -> None:
        self.folder = Path(run_dir) / CHECKPOINT_DIR
        self.trainer = trainer
        self.interval = interval
        self.keep = keep

    def due(self) -> bool:
        """Whether the iteration just finished is one to save."""
        last = self.trainer.iteration >= self.trainer.num_iterations
        return last or (self.interval > 0 and self.trainer.iteration % self.interval == 0)

    def saved(self, iteration: int) -> bool:
        """Whether the checkpoint of ``iteration`` is on disk."""
        return (self.folder / f"ckpt-{iteration:06d}.pt").is_file()

    def save(self, **extra: Any) -> Path:
        """Save the trainer now and drop checkpoints beyond ``keep``."""
        path = self.folder / f"ckpt-{self.trainer.iteration:06d}.pt"
        state = trainer_state(self.trainer, **extra)
        bad = nonfinite_values(state)
        if bad:  # never in place of a finite checkpoint, whatever ``keep`` says
            raise CheckpointError(
                f"{path.name} not written: the trainer holds non-finite values ({_listed(bad)})"
            )
        save_checkpoint(state, path)
        for old in checkpoint_files(self.folder.parent)[: -self.keep]:
            old.unlink(missing_ok=True)
        return path


def _overlap_state(collector) -> dict[str, Any] | None:
    return collector.resume_state() if isinstance(collector, OverlappedCollector) else None


def _load_collector(collector, saved: dict[str, Any], carrier: dict[str, Any]) -> None:
    collector.load_state_dict(saved)
    current = collector_carrier(collector)
    # A fresh carrier holds the reset's keys; the saved one also the last policy outputs.
    missing = set(current.keys(True, True)) - set(_nested_keys(carrier))
    if missing:
        raise ValueError(f"the saved rollout state lacks {sorted(map(str, missing))}")
    # Updated in place from a plain dict, so nested tensordicts keep their batch sizes.
    current.update(carrier)
    if "traj_pool" in saved:
        # load_state_dict drew fresh trajectory ids for a new carrier; the saved
        # carrier continues the old trajectories, so undo that draw.
        load_trajectory_ids(collector, saved["traj_pool"])


def _nested_keys(data: dict[str, Any], prefix: tuple[str, ...] = ()) -> list:
    keys = []
    for key, value in data.items():
        if isinstance(value, dict):
            keys += _nested_keys(value, (*prefix, key))
        else:
            keys.append((*prefix, key) if prefix else key)
    return keys


def _with_defaults(saved: dict[str, Any]) -> dict[str, Any]:
    """A saved config with the options added since it was written at their defaults.

    A checkpoint of an older version lacks the newer options (and may use renamed
    ones); those options then behaved as their ``ADDED_OPTIONS`` value
    (:func:`~mappo_torchrl.config.from_saved_dict`), or as their default.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # renamed options, read as documented
        try:
            return to_dict(from_saved_dict(saved))
        except ConfigError:  # an option this version does not know: compare as saved
            return saved


def _check_config(saved: dict[str, Any], current: dict[str, Any], where: str) -> None:
    for option, (theirs, ours) in _differences(saved, current).items():
        if option == "collector.total_frames" and current["optim"]["lr_decay"]:
            raise CheckpointError(
                f"{where}collector.total_frames={ours!r}: with optim.lr_decay the learning rate "
                f"decays to 0 over the run's {theirs} frames, so the run cannot be continued as "
                "if it had been started with more; start a new run with --init-from instead"
            )
        if option in RESUME_OPTIONS:
            continue
        if option in _RESOLVED_OPTIONS and theirs == "auto":
            continue  # a run of an older version recorded "auto", which this run resolved
        raise CheckpointError(
            f"{where}written for {option}={theirs!r}, but this run has {option}={ours!r}"
        )


def _apply_step_sizes(trainer: Trainer, changed: dict[str, tuple[Any, Any]]) -> None:
    """Put the learning rates and loss coefficients a resume changed over the loaded ones.

    The optimisers' and the loss's state dicts carry the checkpoint's values;
    with ``optim.lr_decay`` the new rate is the schedule's new base.
    """
    config = trainer.config
    for group in trainer.groups.values():
        for option, value in (
            ("loss.entropy_coeff", config.loss.entropy_coeff),
            ("loss.clip_epsilon", config.loss.clip_epsilon),
        ):
            if option in changed:
                getattr(group.loss, option.split(".")[1]).fill_(value)
        for option, optim in (
            ("optim.actor_lr", group.actor_optim),
            ("optim.critic_lr", group.critic_optim),
        ):
            if option not in changed:
                continue
            rate = getattr(config.optim, option.split(".")[1])
            scheduler = next((s for s in trainer.schedulers if s.optimizer is optim), None)
            for param_group in optim.param_groups:
                param_group["lr"] = rate
                if scheduler is not None:
                    param_group["initial_lr"] = rate
                    param_group["lr"] = rate * scheduler.lr_lambdas[0](scheduler.last_epoch)
            if scheduler is not None:
                scheduler.base_lrs = [rate] * len(optim.param_groups)


def _differences(a: Any, b: Any, prefix: str = "") -> dict[str, tuple[Any, Any]]:
    """``{dotted option: (a's value, b's value)}`` for the leaves where two configs differ."""
    if isinstance(a, dict) and isinstance(b, dict) and prefix != "env.scenario_kwargs.":
        out = {}
        for key in dict.fromkeys([*a, *b]):
            out.update(_differences(a.get(key), b.get(key), f"{prefix}{key}."))
        return out
    return {} if a == b else {prefix.rstrip("."): (a, b)}


def load_weights(trainer: Trainer, state: dict[str, Any], *, source: str = "") -> None:
    """Put a checkpoint's networks and value normalisers into a new ``trainer``.

    For fine-tuning and transfer (``mappo train --init-from``): only the
    actors, critics and value normalisers are copied; the optimisers, the
    counters and the loss coefficients stay those of ``trainer``'s own
    config, which may differ from the checkpoint's (another scenario, other
    hyper-parameters) as long as the networks have the same shapes.

    Raises:
        CheckpointError: if the agent groups or the network shapes differ.
    """
    where = f"{source}: " if source else ""
    if set(state["groups"]) != set(trainer.groups):
        raise CheckpointError(
            f"{where}agent groups {sorted(state['groups'])} do not match this run's "
            f"{sorted(trainer.groups)}"
        )
    for name, group in trainer.groups.items():
        saved = state["groups"][name]["loss"]
        weights = {k: v for k, v in saved.items() if k.startswith(_WEIGHTS)}
        expected = {k for k in group.loss.state_dict() if k.startswith(_WEIGHTS)}
        if set(weights) != expected:
            missing = sorted(expected - set(weights)) or sorted(set(weights) - expected)
            raise CheckpointError(
                f"{where}group {name!r}: the networks do not match this run's "
                f"(e.g. {missing[0]}; check model.* and loss.value_norm)"
            )
        ours = group.loss.state_dict()
        for key, value in weights.items():
            if tuple(value.shape) != tuple(ours[key].shape):
                raise CheckpointError(
                    f"{where}group {name!r}: the networks do not fit this run (size mismatch "
                    f"for {key}: {tuple(value.shape)} in the checkpoint, {tuple(ours[key].shape)} "
                    "here; check model.* and the scenario)"
                )
        group.loss.load_state_dict(weights, strict=False)
