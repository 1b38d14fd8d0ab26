import csv
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import tiny_config

from mappo_torchrl.cli.main import main
from mappo_torchrl.runs.checkpoint import (
    CheckpointError,
    checkpoint_files,
    load_checkpoint,
    load_trainer_state,
    save_checkpoint,
    trainer_state,
)
from mappo_torchrl.runs.directory import RunDir, read_status
from mappo_torchrl.runs.session import StopRequested, TrainingSession
from mappo_torchrl.training import Trainer

# 6 iterations of 40 frames, evaluation and a checkpoint every 2.
TINY = [
    "--collector.overlap", "off",  # sync: no worker process to start per test
    "--env.num_envs", "4",
    "--env.max_steps", "10",
    "--collector.frames_per_batch", "40",
    "--collector.total_frames", "240",
    "--optim.minibatch_size", "20",
    "--optim.num_epochs", "2",
    "--model.actor_cells", "16",
    "--model.critic_cells", "16",
    "--eval.interval", "2",
    "--eval.episodes", "3",
    "--checkpoint.interval", "2",
    "--threads", "1",
    "--no-progress",
]  # fmt: skip

# Runs `mappo` with a hook after iteration N's callbacks (metrics logged, checkpoint
# written if due): print a marker, then do what argv[1] says (sleep or SIGINT).
HOOKED_MAPPO = """
import os, signal, sys, time
from mappo_torchrl.runs import session
at, action = int(sys.argv[1]), sys.argv[2]
original = session.TrainingSession.after_iteration
def hooked(self, metrics):
    if action == "sigint" and self.trainer.iteration == at:
        os.kill(os.getpid(), signal.SIGINT)
    original(self, metrics)
    if action == "sleep" and self.trainer.iteration == at:
        print("ITERATION-DONE", flush=True)
        time.sleep(300)
session.TrainingSession.after_iteration = hooked
from mappo_torchrl.cli.main import main
sys.exit(main(sys.argv[3:]))
"""


def _comparable_rows(run_dir: Path) -> list[dict[str, str]]:
    """metrics.csv as text, without the wall-clock columns."""
    with (run_dir / "metrics.csv").open(newline="") as f:
        return [
            {k: v for k, v in r.items() if not k.startswith("time/")} for r in csv.DictReader(f)
        ]


def test_run_killed_with_sigkill_resumes_bit_for_bit(tmp_path, capsys):
    killed = tmp_path / "killed"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            HOOKED_MAPPO,
            "5",
            "sleep",
            "train",
            "--run-dir",
            str(killed),
            *TINY,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = []
    for line in child.stdout:  # ends early only if the child dies on its own
        output.append(line)
        if "ITERATION-DONE" in line:
            break
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL, "".join(output)
    # Iteration 5 was logged, its checkpoint was not due: resume goes back to 4.
    assert [p.name for p in checkpoint_files(killed)] == ["ckpt-000002.pt", "ckpt-000004.pt"]
    assert len(_comparable_rows(killed)) == 5
    assert read_status(killed)["status"] == "running"

    assert main(["train", "--resume", str(killed), "--no-progress"]) == 0
    assert "resuming" in capsys.readouterr().out
    straight = tmp_path / "straight"
    assert main(["train", "--run-dir", str(straight), *TINY]) == 0

    resumed_rows, straight_rows = _comparable_rows(killed), _comparable_rows(straight)
    assert [r["iteration"] for r in resumed_rows] == ["1", "2", "3", "4", "5", "6"]
    assert "eval/episode_return" in resumed_rows[5]
    assert resumed_rows == straight_rows  # every non-time metric, as exact text (repr)
    assert read_status(killed)["status"] == "finished"
    resumed, uninterrupted = (load_checkpoint(checkpoint_files(d)[-1]) for d in (killed, straight))
    for name, value in uninterrupted["groups"]["agents"]["loss"].items():
        assert torch.equal(resumed["groups"]["agents"]["loss"][name], value), name

    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:  # a finished run is never touched again
        main(["train", "--resume", str(straight)])
    assert exit_info.value.code == 2
    assert "the run has finished (" in capsys.readouterr().err  # and says how to extend it


