"""Continuing and reusing runs: --resume with more frames, harmless options, --init-from."""

import math
import shutil

import pytest
import torch
import yaml
from conftest import tiny_config

from mappo_torchrl.cli.main import main
from mappo_torchrl.config import load_config, load_run_config
from mappo_torchrl.config.io import ADDED_OPTIONS, load_yaml
from mappo_torchrl.models.mlp import resolve_precision
from mappo_torchrl.runs.checkpoint import (
    CheckpointError,
    checkpoint_files,
    latest_checkpoint,
    load_checkpoint,
    load_weights,
    save_checkpoint,
)
from mappo_torchrl.runs.directory import RunDir, read_metrics, read_status
from mappo_torchrl.runs.resume import resume_session
from mappo_torchrl.runs.session import StopRequested, TrainingSession
from mappo_torchrl.training import Trainer
from mappo_torchrl.training.trainer import resolve_auto

TINY = [
    "--collector.overlap", "off",  # sync: no worker process to start per test
    "--env.num_envs", "4", "--env.max_steps", "10", "--collector.frames_per_batch", "40",
    "--optim.minibatch_size", "20", "--model.actor_cells", "16", "--model.critic_cells", "16",
    "--eval.interval", "1", "--eval.episodes", "2", "--threads", "1", "--no-progress",
]  # fmt: skip


def train(run_dir, *args):
    return main(["train", "--run-dir", str(run_dir), *TINY, *args])


def _one_line_error(capsys, *argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    return err


def _learning(rows):
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]


def test_extending_a_finished_run_equals_starting_with_more_frames(tmp_path, capsys):
    short, long = tmp_path / "short", tmp_path / "long"
    assert train(short, "--collector.total_frames", "80") == 0
    assert read_status(short)["status"] == "finished"
    # Harmless options may change on the way.
    extend = ["--collector.total_frames", "160", "--threads", "1", "--update-threads", "1"]
    assert main(["train", "--resume", str(short), *extend, "--no-progress"]) == 0
    assert train(long, "--collector.total_frames", "160") == 0
    assert "resuming" in capsys.readouterr().out
    assert _learning(read_metrics(short)) == _learning(read_metrics(long))
    assert load_config(short / "config.yaml").collector.total_frames == 160
    status = read_status(short)
    assert (status["status"], status["frames"]) == ("finished", 160)
    a, b = load_checkpoint(latest_checkpoint(short)), load_checkpoint(latest_checkpoint(long))
    assert a["iteration"] == b["iteration"] == 4
    for key, value in a["groups"]["agents"]["loss"].items():
        assert torch.equal(value, b["groups"]["agents"]["loss"][key]), key


