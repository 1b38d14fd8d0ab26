"""When training itself goes wrong: non-finite values, divergence signals, restarts.

A run whose losses or weights stop being finite ends with one line, writes no
checkpoint from the bad iteration and keeps the finite ones whatever
``checkpoint.keep`` says; non-finite checkpoints are refused by every reader;
``--resume --from-checkpoint N`` continues from an older one with other step
sizes, recorded in the run's history.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import tiny_config
from test_checkpoint import TINY

from mappo_torchrl.cli.main import main
from mappo_torchrl.config import load_run_config
from mappo_torchrl.runs.checkpoint import (
    Checkpointer,
    CheckpointError,
    checkpoint_files,
    load_checkpoint,
    nonfinite_values,
)
from mappo_torchrl.runs.directory import RunDir, read_metrics, read_status
from mappo_torchrl.training import Trainer
from mappo_torchrl.training.divergence import (
    DivergenceWarning,
    TrainingDiverged,
    check_divergence,
)

# `mappo train ARGS` whose actor weights turn NaN in the update of iteration AT.
POISONED = r"""
import sys
import torch
from mappo_torchrl.cli.main import main
from mappo_torchrl.config import load_run_config
from mappo_torchrl.training import trainer
at = int(sys.argv[1])
real = trainer.Trainer.update_step
def update_step(self, minibatch):
    out = real(self, minibatch)
    if self.iteration + 1 == at:
        with torch.no_grad():
            next(self.groups["agents"].actor.parameters()).fill_(float("nan"))
    return out
