"""``mappo benchmark`` when things go wrong: a second driver, a killed driver, an unwritable --out.

The grids are tiny (4 envs, 10-step episodes, 40 frames per iteration) and
anything that needs no cell to train runs in this process.
"""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from test_benchmark_cmd import TINY

from mappo_torchrl.benchmark.grid import Cell, plan_cell
from mappo_torchrl.cli.main import main
from mappo_torchrl.runs.directory import RunDir, RunLock, run_is_live

ROOT = Path(__file__).resolve().parent.parent
GRID = ["--scenarios", "navigation", "--seeds", "0", "--frames", "80", "--variant", "tiny", *TINY]


def status(path: Path) -> dict:
    file = path / "status.json"
    return json.loads(file.read_text()) if file.is_file() else {}


def one_line_error(capsys, args: list[str]) -> str:
    """Run ``mappo benchmark args`` here; it must exit 2 with one line on stderr."""
    with pytest.raises(SystemExit) as exit_info:
        main(["benchmark", "--no-progress", *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    return err


def finished_cell(path: Path) -> RunDir:
    """A finished run directory of two iterations (no config.yaml: any grid accepts it)."""
    path.mkdir(parents=True)
    run = RunDir(path)
    for i in (1, 2):
        run.log_metrics({"iteration": i, "frames": 40 * i, "train/episode_return": float(i)})
    run.write_status("finished", frames=80, wall_time_s=1.0)
    return run


# -- one driver per --out -------------------------------------------------------------------


def test_a_second_driver_on_the_same_out_fails_at_once_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "bench"
    out.mkdir()
    (out / "results.md").write_text("the first driver's results\n")
    first = RunLock(out)  # what a running `mappo benchmark --out bench` holds
    assert first.acquire()
    try:
        err = one_line_error(capsys, [*GRID, "--out", str(out)])
    finally:
        first.release()
    assert f"--out={str(out)!r}: another mappo benchmark is running there" in err
    assert (out / "results.md").read_text() == "the first driver's results\n"
    assert sorted(p.name for p in out.iterdir()) == [".lock", "results.md"]


def test_a_rerun_waits_for_a_cell_still_running_from_an_earlier_driver(tmp_path, capsys):
    out = tmp_path / "bench"
    cell = Cell("navigation", "tiny", 0).path(out)
    run = finished_cell(cell)
    assert run.lock.acquire()  # the cell's process is still alive: it holds the run's lock
    threading.Timer(1.5, run.lock.release).start()  # ... and ends a moment later
    started = time.monotonic()
    assert main(["benchmark", "--no-progress", *GRID, "--out", str(out)]) == 0
    assert time.monotonic() - started >= 1.5
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(
        f"mappo benchmark: navigation/tiny/seed0: still running from an earlier driver "
        f"(process {os.getpid()} on "
    )
    assert lines[0].endswith("waiting for it to stop")
    assert "1 finished already, 0 to resume" in lines[1]  # planned once it had ended
    assert "FAILED" not in "\n".join(lines)
    assert "1 of 1 cells finished" in (out / "results.md").read_text()


# -- a driver killed with SIGKILL -----------------------------------------------------------


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="no SIGKILL on this system")
def test_cells_of_a_killed_driver_stop_and_a_rerun_finishes_the_grid(tmp_path, capsys):
    out = tmp_path / "bench"
    # 50 iterations a cell, a checkpoint after each: time to kill the driver midway.
    args = ["--scenarios", "navigation", "--seeds", "0", "1", "--frames", "2000"]
    args += ["--workers", "2", "--out", str(out), "--variant", "tiny", *TINY]
    args.append("checkpoint.interval=1")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "mappo_torchrl.cli.main", "benchmark", "--no-progress", *args]
    cells = [Cell("navigation", "tiny", seed).path(out) for seed in (0, 1)]
    driver = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 300
        while not all(list(c.glob("checkpoints/ckpt-*.pt")) for c in cells):
            assert driver.poll() is None, "the benchmark ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        # While it runs, a second driver on the same --out is refused at once.
        err = one_line_error(capsys, args)
        assert "another mappo benchmark is running there" in err
        assert not (out / "results.md").exists()
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()

    # The cells got SIGTERM: each stops after its iteration with a checkpoint, well before
    # its 50 iterations are done.
    deadline = time.monotonic() + 120
    while any(run_is_live(c) for c in cells):
        assert time.monotonic() < deadline, "the cells of the killed driver kept running"
        time.sleep(0.1)
    for cell in cells:
        assert status(cell)["status"] == "interrupted"
        assert status(cell)["iteration"] < 50
        assert plan_cell(cell) == "resume"
    for seed in (0, 1):  # one stop each, from the watchdog, not the parent's many threads
        log = (out / "logs" / f"navigation-tiny-seed{seed}.log").read_text()
        assert sum(line.startswith("mappo: SIGTERM") for line in log.splitlines()) == 1, log

    rerun = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr[-3000:]
    assert "0 finished already, 2 to resume, 0 to restart, 0 to start" in rerun.stdout
    assert "FAILED" not in rerun.stdout and "still running" not in rerun.stdout
    assert re.search(r"2 of 2 cells finished \(2 run by this command", rerun.stdout)
    assert all(status(c)["status"] == "finished" for c in cells)
    results = json.loads((out / "results.json").read_text())
    assert results["finished"] == results["cells"] == 2 and results["missing"] == []
    table = (out / "results.md").read_text()
    assert "2 of 2 cells finished" in table and "| navigation | tiny | 2 |" in table
    assert "Cells without a result" not in table


# -- an --out that cannot be written --------------------------------------------------------


def test_out_below_a_regular_file_fails_with_one_line(tmp_path, capsys):
    file = tmp_path / "notes.txt"
    file.write_text("not a folder")
    out = file / "bench"
    err = one_line_error(capsys, [*GRID, "--out", str(out)])
    assert err.startswith(f"mappo benchmark: error: --out={str(out)!r}: cannot write there (")
    assert "Not a directory" in err
    assert file.read_text() == "not a folder"


def test_out_that_is_a_file_fails_with_one_line(tmp_path, capsys):
    out = tmp_path / "bench"
    out.write_text("x")
    err = one_line_error(capsys, [*GRID, "--out", str(out)])
    assert f"--out={str(out)!r}: is a file, not a directory" in err


def test_out_on_a_read_only_file_system_fails_with_one_line(tmp_path, capsys, monkeypatch):
    # What a read-only mount answers, even to root (whom chmod does not stop).
    out = tmp_path / "bench"
    mkdir = Path.mkdir

    def read_only_mkdir(self: Path, *args, **kwargs) -> None:
        if self == out:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only_mkdir)
    err = one_line_error(capsys, [*GRID, "--out", str(out)])
    assert f"--out={str(out)!r}: cannot write there (Read-only file system: " in err
    assert not out.exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through chmod; see the EROFS test")
@pytest.mark.parametrize("where", ["existing", "new"])
def test_out_in_a_read_only_folder_fails_with_one_line(tmp_path, capsys, where):
    folder = tmp_path / "read-only"
    folder.mkdir()
    out = folder if where == "existing" else folder / "bench"
    folder.chmod(0o555)
    try:
        err = one_line_error(capsys, [*GRID, "--out", str(out)])
    finally:
        folder.chmod(0o755)
    assert f"--out={str(out)!r}: cannot write there (Permission denied: " in err
    assert list(folder.iterdir()) == []