def test_ctrl_c_stops_after_a_checkpoint_and_the_run_resumes(tmp_path):
    run_dir = tmp_path / "run"
    args = ["train", "--run-dir", str(run_dir), *TINY, "--checkpoint.interval", "0"]
    done = subprocess.run(
        [sys.executable, "-c", HOOKED_MAPPO, "3", "sigint", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 130, done.stderr
    assert "stopping after this iteration" in done.stderr
    assert f"mappo train --resume {run_dir}" in done.stdout
    assert read_status(run_dir)["status"] == "interrupted"
    assert [p.name for p in checkpoint_files(run_dir)] == ["ckpt-000003.pt"]
    assert main(["train", "--resume", str(run_dir), "--no-progress"]) == 0
    assert len(_comparable_rows(run_dir)) == 6


def test_in_process_round_trip_through_a_file_is_exact(tmp_path):
    cfg = tiny_config(collector={"total_frames": 160}, optim={"lr_decay": True})
    cfg.loss.value_norm = "popart"  # its statistics live in the loss state_dict

    def without_time(history):
        return [{k: v for k, v in m.items() if not k.startswith("time/")} for m in history]

    straight = without_time(Trainer(cfg).train(progress=False))
    first = Trainer(cfg)
    iterations = first.iterations()
    for _ in range(2):
        next(iterations)
    path = save_checkpoint(trainer_state(first), tmp_path / "ckpt.pt")
    second = Trainer(cfg)
    load_trainer_state(second, load_checkpoint(path))
    assert without_time(second.train(progress=False)) == straight[2:]


def test_only_the_newest_checkpoints_are_kept(tmp_path):
    cfg = tiny_config(collector={"total_frames": 160})
    cfg.checkpoint.interval, cfg.checkpoint.keep = 1, 2
    cfg.eval.interval = 0
    run = TrainingSession(Trainer(cfg), RunDir.create(tmp_path / "run", cfg))
    run.train(progress=False)
    assert [p.name for p in checkpoint_files(tmp_path / "run")] == [
        "ckpt-000003.pt",
        "ckpt-000004.pt",
    ]
    assert not list((tmp_path / "run" / "checkpoints").glob(".*"))  # no temporary files left


def test_a_failed_write_leaves_the_previous_file(tmp_path, monkeypatch):
    path = save_checkpoint({"format": 1, "x": torch.ones(2)}, tmp_path / "ckpt.pt")
    before = path.read_bytes()

    def disk_full(obj, f):
        f.write(b"partial")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError):
        save_checkpoint({"format": 1, "x": torch.zeros(2)}, path)
    assert path.read_bytes() == before


# -- broken checkpoints: one line, exit code 2, nothing on disk changes ------------------


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory):
    """A run stopped (as by Ctrl-C) after its first iteration, with ckpt-000001.pt."""
    cfg = tiny_config()
    cfg.eval.interval = 0
    path = tmp_path_factory.mktemp("stopped") / "run"
    run = TrainingSession(Trainer(cfg), RunDir.create(path, cfg))
    run.request_stop()
    with pytest.raises(StopRequested):
        run.train(progress=False)
    RunDir(path).write_status("interrupted")
    return path


