import math

import pytest
import torch
from conftest import tiny_config
from tensordict.nn import TensorDictModule

from mappo_torchrl.envs import make_env
from mappo_torchrl.rng import rng_state
from mappo_torchrl.runs.directory import RunDir
from mappo_torchrl.runs.evaluation import Evaluation, is_competitive, run_episodes
from mappo_torchrl.runs.session import TrainingSession
from mappo_torchrl.training import Trainer


class _GoToGoal(torch.nn.Module):
    """A scripted navigation policy: episodes end early, each at its own step."""

    def forward(self, observation):
        velocity, to_goal = observation[..., 2:4], -observation[..., 4:6]
        return (3 * to_goal - velocity).clamp(-1, 1)


def _scripted():
    return TensorDictModule(
        _GoToGoal(), in_keys=[("agents", "observation")], out_keys=[("agents", "action")]
    )


def test_each_env_plays_one_whole_episode():
    env = make_env("navigation", num_envs=6, max_steps=60, seed=3)
    env.set_seed(5)
    results = run_episodes(env, _scripted(), max_steps=60)

    # The same episodes by hand: auto-resetting rollout, each env's first episode.
    env.set_seed(5)
    with torch.no_grad():
        rollout = env.rollout(60, _scripted(), break_when_any_done=False)
    done = rollout["next", "done"].squeeze(-1)
    first_end = done.float().argmax(-1)
    returns = rollout["next", "agents", "episode_reward"][torch.arange(6), first_end].squeeze(-1)

    assert results.lengths.tolist() == (first_end + 1).tolist()
    assert len(set(results.lengths.tolist())) > 1  # they do end at different steps
    assert results.lengths.max() < 60
    assert torch.equal(results.returns["agents"], returns)


def test_metrics_are_mean_and_std_over_episodes():
    env = make_env("navigation", num_envs=6, max_steps=60, seed=3)
    results = run_episodes(env, _scripted(), max_steps=60)
    metrics = results.metrics()
    per_episode = results.returns["agents"].mean(-1)
    assert metrics["eval/episode_return"] == pytest.approx(float(per_episode.mean()))
    assert metrics["eval/episode_return_std"] == pytest.approx(float(per_episode.std()))
    assert metrics["eval/team_return"] == pytest.approx(
        float(results.returns["agents"].sum(-1).mean())
    )
    assert metrics["eval/episode_length"] == pytest.approx(float(results.lengths.float().mean()))


def test_evaluation_is_repeatable_and_moves_no_random_stream():
    trainer = Trainer(tiny_config())

    def make(num_envs, seed):
        return make_env("navigation", num_envs=num_envs, max_steps=10, seed=seed)

    evaluation = Evaluation(make, trainer.policy, episodes=3, max_steps=10, seed=7)
    before = rng_state()
    first = evaluation()
    after = rng_state()
    assert torch.equal(before["torch"], after["torch"])
    assert torch.equal(before["vmas"][0], after["vmas"][0])
    second = evaluation()
    for key in first:
        if not key.startswith("time/"):
            assert first[key] == second[key], key


def test_stochastic_evaluation_differs_from_deterministic():
    trainer = Trainer(tiny_config())

    def make(num_envs, seed):
        return make_env("navigation", num_envs=num_envs, max_steps=10, seed=seed)

    options = {"episodes": 3, "max_steps": 10, "seed": 7}
    mode = Evaluation(make, trainer.policy, **options).run()
    sampled = Evaluation(make, trainer.policy, deterministic=False, **options).run()
    assert not torch.equal(mode.returns["agents"], sampled.returns["agents"])


def test_two_groups_get_their_own_metrics():
    env = make_env("simple_tag", num_envs=2, max_steps=5, seed=0)
    trainer = Trainer(tiny_config(env={"scenario": "simple_tag", "max_steps": 5}))
    metrics = run_episodes(env, trainer.policy, max_steps=5).metrics()
    for group in ("adversary", "agent"):
        assert math.isfinite(metrics[f"eval/{group}/episode_return"])


@pytest.mark.parametrize("scenario", ["navigation", "simple_tag"])  # simple_tag: 2 modes
def test_evaluating_during_training_does_not_change_training(tmp_path, scenario):
    def train_metrics(eval_interval, name):
        cfg = tiny_config(collector={"total_frames": 160}, env={"scenario": scenario})
        cfg.eval.interval = eval_interval
        history = TrainingSession(Trainer(cfg), RunDir.create(tmp_path / name, cfg)).train(
            progress=False
        )
        return history, [{k: v for k, v in m.items() if k.startswith("train/")} for m in history]

    with_eval, trained_with_eval = train_metrics(1, "with")
    without, trained_without = train_metrics(0, "without")
    assert trained_with_eval == trained_without
    assert all("eval/episode_return" in m for m in with_eval)
    stochastic = "eval/stochastic/episode_return"
    assert all((stochastic in m) == (scenario == "simple_tag") for m in with_eval)
    # eval.interval=0 still evaluates once, after the last iteration.
    assert [("eval/episode_return" in m) for m in without] == [False, False, False, True]


def _tag_evaluation(trainer, **options):
    # 50 steps: long enough for some catches, so that the two modes' returns differ.
    def make(num_envs, seed):
        return make_env("simple_tag", num_envs=num_envs, max_steps=50, seed=seed)

    return Evaluation(make, trainer.policy, episodes=3, max_steps=50, seed=1000, **options)


def test_competing_groups_also_get_the_stochastic_return():
    trainer = Trainer(tiny_config(env={"scenario": "simple_tag", "max_steps": 50}))
    evaluation = _tag_evaluation(trainer)
    before = rng_state()
    metrics = evaluation()
    after = rng_state()
    assert torch.equal(before["torch"], after["torch"])
    assert torch.equal(before["vmas"][0], after["vmas"][0])
    assert not torch.equal(
        evaluation.last.returns["agent"], evaluation.last_stochastic.returns["agent"]
    )

    # The same episodes as a stochastic evaluation of its own: same seed, same count.
    sampled = _tag_evaluation(trainer, deterministic=False)()
    for group in ("adversary", "agent"):
        stochastic = metrics[f"eval/stochastic/{group}/episode_return"]
        assert stochastic == sampled[f"eval/{group}/episode_return"]
    assert metrics["eval/stochastic/episode_return"] == sampled["eval/episode_return"]
    assert not any(key.startswith("eval/stochastic/") for key in sampled)


def test_one_group_plays_once():
    trainer = Trainer(tiny_config())

    def make(num_envs, seed):
        return make_env("navigation", num_envs=num_envs, max_steps=10, seed=seed)

    evaluation = Evaluation(make, trainer.policy, episodes=3, max_steps=10, seed=7)
    metrics = evaluation()
    assert evaluation.last_stochastic is None
    assert not any(key.startswith("eval/stochastic/") for key in metrics)


def test_competitive_means_several_groups():
    assert is_competitive(make_env("simple_tag", num_envs=1))
    assert not is_competitive(make_env("navigation", num_envs=1))
