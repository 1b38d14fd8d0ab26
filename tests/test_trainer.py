import math
import statistics

import pytest
import torch
from conftest import tiny_config

from mappo_torchrl.envs import make_env
from mappo_torchrl.training import Trainer
from mappo_torchrl.training.threads import available_cores, threads_during


def test_one_run_returns_metrics_per_iteration(tiny):
    history = Trainer(tiny).train(progress=False)
    assert [m["iteration"] for m in history] == [1, 2]
    assert [m["frames"] for m in history] == [40, 80]
    for key in (
        "train/episode_return",
        "train/loss_objective",
        "train/loss_critic",
        "train/entropy",
        "train/kl_approx",
        "train/clip_fraction",
        "train/explained_variance",
        "train/grad_norm_actor",
        "train/grad_norm_critic",
        "time/fps",
    ):
        assert math.isfinite(history[-1][key]), key


def test_training_changes_actor_and_critic_parameters(tiny):
    trainer = Trainer(tiny)
    group = trainer.groups["agents"]
    actor_before = [p.detach().clone() for p in group.actor.parameters()]
    critic_before = [p.detach().clone() for p in group.critic.parameters()]
    trainer.train(progress=False)
    actor_after = list(group.actor.parameters())
    critic_after = list(group.critic.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(actor_before, actor_after, strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(critic_before, critic_after, strict=True))


def test_same_seed_same_metrics(tiny):
    def losses():
        return [m["train/loss_objective"] for m in Trainer(tiny).train(progress=False)]

    assert losses() == losses()


def test_two_groups_train_side_by_side():
    cfg = tiny_config(env={"scenario": "simple_tag"})
    trainer = Trainer(cfg)
    assert set(trainer.groups) == {"adversary", "agent"}
    history = trainer.train(progress=False)
    for group in ("adversary", "agent"):
        assert math.isfinite(history[-1][f"train/{group}/loss_objective"])


def test_group_map_that_splits_agents_trains(tiny):
    env = make_env(
        "navigation",
        num_envs=4,
        max_steps=10,
        seed=0,
        group_map={"left": ["agent_0"], "right": ["agent_1", "agent_2"]},
    )
    trainer = Trainer(tiny, env=env)
    assert trainer.groups["right"].keys.n_agents == 2
    history = trainer.train(progress=False)
    assert math.isfinite(history[-1]["train/right/loss_critic"])


def test_discrete_actions_train():
    cfg = tiny_config(env={"continuous_actions": False})
    history = Trainer(cfg).train(progress=False)
    assert math.isfinite(history[-1]["train/loss_objective"])


def test_learning_rate_decays_linearly_to_zero():
    cfg = tiny_config(optim={"lr_decay": True})
    cfg.collector.total_frames = 160
    history = Trainer(cfg).train(progress=False)
    lrs = [m["train/actor_lr"] for m in history]
    assert lrs == pytest.approx([5e-4 * (1 - i / 4) for i in range(1, 5)])


@pytest.mark.slow
def test_navigation_return_improves_within_budget():
    """Fixed seed, 90k frames (about a minute on 2 CPU cores): the return climbs clearly."""
    cfg = tiny_config()
    cfg.env.num_envs = 60
    cfg.env.max_steps = 100
    cfg.collector.frames_per_batch = 6_000
    cfg.collector.total_frames = 90_000
    cfg.optim.minibatch_size = 400
    cfg.optim.num_epochs = 4
    cfg.model.actor_cells = cfg.model.critic_cells = 64
    history = Trainer(cfg).train(progress=False)
    first = history[0]["train/episode_return"]
    last = statistics.fmean(m["train/episode_return"] for m in history[-3:])
    assert last > first + 1.0, (first, last)


# -- threads: the update gets its own count -------------------------------------------


def test_update_runs_with_update_threads_and_collection_with_threads(tiny):
    tiny.threads, tiny.update_threads = 1, 2
    trainer = Trainer(tiny)
    seen = {"update": [], "collect": []}
    step, policy_forward = trainer.compiled_update_step, trainer.policy.forward

    def recording_step(minibatch):
        seen["update"].append(torch.get_num_threads())
        return step(minibatch)

    def recording_forward(*args, **kwargs):
        seen["collect"].append(torch.get_num_threads())
        return policy_forward(*args, **kwargs)

    trainer.compiled_update_step = recording_step
    trainer.policy.forward = recording_forward
    trainer.train(progress=False)
    assert seen["update"] and set(seen["update"]) == {min(2, available_cores())}
    assert seen["collect"] and set(seen["collect"]) == {1}
    assert torch.get_num_threads() == 1


def test_update_threads_never_exceed_the_available_cores():
    with threads_during(10_000, torch.device("cpu")):
        assert torch.get_num_threads() == available_cores()
    with threads_during(0, torch.device("cpu")):
        assert torch.get_num_threads() == available_cores()
    assert torch.get_num_threads() == 1


def test_update_threads_leave_the_losses_as_they_were():
    """More threads only split the matrix products; the numbers stay within float noise."""
    runs = []
    for update_threads in (1, 2):
        cfg = tiny_config()
        cfg.threads, cfg.update_threads = 1, update_threads
        runs.append(Trainer(cfg).train(progress=False))
    for one, two in zip(*runs, strict=True):
        for key in ("train/loss_objective", "train/loss_critic", "train/grad_norm_actor"):
            assert one[key] == pytest.approx(two[key], rel=1e-4, abs=1e-6), key
