import csv
import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

from mappo_torchrl.cli.main import main

TINY = [
    "--collector.overlap",  # sync: no worker process to start per test
    "off",
    "--env.num_envs",
    "4",
    "--env.max_steps",
    "10",
    "--collector.frames_per_batch",
    "40",
    "--collector.total_frames",
    "80",
    "--optim.minibatch_size",
    "20",
    "--model.actor_cells",
    "16",
    "--model.critic_cells",
    "16",
    "--no-progress",
]


def test_train_writes_config_metrics_and_status(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["train", "--scenario", "navigation", "--run-dir", str(run_dir), *TINY]) == 0
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["env"]["num_envs"] == 4
    assert config["collector"]["total_frames"] == 80
    with (run_dir / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(float(r["frames"])) for r in rows] == [40, 80]
    for column in (
        "train/episode_return",
        "train/loss_critic",
        "train/entropy",
        "train/kl_approx",
        "train/clip_fraction",
        "train/explained_variance",
        "train/grad_norm_actor",
        "time/fps",
    ):
        assert column in rows[0]
    assert json.loads((run_dir / "status.json").read_text())["status"] == "finished"
    assert "mean episode return over the last 2 iterations" in capsys.readouterr().out


def test_config_file_and_overrides_combine(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("loss:\n  gamma: 0.95\noptim:\n  num_epochs: 1\n")
    run_dir = tmp_path / "run"
    args = ["train", "--config", str(cfg), "--optim.num_epochs", "2", "--run-dir", str(run_dir)]
    assert main([*args, *TINY]) == 0
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["loss"]["gamma"] == 0.95
    assert saved["optim"]["num_epochs"] == 2


def test_finished_run_is_not_overwritten(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["train", "--run-dir", str(run_dir), *TINY]) == 0
    before = (run_dir / "metrics.csv").read_bytes()
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--run-dir", str(run_dir), *TINY])
    assert exit_info.value.code == 2
    assert "already holds a run (status: finished)" in capsys.readouterr().err
    assert (run_dir / "metrics.csv").read_bytes() == before
    assert main(["train", "--run-dir", str(run_dir), "--overwrite", *TINY]) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--collector.total_frames", "0"],
            "--collector.total_frames=0: must be a positive integer",
        ),
        (
            ["--collector.total_frames", "-5"],
            "--collector.total_frames=-5: must be a positive integer",
        ),
        (
            ["--collector.frames_per_batch", "6001"],
            "--collector.frames_per_batch=6001: must be a multiple of env.num_envs (60)",
        ),
        (
            ["--optim.minibatch_size", "7000"],
            "--optim.minibatch_size=7000: must be at most collector.frames_per_batch (6000)",
        ),
        (["--device", "cuda:7"], "--device='cuda:7'"),
        (["--device", "gpu"], "--device='gpu': must be cpu, cuda or cuda:N"),
        (["--scenario", "navigaton"], "Did you mean 'navigation'?"),
        (["--env.num_envs", "lots"], "--env.num_envs='lots': must be an integer"),
        (["--model.activation", "gelu"], "--model.activation='gelu': must be one of tanh, relu"),
        (["--optim.foo", "1"], "unrecognized arguments: --optim.foo"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    run_dir = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--run-dir", str(run_dir), *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert not run_dir.exists()  # nothing written for a rejected command


def test_help_documents_every_option():
    from mappo_torchrl.config import iter_options

    out = subprocess.run(
        [sys.executable, "-m", "mappo_torchrl.cli.main", "train", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for name, _, _ in iter_options():
        assert f"--{name}" in out, name
    top = subprocess.run(
        [sys.executable, "-m", "mappo_torchrl.cli.main", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "train" in top and "scenarios" in top


def test_console_script_is_installed():
    # Where pip put it for this interpreter: the README runs the tests as
    # .venv/bin/python -m pytest, without activating the venv (no .venv/bin on PATH).
    script = Path(sysconfig.get_path("scripts")) / "mappo"
    out = subprocess.run([str(script), "scenarios"], capture_output=True, text=True, check=True)
    assert "navigation" in out.stdout.split()
