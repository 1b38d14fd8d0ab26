"""Metric loggers: RUN_DIR/metrics.csv always, plus any of TorchRL's loggers.

``logger.backend`` names TorchRL's :obj:`~torchrl.record.loggers.TensorboardLogger`,
:obj:`~torchrl.record.loggers.WandbLogger` or
:obj:`~torchrl.record.loggers.MLFlowLogger` (a file store in the run
directory), or several joined by commas (``tensorboard,wandb``). Every one of
them gets the run directory's name as the run name, the resolved config as
hyper-parameters (:meth:`Logger.log_hparams <torchrl.record.loggers.Logger.log_hparams>`),
every iteration's metrics and the evaluation videos
(:meth:`Logger.log_video <torchrl.record.loggers.Logger.log_video>`).

W&B logs online when you are logged in (``wandb login``, ``WANDB_API_KEY``) or
``WANDB_MODE`` says so, and offline otherwise (:func:`wandb_mode`).

Their packages are optional extras; :func:`check_logger_backend` says which
one is missing before anything starts.

This module is the one seam to TorchRL's logger classes: the subclasses below
encode videos with :func:`~mappo_torchrl.viz.video.write_video` (Pillow or
imageio-ffmpeg) instead of moviepy / torchcodec, and send MLflow
hyper-parameters without OmegaConf.
"""

from __future__ import annotations

import importlib.util
import io
import math
import netrc
import os
import socket
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import torch
from torchrl.record.loggers import Logger, MLFlowLogger, TensorboardLogger, WandbLogger

from mappo_torchrl.compat import tensorboard_file_writer
from mappo_torchrl.config import LoggerConfig, RunConfig, flatten, to_dict

#: backend -> (module it needs, pip extra that installs it).
BACKEND_PACKAGES = {
    "tensorboard": ("tensorboard", "tensorboard"),
    "wandb": ("wandb", "wandb"),
    "mlflow": ("mlflow", "mlflow"),
}

#: Frames per second of the videos sent to the loggers (the mp4 files use the same).
VIDEO_FPS = 20


class LoggerUnavailable(RuntimeError):
    """The chosen logger's package is not installed (one line, says what to install)."""


def check_logger_backend(backend: str) -> None:
    """Raise :class:`LoggerUnavailable` if a backend in ``backend`` needs a missing package.

    ``backend`` is one name or several joined by commas.
    """
    for name in LoggerConfig(backend=backend).backends():
        if name not in BACKEND_PACKAGES:
            continue
        module, extra = BACKEND_PACKAGES[name]
        if importlib.util.find_spec(module) is None:
            raise LoggerUnavailable(
                f"logger.backend={backend!r}: the {module} package is not installed; "
                f"pip install 'mappo_torchrl[{extra}]' (or choose --logger csv)"
            )


#: Seconds to wait for W&B's server before an online run is refused.
WANDB_CONNECT_TIMEOUT_S = 5.0


