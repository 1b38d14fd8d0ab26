import pytest
import torch
import torch.nn.functional as F

from mappo_torchrl.envs import group_keys
from mappo_torchrl.models import make_actor, make_critic
from mappo_torchrl.objectives import make_loss, make_value_norm


def _batch(env, loss, steps=10):
    with torch.no_grad():
        data = env.rollout(steps, loss.actor_network)
        loss.value_estimator(data)
    return data


def _loss(env, **kwargs):
    keys = group_keys(env, "agents")
    value_norm = kwargs.pop("value_norm", None)
    actor = make_actor(env, "agents", num_cells=16)
    critic = make_critic(env, "agents", num_cells=16, value_norm=value_norm)
    return make_loss(actor, critic, keys, value_norm=value_norm, **kwargs)


def test_loss_terms_and_diagnostics(nav_env):
    loss = _loss(nav_env)
    out = loss(_batch(nav_env, loss).reshape(-1))
    for key in (
        "loss_objective",
        "loss_critic",
        "loss_entropy",
        "kl_approx",
        "clip_fraction",
        "explained_variance",
        "entropy",
    ):
        assert key in out.keys(), key
    assert out["loss_objective"].shape == ()


def test_advantage_has_per_agent_shape_and_is_standardised_per_agent(nav_env):
    loss = _loss(nav_env)
    data = _batch(nav_env, loss)
    adv = data["agents", "advantage"]
    assert adv.shape == (4, 10, 3, 1)
    per_agent_mean = adv.mean(dim=(0, 1))
    per_agent_std = adv.std(dim=(0, 1), correction=0)
    assert torch.allclose(per_agent_mean, torch.zeros_like(per_agent_mean), atol=1e-5)
    assert torch.allclose(per_agent_std, torch.ones_like(per_agent_std), atol=1e-4)


def test_advantage_normalisation_can_be_turned_off(nav_env):
    loss = _loss(nav_env, advantage_norm="none")
    data = _batch(nav_env, loss)
    value_target = data["agents", "value_target"]
    value = data["agents", "state_value"]
    # Unnormalised GAE: advantage = value_target - value exactly.
    assert torch.allclose(data["agents", "advantage"], value_target - value, atol=1e-5)


def test_zero_entropy_coefficient_drops_the_entropy_term(nav_env):
    loss = _loss(nav_env, entropy_coeff=0.0)
    out = loss(_batch(nav_env, loss).reshape(-1))
    assert "loss_entropy" not in out.keys()


def _critic_loss_by_hand(loss, data, distance):
    pred = loss.critic_network(data.clone())["agents", "state_value"]
    return distance(pred, data["agents", "value_target"]).mean()


@pytest.mark.parametrize("delta", [0.05, 10.0])
def test_huber_delta_matches_hand_computation(nav_env, delta):
    loss = _loss(nav_env, critic_loss="huber", huber_delta=delta, critic_coeff=0.5)
    data = _batch(nav_env, loss).reshape(-1)
    # Spread the targets so that both branches of the Huber loss are used.
    data["agents", "value_target"] = torch.randn_like(data["agents", "value_target"]) * 0.1
    expected = 0.5 * _critic_loss_by_hand(
        loss, data, lambda p, t: F.huber_loss(p, t, delta=delta, reduction="none")
    )
    assert torch.allclose(loss(data)["loss_critic"], expected, rtol=1e-5)


@pytest.mark.parametrize(
    ("name", "distance"),
    [
        ("l2", lambda p, t: (p - t) ** 2),
        ("l1", lambda p, t: (p - t).abs()),
        ("smooth_l1", lambda p, t: F.smooth_l1_loss(p, t, reduction="none")),
    ],
)
def test_other_critic_losses_match_hand_computation(nav_env, name, distance):
    loss = _loss(nav_env, critic_loss=name)
    data = _batch(nav_env, loss).reshape(-1)
    expected = _critic_loss_by_hand(loss, data, distance)
    assert torch.allclose(loss(data)["loss_critic"], expected, rtol=1e-5)


def test_clipped_value_loss_is_pessimistic(nav_env):
    plain = _loss(nav_env, critic_loss="l2")
    clipped = _loss(nav_env, critic_loss="l2", clip_value=True, clip_epsilon=0.2)
    clipped.critic_network.load_state_dict(plain.critic_network.state_dict())
    clipped.actor_network.load_state_dict(plain.actor_network.state_dict())
    data = _batch(nav_env, plain).reshape(-1)
    # Old values far from the current prediction: the clipped branch dominates.
    data["agents", "state_value"] = data["agents", "state_value"] + 5.0
    out = clipped(data)
    assert out["value_clip_fraction"] == 1.0
    assert out["loss_critic"] > plain(data)["loss_critic"]


def test_value_norm_statistics_follow_the_returns(nav_env):
    value_norm = make_value_norm("popart", beta=0.9)
    loss = _loss(nav_env, value_norm=value_norm)
    data = _batch(nav_env, loss).reshape(-1)
    data["agents", "value_target"] = torch.randn_like(data["agents", "value_target"]) + 50.0
    for _ in range(30):
        loss(data)
    mean, _ = value_norm.running_stats()
    assert mean.item() == pytest.approx(50.0, abs=1.0)


def test_value_norm_state_dict_round_trip():
    for kind in ("popart", "running"):
        source = make_value_norm(kind)
        for _ in range(5):
            source.update(torch.randn(64, 1) * 3 + 7)
        target = make_value_norm(kind)
        target.load_state_dict(source.state_dict())
        x = torch.randn(8, 1)
        assert torch.equal(source.normalize(x), target.normalize(x))


def test_unknown_critic_loss_is_rejected(nav_env):
    with pytest.raises(ValueError, match="critic_loss='mse': must be one of"):
        _loss(nav_env, critic_loss="mse")


def test_make_loss_defaults_are_the_config_defaults():
    import inspect

    from mappo_torchrl.config import LossConfig

    config = LossConfig()
    params = inspect.signature(make_loss).parameters
    # value_norm is the normaliser object in make_loss, its name in the config.
    shared = [name for name in params if hasattr(config, name) and name != "value_norm"]
    assert len(shared) >= 10
    for name in shared:
        assert params[name].default == getattr(config, name), name
