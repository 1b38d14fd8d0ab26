"""The training session ``mappo train`` runs: the trainer, plus evaluation, logging and
checkpoints after each iteration.

:class:`TrainingSession` hooks into
:meth:`Trainer.train <mappo_torchrl.training.Trainer.train>` as one callback
that, after every iteration, in this order:

1. saves a checkpoint when due, or when a stop was requested (Ctrl-C,
   SIGTERM), before anything else can fail: the checkpoint also keeps the
   iteration's training metrics, so a resumed run can finish the steps below;
2. evaluates when due (every ``eval.interval`` iterations and after the last),
   adding ``eval/*`` metrics, and writes a video every
   ``eval.video_interval`` evaluations;
3. stamps ``time/elapsed_s`` (wall time of the whole run, across resumes);
4. logs the metrics (metrics.csv and the TorchRL loggers, which also get
   the resolved config once at the start and every evaluation video), and refreshes the
   heartbeat in status.json;
5. stops if a stop was requested.

If step 2 or 4 fails (an evaluation error, a logger that cannot write), the
iteration's checkpoint is written first if it was not due, so no training is
lost: the run can be resumed from it.

The trainer's own loop is untouched, and evaluation never moves a random
stream that training reads (:mod:`mappo_torchrl.runs.evaluation`), so a
run trains the same with or without evaluations, and a resumed run the same
as one that never stopped.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torchrl.record.loggers import Logger

from mappo_torchrl import _moved
from mappo_torchrl.data.collector import CollectorStalled, WorkerFailed
from mappo_torchrl.envs import make_env_from_config
from mappo_torchrl.runs.checkpoint import Checkpointer
from mappo_torchrl.runs.directory import RunDir, read_metrics
from mappo_torchrl.runs.evaluation import Evaluation
from mappo_torchrl.runs.loggers import MetricsLogger
from mappo_torchrl.training.metrics import Metrics
from mappo_torchrl.training.trainer import Trainer


class StopRequested(Exception):
    """Raised after the checkpoint that follows a stop request."""


class TrainingSession:
    """Trains ``trainer`` to the end, evaluating, logging and checkpointing on the way.

    Args:
        trainer: a new trainer, or one loaded from a checkpoint.
        run_dir: where metrics, checkpoints and videos go.
        logger: TorchRL loggers besides metrics.csv: one, several (a list or a
            dict by backend, as :func:`~mappo_torchrl.runs.loggers.make_loggers`
            returns), or ``None``.
        elapsed_s: wall time already spent (when resuming).

    Example:
        >>> import tempfile
        >>> from mappo_torchrl.config import RunConfig
        >>> from mappo_torchrl.training import Trainer
        >>> from mappo_torchrl.runs.directory import RunDir, read_metrics
        >>> from mappo_torchrl.runs.session import TrainingSession
        >>> cfg = RunConfig()
        >>> cfg.env.num_envs, cfg.env.max_steps = 4, 10
        >>> cfg.collector.frames_per_batch, cfg.collector.total_frames = 40, 80
        >>> cfg.optim.minibatch_size, cfg.eval.episodes = 20, 2
        >>> folder = tempfile.TemporaryDirectory()
        >>> session = TrainingSession(Trainer(cfg), RunDir.create(folder.name, cfg))
        >>> history = session.train(progress=False)
        >>> [m["iteration"] for m in history if "eval/episode_return" in m]  # after the last
        [2]
        >>> sorted(p.name for p in (session.run_dir.path / "checkpoints").iterdir())
        ['ckpt-000002.pt']
        >>> folder.cleanup()
    """

    def __init__(
        self,
        trainer: Trainer,
        run_dir: RunDir,
        *,
        logger: Logger | Sequence[Logger] | Mapping[str, Logger] | None = None,
        elapsed_s: float = 0.0,
    ) -> None:
        config = trainer.config
        self.trainer = trainer
        self.run_dir = run_dir
        self.logger = logger
        self.metrics_logger = MetricsLogger(run_dir, logger)
        self.checkpointer = Checkpointer(
            run_dir.path, trainer, interval=config.checkpoint.interval, keep=config.checkpoint.keep
        )
        self.video = config.eval.video_interval > 0
        self.evaluation = Evaluation(
            self._make_eval_env,
            trainer.policy,
            episodes=config.eval.episodes,
            max_steps=config.env.max_steps,
            seed=config.eval.seed,
            deterministic=config.eval.deterministic,
        )
        self.elapsed_before = elapsed_s
        self.started = time.perf_counter()
        self.stop_requested = False
        #: The closing figures, once :meth:`train` has finished (:func:`final_returns`).
        self.final: dict[str, Any] = {}
        #: Set by :func:`~mappo_torchrl.runs.resume.resume_session`: the checkpoint the
        #: session continues from (``None``: a new run, or one started again), and
        #: lines a caller may show about what resuming found and did.
        self.resumed_from: str | None = None
        self.notes: list[str] = []

    def train(self, *, progress: bool = True) -> list[Metrics]:
        """Run the remaining iterations.

        Raises:
            StopRequested: if :meth:`request_stop` was called; the checkpoint
                of the last finished iteration is written by then.

        If the collecting worker stops answering or dies (``CollectorStalled``,
        ``WorkerFailed`` from ``mappo_torchrl.data.collector``), the last
        finished iteration is checkpointed too, if it can be, before the error
        goes on.
        """
        self.metrics_logger.log_hparams(self.trainer.config)
        try:
            history = self.trainer.train(progress=progress, callbacks=[self.after_iteration])
        except StopRequested:  # also raised while waiting for the collecting worker
            self.save_unsaved()
            raise
        except (CollectorStalled, WorkerFailed):  # the trainer's state is whole
            with contextlib.suppress(Exception):  # the worker's failure is what gets reported
                self.save_unsaved()
            raise
        finally:
            self.evaluation.close()
            self.metrics_logger.close()
            self.run_dir.close()  # the lock: the run can be resumed or read as stopped
        self.finish()
        return history

    def finish(self) -> dict[str, Any]:
        """Record the finished run: status ``finished`` with its closing figures
        (:func:`final_returns`), frames and wall time; returns those figures."""
        trainer = self.trainer
        groups = list(trainer.groups) if len(trainer.groups) > 1 else []
        self.final = final_returns(read_metrics(self.run_dir.path), groups)
        self.run_dir.write_status(
            "finished",
            iteration=trainer.iteration,
            frames=trainer.frames,
            **self.final,
            wall_time_s=round(self.elapsed(), 1),
        )
        return self.final

    def save_unsaved(self) -> None:
        """Checkpoint the last finished iteration, unless it is saved (or none ran).

        Between iterations, and while an overlapped trainer waits for its
        worker's batch, the trainer's state is whole: it is the checkpoint of the
        iteration it finished last.
        """
        trainer = self.trainer
        if trainer.iteration > 0 and not self.checkpointer.saved(trainer.iteration):
            self.checkpointer.save(**self.checkpoint_extra())

    def waiting_for_worker(self) -> bool:
        """Whether the trainer waits for its overlapped worker's next batch, when a stop
        can end the run at once with a checkpoint of the last iteration."""
        return self.trainer.overlap and self.trainer.collecting

    def request_stop(self) -> None:
        """Stop after the current iteration, with a checkpoint (what Ctrl-C does)."""
        self.stop_requested = True

    def elapsed(self) -> float:
        """Wall time of the run so far, including earlier sessions of a resumed run."""
        return self.elapsed_before + time.perf_counter() - self.started

    def after_iteration(self, metrics: Metrics) -> None:
        """Checkpoint, evaluate and log as due.

        This is the :meth:`Trainer.train <mappo_torchrl.training.Trainer.train>` callback.
        """
        trained = dict(metrics)
        saved = self.checkpointer.due() or self.stop_requested
        if saved:
            self.checkpointer.save(**self.checkpoint_extra(trained))
        try:
            self.finish_iteration(metrics)
        except Exception:
            if not saved:  # keep the training; the error itself is what gets reported
                with contextlib.suppress(Exception):
                    self.checkpointer.save(**self.checkpoint_extra(trained))
            raise
        if self.stop_requested:
            raise StopRequested

    def finish_iteration(self, metrics: Metrics) -> None:
        """Evaluate if due, stamp the wall time, log the row and refresh the heartbeat.

        A resumed run calls it for the checkpoint's own iteration when the
        run stopped before that iteration's row was logged.
        """
        number = self._evaluation_number()
        if number is not None:
            video = self.video and number % self.trainer.config.eval.video_interval == 0
            self.evaluation.render(video)
            metrics.update(self.evaluation())
            if video and self.evaluation.last.frames:
                self._write_video(self.evaluation.last.frames)
                self.metrics_logger.log_video(
                    "eval/video", self.evaluation.last.frames, step=self.trainer.frames
                )
        metrics["time/elapsed_s"] = self.elapsed()
        self.metrics_logger(metrics)
        self.run_dir.write_status(
            "running", iteration=self.trainer.iteration, frames=self.trainer.frames
        )

    def checkpoint_extra(self, metrics: Metrics | None = None) -> dict[str, Any]:
        """What a checkpoint keeps besides the trainer: elapsed time, logger ids, and
        the iteration's training metrics."""
        extra: dict[str, Any] = {"elapsed_s": self.elapsed()}
        if metrics is not None:
            # As logged: ints stay ints ("4", not "4.0", in metrics.csv).
            extra["metrics"] = {
                k: v if isinstance(v, int) else float(v) for k, v in metrics.items()
            }
        if self.metrics_logger.loggers:
            extra["logger"] = _plain(self.metrics_logger.state_dict())
        return extra

    def _evaluation_number(self) -> int | None:
        """Which evaluation (1, 2, ...) is due after this iteration, or None."""
        interval = self.trainer.config.eval.interval
        iteration = self.trainer.iteration
        last = iteration >= self.trainer.num_iterations
        if interval > 0 and iteration % interval == 0:
            return iteration // interval
        if last:
            return iteration // interval + 1 if interval > 0 else 1
        return None

    def _make_eval_env(self, num_envs: int, seed: int):
        env = make_env_from_config(self.trainer.config, seed=seed, num_envs=num_envs)
        if self.video:
            from mappo_torchrl.viz.video import add_renderer

            env = add_renderer(env)
        return env

    def _write_video(self, frames) -> Path:
        from mappo_torchrl.viz.video import write_video

        name = f"eval-iter{self.trainer.iteration:06d}.mp4"
        return write_video(self.run_dir.path / "videos" / name, frames)