def test_harmless_options_are_allowed_on_resume(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    assert train(run_dir, "--collector.total_frames", "40") == 0
    monkeypatch.setenv("WANDB_MODE", "offline")
    args = ["--collector.total_frames", "80", "--logger", "tensorboard", "--eval.interval", "2"]
    assert main(["train", "--resume", str(run_dir), *args, "--no-progress"]) == 0
    assert list((run_dir / "tensorboard").rglob("events.out.tfevents.*"))
    assert load_config(run_dir / "config.yaml").logger.backend == "tensorboard"


def test_finished_run_says_how_to_extend_it(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert train(run_dir, "--collector.total_frames", "40") == 0
    out = capsys.readouterr().out
    assert "mean episode return over the last iteration: " in out  # not "last 1 iterations"
    err = _one_line_error(capsys, "train", "--resume", str(run_dir))
    assert (
        "the run has finished (40 frames); extend it with a larger --collector.total_frames" in err
    )
    err = _one_line_error(capsys, "train", "--resume", str(run_dir), "--collector.total_frames=40")
    assert "the run has finished (40 frames)" in err


def test_learning_options_are_refused_on_resume_in_one_line(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert train(run_dir, "--collector.total_frames", "40") == 0
    before = (run_dir / "config.yaml").read_text()
    err = _one_line_error(
        capsys, "train", "--resume", str(run_dir), "--loss.gamma", "0.5", "--scenario", "balance"
    )
    assert err.startswith("mappo train: error: --resume continues a run with its saved config;")
    assert "drop --loss.gamma, --scenario" in err
    assert "--collector.total_frames, --collector.stall_timeout_s, --device, --threads" in err
    assert "--optim.actor_lr" in err and "--from-checkpoint" in err
    assert (run_dir / "config.yaml").read_text() == before


def test_lr_decay_cannot_be_extended_exactly_and_says_so(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert train(run_dir, "--collector.total_frames", "80", "--optim.lr_decay", "true") == 0
    before = (run_dir / "metrics.csv").read_bytes()
    err = _one_line_error(
        capsys, "train", "--resume", str(run_dir), "--collector.total_frames", "160"
    )
    assert "collector.total_frames=160: with optim.lr_decay the learning rate decays" in err
    assert "--init-from" in err
    assert (run_dir / "metrics.csv").read_bytes() == before
    assert load_config(run_dir / "config.yaml").collector.total_frames == 80


def test_init_from_copies_networks_and_value_norm_but_not_optimisers_or_coefficients(tmp_path):
    source = tmp_path / "source"
    assert train(source, "--collector.total_frames", "80", "--loss.value_norm", "running") == 0
    state = load_checkpoint(latest_checkpoint(source))
    cfg = tiny_config(loss={"value_norm": "running", "gamma": 0.5})
    trainer = Trainer(cfg)
    load_weights(trainer, state)
    group = trainer.groups["agents"]
    saved = state["groups"]["agents"]["loss"]
    ours = group.loss.state_dict()
    assert saved["value_norm.count"] > 0
    for key in saved:
        if key.startswith(("actor_network.", "critic_network.", "value_norm.")):
            assert torch.equal(ours[key], saved[key]), key
    assert float(group.loss.value_estimator.gamma) == 0.5  # this run's own hyper-parameters
    assert not group.actor_optim.state  # fresh optimisers
    assert trainer.iteration == 0


def test_init_from_starts_a_new_run_and_refuses_networks_that_do_not_fit(tmp_path, capsys):
    source, tuned, bad = tmp_path / "source", tmp_path / "tuned", tmp_path / "bad"
    assert train(source, "--collector.total_frames", "40") == 0
    assert train(tuned, "--collector.total_frames", "40", "--init-from", str(source)) == 0
    assert f"from the weights of {source}" in capsys.readouterr().out
    assert [p.name for p in checkpoint_files(tuned)] == ["ckpt-000001.pt"]
    err = _one_line_error(
        capsys, "train", "--run-dir", str(bad), *TINY, "--collector.total_frames", "40",
        "--model.actor_cells", "32", "--init-from", str(latest_checkpoint(source)),
    )  # fmt: skip
    assert "--init-from=" in err and "the networks do not fit this run (size mismatch" in err
    assert not bad.exists()
    err = _one_line_error(capsys, "train", "--run-dir", str(bad), "--init-from", str(tmp_path))
    assert err.startswith("mappo train: error: --init-from: ") and "no checkpoint" in err


def test_load_weights_names_a_group_mismatch(tmp_path):
    source = tmp_path / "source"
    assert train(source, "--collector.total_frames", "40") == 0
    state = load_checkpoint(latest_checkpoint(source))
    trainer = Trainer(tiny_config(env={"scenario": "simple_tag"}))
    with pytest.raises(CheckpointError, match=r"agent groups \['agents'\] do not match"):
        load_weights(trainer, state)


def _as_if_saved_before(options, run_dir) -> None:
    """Drop ``options`` from a run's config.yaml and checkpoints, as an older version wrote them."""

    def drop(config: dict) -> None:
        for name in options:
            section, key = name.split(".")
            del config[section][key]

    config = load_yaml((run_dir / "config.yaml").read_text())
    drop(config)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    for path in checkpoint_files(run_dir):
        state = load_checkpoint(path)
        drop(state["config"])
        save_checkpoint(state, path)


def test_a_run_saved_before_an_option_existed_resumes_as_it_ran(tmp_path, capsys):
    old, straight = tmp_path / "old", tmp_path / "straight"
    # Before perf.precision and collector.overlap, runs were float32 and collected in-process.
    assert train(old, "--collector.total_frames", "80", "--perf.precision", "float32") == 0
    _as_if_saved_before(ADDED_OPTIONS, old)
    assert load_run_config(old / "config.yaml").perf.precision == "float32"
    assert load_config(old / "config.yaml").perf.precision == "auto"  # a --config file: defaults
    assert main(["train", "--resume", str(old), "--collector.total_frames", "160"]) == 0
    assert train(straight, "--collector.total_frames", "160", "--perf.precision", "float32") == 0
    saved = load_config(old / "config.yaml")
    assert (saved.perf.precision, saved.collector.overlap) == ("float32", "off")
    assert _learning(read_metrics(old)) == _learning(read_metrics(straight))


def test_saved_configs_keep_what_they_say_and_fill_only_the_added_options():
    from mappo_torchrl.config import from_dict, from_saved_dict

    old = from_saved_dict({"env": {"scenario": "balance"}, "perf": {"fused_adam": False}})
    assert (old.perf.precision, old.collector.overlap, old.perf.fused_adam) == (
        "float32",
        "off",
        False,
    )
    new = from_saved_dict({"perf": {"precision": "bfloat16"}, "collector": {"overlap": "auto"}})
    assert (new.perf.precision, new.collector.overlap) == ("bfloat16", "auto")
    # A config file given by the user (not a run's) keeps today's defaults.
    assert (from_dict({}).perf.precision, from_dict({}).collector.overlap) == ("auto", "auto")


def test_a_run_records_what_auto_resolved_to(tmp_path):
    run_dir = tmp_path / "run"
    args = ["--run-dir", str(run_dir), *TINY, "--collector.total_frames", "40"]
    assert main(["train", *[a for a in args if a not in ("--collector.overlap", "off")]]) == 0
    here = resolve_precision("auto", "cpu")
    saved = load_run_config(run_dir / "config.yaml")
    # mappo train runs from a guarded main: auto overlap is on for a CPU run of VMAS.
    assert (saved.perf.precision, saved.collector.overlap) == (here, "on")
    checkpoint = load_checkpoint(latest_checkpoint(run_dir))["config"]
    assert (checkpoint["perf"]["precision"], checkpoint["collector"]["overlap"]) == (here, "on")


def test_a_bfloat16_run_resumed_on_a_cpu_without_it_asks_for_a_choice(
    tmp_path, capsys, monkeypatch
):
    run_dir = tmp_path / "run"
    assert train(run_dir, "--collector.total_frames", "40", "--perf.precision", "bfloat16") == 0
    monkeypatch.setattr("mappo_torchrl.runs.resume.cpu_has_bfloat16", lambda: False)
    resume = ["train", "--resume", str(run_dir), "--collector.total_frames", "80"]
    err = _one_line_error(capsys, *resume)
    assert "perf.precision='bfloat16': this run computed its hidden layers in bfloat16" in err
    assert "--perf.precision float32" in err
    assert read_status(run_dir)["frames"] == 40  # nothing changed
    assert main([*resume, "--perf.precision", "float32", "--no-progress"]) == 0
    assert load_run_config(run_dir / "config.yaml").perf.precision == "float32"
    history = (run_dir / "history.jsonl").read_text()
    assert '"perf.precision": ["bfloat16", "float32"]' in history


def test_a_checkpoint_that_recorded_auto_still_resumes(tmp_path):
    run_dir = tmp_path / "run"
    assert train(run_dir, "--collector.total_frames", "40") == 0
    for path in checkpoint_files(run_dir):  # as the previous version wrote them
        state = load_checkpoint(path)
        state["config"]["perf"]["precision"] = "auto"
        save_checkpoint(state, path)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config["perf"]["precision"] = "auto"
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    assert main(["train", "--resume", str(run_dir), "--collector.total_frames", "80"]) == 0
    assert read_status(run_dir)["frames"] == 80


def _stopped_after(run_dir, iterations: int) -> None:
    """A tiny run of 6 iterations stopped (as by Ctrl-C) after ``iterations``."""
    cfg = resolve_auto(
        tiny_config(collector={"total_frames": 240}, eval={"interval": 2, "episodes": 2})
    )
    session = TrainingSession(Trainer(cfg), RunDir.create(run_dir, cfg))

    real = session.after_iteration

    def after_iteration(metrics):
        if session.trainer.iteration == iterations:
            session.request_stop()
        real(metrics)

    session.after_iteration = after_iteration
    with pytest.raises(StopRequested):
        session.train(progress=False)
    RunDir(run_dir).write_status("interrupted")


def test_resuming_from_python_is_the_command_line_resume(tmp_path, capsys):
    by_cli, by_python = tmp_path / "cli", tmp_path / "python"
    _stopped_after(by_cli, 3)
    shutil.copytree(by_cli, by_python)
    before = read_metrics(by_python)[-1]["time/elapsed_s"]
    assert main(["train", "--resume", str(by_cli), "--no-progress"]) == 0
    session = resume_session(by_python)
    session.train(progress=False)
    assert repr(_learning(read_metrics(by_python))) == repr(_learning(read_metrics(by_cli)))
    for run_dir in (by_cli, by_python):
        status = read_status(run_dir)
        assert (status["status"], status["frames"], status["iteration"]) == ("finished", 240, 6)
    assert read_status(by_python)["final_eval_return"] == read_status(by_cli)["final_eval_return"]
    # The wall time continues across the resume: the plot's time axis never goes back.
    elapsed = [r["time/elapsed_s"] for r in read_metrics(by_python)]
    assert elapsed == sorted(elapsed) and elapsed[3] > before
    assert session.final == {k: v for k, v in read_status(by_python).items() if k in session.final}


def test_resuming_with_the_frames_already_done_ends_with_the_final_evaluation(tmp_path):
    run_dir = tmp_path / "run"
    _stopped_after(run_dir, 3)  # evaluations every 2 iterations: none at iteration 3
    assert math.isnan(read_metrics(run_dir)[-1]["eval/episode_return"])
    assert main(["train", "--resume", str(run_dir), "--collector.total_frames", "120"]) == 0
    rows = read_metrics(run_dir)
    assert [r["iteration"] for r in rows] == [1, 2, 3]
    assert not math.isnan(rows[-1]["eval/episode_return"])
    status = read_status(run_dir)
    assert status["status"] == "finished"
    assert status["final_eval_return"] == rows[-1]["eval/episode_return"]
