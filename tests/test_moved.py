"""Old module paths and names still work after the moves, each with a FutureWarning."""

from __future__ import annotations

import importlib
import sys

import pytest

from mappo_torchrl._moved import MOVED


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
