"""Each MAPPO implementation detail is a switch; each test shows the switch's effect."""

import math
import statistics

import pytest
import torch
from conftest import tiny_config
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.modules import MaskedCategorical

from mappo_torchrl.config import PRESETS, ConfigError, RunConfig, apply_preset
from mappo_torchrl.envs import group_keys
from mappo_torchrl.envs.toy import TargetPickingEnv
from mappo_torchrl.models import make_actor, make_critic
from mappo_torchrl.models.critic import CriticInput
from mappo_torchrl.objectives import make_loss
from mappo_torchrl.training import Trainer


@pytest.fixture
def toy_env():
    return TargetPickingEnv(num_envs=8, n_agents=3, n_actions=5, max_steps=6, seed=0)


def _toy_loss(env, **kwargs):
    keys = group_keys(env, "agents")
    actor = make_actor(env, "agents", num_cells=16)
    critic = make_critic(env, "agents", num_cells=16, **kwargs.pop("critic", {}))
    return make_loss(actor, critic, keys, **kwargs)


def _toy_batch(env, loss, steps=12):
    with torch.no_grad():
        data = env.rollout(steps, loss.actor_network, break_when_any_done=False)
        loss.value_estimator(data)
    return data


# -- action masks --------------------------------------------------------------


def test_masked_actions_are_never_sampled(toy_env):
    actor = make_actor(toy_env, "agents", num_cells=16)
    td = toy_env.reset()
    mask = td["agents", "action_mask"]
    with torch.no_grad(), set_exploration_type(ExplorationType.RANDOM):
        draws = torch.stack([actor(td.clone())["agents", "action"] for _ in range(2000)])
    # draws: [2000, envs, agents]; mask: [envs, agents, actions]
    chosen_available = mask.expand(2000, *mask.shape).gather(-1, draws.unsqueeze(-1))
    assert chosen_available.all()
    # Every available action does get sampled.
    seen = torch.zeros_like(mask)
    seen.scatter_(-1, draws.permute(1, 2, 0), True)
    assert torch.equal(seen, mask)


def test_masked_entropy_is_over_available_actions_only():
    logits = torch.tensor([[1.0, 2.0, 0.5, -1.0]])
    mask = torch.tensor([[True, False, True, True]])
    dist = MaskedCategorical(logits=logits, mask=mask)
    p = torch.softmax(logits[mask], dim=-1)
    expected = -(p * p.log()).sum()
    assert torch.allclose(dist.entropy(), expected)


def test_loss_uses_the_stored_action_mask(toy_env):
    loss = _toy_loss(toy_env)
    data = _toy_batch(toy_env, loss).reshape(-1)
    dist = loss.actor_network.get_dist(data.clone())
    unavailable = ~data["agents", "action_mask"]
    # The distribution the loss scores actions with gives masked actions no mass.
    assert torch.all(dist.probs[unavailable] == 0)


# -- death masking ------------------------------------------------------------------


def test_inactive_agents_get_zero_gradient(toy_env):
    loss = _toy_loss(toy_env)
    data = _toy_batch(toy_env, loss).reshape(-1)
    active = data["agents", "mask"]
    assert (~active).any() and active.any()
    captured = {}
    mlp = loss.actor_network.module[0].module

    def keep_logits(module, inputs, output):
        output.retain_grad()
        captured["logits"] = output

    handle = mlp.register_forward_hook(keep_logits)
    out = loss(data)
    handle.remove()
    (out["loss_objective"] + out["loss_entropy"]).backward()
    grad = captured["logits"].grad
    assert torch.count_nonzero(grad[~active]) == 0
    assert torch.count_nonzero(grad[active]) > 0


def test_inactive_agents_are_left_out_of_the_critic_loss(toy_env):
    loss = _toy_loss(toy_env, critic_loss="l2")
    data = _toy_batch(toy_env, loss).reshape(-1)
    active = data["agents", "mask"]
    changed = data.clone()
    # Any value target for inactive agents leaves the critic loss unchanged.
    changed["agents", "value_target"][~active] = 1e3
    assert torch.equal(loss(data)["loss_critic"], loss(changed)["loss_critic"])


