"""Fault injection: nothing a run has written is lost, whatever stops it.

Each test runs ``mappo train`` in a child process with a hook that stops it at
a chosen point (``kill -9`` inside a checkpoint write or a metrics row,
SIGTERM, SIGINT, twice, a file-size limit, a second process on the same run),
then checks the exit code, that the message is one line, that every checkpoint
keeps the bytes it had when it was written, and that the resumed run ends
exactly (bit for bit) where an uninterrupted one does.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
from test_checkpoint import (  # noqa: F401 - stopped_run is a fixture
    TINY,
    _break_by_flipping_bytes,
    _comparable_rows,
    _files,
    stopped_run,
)

from mappo_torchrl.cli.main import main
from mappo_torchrl.runs.checkpoint import checkpoint_files, load_checkpoint
from mappo_torchrl.runs.directory import read_status, run_state

ITERATIONS = 20
# TINY (40 frames an iteration, evaluation every 2) for 20 iterations; a checkpoint
# every 2, all of them kept so that every byte of every one can be checked.
FAULT = [
    *TINY,
    "--collector.total_frames", str(40 * ITERATIONS),
    "--checkpoint.keep", "100",
    "--update_threads", "1",
]  # fmt: skip

# `mappo ARGS` with a hook. argv: ITERATION ACTION[:PARAM] ARGS. Prints "ITER n" after
# each iteration and "SAVED name sha256" after each checkpoint; ACTION at ITERATION:
#   in-checkpoint  half-write the checkpoint's temporary file, then wait (to be killed)
#   in-metrics     half-write the metrics row, then wait
#   before-finish  wait after the checkpoint, before evaluation and logging
#   after-finish   wait after the row is logged
#   signal:NAME    send the process SIGNAME before the iteration's checkpoint
#   double:NAME    the same, then once more in the middle of the checkpoint write
#   gate:FILE      wait until FILE exists, then go on
#   fsize:BYTES    from here on, files may not grow past BYTES (what `ulimit -f` sets)
#   fail-log       writing the metrics row raises
#   fail-eval      the evaluation raises
HOOKED = r"""
import hashlib, os, resource, signal, sys, time
from pathlib import Path
import torch
from mappo_torchrl.runs import checkpoint, session
from mappo_torchrl.runs import directory as rundir
at, action = int(sys.argv[1]), sys.argv[2]
action, _, param = action.partition(":")

def wait(tag):
    print(tag, flush=True)
    time.sleep(300)

real_save = torch.save
def save(obj, f, *args, **kwargs):
    if isinstance(obj, dict) and obj.get("iteration") == at:
        if action == "in-checkpoint":
            f.write(b"PK\x03\x04 half a checkpoint")
            f.flush()
            wait("PAUSED")
        if action == "double":
            f.write(b"PK\x03\x04 half a checkpoint")
            f.flush()
            os.kill(os.getpid(), getattr(signal, param))
    return real_save(obj, f, *args, **kwargs)
torch.save = save

real_save_checkpoint = checkpoint.save_checkpoint
def save_checkpoint(state, path):
    path = real_save_checkpoint(state, path)
    print("SAVED", path.name, hashlib.sha256(path.read_bytes()).hexdigest(), flush=True)
    return path
checkpoint.save_checkpoint = save_checkpoint

real_log = rundir.RunDir.log_metrics
def log_metrics(self, metrics):
    if action == "fail-log" and metrics["iteration"] == at:
        raise RuntimeError("injected logger failure")
    if action == "in-metrics" and metrics["iteration"] == at:
        with (self.path / "metrics.csv").open("a") as f:
            f.write(f"{at},0.12")
        wait("PAUSED")
    real_log(self, metrics)
rundir.RunDir.log_metrics = log_metrics

Session = session.TrainingSession
real_after, real_finish = Session.after_iteration, Session.finish_iteration
def after_iteration(self, metrics):
    if self.trainer.iteration == at:
        if action in ("signal", "double"):
            os.kill(os.getpid(), getattr(signal, param))
        if action == "fsize":
            resource.setrlimit(resource.RLIMIT_FSIZE, (int(param), resource.RLIM_INFINITY))
    real_after(self, metrics)
    if self.trainer.iteration == at and action == "after-finish":
        wait("PAUSED")
    if self.trainer.iteration == at and action == "gate":
        print("PAUSED", flush=True)
        while not Path(param).exists():
            time.sleep(0.05)
    print("ITER", self.trainer.iteration, flush=True)
