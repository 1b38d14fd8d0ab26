"""The run directory: resolved config, per-iteration metrics CSV, run status and lock.

Layout::

    RUN_DIR/
        config.yaml     the resolved RunConfig
        metrics.csv     one row per iteration
        status.json     {"status": "running" | "interrupted" | "failed" | "finished",
                         "pid", "host", "heartbeat", ...}
        history.jsonl   one line per resume (mappo_torchrl.runs.resume)
        .lock           held (flock) by the process training in RUN_DIR
        checkpoints/    ckpt-<iteration>.pt (see :mod:`~mappo_torchrl.runs.checkpoint`)

A directory that already holds a run is never reused unless the caller asks
(``overwrite=True``), and even then only a directory this project wrote as a
run is removed (:func:`is_run_dir`): anything else is refused. A run is
locked while a process trains in it; the OS drops the lock when that process
dies, however it dies, so a run whose status still says "running" but whose
lock is free is a dead (stale) run, not a live one.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any

from mappo_torchrl.config import RunConfig, save_config
from mappo_torchrl.config.checks import first_line

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; runs are then not protected
    fcntl = None

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.csv"
STATUS_FILE = "status.json"
#: One JSON line per resume: which checkpoint, which options changed.
HISTORY_FILE = "history.jsonl"
#: The collecting worker processes' standard error (``Trainer(worker_log=...)``).
WORKER_LOG = "worker.log"
LOCK_FILE = ".lock"
STATUSES = ("running", "interrupted", "failed", "finished")
#: Top-level entries this project writes in a run directory (besides dot-files
#: it writes: the lock and temporary files). A directory holding anything else
#: is not removed by ``--overwrite``.
RUN_ENTRIES = frozenset(
    {
        CONFIG_FILE,
        METRICS_FILE,
        STATUS_FILE,
        HISTORY_FILE,
        WORKER_LOG,
        "checkpoints",
        "videos",
        "tensorboard",
        "wandb",
        "mlruns",
    }
)
_OWN_DOTFILES = (LOCK_FILE, f".{CONFIG_FILE}.tmp", f".{METRICS_FILE}.tmp", f".{STATUS_FILE}.tmp")
_DAMAGED_PREFIX = f"{METRICS_FILE}.damaged-"
#: The rows of a run started again because it had no checkpoint (``--resume``).
RESTARTED_PREFIX = f"{METRICS_FILE}.restarted-"
#: The columns metrics.csv starts with; the metrics follow in the order they are logged.
FIRST_COLUMNS = ("iteration", "frames")


class RunDirError(RuntimeError):
    """A run directory cannot be used as asked (one line, names the path)."""


def default_run_dir(config: RunConfig, root: str | Path = "runs") -> Path:
    """``runs/<scenario>-seed<seed>-<timestamp>``: a fresh path for a new run."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(root) / f"{config.env.scenario}-seed{config.seed}-{stamp}"


def is_run_dir(path: str | Path) -> bool:
    """Whether ``path`` is a run directory this project wrote, and nothing else.

    The rule ``--overwrite`` follows before removing anything: ``path`` is a
    real directory (not a symlink), it holds ``config.yaml`` and a
    ``status.json`` whose ``status`` is one this project writes, and every
    entry in it is one a run writes (:data:`RUN_ENTRIES`, the lock, temporary
    files, kept copies of a damaged metrics.csv). A user's file placed in a
    run directory therefore keeps the whole directory from being removed.
    """
    return _not_a_run(Path(path)) is None


def _not_a_run(path: Path) -> str | None:
    """Why ``path`` is not a run directory this project wrote, or None if it is."""
    if path.is_symlink():
        return "is a symbolic link"
    if not path.is_dir():
        return "is not a directory"
    if not (path / CONFIG_FILE).is_file():
        return f"has no {CONFIG_FILE}"
    if read_status(path).get("status") not in STATUSES:
        return f"has no {STATUS_FILE} written by mappo"
    for entry in sorted(os.listdir(path)):
        own = (
            entry in RUN_ENTRIES
            or entry in _OWN_DOTFILES
            or entry.startswith((_DAMAGED_PREFIX, RESTARTED_PREFIX))
        )
        if not own or (path / entry).is_symlink():
            return f"holds {entry!r}, which a run does not write"
    return None