def test_dead_agent_critic_input_is_zeros_plus_id():
    shaper = CriticInput(3, from_state=False, centralized=True, with_id=False, death_mask=True)
    obs = torch.randn(5, 3, 4)
    active = torch.tensor([True, False, True]).expand(5, 3)
    x = shaper(obs, active)
    assert x.shape == (5, 3, 3 * 4 + 3)
    assert torch.equal(x[:, 1], torch.tensor([0.0] * 12 + [0.0, 1.0, 0.0]).expand(5, 15))
    assert torch.equal(x[:, 0, :12], obs.flatten(-2))


def test_death_masking_switch(toy_env):
    td = toy_env.reset()
    td["agents", "mask"][:, 1] = False
    masked = make_critic(toy_env, "agents", num_cells=16, death_masking=True)
    plain = make_critic(toy_env, "agents", num_cells=16, death_masking=False)
    before_m, before_p = masked(td.clone()), plain(td.clone())
    td["agents", "observation"][:, 0] += 1.0
    after_m, after_p = masked(td.clone()), plain(td.clone())
    key = ("agents", "state_value")
    # The inactive agent's value ignores the observations when death masking is on ...
    assert torch.equal(before_m[key][:, 1], after_m[key][:, 1])
    # ... and follows them when it is off.
    assert not torch.allclose(before_p[key][:, 1], after_p[key][:, 1])


def test_advantage_statistics_exclude_inactive_agents(toy_env):
    loss = _toy_loss(toy_env)
    data = _toy_batch(toy_env, loss)
    adv = data["agents", "advantage"].squeeze(-1)
    active = data["agents", "mask"]
    for agent in range(3):
        values = adv[..., agent][active[..., agent]]
        assert values.mean().abs() < 1e-5
        assert values.std(correction=0) == pytest.approx(1.0, abs=1e-4)


# -- critic inputs -------------------------------------------------------------------


def test_state_critic_reads_the_global_state(toy_env):
    critic = make_critic(toy_env, "agents", critic_input="state", num_cells=16)
    td = toy_env.reset()
    before = critic(td.clone())["agents", "state_value"]
    td["state"] = td["state"] + 1.0
    assert not torch.allclose(before, critic(td.clone())["agents", "state_value"])
    td2 = toy_env.reset()
    td2["agents", "observation"] = td2["agents", "observation"] + 1.0  # not read
    v1 = critic(td2.clone())["agents", "state_value"]
    td2["agents", "observation"] = td2["agents", "observation"] - 1.0
    assert torch.equal(v1, critic(td2)["agents", "state_value"])


def test_agent_specific_state_differs_between_agents(toy_env):
    td = toy_env.reset()
    state_only = make_critic(
        toy_env, "agents", critic_input="state", num_cells=16, death_masking=False
    )
    with_id = make_critic(
        toy_env, "agents", critic_input="agent_state", num_cells=16, death_masking=False
    )
    same = state_only(td.clone())["agents", "state_value"]
    assert torch.allclose(same[:, 0], same[:, 1])  # shared params, same input
    per_agent = with_id(td.clone())["agents", "state_value"]
    assert not torch.allclose(per_agent[:, 0], per_agent[:, 1])


# -- networks and optimisation ---------------------------------------------------------


def test_relu_activation_switch(nav_env):
    actor = make_actor(nav_env, "agents", num_cells=16, activation="relu")
    kinds = {type(m).__name__ for m in actor.modules()}
    assert "ReLU" in kinds and "Tanh" not in kinds


def test_separate_optimisers_with_their_own_learning_rates(tiny):
    tiny.optim.actor_lr, tiny.optim.critic_lr, tiny.optim.adam_eps = 1e-3, 2e-3, 1e-7
    group = Trainer(tiny).groups["agents"]
    actor_ids = {id(p) for p in group.actor.parameters()}
    critic_ids = {id(p) for p in group.critic.parameters()}
    assert {id(p) for p in group.actor_optim.param_groups[0]["params"]} == actor_ids
    assert {id(p) for p in group.critic_optim.param_groups[0]["params"]} == critic_ids
    assert group.actor_optim.param_groups[0]["lr"] == 1e-3
    assert group.critic_optim.param_groups[0]["lr"] == 2e-3
    assert group.actor_optim.param_groups[0]["eps"] == 1e-7