def finish_iteration(self, metrics):
    if self.trainer.iteration == at and action == "before-finish":
        wait("PAUSED")
    if self.trainer.iteration == at and action == "fail-eval":
        def fail(evaluation):
            raise RuntimeError("injected evaluation failure")
        type(self.evaluation).__call__ = fail
    real_finish(self, metrics)
Session.after_iteration = after_iteration
Session.finish_iteration = finish_iteration
from mappo_torchrl.cli.main import main
sys.exit(main(sys.argv[3:]))
"""


def _start(at: int, action: str, argv: list[str], prefix=()) -> subprocess.Popen:
    return subprocess.Popen(
        [*prefix, sys.executable, "-c", HOOKED, str(at), action, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _read_until(child: subprocess.Popen, marker: str, seen: list[str]) -> None:
    for line in child.stdout:
        seen.append(line)
        if line.startswith(marker):
            return
    child.wait(timeout=60)
    pytest.fail(f"the child ended (rc {child.returncode}) before {marker!r}:\n{''.join(seen)}")


def _saved(lines: list[str]) -> dict[str, str]:
    """``{checkpoint name: sha256}`` from the child's SAVED lines (the last write wins)."""
    return {p[1]: p[2] for p in (line.split() for line in lines) if p and p[0] == "SAVED"}