def _files(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _checkpoint_of(tmp_path, **sections) -> Path:
    cfg = tiny_config(**sections)
    return save_checkpoint(trainer_state(Trainer(cfg)), tmp_path / "other.pt")


def _break_by_flipping_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(b ^ 0xFF for b in data[middle : middle + 64])
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("flipped", "is truncated or corrupt"),
        ("garbage", "is truncated or corrupt"),
        ("truncated", "is truncated or corrupt"),
        ("not_a_checkpoint", "is not a mappo checkpoint"),
        ("other_scenario", "written for env.scenario='balance', but this run has"),
        ("other_network_size", "written for model.actor_cells=32, but this run has"),
    ],
)
def test_broken_checkpoint_gives_one_line_and_touches_nothing(
    stopped_run, tmp_path, capsys, breakage, message
):
    run_dir = tmp_path / "run"
    shutil.copytree(stopped_run, run_dir)
    checkpoint = checkpoint_files(run_dir)[-1]
    if breakage == "flipped":
        _break_by_flipping_bytes(checkpoint)
    elif breakage == "garbage":
        checkpoint.write_bytes(os.urandom(checkpoint.stat().st_size))
    elif breakage == "truncated":
        checkpoint.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])
    elif breakage == "not_a_checkpoint":
        torch.save({"weights": torch.ones(3)}, checkpoint)
    elif breakage == "other_scenario":
        shutil.move(_checkpoint_of(tmp_path, env={"scenario": "balance"}), checkpoint)
    elif breakage == "other_network_size":
        shutil.move(_checkpoint_of(tmp_path, model={"actor_cells": 32}), checkpoint)
    before = _files(run_dir)
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--resume", str(run_dir), "--no-progress"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert _files(run_dir) == before


def test_resume_of_a_missing_run_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--resume", str(tmp_path / "nowhere")])
    assert exit_info.value.code == 2
    assert "not a run directory" in capsys.readouterr().err


def test_resume_takes_no_config_options(stopped_run, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--resume", str(stopped_run), "--loss.gamma", "0.5"])
    assert exit_info.value.code == 2
    assert "drop --loss.gamma" in capsys.readouterr().err


def test_weights_of_other_shapes_do_not_load_even_under_the_same_config(tmp_path):
    state = trainer_state(Trainer(tiny_config(model={"critic_cells": 32})))
    target = Trainer(tiny_config())
    state["config"]["model"]["critic_cells"] = 16  # a config that lies about the weights
    with pytest.raises(CheckpointError, match="does not fit this run"):
        load_trainer_state(target, state)


def test_non_vmas_env_checkpoints_everything_but_the_episode(tmp_path):
    """A custom env's state is not saved: learning state round-trips, episodes restart."""
    from mappo_torchrl.envs.toy import TargetPickingEnv
    from mappo_torchrl.runs.checkpoint import (
        load_checkpoint,
        load_trainer_state,
        resumable_env,
        save_checkpoint,
        trainer_state,
    )

    def make():
        cfg = tiny_config()
        cfg.collector.frames_per_batch, cfg.collector.total_frames = 32, 64
        return Trainer(cfg, env=TargetPickingEnv(num_envs=4, seed=0))

    trainer = make()
    assert not resumable_env(trainer.env)
    path = tmp_path / "ckpt.pt"
    trainer.train(
        progress=False, callbacks=[lambda m: save_checkpoint(trainer_state(trainer), path)]
    )
    fresh = make()
    load_trainer_state(fresh, load_checkpoint(path))
    assert fresh.iteration == trainer.iteration == 2
    assert load_checkpoint(path)["env"] is None
    for a, b in zip(
        trainer.groups["agents"].loss.parameters(),
        fresh.groups["agents"].loss.parameters(),
        strict=True,
    ):
        assert torch.equal(a, b)


def test_checkpoint_of_an_older_version_loads_with_the_new_options_at_their_defaults():
    cfg = tiny_config()
    state = trainer_state(Trainer(cfg))
    # What an older version saved: no options added since, the renamed one by its old name.
    for section, option in (
        ("model", "recurrent"),
        ("model", "action_dist"),
        ("loss", "entropy_samples"),
    ):
        del state["config"][section][option]
    del state["config"]["loss"]["advantage_norm"]
    state["config"]["loss"]["normalize_advantage"] = True
    load_trainer_state(Trainer(tiny_config()), state)
    # A real difference is still refused.
    state["config"]["model"]["action_dist"] = "normal"
    with pytest.raises(CheckpointError, match="model.action_dist='normal'"):
        load_trainer_state(Trainer(tiny_config()), state)
