"""The run directory: resolved config, per-iteration metrics CSV and run status.

Layout::

    RUN_DIR/
        config.yaml     the resolved RunConfig
        metrics.csv     one row per iteration
        status.json     {"status": "running" | "finished", ...}

A directory that already holds a run is never reused unless the caller asks
(``overwrite=True``), so a finished run cannot be lost by accident.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

from mappo_torchrl.config import RunConfig, save_config

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.csv"
STATUS_FILE = "status.json"


class RunDirError(RuntimeError):
    """A run directory cannot be used as asked (one line, names the path)."""


def default_run_dir(config: RunConfig, root: str | Path = "runs") -> Path:
    """``runs/<scenario>-seed<seed>-<timestamp>``: a fresh path for a new run."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(root) / f"{config.env.scenario}-seed{config.seed}-{stamp}"


class RunDir:
    """Writes one run's files. Create it with :meth:`create`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._columns: list[str] | None = None

    @classmethod
    def create(cls, path: str | Path, config: RunConfig, *, overwrite: bool = False) -> RunDir:
        """Start a new run in ``path`` and save its config.

        Raises:
            RunDirError: if ``path`` already holds a run and ``overwrite`` is false.
        """
        path = Path(path)
        if path.exists() and any(path.iterdir()):
            if not overwrite:
                status = read_status(path).get("status", "unknown")
                raise RunDirError(
                    f"run_dir={str(path)!r}: already holds a run (status: {status}); "
                    "pass --overwrite to replace it or choose another --run-dir"
                )
            shutil.rmtree(path)
        path.mkdir(parents=True, exist_ok=True)
        run = cls(path)
        save_config(config, path / CONFIG_FILE)
        run.write_status("running")
        return run

    @classmethod
    def reopen(cls, path: str | Path, *, keep_through: int) -> RunDir:
        """Continue writing a run from iteration ``keep_through`` on.

        Rows of ``metrics.csv`` after that iteration (written after the
        checkpoint being resumed from) are dropped; the resumed run writes
        them again.
        """
        run = cls(Path(path))
        file = run.path / METRICS_FILE
        if file.is_file():
            with file.open(newline="") as f:
                reader = csv.DictReader(f)
                columns = list(reader.fieldnames or [])
                rows = [r for r in reader if float(r["iteration"]) <= keep_through]
            run._rewrite(columns, rows)
        return run

    def write_status(self, status: str, **extra: Any) -> None:
        """Atomically record the run's status (and any extra fields)."""
        payload = {"status": status, "updated": time.strftime("%Y-%m-%dT%H:%M:%S"), **extra}
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
        file = self.path / METRICS_FILE
        tmp = file.with_name(f".{file.name}.tmp")
        with tmp.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            for row in rows:
                writer.writerow([row.get(c) or "nan" for c in columns])
        os.replace(tmp, file)
        self._columns = columns


def read_status(path: str | Path) -> dict[str, Any]:
    """The run's ``status.json`` as a dict, or ``{}`` if it has none."""
    file = Path(path) / STATUS_FILE
    try:
        return json.loads(file.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def read_metrics(path: str | Path) -> list[dict[str, float]]:
    """The rows of a run's ``metrics.csv``, as floats."""
    with (Path(path) / METRICS_FILE).open(newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _fmt(value: float) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)