def _assert_checkpoints_kept_their_bytes(run: Path, saved: dict[str, str]) -> None:
    for name, digest in saved.items():
        data = (run / "checkpoints" / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest, f"{name} changed after it was written"


def _one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    """The uninterrupted run every interrupted one must equal."""
    run = tmp_path_factory.mktemp("straight") / "run"
    assert main(["train", "--run-dir", str(run), *FAULT]) == 0
    return run


def _assert_same_as(run: Path, straight: Path) -> None:
    assert _comparable_rows(run) == _comparable_rows(straight)  # exact text of every value
    assert read_status(run)["status"] == "finished"
    ours, theirs = (load_checkpoint(checkpoint_files(d)[-1]) for d in (run, straight))
    assert ours["iteration"] == theirs["iteration"] == ITERATIONS
    for name, value in theirs["groups"]["agents"]["loss"].items():
        assert torch.equal(ours["groups"]["agents"]["loss"][name], value), name


@pytest.mark.slow  # ten processes started and killed: a minute or more on 2 cores
def test_ten_kill_9s_at_random_points_then_resume_bit_for_bit(tmp_path, straight, capsys):
    rng = random.Random(10)
    kinds = ["in-checkpoint", "in-metrics", "before-finish", "after-finish", "random"] * 2
    rng.shuffle(kinds)
    run = tmp_path / "run"
    saved: dict[str, str] = {}
    for kill, kind in enumerate(kinds):
        # The first run gets past its first checkpoint, which a resume needs.
        done = load_checkpoint(checkpoint_files(run)[-1])["iteration"] if kill else 2
        # The checkpoint of `done` + 2 is the next one due; `after-finish` stops one later.
        at = done + (3 if kind == "after-finish" else 2)
        if at >= ITERATIONS:
            kind, at = "in-checkpoint", done + 2
        argv = ["train", "--resume", str(run), "--no-progress"] if kill else [
            "train", "--run-dir", str(run), *FAULT
        ]  # fmt: skip
        child = _start(at, "none" if kind == "random" else kind, argv)
        seen: list[str] = []
        first_iteration = "ITER 2" if kill == 0 else "ITER"
        _read_until(child, first_iteration if kind == "random" else "PAUSED", seen)
        if kind == "random":  # somewhere in the next iterations: collecting, updating, saving
            time.sleep(rng.uniform(0.0, 0.6))
        child.kill()
        child.wait(timeout=60)
        child.stderr.close()
        assert child.returncode == -signal.SIGKILL, (kind, "".join(seen))
        seen += child.stdout.readlines()
        saved.update(_saved(seen))
        _assert_checkpoints_kept_their_bytes(run, saved)
        assert run_state(run) == "stale"  # says "running", but nothing holds the lock
    assert len(kinds) >= 10
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    _assert_checkpoints_kept_their_bytes(run, saved)
    _assert_same_as(run, straight)


@pytest.mark.parametrize("name", ["SIGTERM", "SIGINT"])
def test_sigterm_and_sigint_stop_with_a_checkpoint_and_resume_exactly(tmp_path, straight, name):
    run = tmp_path / "run"
    child = _start(17, f"signal:{name}", ["train", "--run-dir", str(run), *FAULT])
    out, err = child.communicate(timeout=300)
    assert child.returncode == 128 + getattr(signal, name), err
    assert _one_line(err).endswith(
        f"{name} received: stopping after this iteration, with a checkpoint (a second Ctrl-C "
        "or SIGTERM stops at once, keeping the last checkpoint)"
    )
    assert f"continue with: mappo train --resume {run}" in out
    assert read_status(run)["status"] == "interrupted"
    assert checkpoint_files(run)[-1].name == "ckpt-000017.pt"
    saved = _saved(out.splitlines())
    _assert_checkpoints_kept_their_bytes(run, saved)
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    _assert_checkpoints_kept_their_bytes(run, saved)
    _assert_same_as(run, straight)


def test_a_second_sigterm_stops_at_once_and_keeps_the_last_good_checkpoint(tmp_path):
    run = tmp_path / "run"
    child = _start(3, "double:SIGTERM", ["train", "--run-dir", str(run), *FAULT])
    out, err = child.communicate(timeout=300)
    assert child.returncode == 143, err
    assert "stopped at once; training through ckpt-000002.pt is saved" in out
    assert read_status(run)["status"] == "interrupted"
    assert [p.name for p in checkpoint_files(run)] == ["ckpt-000002.pt"]
    assert list((run / "checkpoints").glob(".*")) == []  # the half-written file is gone
    _assert_checkpoints_kept_their_bytes(run, _saved(out.splitlines()))


def test_a_second_process_on_a_live_run_is_refused_and_the_first_is_unharmed(
    tmp_path, straight, capsys
):
    run, go = tmp_path / "run", tmp_path / "go"
    child = _start(3, f"gate:{go}", ["train", "--run-dir", str(run), *FAULT])
    seen: list[str] = []
    _read_until(child, "PAUSED", seen)
    assert run_state(run) == "live"
    before = _files(run)
    attempts = {
        "resume": ["train", "--resume", str(run)],
        "overwrite": ["train", "--run-dir", str(run), "--overwrite", *FAULT, "--seed", "7"],
        "eval": ["eval", str(run)],
    }
    for argv in attempts.values():
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        line = _one_line(capsys.readouterr().err)
        assert f"a live run is training there (process {child.pid} on " in line
    assert _files(run) == before
    go.touch()
    out, err = child.communicate(timeout=300)
    assert child.returncode == 0, err
    _assert_checkpoints_kept_their_bytes(run, _saved(seen + out.splitlines()))
    _assert_same_as(run, straight)
    assert run_state(run) == "finished"


@pytest.mark.parametrize(
    ("at", "action", "what"),
    [
        (3, "fail-log", "logger"),  # an iteration without a checkpoint due
        (ITERATIONS, "fail-eval", "evaluation"),  # the final evaluation
    ],
)
def test_a_failing_logger_or_evaluation_keeps_the_training(
    tmp_path, straight, capsys, at, action, what
):
    run = tmp_path / "run"
    child = _start(at, action, ["train", "--run-dir", str(run), *FAULT])
    out, err = child.communicate(timeout=300)
    assert child.returncode == 1, err
    line = _one_line(err)
    assert f"iteration {at}: RuntimeError: injected {what} failure" in line
    assert f"training through ckpt-{at:06d}.pt is saved" in line
    assert read_status(run)["status"] == "failed"
    saved = _saved(out.splitlines())
    _assert_checkpoints_kept_their_bytes(run, saved)
    assert len(_comparable_rows(run)) == at - 1  # the failed iteration's row is not written
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    _assert_checkpoints_kept_their_bytes(run, saved)
    _assert_same_as(run, straight)


def test_full_disk_fails_in_one_line_and_the_run_resumes(tmp_path, straight, capsys):
    run = tmp_path / "run"
    # After iteration 3 no file may grow past 4 KiB: the checkpoint of iteration 4 fails.
    child = _start(3, "fsize:4096", ["train", "--run-dir", str(run), *FAULT])
    out, err = child.communicate(timeout=300)
    assert child.returncode == 1, err
    line = _one_line(err)
    assert "iteration 4: OSError: [Errno 27] File too large" in line
    assert (
        f"training through ckpt-000002.pt is saved; continue with: mappo train --resume {run}"
        in line
    )
    assert read_status(run)["status"] == "failed"
    assert list((run / "checkpoints").glob(".*")) == []
    saved = _saved(out.splitlines())
    assert list(saved) == ["ckpt-000002.pt"]
    _assert_checkpoints_kept_their_bytes(run, saved)
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    _assert_same_as(run, straight)


def test_truncated_metrics_csv_is_repaired_on_resume_and_skipped_by_plot(
    tmp_path, straight, capsys
):
    run = tmp_path / "run"
    child = _start(16, "after-finish", ["train", "--run-dir", str(run), *FAULT])
    _read_until(child, "PAUSED", [])
    child.kill()
    child.communicate(timeout=60)
    metrics = run / "metrics.csv"
    data = metrics.read_bytes()
    damaged = data[: len(data) - 40]  # the last row cut in half, as a crash mid-write leaves it
    metrics.write_bytes(damaged)

    out = tmp_path / "curves.png"
    assert main(["plot", str(run), "--out", str(out)]) == 0
    warning = _one_line(capsys.readouterr().err)
    assert f"mappo plot: warning: {metrics}: skipped 1 unreadable line(s) after iteration 15" in (
        warning
    )

    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    note = _one_line(capsys.readouterr().err)
    assert f"repaired {metrics}: 1 unreadable row(s) dropped, 15 kept" in note
    copies = list(run.glob("metrics.csv.damaged-*"))
    assert len(copies) == 1 and copies[0].read_bytes() == damaged
    _assert_same_as(run, straight)


def test_read_only_run_directory_is_one_line_and_untouched(stopped_run, capsys):  # noqa: F811
    prefix: list[str] = []
    if os.geteuid() == 0:  # root ignores permission bits unless it drops these capabilities
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: permissions cannot be enforced")
        prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
    folder = Path(tempfile.mkdtemp(prefix="mappo-readonly-"))
    run = folder / "run"
    shutil.copytree(stopped_run, run)
    before = _files(run)
    paths = [run, *run.rglob("*")]
    try:
        for path in [folder, *paths]:
            path.chmod(0o555 if path.is_dir() else 0o444)
        for argv, message in (
            (["train", "--resume", str(run)], f"--resume={str(run)!r}: cannot write there"),
            (
                ["train", "--run-dir", str(folder / "new"), *TINY],
                f"run_dir={str(folder / 'new')!r}: cannot write there",
            ),
        ):
            child = _start(0, "none", argv, prefix=prefix)
            _, err = child.communicate(timeout=300)
            assert child.returncode == 2, err
            line = _one_line(err)
            assert message in line and "Permission denied" in line
        assert _files(run) == before
        assert not (folder / "new").exists()
    finally:
        for path in [folder, *paths]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        shutil.rmtree(folder)


def test_resume_skips_a_corrupt_newest_checkpoint_and_keeps_it(tmp_path, capsys):
    run = tmp_path / "run"
    argv = [*TINY, "--collector.total_frames", "160", "--update_threads", "1"]
    assert main(["train", "--run-dir", str(run), *argv]) == 0
    straight_rows = _comparable_rows(run)
    # As a crash while ckpt-000004.pt was being synced to a failing disk would leave it.
    (run / "status.json").write_text('{"status": "running"}')
    newest = run / "checkpoints" / "ckpt-000004.pt"
    _break_by_flipping_bytes(newest)
    data = newest.read_bytes()
    older = (run / "checkpoints" / "ckpt-000002.pt").read_bytes()
    capsys.readouterr()

    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    captured = capsys.readouterr()
    line = _one_line(captured.err)
    assert line.startswith(f"mappo: skipped checkpoint {str(newest)!r} is truncated or corrupt")
    assert line.endswith("kept as ckpt-000004.pt.corrupt")
    assert "from ckpt-000002.pt (iteration 2)" in captured.out
    assert (run / "checkpoints" / "ckpt-000004.pt.corrupt").read_bytes() == data
    assert (run / "checkpoints" / "ckpt-000002.pt").read_bytes() == older
    assert _comparable_rows(run) == straight_rows
