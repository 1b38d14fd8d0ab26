"""A stop at any moment: SIGTERM or Ctrl-C while the run is set up or waits for its worker.

Each test runs ``mappo train`` in a child process that sends itself the signal
at a chosen point, then checks the exit code (143 for SIGTERM, 130 for SIGINT),
the status ``interrupted``, that no internal error text reaches the user, and
that ``--resume`` continues (or, with no checkpoint, starts the run again).
"""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
from test_checkpoint import TINY

from mappo_torchrl.cli.main import main
from mappo_torchrl.runs.checkpoint import checkpoint_files
from mappo_torchrl.runs.directory import read_metrics, read_status

# `mappo ARGS`, sending itself SIGNAL when the trainer builds its collector (the
# collecting worker starts then, which is where a stop used to turn into an error).
SIGNAL_WHILE_BUILDING = r"""
import os, signal, sys
from mappo_torchrl.cli.main import main
from mappo_torchrl.training import trainer
name = sys.argv[1]
real = trainer.make_collector
def make_collector(*args, **kwargs):
    os.kill(os.getpid(), getattr(signal, name))
    return real(*args, **kwargs)
trainer.make_collector = make_collector
sys.exit(main(sys.argv[2:]))
"""

# `mappo ARGS` whose collecting worker is stopped (SIGSTOP) before its first batch, and
# which sends itself SIGNAL a second later: the trainer is then waiting in iteration 0.
SIGNAL_WHILE_WAITING = r"""
import os, signal, sys, threading
from mappo_torchrl.cli.main import main
from mappo_torchrl.training import trainer
name = sys.argv[1]
real = trainer.make_collector
def make_collector(*args, **kwargs):
    collector = real(*args, **kwargs)
    os.kill(collector.procs[0].pid, signal.SIGSTOP)
    threading.Timer(1.0, os.kill, (os.getpid(), getattr(signal, name))).start()
    return collector
trainer.make_collector = make_collector
sys.exit(main(sys.argv[2:]))
"""


def _run(script: str, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", script, *argv], capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(("name", "overlap"), [("SIGTERM", "on"), ("SIGINT", "off")])
def test_a_stop_while_the_run_is_set_up_ends_it_cleanly_and_resume_starts_it_again(
    tmp_path, name, overlap, capsys
):
    run = tmp_path / "run"
    args = [*TINY, "--collector.total_frames", "80", "--collector.overlap", overlap]
    done = _run(SIGNAL_WHILE_BUILDING, name, "train", "--run-dir", str(run), *args)
    assert done.returncode == 128 + getattr(signal, name), done.stderr
    assert "Error" not in done.stderr + done.stdout and "Traceback" not in done.stderr
    assert f"{name} received: stopping as soon as the run is set up" in done.stderr
    assert (
        f"stopped before its first iteration; nothing was trained yet; start it again with: "
        f"mappo train --resume {run}" in done.stdout
    )
    assert read_status(run)["status"] == "interrupted"
    assert checkpoint_files(run) == []
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert f"starting {run} again from its config" in capsys.readouterr().out
    assert read_status(run)["status"] == "finished"
    assert [r["iteration"] for r in read_metrics(run)] == [1, 2]


def test_a_stop_while_the_first_batch_is_awaited_is_an_interrupted_run(tmp_path, capsys):
    run = tmp_path / "run"
    args = [*TINY, "--collector.total_frames", "80", "--collector.overlap", "on"]
    done = _run(SIGNAL_WHILE_WAITING, "SIGTERM", "train", "--run-dir", str(run), *args)
    assert done.returncode == 143, done.stderr
    assert "Error" not in done.stderr + done.stdout and "Traceback" not in done.stderr
    assert read_status(run)["status"] == "interrupted"
    assert checkpoint_files(run) == [] and not (run / "metrics.csv").exists()
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert read_status(run)["status"] == "finished"
    assert [r["iteration"] for r in read_metrics(run)] == [1, 2]


def test_resume_of_a_run_with_damaged_checkpoints_only_is_still_refused(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--run-dir", str(run), *TINY, "--collector.total_frames", "80"]) == 0
    for path in checkpoint_files(run):
        path.write_bytes(b"not a checkpoint")
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["train", "--resume", str(run), "--collector.total_frames", "120"])
    err = capsys.readouterr().err.strip()
    assert "is truncated or corrupt" in err and len(err.splitlines()) == 1


def test_resume_of_a_run_that_lost_its_checkpoints_starts_again_and_keeps_its_rows(
    tmp_path, capsys
):
    run = tmp_path / "run"
    assert main(["train", "--run-dir", str(run), *TINY, "--collector.total_frames", "80"]) == 0
    before = (run / "metrics.csv").read_text()
    for path in checkpoint_files(run):
        path.unlink()
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--collector.total_frames", "120"]) == 0
    out = capsys.readouterr()
    assert "the rows logged so far are kept as metrics.csv.restarted-" in out.err
    (kept,) = run.glob("metrics.csv.restarted-*")
    assert kept.read_text() == before
    assert [r["iteration"] for r in read_metrics(run)] == [1, 2, 3]
    assert read_status(run)["status"] == "finished"
