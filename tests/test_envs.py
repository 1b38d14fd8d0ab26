import pytest
import torch

from mappo_torchrl.envs import group_keys, make_env, track_episode_returns, vmas_scenarios


def test_make_env_layout(nav_env):
    assert nav_env.group_map == {"agents": ["agent_0", "agent_1", "agent_2"]}
    keys = group_keys(nav_env, "agents")
    assert keys.n_agents == 3
    assert keys.reward == ("agents", "reward")
    # VMAS done flags are the team's, at the root.
    assert keys.done == "done"
    data = nav_env.rollout(5)
    assert data.batch_size == (4, 5)
    assert data["next", "agents", "reward"].shape == (4, 5, 3, 1)
    assert data["next", "done"].shape == (4, 5, 1)


def test_episode_return_is_the_running_sum_of_rewards(nav_env):
    data = nav_env.rollout(6)
    rewards = data["next", "agents", "reward"]
    assert torch.allclose(data["next", "agents", "episode_reward"], rewards.cumsum(1), atol=1e-5)


def test_unknown_scenario_lists_names_and_suggests():
    with pytest.raises(ValueError) as err:
        make_env("navigaton", num_envs=2)
    message = str(err.value)
    assert "Did you mean 'navigation'?" in message
    assert "balance" in message and "sampling" in message


def test_scenario_list_has_main_mpe_and_debug_scenarios():
    names = vmas_scenarios()
    assert {"navigation", "balance", "simple_spread", "goal"} <= set(names)


def test_scenario_kwargs_are_passed_through():
    env = make_env("navigation", num_envs=2, scenario_kwargs={"n_agents": 5})
    assert len(env.group_map["agents"]) == 5


def test_discrete_actions():
    env = make_env("navigation", num_envs=2, continuous_actions=False)
    spec = env.full_action_spec_unbatched["agents", "action"]
    assert spec.space.n == 9


def test_two_groups_each_get_keys():
    env = make_env("simple_tag", num_envs=2)
    assert set(env.group_map) == {"adversary", "agent"}
    adversary = group_keys(env, "adversary")
    assert adversary.n_agents == 3
    assert adversary.episode_reward == ("adversary", "episode_reward")
    data = env.rollout(3)
    assert data["next", "agent", "episode_reward"].shape == (2, 3, 1, 1)


def test_custom_group_map_splits_agents():
    env = make_env(
        "navigation",
        num_envs=2,
        group_map={"left": ["agent_0"], "right": ["agent_1", "agent_2"]},
    )
    assert group_keys(env, "right").n_agents == 2
    assert env.rollout(2)["next", "right", "episode_reward"].shape == (2, 2, 2, 1)


def test_unknown_group_is_a_clear_error(nav_env):
    with pytest.raises(ValueError, match="group='robots': not in the env's groups"):
        group_keys(nav_env, "robots")


def test_track_episode_returns_on_a_plain_torchrl_env():
    from torchrl.envs.libs.vmas import VmasEnv

    base = VmasEnv("balance", num_envs=2)
    env = track_episode_returns(base)
    assert ("agents", "episode_reward") in env.full_observation_spec.keys(True, True)
