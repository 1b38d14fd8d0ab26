import importlib.util

import pytest

from mappo_torchrl.cli.main import main
from mappo_torchrl.training import loggers

TINY = [
    "--env.num_envs", "4",
    "--env.max_steps", "10",
    "--collector.frames_per_batch", "40",
    "--collector.total_frames", "80",
    "--optim.minibatch_size", "20",
    "--model.actor_cells", "16",
    "--model.critic_cells", "16",
    "--eval.interval", "1",
    "--eval.episodes", "2",
    "--threads", "1",
    "--no-progress",
]  # fmt: skip


def test_tensorboard_event_files_hold_train_and_eval_scalars(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = tmp_path / "run"
    assert main(["train", "--run-dir", str(run_dir), "--logger", "tensorboard", *TINY]) == 0
    event_dirs = {p.parent for p in (run_dir / "tensorboard").rglob("events.out.tfevents.*")}
    assert len(event_dirs) == 1
    events = EventAccumulator(str(event_dirs.pop()))
    events.Reload()
    scalars = events.Tags()["scalars"]
    for tag in ("train/episode_return", "train/loss_critic", "eval/episode_return", "time/fps"):
        assert tag in scalars, tag
        assert [e.step for e in events.Scalars(tag)] == [40, 80]  # the step is the frame count
    assert "eval/episode_length" in scalars


@pytest.mark.parametrize("backend", ["tensorboard", "wandb", "mlflow"])
def test_missing_backend_is_one_line_naming_the_extra_before_anything_starts(
    tmp_path, capsys, monkeypatch, backend
):
    module = loggers.BACKEND_PACKAGES[backend][0]
    real = importlib.util.find_spec
    monkeypatch.setattr(
        loggers.importlib.util, "find_spec", lambda name: None if name == module else real(name)
    )
    run_dir = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--run-dir", str(run_dir), "--logger", backend, *TINY])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"logger.backend='{backend}'" in err
    assert f"pip install 'mappo_torchrl[{backend}]'" in err
    assert len(err.strip().splitlines()) == 1
    assert not run_dir.exists()


def test_unknown_backend_names_the_choices(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--run-dir", str(tmp_path / "run"), "--logger", "neptune", *TINY])
    assert exit_info.value.code == 2
    assert "must be one of csv, tensorboard, wandb, mlflow" in capsys.readouterr().err


@pytest.mark.parametrize("backend", ["wandb", "mlflow"])
def test_optional_backend_writes_its_files(tmp_path, backend, monkeypatch):
    pytest.importorskip(backend, reason=f"the {backend} extra is not installed")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_dir = tmp_path / "run"
    assert main(["train", "--run-dir", str(run_dir), "--logger", backend, *TINY]) == 0
    folder = {"wandb": "wandb", "mlflow": "mlruns"}[backend]
    assert any((run_dir / folder).rglob("*")), f"nothing under {folder}/"