def check_wandb_reachable(
    environ: Mapping[str, str] | None = None, timeout_s: float = WANDB_CONNECT_TIMEOUT_S
) -> None:
    """Raise :class:`LoggerUnavailable` if W&B would log online (:func:`wandb_mode`) but
    its server (``WANDB_BASE_URL``, by default ``https://api.wandb.ai``) does not accept a
    connection within ``timeout_s``: ``wandb.init`` would otherwise wait about 100 s before
    failing, after the run directory exists.
    """
    environ = os.environ if environ is None else environ
    if wandb_mode(environ) != "online":
        return
    url = urlsplit(environ.get("WANDB_BASE_URL", "https://api.wandb.ai"))
    host = url.hostname or ""
    port = url.port or (80 if url.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as err:
        raise LoggerUnavailable(
            f"logger.backend=wandb: W&B would log online, but {host}:{port} cannot be reached "
            f"({err.strerror or err}); set WANDB_MODE=offline to log locally and upload "
            "later with 'wandb sync', or choose --logger csv"
        ) from None


def wandb_mode(environ: Mapping[str, str] | None = None) -> str:
    """``"online"`` or ``"offline"`` (or what ``WANDB_MODE`` says): how W&B should log.

    ``WANDB_MODE`` decides when it is set. Otherwise W&B logs online when an
    API key is at hand (``WANDB_API_KEY``, or the netrc entry that
    ``wandb login`` writes for ``WANDB_BASE_URL``'s host), and offline
    otherwise, so that a run never stops to ask for a key. This only reads
    the environment and the netrc file; nothing goes over the network.

    Example:
        >>> from mappo_torchrl.runs.loggers import wandb_mode
        >>> wandb_mode({"WANDB_MODE": "online"}), wandb_mode({"WANDB_API_KEY": "k" * 40})
        ('online', 'online')
        >>> wandb_mode({"NETRC": "/nonexistent"})
        'offline'
    """
    environ = os.environ if environ is None else environ
    mode = environ.get("WANDB_MODE", "").strip().lower()
    if mode:
        return {"dryrun": "offline", "run": "online"}.get(mode, mode)
    if environ.get("WANDB_API_KEY"):
        return "online"
    host = urlsplit(environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or ""
    path = environ.get("NETRC") or str(Path("~/.netrc").expanduser())
    try:
        entry = netrc.netrc(path).authenticators(host)
    except (OSError, netrc.NetrcParseError):
        return "offline"
    return "online" if entry and entry[2] else "offline"


def make_loggers(
    config: LoggerConfig,
    run_dir: str | Path,
    *,
    exp_name: str,
    state: Mapping[str, Any] | None = None,
) -> dict[str, Logger]:
    """The TorchRL loggers ``config`` asks for, by backend, writing under ``run_dir``.

    Args:
        config: the logger section of the run config.
        run_dir: the run directory; TensorBoard writes ``tensorboard/``, W&B
            ``wandb/``, MLflow ``mlruns/``.
        exp_name: the run's name in every logger (the run directory's name).
        state: the loggers' ``state_dict()`` by backend, saved with a
            checkpoint, to continue the same W&B run when resuming.

    Returns:
        An empty dict for ``csv`` alone.
    """
    check_logger_backend(config.backend)
    run_dir = Path(run_dir).resolve()
    state = _by_backend(state)
    loggers: dict[str, Logger] = {}
    for backend in config.backends():
        if backend == "tensorboard":
            loggers[backend] = _Tensorboard(exp_name=exp_name, log_dir=str(run_dir / "tensorboard"))
        elif backend == "wandb":
            mode = wandb_mode()
            loggers[backend] = _Wandb(
                exp_name=exp_name,
                save_dir=str(run_dir),
                project=config.project,
                id=state.get("wandb", {}).get("local", {}).get("id"),
                log_env_packages=False,
                video_fps=VIDEO_FPS,
                mode=mode,
            )
        else:
            # A local file store needs no server and no database driver (mlflow-skinny
            # has none); MLflow 3 keeps it, in maintenance mode, behind this opt-in.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            logger = _MLflow(
                exp_name=config.project,
                tracking_uri=(run_dir / "mlruns").as_uri(),
                video_fps=VIDEO_FPS,
            )
            logger.name_run(exp_name)
            loggers[backend] = logger
    return loggers


def make_logger(
    config: LoggerConfig,
    run_dir: str | Path,
    *,
    exp_name: str,
    state: Mapping[str, Any] | None = None,
) -> Logger | None:
    """The one TorchRL logger ``config`` asks for (None for csv); see :func:`make_loggers`."""
    loggers = make_loggers(config, run_dir, exp_name=exp_name, state=state)
    if len(loggers) > 1:
        raise ValueError(f"logger.backend={config.backend!r} names several; use make_loggers")
    return next(iter(loggers.values()), None)


def hparams(config: RunConfig) -> dict[str, bool | int | float | str]:
    """The resolved config as flat ``section.field`` hyper-parameters.

    Values that are not bool, int, float or str (``env.scenario_kwargs``) are
    written as text, which every backend accepts.

    Example:
        >>> from mappo_torchrl.config import RunConfig
        >>> from mappo_torchrl.runs.loggers import hparams
        >>> params = hparams(RunConfig())
        >>> params["env.scenario"], params["loss.gamma"], params["env.scenario_kwargs"]
        ('navigation', 0.9, '{}')
    """
    return {
        name: value if isinstance(value, (bool, int, float, str)) else str(value)
        for name, value in flatten(to_dict(config)).items()
    }


class MetricsLogger:
    """Writes each iteration's metrics to metrics.csv and to every TorchRL logger.

    Use it as a :meth:`Trainer.train <mappo_torchrl.training.Trainer.train>`
    callback. The step of the TorchRL loggers is the frame count, so curves
    of runs with different batch sizes line up. NaN values (an iteration
    where no episode ended) are left out of the TorchRL loggers.

    Args:
        run_dir: the :class:`~mappo_torchrl.runs.directory.RunDir`.
        logger: one TorchRL logger, several (a list or a dict by backend), or None.
    """

    def __init__(
        self, run_dir, logger: Logger | Sequence[Logger] | Mapping[str, Logger] | None = None
    ) -> None:
        self.run_dir = run_dir
        if logger is None:
            logger = []
        elif isinstance(logger, Logger):
            logger = [logger]
        self.loggers = list(logger.values() if isinstance(logger, Mapping) else logger)

    def __call__(self, metrics: dict[str, float]) -> None:
        self.run_dir.log_metrics(metrics)
        step = int(metrics["frames"])
        for logger in self.loggers:
            for name, value in metrics.items():
                if name in ("iteration", "frames") or not math.isfinite(value):
                    continue
                logger.log_scalar(name, value, step=step)

    def log_hparams(self, config: RunConfig) -> None:
        """Send the resolved config to every TorchRL logger as hyper-parameters."""
        params = hparams(config)
        for logger in self.loggers:
            logger.log_hparams(params)

    def log_video(self, name: str, frames: Sequence[np.ndarray], *, step: int) -> None:
        """Send RGB ``frames`` (``[H, W, 3]`` uint8) to every TorchRL logger as one video."""
        if not self.loggers:
            return
        video = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)  # T, C, H, W
        for logger in self.loggers:
            logger.log_video(name, video.unsqueeze(0), step=step)

    def state_dict(self) -> dict[str, Any]:
        """Every TorchRL logger's ``state_dict()``, by backend."""
        return {_backend(logger): logger.state_dict() for logger in self.loggers}

    def close(self) -> None:
        """Flush the TorchRL loggers and end their runs (W&B, MLflow)."""
        for logger in self.loggers:
            experiment = getattr(logger, "experiment", None)
            if hasattr(experiment, "flush"):
                experiment.flush()
            if hasattr(experiment, "finish"):  # W&B
                experiment.finish()
            elif isinstance(logger, _MLflow):
                import mlflow

                mlflow.end_run()