trainer.Trainer.update_step = update_step
sys.exit(main(sys.argv[2:]))
"""
KEEP_TWO = [
    *TINY,
    "--update_threads", "1",
    "--collector.total_frames", "400",
    "--checkpoint.interval", "1",
    "--checkpoint.keep", "2",
]  # fmt: skip


def _poisoned(run: Path, at: int, *extra: str) -> subprocess.CompletedProcess:
    argv = ["train", "--run-dir", str(run), "--no-progress", *KEEP_TWO, *extra]
    return subprocess.run(
        [sys.executable, "-c", POISONED, str(at), *argv],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def diverged(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """A run whose weights turn NaN in iteration 5, with a checkpoint every iteration, keep 2."""
    run = tmp_path_factory.mktemp("diverged") / "run"
    return run, _poisoned(run, 5)


def test_a_diverging_run_ends_with_one_line_and_keeps_finite_checkpoints(diverged):
    run, done = diverged
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("mappo train: error: training diverged: iteration 5: non-finite")
    assert "agents actor weights" in lines[0]
    assert f"--resume {run} --from-checkpoint 4" in lines[0]
    assert read_status(run)["status"] == "failed"
    # The iteration that diverged wrote nothing; keep=2 rotated only finite ones.
    assert [p.name for p in checkpoint_files(run)] == ["ckpt-000003.pt", "ckpt-000004.pt"]
    for path in checkpoint_files(run):
        assert nonfinite_values(load_checkpoint(path)) == []
    assert [int(r["iteration"]) for r in read_metrics(run)] == [1, 2, 3, 4]


def test_resume_from_an_older_checkpoint_with_other_step_sizes(diverged, tmp_path, capsys):
    source, _ = diverged
    run = tmp_path / "run"
    subprocess.run(["cp", "-r", str(source), str(run)], check=True)
    argv = ["train", "--resume", str(run), "--from-checkpoint", "3", "--no-progress"]
    assert main([*argv, "--optim.actor_lr", "1e-4", "--loss.clip_epsilon", "0.1"]) == 0
    out = capsys.readouterr()
    assert "ckpt-000004.pt is newer than the resumed checkpoint" in out.err
    assert (run / "checkpoints" / "ckpt-000004.pt.superseded").is_file()
    assert read_status(run)["status"] == "finished"
    rows = read_metrics(run)
    assert [int(r["iteration"]) for r in rows] == list(range(1, 11))
    assert rows[3]["train/actor_lr"] == pytest.approx(1e-4)
    assert rows[2]["train/actor_lr"] == pytest.approx(5e-4)
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert history[-1]["checkpoint"] == "ckpt-000003.pt"
    assert history[-1]["changed"] == {
        "optim.actor_lr": [5e-4, 1e-4],
        "loss.clip_epsilon": [0.2, 0.1],
    }
    state = load_checkpoint(checkpoint_files(run)[-1])
    assert float(state["groups"]["agents"]["loss"]["clip_epsilon"]) == pytest.approx(0.1)
    assert load_run_config(run / "config.yaml").optim.actor_lr == pytest.approx(1e-4)


def test_from_checkpoint_names_the_checkpoints_there_are(diverged, capsys):
    run, _ = diverged
    with pytest.raises(SystemExit):
        main(["train", "--resume", str(run), "--from-checkpoint", "1"])
    err = capsys.readouterr().err.strip()
    assert err.endswith("has no checkpoint of that iteration (it has: 3, 4)"), err
    assert len(err.splitlines()) == 1


def _nan_checkpoint(tmp_path: Path) -> tuple[Path, Path]:
    """A finished tiny run, and a copy of its checkpoint with one NaN weight."""
    run = tmp_path / "run"
    argv = ["train", "--run-dir", str(run), "--no-progress", *TINY, "--update_threads", "1"]
    assert main([*argv, "--collector.total_frames", "80"]) == 0
    state = load_checkpoint(checkpoint_files(run)[-1])
    key = next(k for k in state["groups"]["agents"]["loss"] if k.startswith("actor_network"))
    state["groups"]["agents"]["loss"][key].view(-1)[0] = float("nan")
    bad = tmp_path / "bad.pt"
    torch.save(state, bad)
    return run, bad


def test_non_finite_checkpoints_are_refused_in_one_line(tmp_path, capsys):
    run, bad = _nan_checkpoint(tmp_path)
    capsys.readouterr()
    with pytest.raises(CheckpointError, match="holds non-finite values.*agents: actor_network"):
        load_checkpoint(bad)
    with pytest.raises(SystemExit):
        main(["train", "--init-from", str(bad), "--run-dir", str(tmp_path / "new"), *TINY])
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "holds non-finite values" in err, err
    assert not (tmp_path / "new").exists()
    with pytest.raises(SystemExit):
        main(["eval", str(bad), "--episodes", "2"])
    err = capsys.readouterr().err.strip()
    assert err.startswith("mappo eval: error: checkpoint") and "non-finite" in err, err
    assert len(err.splitlines()) == 1


def test_resume_skips_a_non_finite_newest_checkpoint(tmp_path, capsys):
    run, bad = _nan_checkpoint(tmp_path)
    first = checkpoint_files(run)[-1]
    (run / "checkpoints" / "ckpt-000003.pt").write_bytes(bad.read_bytes())
    RunDir(run).write_status("interrupted")
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--collector.total_frames", "160"]) == 0
    err = capsys.readouterr().err
    assert "non-finite" in err and "kept as ckpt-000003.pt.corrupt" in err
    assert (run / "checkpoints" / "ckpt-000003.pt.corrupt").is_file()
    history = json.loads((run / "history.jsonl").read_text().splitlines()[-1])
    assert history["checkpoint"] == first.name == "ckpt-000002.pt"


def test_the_checkpointer_never_writes_non_finite_weights(tmp_path):
    trainer = Trainer(tiny_config())
    with torch.no_grad():
        next(trainer.groups["agents"].critic.parameters()).fill_(float("inf"))
    saver = Checkpointer(tmp_path, trainer, interval=1, keep=1)
    with pytest.raises(CheckpointError, match="not written.*agents: critic_network"):
        saver.save()
    assert checkpoint_files(tmp_path) == []


def test_the_trainer_stops_on_non_finite_weights_before_its_callbacks():
    trainer = Trainer(tiny_config())
    seen = []
    real = trainer.update_step

    def poisoned(minibatch):
        out = real(minibatch)
        with torch.no_grad():
            next(trainer.groups["agents"].critic.parameters()).fill_(float("nan"))
        return out

    trainer.update_step = trainer.compiled_update_step = poisoned
    with pytest.raises(TrainingDiverged, match="iteration 1: non-finite.*agents critic weights"):
        trainer.train(progress=False, callbacks=[seen.append])
    assert seen == []
    assert trainer.weights_finite == {"agents actor": True, "agents critic": False}


@pytest.mark.parametrize(
    ("metrics", "mode", "outcome"),
    [
        ({"train/loss_critic": 1e34, "train/grad_norm_actor": 1.0}, "stop", None),
        ({"train/grad_norm_actor": math.inf}, "off", None),
        ({"train/grad_norm_actor": math.inf}, "warn", DivergenceWarning),
        ({"train/a/explained_variance": math.nan}, "warn", DivergenceWarning),
        ({"train/grad_norm_critic": math.nan}, "stop", TrainingDiverged),
        ({"train/a/loss_objective": math.nan}, "off", TrainingDiverged),
        ({"train/episode_return": math.nan}, "stop", None),  # no episode ended: not a sign
    ],
)
def test_divergence_signals_follow_optim_divergence(metrics, mode, outcome, recwarn):
    if outcome is TrainingDiverged:
        with pytest.raises(TrainingDiverged, match="iteration 7"):
            check_divergence(metrics, {}, iteration=7, mode=mode)
        return
    check_divergence(metrics, {}, iteration=7, mode=mode)
    warned = [w for w in recwarn if issubclass(w.category, DivergenceWarning)]
    assert len(warned) == (outcome is DivergenceWarning)
    if warned:
        assert "iteration 7: diverging" in str(warned[0].message)


def test_optim_divergence_is_checked_where_it_is_declared(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--optim.divergence", "panic"])
    err = capsys.readouterr().err.strip()
    assert err == ("mappo train: error: --optim.divergence='panic': must be one of stop, warn, off")
