import io

import pytest
import torch

from mappo_torchrl.envs import make_env
from mappo_torchrl.envs.vmas_state import EnvStateError, load_vmas_state, vmas_env, vmas_state
from mappo_torchrl.rng import load_rng_state, rng_state


def _steps(env, td, n):
    """n random steps with auto-reset; the outputs and the next tensordict."""
    outs = []
    for _ in range(n):
        td = env.rand_action(td.copy())
        out, td = env.step_and_maybe_reset(td)
        outs.append(out.clone())
    return outs, td


def _saved(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize(
    "scenario",
    [
        "navigation",
        "balance",
        # An agent's goal is a landmark drawn at random: restored as a reference.
        "simple_reference",
        # Dicts keyed by agent objects, filled lazily.
        "football",
        # Expanded tensors that cannot be written in place.
        "sampling",
    ],
)
def test_fresh_env_continues_exactly_like_the_saved_one(scenario):
    env = make_env(scenario, num_envs=3, max_steps=6, seed=0)
    _, td = _steps(env, env.reset(), 8)  # past a reset, so episodes are mid-way
    state, streams, next_td = _saved(vmas_state(env)), rng_state(), td.clone()
    expected, _ = _steps(env, td, 12)

    fresh = make_env(scenario, num_envs=3, max_steps=6, seed=123)
    load_vmas_state(fresh, state)
    load_rng_state(streams)
    got, _ = _steps(fresh, next_td, 12)
    for a, b in zip(expected, got, strict=True):
        assert (a == b).all()


def test_rolled_back_env_repeats_itself(nav_env):
    _, td = _steps(nav_env, nav_env.reset(), 3)
    state, streams = vmas_state(nav_env), rng_state()
    first, _ = _steps(nav_env, td.clone(), 5)
    load_vmas_state(nav_env, state)
    load_rng_state(streams)
    second, _ = _steps(nav_env, td.clone(), 5)
    assert all((a == b).all() for a, b in zip(first, second, strict=True))


@pytest.mark.parametrize(
    ("other", "message"),
    [
        ({"scenario_kwargs": {"n_agents": 4}}, "does not fit"),
        ({"num_envs": 5}, "has shape"),
        ({"scenario": "balance"}, "does not fit"),
    ],
)
def test_state_of_another_env_is_refused_and_nothing_changes(other, message):
    options = {"scenario": "navigation", "num_envs": 4, "max_steps": 10, "seed": 0}
    source = make_env(**{**options, **other})
    target = make_env(**options)
    before = vmas_state(target)
    with pytest.raises(EnvStateError, match=message):
        load_vmas_state(target, vmas_state(source))
    after = vmas_state(target)
    assert before["leaves"] == after["leaves"]
    assert all(torch.equal(a, b) for a, b in zip(before["tensors"], after["tensors"], strict=True))


def test_non_vmas_env_is_refused():
    class NotVmas:
        base_env = object()

    with pytest.raises(EnvStateError, match="not a VMAS env"):
        vmas_env(NotVmas())