class RunLock:
    """An exclusive OS lock on ``RUN_DIR/.lock``, held until :meth:`release` or process exit.

    Uses ``fcntl.flock``: the kernel drops the lock when the process dies
    (``kill -9`` included), so a lock can never outlive its owner.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = None

    def acquire(self) -> bool:
        """Take the lock without waiting; False if another process holds it."""
        if fcntl is None:
            return True
        file = open(self.path / LOCK_FILE, "a+b")  # noqa: SIM115 - held while the run lives
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.close()
            return False
        self._file = file
        return True

    def release(self) -> None:
        """Let go of the lock (closing the file drops it)."""
        if self._file is not None:
            self._file.close()
            self._file = None


def run_is_live(path: str | Path) -> bool:
    """Whether a process is training in ``path`` now (it holds the run's lock)."""
    path = Path(path)
    if fcntl is None or not (path / LOCK_FILE).is_file():
        return False
    try:
        with open(path / LOCK_FILE, "rb") as file:
            fcntl.flock(file.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


def run_state(path: str | Path) -> str:
    """The run's status as a reader should see it.

    ``"live"`` while a process trains in it, ``"stale"`` when status.json says
    "running" but no process holds the lock (it died: crash, ``kill -9``,
    power loss), else the recorded status (``"unknown"`` without one).
    """
    if run_is_live(path):
        return "live"
    status = read_status(path).get("status", "unknown")
    return "stale" if status == "running" else status


def refuse_if_live(path: str | Path, what: str) -> None:
    """Raise :class:`RunDirError` if a process is training in ``path``."""
    if run_is_live(path):
        raise RunDirError(_live_message(Path(path), what))


def _live_message(path: Path, what: str) -> str:
    status = read_status(path)
    who = f"process {status.get('pid', '?')} on {status.get('host', '?')}"
    beat = status.get("heartbeat")
    since = f", last heartbeat {beat}" if beat else ""
    return f"{what}={str(path)!r}: a live run is training there ({who}{since}); stop it first"


class RunDir:
    """Writes one run's files. Create it with :meth:`create` or :meth:`reopen`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._columns: list[str] | None = None
        self.lock = RunLock(path)
        #: Set by :meth:`reopen`: the iteration of the last row of metrics.csv kept (0: none),
        #: and what was repaired ("" if nothing).
        self.last_row = 0
        self.repair_note = ""

    @classmethod
    def create(cls, path: str | Path, config: RunConfig, *, overwrite: bool = False) -> RunDir:
        """Start a new run in ``path`` (locked) and save its config.

        Raises:
            RunDirError: if ``path`` already holds something and ``overwrite``
                is false; if ``overwrite`` is true but ``path`` is not a run
                directory this project wrote (:func:`is_run_dir`) or a process
                is training in it; if ``path`` cannot be written.
        """
        path = Path(path)
        if str(path) == "":
            raise RunDirError("run_dir='': must be a directory path")
        if path.is_symlink() or (path.exists() and not path.is_dir()):
            kind = "a symbolic link" if path.is_symlink() else "a file"
            raise RunDirError(f"run_dir={str(path)!r}: is {kind}, not a directory; choose another")
        old = None
        if path.exists() and any(path.iterdir()):
            why = _not_a_run(path)
            if not overwrite and why is None:
                raise RunDirError(
                    f"run_dir={str(path)!r}: already holds a run (status: {run_state(path)}); "
                    "pass --overwrite to replace it or choose another --run-dir"
                )
            if not overwrite:
                raise RunDirError(
                    f"run_dir={str(path)!r}: is not empty and not a run directory (it {why}); "
                    "choose another --run-dir"
                )
            if why is not None:
                raise RunDirError(
                    f"run_dir={str(path)!r}: --overwrite only replaces a run directory, and "
                    f"this one {why}; nothing was removed"
                )
            _check_not_above_cwd(path)
            old = RunLock(path)
            if not old.acquire():
                raise RunDirError(_live_message(path, "run_dir"))
        run = cls(path)
        try:
            if old is not None:
                shutil.rmtree(path)
            path.mkdir(parents=True, exist_ok=True)
            if not run.lock.acquire():  # another `mappo train` got here first
                raise RunDirError(_live_message(path, "run_dir"))
            save_config(config, path / CONFIG_FILE)
            run.write_status("running")
        except OSError as err:
            run.lock.release()
            raise RunDirError(
                f"run_dir={str(path)!r}: cannot write there ({first_line(err)})"
            ) from None
        finally:
            if old is not None:
                old.release()
        return run

    @classmethod
    def reopen(cls, path: str | Path, *, keep_through: int) -> RunDir:
        """Lock a stopped run and continue writing it from iteration ``keep_through`` on.

        Rows of ``metrics.csv`` after that iteration (written after the
        checkpoint being resumed from) are dropped; the resumed run writes
        them again. Unreadable rows (a crash or a full disk in the middle of a
        write) are dropped too, after a copy of the damaged file is kept as
        ``metrics.csv.damaged-<time>``; ``repair_note`` then says so.

        Raises:
            RunDirError: if a process is training in ``path`` or it cannot be written.
        """
        run = cls(Path(path))
        try:
            if not run.lock.acquire():
                raise RunDirError(_live_message(run.path, "--resume"))
            file = run.path / METRICS_FILE
            if file.is_file():
                columns, rows, damaged = parse_metrics(file)
                kept = [r for r in rows if float(r["iteration"]) <= keep_through]
                if damaged:
                    copy = file.with_name(_DAMAGED_PREFIX + time.strftime("%Y%m%d-%H%M%S"))
                    shutil.copy2(file, copy)
                    run.repair_note = (
                        f"{file}: {damaged} unreadable row(s) dropped, {len(kept)} kept "
                        f"(the damaged file is kept as {copy.name})"
                    )
                if columns:
                    run._rewrite(columns, kept)
                else:
                    file.unlink()
                run.last_row = int(float(kept[-1]["iteration"])) if kept else 0
        except OSError as err:
            run.lock.release()
            raise RunDirError(
                f"--resume={str(path)!r}: cannot write there ({first_line(err)})"
            ) from None
        return run

    def close(self) -> None:
        """Release the run's lock (it is also released when the process ends)."""
        self.lock.release()

    def write_status(self, status: str, **extra: Any) -> None:
        """Atomically record the run's status, with this process, host and a heartbeat."""
        now = time.strftime("%Y-%m-%dT%H:%M:%S")
        payload = {
            "status": status,
            "updated": now,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "heartbeat": now,
            **extra,
        }
        atomic_write_text(self.path / STATUS_FILE, json.dumps(payload, indent=2) + "\n")

    def log_metrics(self, metrics: dict[str, float]) -> None:
        """Append one iteration's metrics to ``metrics.csv``.

        A metric that first appears after the first row (``eval/*``, written
        every few iterations) adds a column: the file is rewritten with it,
        and earlier rows get ``nan`` there.
        """
        file = self.path / METRICS_FILE
        if self._columns is None:
            self._rewrite(list(metrics), [])
        new = [name for name in metrics if name not in self._columns]
        if new:
            with file.open(newline="") as f:
                rows = list(csv.DictReader(f))
            self._rewrite([*self._columns, *new], rows)
        with file.open("a", newline="") as f:
            csv.writer(f).writerow([_fmt(metrics.get(c, math.nan)) for c in self._columns])

    def _rewrite(self, columns: list[str], rows: list[dict[str, str]]) -> None:
        """Write ``rows`` under ``columns`` (:data:`FIRST_COLUMNS` first) through a rename.

        A resumed run's file, in whatever order an older version wrote it, is
        rewritten in this order too, so the rows it appends line up.
        """
        first = [c for c in FIRST_COLUMNS if c in columns]
        columns = first + [c for c in columns if c not in first]
        file = self.path / METRICS_FILE
        tmp = file.with_name(f".{file.name}.tmp")
        with _removed_on_error(tmp), tmp.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            for row in rows:
                writer.writerow([row.get(c) or "nan" for c in columns])
        os.replace(tmp, file)
        self._columns = columns


def _check_not_above_cwd(path: Path) -> None:
    """Refuse to remove the working directory or one of its parents."""
    here, target = Path.cwd().resolve(), path.resolve()
    if target == here or target in here.parents:
        raise RunDirError(
            f"run_dir={str(path)!r}: is the working directory or holds it; nothing was removed"
        )


def read_status(path: str | Path) -> dict[str, Any]:
    """The run's ``status.json`` as a dict, or ``{}`` if it has none or it is damaged.

    Damaged: unreadable, not UTF-8, not JSON, or JSON but not an object
    (``[1, 2]``, ``null``). Such a run reads as one without a status.
    """
    file = Path(path) / STATUS_FILE
    try:
        status = json.loads(file.read_text())
    except (OSError, ValueError, RecursionError):  # ValueError: undecodable bytes or not JSON
        return {}
    return status if isinstance(status, dict) else {}


def read_metrics(path: str | Path) -> list[dict[str, float]]:
    """The rows of a run's ``metrics.csv``, as floats (unreadable rows left out)."""
    return [
        {k: float(v) for k, v in row.items()} for row in parse_metrics(Path(path) / METRICS_FILE)[1]
    ]


def parse_metrics(file: str | Path) -> tuple[list[str], list[dict[str, str]], int]:
    """``(columns, rows, damaged)`` of a metrics.csv, reading as far as it is sound.

    A row is kept when it ends with a newline, has one number per column and
    an iteration above the row before; reading stops at the first row that does not
    (a truncated, garbled or binary tail), and ``damaged`` counts the lines
    from there on. A damaged header gives no columns and no rows.
    """
    with open(file, newline="", errors="replace") as f:
        lines = f.read().replace("\0", "\ufffd").splitlines(keepends=True)
    try:
        columns = next(csv.reader(lines[:1]), [])
    except csv.Error:
        columns = []
    if not columns or "iteration" not in columns or len(set(columns)) != len(columns):
        return [], [], len(lines)
    rows: list[dict[str, str]] = []
    for number, line in enumerate(lines[1:]):
        try:
            values = next(csv.reader([line]), [])
            if not line.endswith("\n") or len(values) != len(columns):
                raise ValueError
            numbers = [float(v) for v in values]
        except (csv.Error, ValueError):
            return columns, rows, len(lines) - 1 - number
        iteration = numbers[columns.index("iteration")]
        if rows and not iteration > float(rows[-1]["iteration"]):
            return columns, rows, len(lines) - 1 - number
        rows.append(dict(zip(columns, values, strict=True)))
    return columns, rows, 0


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    with _removed_on_error(tmp):
        tmp.write_text(text)
    os.replace(tmp, path)


@contextlib.contextmanager
def _removed_on_error(tmp: Path):
    """Delete the temporary file ``tmp`` if its writing fails (full disk, Ctrl-C)."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


def _fmt(value: float) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)
