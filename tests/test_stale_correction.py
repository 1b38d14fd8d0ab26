"""The decoupled PPO objective for batches collected by weights one update old.

``loss.stale_correction decoupled`` (Hilton et al. 2021) clips the ratio around the
proximal policy (the weights the update starts from) and weights the objective by
pi_prox / pi_behav. Each test computes the formula by hand, or with TorchRL's own
``delay_actor`` loss, on the same numbers.
"""

from __future__ import annotations

import copy

import pytest
import torch
from tensordict import TensorDict
from torchrl.objectives.multiagent import MAPPOLoss

from mappo_torchrl.config import ConfigError
from mappo_torchrl.envs import group_keys
from mappo_torchrl.models import make_actor, make_critic
from mappo_torchrl.objectives import make_loss
from mappo_torchrl.training import Trainer
from tests.conftest import tiny_config

EPS = 0.2


def _loss_and_batch(env):
    torch.manual_seed(0)
    keys = group_keys(env, "agents")
    actor = make_actor(env, "agents", num_cells=16)
    critic = make_critic(env, "agents", num_cells=16)
    loss = make_loss(actor, critic, keys, clip_epsilon=EPS, entropy_coeff=0.0)
    with torch.no_grad():
        data = env.rollout(10, actor)
        loss.value_estimator(data)
    return loss, keys, data.reshape(-1)


def _move(actor, scale: float = 0.05):
    with torch.no_grad():
        for p in actor.parameters():
            p.add_(scale * torch.randn_like(p))
    return actor


def _shifted_actor(loss):
    """A copy of the actor whose weights moved: the "weights the update starts from"."""
    return _move(copy.deepcopy(loss.actor_network))


def _log_prob(actor, data, keys):
    with torch.no_grad():
        return actor.get_dist(data.clone()).log_prob(data[keys.action])


def test_the_loss_is_the_decoupled_objective_written_by_hand(nav_env):
    loss, keys, data = _loss_and_batch(nav_env)
    # Behaviour: the stored log-probs; proximal: another actor's; current: the loss's.
    proximal = _log_prob(_shifted_actor(loss), data, keys)
    data.set(keys.proximal_log_prob, proximal)
    behaviour = data[keys.log_prob]
    current = _log_prob(_move(loss.actor_network, scale=0.3), data, keys)
    for a, b in ((proximal, behaviour), (current, behaviour), (current, proximal)):
        assert (a - b).abs().max() > 0.01  # the three policies differ
    advantage = data[keys.advantage].squeeze(-1)

    r = (current - proximal).exp()
    weight = (proximal - behaviour).exp()
    by_hand = -(weight * torch.min(r * advantage, r.clamp(1 - EPS, 1 + EPS) * advantage))
    out = loss(data)
    torch.testing.assert_close(out["loss_objective"], by_hand.mean(), rtol=1e-5, atol=1e-6)
    # The diagnostics follow the proximal policy too.
    torch.testing.assert_close(out["kl_approx"], (proximal - current).mean(), rtol=1e-4, atol=1e-6)
    log_r = current - proximal
    clipped = (log_r < torch.log1p(torch.tensor(-EPS))) | (log_r > torch.log1p(torch.tensor(EPS)))
    assert 0 < float(out["clip_fraction"]) < 1
    assert float(out["clip_fraction"]) == pytest.approx(float(clipped.float().mean()), abs=1e-3)


@pytest.mark.filterwarnings("ignore:No target network updater")
def test_it_equals_torchrls_delay_actor_loss_with_the_proximal_weights_as_target(nav_env):
    loss, keys, data = _loss_and_batch(nav_env)
    proximal_actor = _shifted_actor(loss)
    data.set(keys.proximal_log_prob, _log_prob(proximal_actor, data, keys))
    _move(loss.actor_network, scale=0.3)  # the current weights, a few steps on
    theirs = MAPPOLoss(
        actor_network=loss.actor_network,
        critic_network=loss.critic_network,
        clip_epsilon=EPS,
        entropy_coeff=0.0,
        normalize_advantage=False,
        delay_actor=True,
    )
    theirs.set_keys(**{k: getattr(loss.tensor_keys, k) for k in ("action", "sample_log_prob")})
    theirs.set_keys(advantage=loss.tensor_keys.advantage, value_target=keys.value_target)
    theirs.set_keys(value=loss.tensor_keys.value, done=keys.done, terminated=keys.terminated)
    # TorchRL's proximal policy: the target weights, here the moved actor's.
    TensorDict.from_module(proximal_actor).data.to_module(theirs.target_actor_network_params)
    ours, mine_plain = loss(data.clone()), loss(data.clone().exclude(keys.proximal_log_prob))
    reference = theirs(data.clone())
    assert float(reference["loss_objective"].detach().abs()) > 1e-3
    torch.testing.assert_close(ours["loss_objective"], reference["loss_objective"])
    # Without the proximal entry the loss is on-policy PPO's, which differs here.
    assert not torch.allclose(mine_plain["loss_objective"], reference["loss_objective"])