# -- the seam to TorchRL's logger classes -----------------------------------------


def _video_frames(video: torch.Tensor) -> list[np.ndarray]:
    """``[(N,) T, C, H, W]`` uint8 -> ``[H, W, C]`` frames of the first (or only) video."""
    if video.ndim == 5:
        video = video[0]
    return list(video.permute(0, 2, 3, 1).to(torch.uint8).cpu().numpy())


class _Tensorboard(TensorboardLogger):
    """TorchRL's TensorBoard logger with videos encoded by Pillow.

    TensorBoard shows a video as an animated GIF in its Images tab; torch's
    ``add_video`` makes that GIF with ``moviepy.editor``, which moviepy 2 no
    longer has. This writes the same image summary with Pillow.
    """

    def log_video(self, name: str, video: torch.Tensor, step: int | None = None, **kwargs):
        from PIL import Image
        from torch.utils.tensorboard.summary import Summary

        frames = [Image.fromarray(f) for f in _video_frames(video)]
        buffer = io.BytesIO()
        frames[0].save(
            buffer,
            format="GIF",
            save_all=True,
            append_images=frames[1:],
            duration=round(1000 / kwargs.get("fps", VIDEO_FPS)),
            loop=0,
        )
        image = Summary.Image(
            height=frames[0].height,
            width=frames[0].width,
            colorspace=3,
            encoded_image_string=buffer.getvalue(),
        )
        tensorboard_file_writer(self.experiment).add_summary(
            Summary(value=[Summary.Value(tag=name, image=image)]), step
        )


class _Wandb(WandbLogger):
    """TorchRL's W&B logger, online or offline by ``mode``, videos from files.

    ``wandb.Video`` encodes a tensor with moviepy; given a file it needs
    nothing, so the video is written with our own encoder first.
    """

    def __init__(self, *args, mode: str, **kwargs) -> None:
        # TorchRL's offline=True sets WANDB_MODE for the whole process; the mode
        # goes to wandb.init instead.
        super().__init__(*args, offline=False, mode=mode, **kwargs)

    def log_video(self, name: str, video: torch.Tensor, step: int | None = None, **kwargs):
        import wandb

        from mappo_torchrl.viz.video import write_video

        fps = kwargs.get("fps", self.video_fps)
        with tempfile.TemporaryDirectory() as folder:
            path = write_video(Path(folder) / "video.mp4", _video_frames(video), fps=fps)
            # W&B copies the file into the run as it is logged.
            self._log_payload({name: wandb.Video(str(path), fps=fps)}, step=step)


class _MLflow(MLFlowLogger):
    """TorchRL's MLflow logger, with a run name, params without OmegaConf, mp4 videos.

    TorchRL's ``log_hparams`` imports OmegaConf even for a plain dict, and its
    ``log_video`` needs torchcodec; both are done here with what MLflow needs anyway.
    """

    def name_run(self, name: str) -> None:
        """Give the active run ``name`` (TorchRL starts it with a random one)."""
        import mlflow

        mlflow.MlflowClient().update_run(self.experiment.info.run_id, name=name)

    def log_hparams(self, cfg: Mapping[str, Any]) -> None:
        import mlflow

        mlflow.log_params(dict(cfg))

    def log_video(self, name: str, video: torch.Tensor, step: int | None = None, **kwargs):
        import mlflow

        from mappo_torchrl.viz.video import write_video

        fps = kwargs.get("fps", self.video_fps)
        with tempfile.TemporaryDirectory() as folder:
            stem = name.replace("/", "_") + ("" if step is None else f"-step{step}")
            path = write_video(Path(folder) / f"{stem}.mp4", _video_frames(video), fps=fps)
            mlflow.log_artifact(str(path), artifact_path="videos")


def _backend(logger: Logger) -> str:
    for backend, cls in (
        ("tensorboard", TensorboardLogger),
        ("wandb", WandbLogger),
        ("mlflow", MLFlowLogger),
    ):
        if isinstance(logger, cls):
            return backend
    return type(logger).__name__


def _by_backend(state: Mapping[str, Any] | None) -> dict[str, Any]:
    """Logger state by backend; checkpoints before several backends held W&B's alone."""
    if not state:
        return {}
    if "local" in state or "exp_name" in state:
        return {"wandb": dict(state)}
    return dict(state)
