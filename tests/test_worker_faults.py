"""Faults of the collecting worker process: stopped, crashed, or killed with its trainer.

The end-to-end tests run ``mappo train`` with ``collector.overlap on`` in a
child process and harm its worker (or the whole run) from outside, then check
the exit code, the one line on stderr, status.json, and that ``--resume``
finishes the run.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import tiny_config
from test_checkpoint import TINY

from mappo_torchrl.cli.main import main
from mappo_torchrl.config import ConfigError
from mappo_torchrl.data.collector import CollectorStalled, next_batch_ready
from mappo_torchrl.envs.boundaries import (
    FOLDER_PREFIX,
    OWNER_FILE,
    BoundaryFolder,
    remove_orphaned_folders,
)
from mappo_torchrl.runs.checkpoint import checkpoint_files
from mappo_torchrl.runs.directory import is_run_dir, read_metrics, read_status
from mappo_torchrl.training import Trainer

needs_proc = pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="finds the worker process in Linux's /proc"
)
ITERATIONS = 10
OVERLAPPED = [
    *TINY,
    "--collector.overlap", "on",
    "--collector.total_frames", str(40 * ITERATIONS),
    "--eval.interval", "0",
    "--checkpoint.interval", "4",
]  # fmt: skip

# Imported by every Python process started with its folder first on PYTHONPATH: in
# a collecting worker (spawned, so "--multiprocessing-fork" is in its argv) the env
# raises after MAPPO_TEST_WORKER_FAILS_AFTER steps.
FAILING_WORKER = """
import os, sys
if "--multiprocessing-fork" in sys.argv:
    from mappo_torchrl.envs.boundaries import BatchBoundaryEnv
    real, steps = BatchBoundaryEnv.step_and_maybe_reset, []
    def step_and_maybe_reset(self, tensordict):
        steps.append(1)
        if len(steps) > int(os.environ["MAPPO_TEST_WORKER_FAILS_AFTER"]):
            raise RuntimeError("injected env failure")
        return real(self, tensordict)
    BatchBoundaryEnv.step_and_maybe_reset = step_and_maybe_reset
"""


@pytest.fixture
def train():
    """Start ``mappo train`` (overlapped, 10 iterations) in a child process, in a session of
    its own: whatever is left of it when the test ends is killed, a stopped worker too."""
    children = []

    def start(run: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
        argv = [sys.executable, "-m", "mappo_torchrl.cli.main", "train", "--run-dir", str(run)]
        child = subprocess.Popen(
            [*argv, *OVERLAPPED, *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        children.append(child)
        return child

    yield start
    for child in children:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()


def _wait_for_rows(run: Path, child: subprocess.Popen, rows: int) -> None:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and child.poll() is None:
        if (run / "metrics.csv").is_file() and len(read_metrics(run)) >= rows:
            return
        time.sleep(0.1)
    child.kill()
    pytest.fail(f"no {rows} iterations logged: {child.communicate()[1]}")


def _worker_pid(parent: int) -> int:
    """The collecting worker: the child of ``parent`` that multiprocessing spawned."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            command = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and b"spawn_main" in command:
            return int(stat.parent.name)
    raise AssertionError(f"process {parent} has no collecting worker")


def _one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


def _assert_finished(run: Path) -> None:
    assert read_status(run)["status"] == "finished"
    assert [row["iteration"] for row in read_metrics(run)] == list(range(1, ITERATIONS + 1))


@needs_proc
def test_a_stopped_worker_fails_the_run_in_one_line_and_resume_finishes_it(tmp_path, train, capsys):
    run = tmp_path / "run"
    child = train(run, "--collector.stall_timeout_s", "4")
    _wait_for_rows(run, child, 5)
    os.kill(_worker_pid(child.pid), signal.SIGSTOP)  # it stays, stopped, until it is ended
    stopped = time.monotonic()
    _, err = child.communicate(timeout=120)  # without a limit, it would wait for ever
    waited = time.monotonic() - stopped
    assert child.returncode == 1, err
    line = _one_line(err)
    assert "CollectorStalled: the collecting worker (pid " in line, line
    assert "it was ended with SIGKILL" in line and "continue with: mappo train --resume" in line
    limit = float(re.search(r"over its limit of ([\d.]+) s", line).group(1))
    assert limit >= 4 and waited < limit + 30
    status = read_status(run)
    assert status["status"] == "failed" and status["error"].startswith("CollectorStalled")
    # The iteration it finished last is saved, though checkpoint.interval did not say so.
    stalled_at = status["iteration"]
    assert checkpoint_files(run)[-1].name == f"ckpt-{stalled_at:06d}.pt"
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert f"(iteration {stalled_at})" in capsys.readouterr().out
    _assert_finished(run)


@needs_proc
def test_the_first_sigterm_ends_a_run_stuck_on_its_worker(tmp_path, train, capsys):
    run = tmp_path / "run"
    child = train(run, "--collector.stall_timeout_s", "600")
    _wait_for_rows(run, child, 3)
    os.kill(_worker_pid(child.pid), signal.SIGSTOP)
    time.sleep(2)  # the trainer now waits for a batch that does not come
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=60)  # long before the 600 s stall limit
    assert child.returncode == 143, err
    assert "Traceback" not in err and "Error" not in err, err
    status = read_status(run)
    assert status["status"] == "interrupted"
    assert checkpoint_files(run), "the last finished iteration is saved"
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    _assert_finished(run)