def test_a_proximal_policy_equal_to_the_behaviour_policy_is_on_policy_ppo(nav_env):
    loss, keys, data = _loss_and_batch(nav_env)
    with_key = data.clone().set(keys.proximal_log_prob, data[keys.log_prob].clone())
    plain = loss(data.clone())
    loss.zero_grad()
    plain["loss_objective"].backward()
    grads_plain = [p.grad.clone() for p in loss.actor_network.parameters()]
    corrected = loss(with_key)
    loss.zero_grad()
    corrected["loss_objective"].backward()
    torch.testing.assert_close(corrected["loss_objective"], plain["loss_objective"])
    for g, p in zip(grads_plain, loss.actor_network.parameters(), strict=True):
        torch.testing.assert_close(p.grad, g)


def _minibatch_keys(trainer: Trainer) -> list[bool]:
    """For each update, whether its minibatches carried the proximal log-probability."""
    seen = []
    key = trainer.groups["agents"].keys.proximal_log_prob
    minibatches = trainer.minibatches

    def watched(batch):
        for minibatch in minibatches(batch):
            seen.append(key in minibatch.keys(include_nested=True))
            yield minibatch

    trainer.minibatches = watched
    return seen


@pytest.mark.parametrize(
    ("overlap", "correction", "carried"),
    [("off", "decoupled", False), ("on", "decoupled", True), ("on", "none", False)],
)
def test_only_an_overlapped_run_with_the_correction_uses_a_proximal_policy(
    overlap, correction, carried
):
    cfg = tiny_config(collector={"overlap": overlap}, loss={"stale_correction": correction})
    trainer = Trainer(cfg)
    assert trainer.corrects_stale_data is carried
    seen = _minibatch_keys(trainer)
    trainer.train(progress=False)
    assert seen and set(seen) == {carried}


def test_behaviour_kl_is_measured_against_the_proximal_policy():
    trainer = Trainer(tiny_config(collector={"overlap": "on", "total_frames": 120}))
    history = trainer.train(progress=False)
    # The first batch is collected by the weights the first update starts from.
    assert history[0]["train/behaviour_kl"] == pytest.approx(0.0, abs=1e-6)
    assert all(row["train/behaviour_kl"] != 0.0 for row in history[1:])


def test_an_unknown_correction_is_one_line():
    cfg = tiny_config(loss={"stale_correction": "vtrace"})
    with pytest.raises(ConfigError, match=r"loss.stale_correction='vtrace': must be one of"):
        cfg.validate()


@pytest.mark.parametrize(
    "sections",
    [
        {"model": {"recurrent": "gru", "rnn_hidden": 8}, "optim": {"chunk_length": 5}},
        {"env": {"scenario": "simple_tag"}},  # two groups, each with its own loss
        {"perf": {"precision": "bfloat16"}},
        {"perf": {"precision": "float32"}},
    ],
    ids=["recurrent", "two-groups", "bfloat16", "float32"],
)
def test_the_correction_covers_every_kind_of_run(sections):
    cfg = tiny_config(collector={"overlap": "on", "total_frames": 120}, **sections)
    trainer = Trainer(cfg)
    seen = {name: [] for name in trainer.groups}
    minibatches = trainer.minibatches

    def watched(batch):
        for minibatch in minibatches(batch):
            for name, group in trainer.groups.items():
                proximal = minibatch.get(group.keys.proximal_log_prob, None)
                seen[name].append(proximal is not None and bool(proximal.isfinite().all()))
            yield minibatch

    trainer.minibatches = watched
    history = trainer.train(progress=False)
    assert all(seen.values()) and all(all(v) for v in seen.values())
    several = len(trainer.groups) > 1
    for name in trainer.groups:
        key = f"train/{name}/behaviour_kl" if several else "train/behaviour_kl"
        # The first batch was collected by the weights the first update starts from:
        # the proximal log-probabilities computed for the update are the stored ones.
        assert history[0][key] == pytest.approx(0.0, abs=1e-5)
        assert history[-1][key] != 0.0