def test_gradient_clipping_limits_the_update():
    def actor_step_size(max_grad_norm):
        cfg = tiny_config(optim={"max_grad_norm": max_grad_norm, "num_epochs": 1})
        cfg.collector.total_frames = 40
        trainer = Trainer(cfg)
        before = [p.detach().clone() for p in trainer.groups["agents"].actor.parameters()]
        trainer.train(progress=False)
        after = trainer.groups["agents"].actor.parameters()
        return sum((a - b).abs().sum().item() for a, b in zip(after, before, strict=True))

    assert actor_step_size(1e-9) < 0.01 * actor_step_size(1e9)


def test_num_minibatches_sets_the_minibatch_size_and_step_count():
    cfg = tiny_config(optim={"num_minibatches": 4, "num_epochs": 3})
    cfg.collector.total_frames = 40
    trainer = Trainer(cfg)
    assert trainer.minibatch_size == 10
    trainer.train(progress=False)
    state = trainer.groups["agents"].actor_optim.state
    assert {int(s["step"]) for s in state.values()} == {3 * 4}


# -- groups ----------------------------------------------------------------------------


def test_one_group_per_agent_gives_each_agent_its_own_learner(tiny):
    tiny.env.group_map = "one_group_per_agent"
    trainer = Trainer(tiny)
    assert sorted(trainer.groups) == ["agent_0", "agent_1", "agent_2"]
    history = trainer.train(progress=False)
    assert math.isfinite(history[-1]["train/agent_2/loss_objective"])


# -- presets ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_apply_and_train(name, tmp_path):
    cfg = apply_preset(RunConfig(), name)
    expected = PRESETS[name]["overrides"]
    assert cfg.optim.num_epochs == expected["optim.num_epochs"]
    assert cfg.loss.gamma == expected["loss.gamma"]
    # Shrink the budget, keep the preset's algorithmic choices.
    cfg.env.num_envs, cfg.env.max_steps = 4, 10
    cfg.collector.frames_per_batch = cfg.collector.total_frames = 40
    cfg.optim.minibatch_size, cfg.optim.num_epochs = 20, 1
    history = Trainer(cfg).train(progress=False)
    assert math.isfinite(history[-1]["train/loss_critic"])


def test_paper_preset_switches_on_the_paper_details():
    cfg = apply_preset(RunConfig(), "paper")
    assert cfg.loss.value_norm == "popart" and cfg.loss.critic_loss == "huber"
    assert cfg.loss.huber_delta == 10.0 and cfg.loss.clip_value
    assert cfg.model.orthogonal_init and cfg.model.feature_norm
    assert cfg.model.activation == "relu" and cfg.optim.num_minibatches == 1


def test_unknown_preset():
    with pytest.raises(ConfigError, match="preset='papers': must be one of"):
        apply_preset(RunConfig(), "papers")


# -- learning with masks and early-finishing agents ---------------------------------------


@pytest.mark.slow
def test_masked_discrete_task_with_early_finishers_learns():
    """Random picks score about 0.76 per agent; the best policy scores 0.9."""
    cfg = tiny_config(loss={"entropy_coeff": 0.01})
    cfg.collector.frames_per_batch = 256
    cfg.collector.total_frames = 256 * 30
    cfg.optim.minibatch_size = 64
    cfg.optim.num_epochs = 4
    cfg.model.actor_cells = cfg.model.critic_cells = 32
    env = TargetPickingEnv(num_envs=32, n_agents=3, n_actions=5, max_steps=8, seed=0)
    history = Trainer(cfg, env=env).train(progress=False)
    first = history[0]["train/episode_return"]
    last = statistics.fmean(m["train/episode_return"] for m in history[-3:])
    assert last > first + 0.08, (first, last)
    assert last > 0.85


@pytest.mark.slow
def test_discrete_vmas_navigation_learns():
    cfg = RunConfig()
    cfg.env.continuous_actions = False
    cfg.collector.total_frames = 90_000
    cfg.model.actor_cells = cfg.model.critic_cells = 64
    cfg.threads = 1
    history = Trainer(cfg).train(progress=False)
    first = history[0]["train/episode_return"]
    last = statistics.fmean(m["train/episode_return"] for m in history[-3:])
    assert last > first + 1.0, (first, last)
