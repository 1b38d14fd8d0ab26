"""Shared fixtures: every budget shrunk so that unit tests run in seconds."""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys

import pytest
import torch

from mappo_torchrl.config import RunConfig
from mappo_torchrl.envs import make_env


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def tiny_config(**sections) -> RunConfig:
    """A RunConfig with small networks and two short iterations, collected in this process."""
    cfg = RunConfig()
    cfg.collector.overlap = "off"  # sync: no worker process to start per test
    cfg.env.num_envs = 4
    cfg.env.max_steps = 10
    cfg.collector.frames_per_batch = 40
    cfg.collector.total_frames = 80
    cfg.optim.minibatch_size = 20
    cfg.optim.num_epochs = 2
    cfg.model.actor_cells = cfg.model.critic_cells = 16
    for section, values in sections.items():
        target = getattr(cfg, section)
        for key, value in values.items():
            setattr(target, key, value)
    return cfg


@pytest.fixture
def tiny() -> RunConfig:
    return tiny_config()


@pytest.fixture
def nav_env():
    return make_env("navigation", num_envs=4, max_steps=10, seed=0)


RENDER_ONE_FRAME = """
from mappo_torchrl.envs import make_env
frame = make_env("navigation", num_envs=1, seed=0).render(mode="rgb_array")
assert frame.shape == (700, 700, 3), frame.shape
"""


@functools.cache
def render_launcher() -> tuple[list[str] | None, str]:
    """How to start a process that can render VMAS here, found by rendering one frame.

    Returns ``([], "")`` when a plain process can (EGL or a display),
    ``(["xvfb-run", "-a"], "")`` when it needs a virtual display, and
    ``(None, why)`` when neither works.
    """
    tried = []
    for prefix in ([], ["xvfb-run", "-a"]):
        if prefix and shutil.which(prefix[0]) is None:
            tried.append("xvfb-run is not installed")
            continue
        done = subprocess.run(
            [*prefix, sys.executable, "-c", RENDER_ONE_FRAME],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode == 0:
            return prefix, ""
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        tried.append(f"{' '.join(prefix) or 'headless'}: {last}")
    return None, (
        "no renderer for VMAS on this machine (apt-get install xvfb libgl1 libglu1-mesa): "
        + "; ".join(tried)
    )
