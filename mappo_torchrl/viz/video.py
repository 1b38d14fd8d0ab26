"""Rollout videos: frames from VMAS's renderer, written as mp4 (or gif).

Frames come from TorchRL's :obj:`~torchrl.record.PixelRenderTransform`,
which calls VMAS's ``render(mode="rgb_array")`` (the first of the vectorised
envs) after every reset and step. VMAS renders with pyglet: headless through
EGL where the GL libraries are installed, otherwise it needs a display
(``xvfb-run -a mappo ...``).

mp4 is encoded with the ffmpeg binary that ``imageio-ffmpeg`` ships (the
``video`` extra); without it the video is written as a gif with Pillow.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tensordict import TensorDictBase
from torchrl.envs import EnvBase, TransformedEnv

from mappo_torchrl.config.checks import first_line

VIDEO_EXTRA = "pip install 'mappo_torchrl[video]'"


class VideoUnavailable(RuntimeError):
    """Videos cannot be made here (one line: what is missing and how to get it)."""


def add_renderer(env: EnvBase) -> TransformedEnv:
    """Append a :obj:`~torchrl.record.PixelRenderTransform` that records ``pixels``.

    Raises:
        VideoUnavailable: if VMAS cannot render here (no GL, no display).
    """
    from torchrl.record import PixelRenderTransform

    try:
        env.append_transform(PixelRenderTransform(mode="rgb_array"))
        # torchrl 0.14: PixelRenderTransform computes its spec by resetting the env and
        # rendering. Left to happen lazily it happens inside the next reset (StepCounter
        # reads the spec there), which then resets the env twice and loses the seeded
        # episode. Compute it now; this is also where VMAS first renders, and fails.
        _ = env.observation_spec
    except Exception as err:  # pyglet raises its own exception types
        raise VideoUnavailable(
            f"VMAS cannot render here ({first_line(err, limit=1000)}); install the GL libraries "
            "(apt-get install libgl1 libglu1-mesa xvfb) and run under 'xvfb-run -a'"
        ) from None
    return env


def rollout_frames(rollout: TensorDictBase, length: int) -> list[np.ndarray]:
    """The frames of the first env's episode in a rollout made with :func:`add_renderer`.

    ``length`` is that episode's length: with partial steps the rollout goes
    on after it ends, and those frames are dropped. The frame after the last
    step is included, so there are ``length + 1`` frames.
    """
    first = rollout[(0,) * (rollout.batch_dims - 1)]
    before = first.get("pixels").tolist()
    after = first.get(("next", "pixels")).tolist()
    return [np.asarray(f) for f in [*before[:length], after[length - 1]]]


def video_format(path: str | Path) -> str:
    """``"mp4"`` or ``"gif"``: what :func:`write_video` will write for ``path``.

    Raises:
        VideoUnavailable: if neither encoder is installed.
    """
    suffix = Path(path).suffix.lower()
    has_ffmpeg = importlib.util.find_spec("imageio_ffmpeg") is not None
    has_pillow = importlib.util.find_spec("PIL") is not None
    if suffix == ".gif":
        if has_pillow:
            return "gif"
        raise VideoUnavailable(f"writing {path} needs Pillow: {VIDEO_EXTRA}")
    if has_ffmpeg:
        return "mp4"
    if has_pillow:
        return "gif"
    raise VideoUnavailable(f"writing {path} needs an encoder: {VIDEO_EXTRA}")


def write_video(path: str | Path, frames: Sequence[np.ndarray], *, fps: int = 20) -> Path:
    """Write RGB ``frames`` (``[H, W, 3]`` uint8) to ``path``; return the path written.

    An mp4 path becomes a ``.gif`` next to it when no mp4 encoder is installed.
    """
    if not frames:
        raise ValueError("no frames to write")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if video_format(path) == "gif":
        from PIL import Image

        path = path.with_suffix(".gif")
        images = [Image.fromarray(np.asarray(f, dtype=np.uint8)) for f in frames]
        images[0].save(
            path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0
        )
        return path
    import imageio_ffmpeg

    height, width = np.asarray(frames[0]).shape[:2]
    writer = imageio_ffmpeg.write_frames(
        str(path),
        (width, height),
        fps=fps,
        codec="libx264",
        pix_fmt_out="yuv420p",
        # Keep VMAS's 700x700: even sizes are all yuv420p needs.
        macro_block_size=2,
    )
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame, dtype=np.uint8))
    writer.close()
    return path
