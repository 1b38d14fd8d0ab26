"""Old module paths and names still work after the moves, each with a FutureWarning."""

from __future__ import annotations

import importlib
import sys

import pytest
from conftest import tiny_config
from tensordict import TensorDict

from mappo_torchrl._moved import MOVED
from mappo_torchrl.data.collector import env_rows
from mappo_torchrl.training import Trainer


@pytest.mark.parametrize("old", MOVED)
def test_an_old_module_path_gives_the_new_modules_names(old):
    sys.modules.pop(old, None)  # imported by an earlier test: import it afresh
    with pytest.warns(FutureWarning, match=old.replace(".", r"\.")):
        module = importlib.import_module(old)
    for target in MOVED[old]:
        new = importlib.import_module(target)
        public = [n for n in vars(new) if not n.startswith("_")]
        assert public
        assert all(getattr(module, n) is getattr(new, n) for n in public)


def test_make_run_env_is_make_env_from_config():
    import mappo_torchrl.training as training
    from mappo_torchrl.envs import make_env_from_config

    with pytest.warns(FutureWarning, match="make_env_from_config"):
        assert training.make_run_env is make_env_from_config


def test_training_run_is_training_session():
    from mappo_torchrl.runs import session

    with pytest.warns(FutureWarning, match="TrainingSession"):
        assert session.TrainingRun is session.TrainingSession


def test_the_training_package_still_exports_what_it_exported():
    import mappo_torchrl.training as training

    assert set(training.__all__) >= {
        "GroupLearner",
        "Trainer",
        "finished_episode_returns",
        "make_group_learner",
        "mean_episode_return",
        "seed_everything",
        "set_threads",
    }


def test_trainer_update_warns_and_steps_as_the_loop_does():
    cfg = tiny_config()
    cfg.collector.total_frames = cfg.collector.frames_per_batch  # one iteration
    looped = Trainer(cfg)
    [loop_metrics] = looped.train(progress=False)
    by_hand = Trainer(cfg)  # same seed: the same first batch and minibatches
    batch = env_rows(next(iter(by_hand.collector)))
    by_hand.collector.shutdown()
    with pytest.warns(FutureWarning, match="folded into Trainer.iterations"):
        metrics = by_hand.update(batch)
    assert metrics["train/loss_objective"] == loop_metrics["train/loss_objective"]
    for a, b in zip(by_hand.groups.values(), looped.groups.values(), strict=True):
        assert (TensorDict.from_module(a.actor) == TensorDict.from_module(b.actor)).all()