@pytest.mark.parametrize("stopped", ["collecting", "taking weights"])
def test_a_stopped_worker_is_ended_whatever_it_was_doing(stopped):
    config = tiny_config(collector={"overlap": "on", "total_frames": 400, "stall_timeout_s": 2})
    trainer = Trainer(config)
    worker = trainer.collector.procs[0]
    waiting = []
    real_limit, real_advantages = trainer.collector.stall_limit, trainer.compute_advantages

    def stall_limit():  # asked each second of a wait
        waiting.append(trainer.collecting)
        return real_limit()

    def compute_advantages(batch):  # the worker has just been sent for the next batch
        if stopped == "collecting" and trainer.iteration == 1:
            os.kill(worker.pid, signal.SIGSTOP)
        return real_advantages(batch)

    def after_iteration(metrics):
        if stopped == "taking weights" and metrics["iteration"] == 2:
            while not next_batch_ready(trainer.collector):
                time.sleep(0.01)  # its batch is in: next, it is sent new weights
            os.kill(worker.pid, signal.SIGSTOP)

    trainer.collector.stall_limit = stall_limit
    trainer.compute_advantages = compute_advantages
    with pytest.raises(CollectorStalled, match=r"has not answered for [\d.]+ s, over its limit"):
        trainer.train(progress=False, callbacks=[after_iteration])
    assert not worker.is_alive() and worker.exitcode == -signal.SIGKILL
    assert trainer.iteration == 2 and not trainer.collecting
    assert waiting and all(waiting)  # the trainer said it was waiting on the worker
    # What a checkpoint holds: the worker's batch in progress, with the weights given to it.
    assert trainer.collector.resume_state() is not None


@needs_proc
def test_a_failing_workers_traceback_goes_to_the_run_log_not_the_terminal(tmp_path, train):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(FAILING_WORKER)
    path = os.pathsep.join(filter(None, [str(tmp_path / "site"), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "MAPPO_TEST_WORKER_FAILS_AFTER": "35"}
    run = tmp_path / "run"
    child = train(run, env=env)
    _, err = child.communicate(timeout=300)
    assert child.returncode == 1, err
    log = run / "worker.log"
    line = _one_line(err)  # the worker's traceback is not on the terminal
    assert "WorkerFailed: the collecting worker (pid " in line and "exited with code 1" in line
    assert f"(traceback in {log}): RuntimeError: injected env failure" in line, line
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "step_and_maybe_reset" in text
    assert text.rstrip().endswith("RuntimeError: injected env failure")
    assert read_status(run)["status"] == "failed"
    assert checkpoint_files(run)[-1].name == "ckpt-000003.pt"  # 35 steps: 3 batches and a half
    assert is_run_dir(run)  # worker.log is a run's own file: --overwrite may replace it


@needs_proc
def test_the_boundary_folder_of_a_run_killed_with_sigkill_goes_with_the_next_trainer(
    tmp_path, train, monkeypatch, capsys
):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    run = tmp_path / "run"
    child = train(run, env={**os.environ, "TMPDIR": str(scratch)})
    _wait_for_rows(run, child, 4)
    os.killpg(child.pid, signal.SIGKILL)  # the trainer and its collecting worker
    child.communicate(timeout=60)
    (left,) = scratch.glob(f"{FOLDER_PREFIX}*")
    assert left.name.startswith(f"{FOLDER_PREFIX}{child.pid}-")
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert not left.exists()
    _assert_finished(run)


def test_only_folders_whose_owner_is_gone_are_removed(tmp_path):
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead = int(ended.stdout)  # the pid of a process that has ended

    def folder(pid: int, *, owner_file: bool = True) -> Path:
        path = Path(tempfile.mkdtemp(prefix=f"{FOLDER_PREFIX}{pid}-", dir=tmp_path))
        if owner_file:
            (path / OWNER_FILE).touch()
        return path

    orphan = folder(dead)
    ours = BoundaryFolder(root=tmp_path)
    assert not orphan.exists()  # removed as `ours` was made
    # The pid looks dead here but the lock is held: an owner in another PID namespace.
    held = BoundaryFolder(root=tmp_path)
    elsewhere = folder(dead)
    os.replace(held.path / OWNER_FILE, elsewhere / OWNER_FILE)  # with the lock held on it
    unlocked_but_alive = folder(os.getpid())
    being_made = folder(dead, owner_file=False)  # or made by another version
    other = tmp_path / f"{FOLDER_PREFIX}abc123"  # no pid in the name
    other.mkdir()
    assert remove_orphaned_folders(tmp_path) == []
    for path in (ours.path, held.path, elsewhere, unlocked_but_alive, being_made, other):
        assert path.is_dir(), path
    ours.cleanup()
    assert not ours.path.exists()


def test_stall_timeout_must_be_positive():
    with pytest.raises(ConfigError) as info:
        Trainer(tiny_config(collector={"stall_timeout_s": 0.0}))
    assert str(info.value).startswith("collector.stall_timeout_s=0.0: must be > 0")
    assert "\n" not in str(info.value)
