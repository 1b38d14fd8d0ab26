"""Shared fixtures: every budget shrunk so that unit tests run in seconds."""

from __future__ import annotations

import pytest
import torch

from mappo_torchrl.config import RunConfig
from mappo_torchrl.envs import make_env


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def tiny_config(**sections) -> RunConfig:
    """A RunConfig with small networks and two short iterations."""
    cfg = RunConfig()
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
