"""Partial resets of VMAS envs: the same states as VMAS's own per-env reset, the other envs
untouched."""

from __future__ import annotations

import pytest
import torch
from torchrl.envs.libs.vmas import VmasEnv

from mappo_torchrl.benchmark.grid import SUITE
from mappo_torchrl.envs import make_env
from mappo_torchrl.envs.resets import LoopResetVmasEnv, reset_envs_where
from mappo_torchrl.envs.vmas_state import vmas_env
from mappo_torchrl.rng import load_rng_state, rng_state

NUM_ENVS = 6
DUE = torch.tensor([True, False, False, True, False, True])


def _stepped_env(scenario: str, steps: int = 3):
    env = make_env(scenario, num_envs=NUM_ENVS, seed=0)
    torch.manual_seed(0)
    td = env.reset()
    for _ in range(steps):
        _, td = env.step_and_maybe_reset(env.rand_action(td))
    return env


def _entity_states(env) -> dict[str, torch.Tensor]:
    out = {}
    for entity in vmas_env(env).world.entities:
        for name in ("pos", "vel", "rot", "ang_vel"):
            value = getattr(entity.state, name, None)
            if value is not None:
                out[f"{entity.name}.{name}"] = value.clone()
    return out


def _observations(env) -> torch.Tensor:
    obs, *_ = vmas_env(env).get_from_scenario(
        get_observations=True, get_rewards=False, get_infos=False, get_dones=False
    )
    return torch.stack(obs, 1)


@pytest.mark.parametrize("scenario", SUITE)
def test_reset_states_are_vmas_per_env_reset_states_for_the_same_seed(scenario):
    env = _stepped_env(scenario)
    before, obs_before = _entity_states(env), _observations(env)
    rng = rng_state()
    reset_envs_where(vmas_env(env), DUE)
    ours, obs_ours = _entity_states(env), _observations(env)

    # VMAS's own per-env resets, from the same random state, on a twin env.
    twin = _stepped_env(scenario)
    load_rng_state(rng)
    for index in DUE.nonzero().flatten().tolist():
        vmas_env(twin).reset_at(index, return_observations=False)
    theirs, obs_theirs = _entity_states(twin), _observations(twin)

    for name in before:
        assert torch.equal(ours[name], theirs[name]), name
        assert torch.equal(ours[name][~DUE], before[name][~DUE]), name
    assert torch.equal(obs_ours, obs_theirs)
    assert torch.equal(obs_ours[~DUE], obs_before[~DUE])
    assert torch.equal(vmas_env(env).steps, vmas_env(twin).steps)
    assert (vmas_env(env).steps[DUE] == 0).all()
    assert rng_state()["vmas"][0].equal(vmas_env(twin).vmas_random_state[0])


@pytest.mark.parametrize("scenario", ["balance", "navigation"])
def test_rollouts_with_early_ends_match_torchrl_vmasenv_step_for_step(scenario):
    """Random actions end balance episodes early: many partial resets, the same data."""
    rollouts = []
    for cls in (LoopResetVmasEnv, VmasEnv):
        env = cls(scenario, num_envs=NUM_ENVS, max_steps=20, seed=0)
        torch.manual_seed(0)
        rollouts.append(env.rollout(60, break_when_any_done=False))
    ours, theirs = rollouts
    assert ours["next", "done"].any(-1).sum() > 0  # episodes did end
    assert (ours == theirs).all()


def test_make_env_uses_the_cheaper_resets():
    assert isinstance(make_env("navigation", num_envs=2, seed=0).base_env, LoopResetVmasEnv)
