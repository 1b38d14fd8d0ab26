import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import render_launcher

from mappo_torchrl.viz import video
from mappo_torchrl.viz.video import VideoUnavailable, write_video


@pytest.fixture(scope="module")
def launcher():
    """How to start a process that can render VMAS: directly, under xvfb-run, or skip."""
    prefix, why_not = render_launcher()
    if prefix is None:
        pytest.skip(why_not)
    return prefix


def probe(path) -> dict:
    """Codec, size and decoded frame count of a video (ffprobe, else imageio-ffmpeg)."""
    if shutil.which("ffprobe"):
        out = subprocess.run(
            [
                "ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
                "-show_entries", "stream=codec_name,width,height,nb_read_frames",
                "-of", "json", str(path),
            ],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        stream = json.loads(out)["streams"][0]
        return {
            "codec": stream["codec_name"],
            "size": (stream["width"], stream["height"]),
            "frames": int(stream["nb_read_frames"]),
        }
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    frames = sum(1 for _ in reader)
    return {"codec": meta["codec"], "size": tuple(meta["size"]), "frames": frames}


def _frames(n=7, size=(64, 48)):
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (*size[::-1], 3), dtype=np.uint8) for _ in range(n)]


def test_mp4_has_every_frame_at_full_size(tmp_path):
    path = write_video(tmp_path / "v.mp4", _frames(size=(70, 50)))
    assert path.suffix == ".mp4"
    assert probe(path) == {"codec": "h264", "size": (70, 50), "frames": 7}


def test_gif_when_no_mp4_encoder(tmp_path, monkeypatch):
    from PIL import Image

    real = video.importlib.util.find_spec
    monkeypatch.setattr(
        video.importlib.util,
        "find_spec",
        lambda name: None if name == "imageio_ffmpeg" else real(name),
    )
    path = write_video(tmp_path / "v.mp4", _frames())
    assert path == tmp_path / "v.gif"
    with Image.open(path) as gif:
        assert gif.n_frames == 7


def test_no_encoder_at_all_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setattr(video.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(VideoUnavailable, match=r"mappo_torchrl\[video\]"):
        write_video(tmp_path / "v.mp4", _frames())


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A short navigation run (3 iterations) with its final checkpoint."""
    from mappo_torchrl.cli.main import main

    path = tmp_path_factory.mktemp("video") / "run"
    args = [
        "train", "--run-dir", str(path), "--env.num_envs", "4", "--env.max_steps", "10",
        "--collector.frames_per_batch", "40", "--collector.total_frames", "120",
        "--optim.minibatch_size", "20", "--model.actor_cells", "16",
        "--model.critic_cells", "16", "--eval.episodes", "2", "--threads", "1",
        "--no-progress",
    ]  # fmt: skip
    assert main(args) == 0
    return path


def test_mappo_eval_video_is_a_playable_mp4(launcher, trained_run, tmp_path):
    out = tmp_path / "nav.mp4"
    done = subprocess.run(
        [
            *launcher, sys.executable, "-m", "mappo_torchrl.cli.main", "eval", str(trained_run),
            "--episodes", "2", "--video", str(out),
        ],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"video of episode 1 -> {out}" in done.stdout
    # The untrained-length episode runs to max_steps=10: 10 steps, 11 frames.
    assert probe(out) == {"codec": "h264", "size": (700, 700), "frames": 11}
    # Rendering does not change the episodes: the same table as without --video.
    plain = subprocess.run(
        [sys.executable, "-m", "mappo_torchrl.cli.main", "eval", str(trained_run),
         "--episodes", "2"],
        capture_output=True, text=True, timeout=600, check=True,
    ).stdout  # fmt: skip
    assert _table(done.stdout) == _table(plain)


#: ``mappo`` on a machine where VMAS cannot render: no EGL and no X display.
NO_RENDERER = """
import sys
import pyglet.lib
real = pyglet.lib.load_library
def load_library(*names, **kwargs):
    if "EGL" in names:
        raise ImportError("no EGL here")
    return real(*names, **kwargs)
pyglet.lib.load_library = load_library
from mappo_torchrl.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_mappo_eval_video_without_a_renderer_is_one_line(trained_run, tmp_path):
    """VMAS first renders when the renderer's spec is computed: that must be caught too."""
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    out = tmp_path / "nav.mp4"
    done = subprocess.run(
        [sys.executable, "-c", NO_RENDERER, "eval", str(trained_run), "--episodes", "2",
         "--video", str(out)],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("mappo eval: error: --video: VMAS cannot render here")
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not out.exists()


def _table(out: str) -> list[str]:
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("group"))
    return lines[start : start + 7]


SPEC_RESETS_THE_ENV = """
import torch
from torchrl.record import PixelRenderTransform
from mappo_torchrl.envs import make_env
from mappo_torchrl.viz.video import add_renderer

def start(env):
    env.set_seed(7)
    torch.manual_seed(0)  # the random actions
    return env.rollout(3, break_when_any_done=False)["next", "agents", "observation"]

plain = start(make_env("navigation", num_envs=2, seed=0))
raw = make_env("navigation", num_envs=2, seed=0)
raw.append_transform(PixelRenderTransform(mode="rgb_array"))
ours = add_renderer(make_env("navigation", num_envs=2, seed=0))
print("torchrl", torch.equal(plain, start(raw)), "ours", torch.equal(plain, start(ours)))
"""


def test_torchrl_pixel_render_spec_resets_the_env_inside_a_reset(launcher):
    """torchrl 0.14 bug: computing PixelRenderTransform's spec resets the env.

    Computed lazily, inside the next reset, it resets the env twice: the seeded
    first episode is lost. add_renderer computes the spec up front.
    """
    done = subprocess.run(
        [*launcher, sys.executable, "-c", SPEC_RESETS_THE_ENV],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-4:] == ["torchrl", "False", "ours", "True"]


def test_training_writes_a_video_every_k_evaluations(launcher, tmp_path):
    run_dir = tmp_path / "run"
    done = subprocess.run(
        [
            *launcher, sys.executable, "-m", "mappo_torchrl.cli.main", "train",
            "--run-dir", str(run_dir), "--env.num_envs", "4", "--env.max_steps", "5",
            "--collector.frames_per_batch", "20", "--collector.total_frames", "80",
            "--optim.minibatch_size", "20", "--model.actor_cells", "16",
            "--model.critic_cells", "16", "--eval.interval", "1", "--eval.episodes", "2",
            "--eval.video_interval", "2", "--threads", "1", "--no-progress",
        ],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    videos = sorted(p.name for p in (run_dir / "videos").iterdir())
    assert videos == ["eval-iter000002.mp4", "eval-iter000004.mp4"]
    assert probe(run_dir / "videos" / videos[0])["frames"] == 6


def test_training_video_without_a_renderer_fails_before_the_run_starts(tmp_path):
    """Not at the first evaluation video, in the middle of training."""
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    run_dir = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-c", NO_RENDERER, "train", "--env.num_envs", "2",
         "--collector.frames_per_batch", "20", "--collector.total_frames", "40",
         "--optim.minibatch_size", "10", "--eval.video_interval", "1",
         "--run-dir", str(run_dir), "--no-progress"],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(
        "mappo train: error: eval.video_interval=1: VMAS cannot render here"
    ), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not run_dir.exists()
