"""Metric loggers: RUN_DIR/metrics.csv always, plus one of TorchRL's loggers.

``logger.backend`` picks TorchRL's :obj:`~torchrl.record.loggers.TensorboardLogger`,
:obj:`~torchrl.record.loggers.WandbLogger` (offline) or
:obj:`~torchrl.record.loggers.MLFlowLogger` (a file store in the run directory).
Their packages are optional extras; :func:`check_logger_backend` says which
one is missing before anything starts.
"""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path
from typing import Any

from torchrl.record.loggers import Logger

from mappo_torchrl.config import LoggerConfig

#: backend -> (module it needs, pip extra that installs it).
BACKEND_PACKAGES = {
    "tensorboard": ("tensorboard", "tensorboard"),
    "wandb": ("wandb", "wandb"),
    "mlflow": ("mlflow", "mlflow"),
}


class LoggerUnavailable(RuntimeError):
    """The chosen logger's package is not installed (one line, says what to install)."""


def check_logger_backend(backend: str) -> None:
    """Raise :class:`LoggerUnavailable` if ``backend`` needs a package that is missing."""
    if backend not in BACKEND_PACKAGES:
        return
    module, extra = BACKEND_PACKAGES[backend]
    if importlib.util.find_spec(module) is None:
        raise LoggerUnavailable(
            f"logger.backend={backend!r}: the {module} package is not installed; "
            f"pip install 'mappo_torchrl[{extra}]' (or choose --logger csv)"
        )


def make_logger(
    config: LoggerConfig,
    run_dir: str | Path,
    *,
    exp_name: str,
    state: dict[str, Any] | None = None,
) -> Logger | None:
    """The TorchRL logger ``config`` asks for, writing under ``run_dir`` (None for csv).

    Args:
        config: the logger section of the run config.
        run_dir: the run directory; TensorBoard writes ``tensorboard/``, W&B
            ``wandb/``, MLflow ``mlruns/``.
        exp_name: the run's name in the logger.
        state: a ``logger.state_dict()`` saved with a checkpoint, to continue
            the same W&B run when resuming.
    """
    check_logger_backend(config.backend)
    run_dir = Path(run_dir).resolve()
    if config.backend == "csv":
        return None
    if config.backend == "tensorboard":
        from torchrl.record.loggers import TensorboardLogger

        return TensorboardLogger(exp_name=exp_name, log_dir=str(run_dir / "tensorboard"))
    if config.backend == "wandb":
        from torchrl.record.loggers import WandbLogger

        run_id = (state or {}).get("local", {}).get("id")
        return WandbLogger(
            exp_name=exp_name,
            offline=True,
            save_dir=str(run_dir),
            project=config.project,
            id=run_id,
            log_env_packages=False,
        )
    from torchrl.record.loggers import MLFlowLogger

    # A local file store needs no server and no database driver (mlflow-skinny has
    # none); MLflow 3 keeps it, in maintenance mode, behind this opt-in.
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return MLFlowLogger(exp_name=config.project, tracking_uri=(run_dir / "mlruns").as_uri())


class MetricsLogger:
    """Writes each iteration's metrics to metrics.csv and to the TorchRL logger.

    Use it as a :meth:`Trainer.train <mappo_torchrl.training.Trainer.train>`
    callback. The step of the TorchRL logger is the frame count, so curves
    of runs with different batch sizes line up. NaN values (an iteration
    where no episode ended) are left out of the TorchRL logger.
    """

    def __init__(self, run_dir, logger: Logger | None = None) -> None:
        self.run_dir = run_dir
        self.logger = logger

    def __call__(self, metrics: dict[str, float]) -> None:
        self.run_dir.log_metrics(metrics)
        if self.logger is None:
            return
        step = int(metrics["frames"])
        for name, value in metrics.items():
            if name in ("iteration", "frames") or not math.isfinite(value):
                continue
            self.logger.log_scalar(name, value, step=step)

    def close(self) -> None:
        """Flush the TorchRL logger and end its run (W&B, MLflow)."""
        if self.logger is None:
            return
        experiment = getattr(self.logger, "experiment", None)
        if hasattr(experiment, "flush"):
            experiment.flush()
        if hasattr(experiment, "finish"):  # W&B
            experiment.finish()
        elif self.logger.__class__.__name__ == "MLFlowLogger":
            import mlflow

            mlflow.end_run()