def __getattr__(name: str) -> Any:  # names that moved: TrainingRun
    return _moved.renamed(__name__, name)


#: The iterations whose training returns make a run's final return.
FINAL_ITERATIONS = 5


def final_returns(rows: list[Metrics], groups: Sequence[str] = ()) -> dict[str, Any]:
    """A run's closing figures, as status.json records them.

    ``final_episode_return`` is the mean training return over the last
    :data:`FINAL_ITERATIONS` rows of metrics.csv (fewer in a shorter run;
    ``final_iterations`` says how many), ``final_eval_return`` the last row's
    evaluation. With several ``groups`` (a competitive env, whose pooled
    figures mix opposing returns) the same figures by group are added.

    Example:
        >>> rows = [{"train/episode_return": r, "eval/episode_return": 1.0} for r in range(8)]
        >>> final_returns(rows)
        {'final_episode_return': 5.0, 'final_eval_return': 1.0, 'final_iterations': 5}
    """
    last = rows[-FINAL_ITERATIONS:]
    final_row = rows[-1] if rows else {}

    def mean(column: str) -> float:
        return statistics.fmean(m[column] for m in last) if last else math.nan

    out: dict[str, Any] = {
        "final_episode_return": mean("train/episode_return"),
        "final_eval_return": final_row.get("eval/episode_return", math.nan),
        "final_iterations": len(last),
    }
    if groups:
        out["final_group_returns"] = {g: mean(f"train/{g}/episode_return") for g in groups}
        out["final_group_eval_returns"] = {
            g: final_row.get(f"eval/{g}/episode_return", math.nan) for g in groups
        }
    return out


def _plain(value: Any) -> Any:
    """Logger state as builtins only (checkpoints load with ``weights_only=True``)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
