import io
import random

import numpy as np
import torch

from mappo_torchrl.envs import make_env
from mappo_torchrl.rng import isolated_rng, load_rng_state, rng_state


def _draws():
    return (torch.rand(3), np.random.rand(3), random.random())


def test_state_round_trips_through_a_weights_only_file():
    buffer = io.BytesIO()
    torch.save(rng_state(), buffer)
    first = _draws()
    buffer.seek(0)
    load_rng_state(torch.load(buffer, weights_only=True))
    second = _draws()
    assert torch.equal(first[0], second[0])
    assert np.array_equal(first[1], second[1])
    assert first[2] == second[2]


def test_isolated_block_leaves_every_stream_where_it_was():
    saved = rng_state()
    with isolated_rng():
        _draws()
        make_env("navigation", num_envs=2, seed=99)  # seeds VMAS's shared streams
    expected = _draws()
    load_rng_state(saved)
    assert torch.equal(expected[0], _draws()[0])


def _reset_positions(env):
    td = env.reset()
    return td["agents", "observation"][..., :2].clone()


def test_vmas_envs_share_one_random_stream_so_building_a_second_moves_the_first():
    """VMAS keeps its random state in a class attribute shared by all its envs.

    Building (seeding) an evaluation env therefore changes the resets of the
    training env: this is why evaluation runs inside isolated_rng.
    """
    train = make_env("navigation", num_envs=2, seed=0)
    saved = rng_state()
    undisturbed = _reset_positions(train)

    load_rng_state(saved)
    make_env("navigation", num_envs=2, seed=1)
    disturbed = _reset_positions(train)
    assert not torch.equal(undisturbed, disturbed)

    load_rng_state(saved)
    with isolated_rng():
        make_env("navigation", num_envs=2, seed=1)
    assert torch.equal(undisturbed, _reset_positions(train))
