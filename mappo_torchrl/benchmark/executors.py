"""Where the cells of a benchmark run: local worker processes, or Ray tasks.

Every cell is its own process, ``mappo train`` (or the baseline pipeline)
writing its own run directory, with its output appended to
``OUT/logs/<cell>.log``. The executors only decide how many run at once and
where:

- :func:`run_local`: at most ``workers`` cells at a time on this machine
  (a thread per slot waits on its cell's process); each cell gets
  ``max(1, cores // workers)`` torch threads, or exactly ``--threads-per-cell``
  (:func:`check_threads_per_cell`), so the cells never ask for more threads
  than the machine has cores.
- :func:`run_ray`: each cell is a Ray task with its own ``num_cpus`` and
  ``num_gpus``; Ray places them on the cluster. The benchmark directory must
  be on a file system every node sees.

Stopping: Ctrl-C (or SIGTERM) on the benchmark sends each running cell one
SIGINT, which makes ``mappo train`` stop after its current iteration with a
checkpoint; cells not started yet are not started. Rerunning the command then
resumes them. If the benchmark itself dies (``kill -9``, an out-of-memory
kill), each cell gets one SIGTERM from its own watchdog thread
(:mod:`~mappo_torchrl.benchmark.watchdog`, :func:`cell_command`), the same
stop: no cell trains on as an orphan.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from mappo_torchrl.benchmark.grid import BenchmarkSpec, Cell
from mappo_torchrl.benchmark.watchdog import PARENT_ENV
from mappo_torchrl.config import ConfigError
from mappo_torchrl.training.threads import available_cores


@dataclass
class CellJob:
    """One process to run: a cell, its command line and where its output goes."""

    cell: Cell
    """The cell."""
    argv: list[str]
    """The arguments of Python (``-m mappo_torchrl.cli.main train ...``): the interpreter is
    the one running the job, wherever that is (a Ray node may have its own)."""
    log: Path
    """Its log file (appended to)."""
    threads: int
    """Torch (and OpenMP) threads the process may use."""
    action: str
    """``start``, ``restart`` or ``resume`` (:data:`~mappo_torchrl.benchmark.grid.ACTIONS`)."""


@dataclass
class CellOutcome:
    """How a cell's process ended."""

    cell: Cell
    """The cell."""
    returncode: int
    """Its exit code: 0 finished, 130 interrupted, anything else failed (-1: never ran)."""
    seconds: float
    """Wall time of this attempt."""
    log: Path
    """Its log file."""
    error: str = ""
    """Why it failed, in one line (the log's last line, or the executor's error)."""


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    """Torch threads each of ``workers`` local cells may use: ``max(1, cores // workers)``.

    Example:
        >>> from mappo_torchrl.benchmark.executors import threads_per_worker
        >>> threads_per_worker(2, cores=16), threads_per_worker(4, cores=2)
        (8, 1)
    """
    return max(1, (cores or available_cores()) // workers)


def check_threads_per_cell(threads: int, workers: int, cores: int | None = None) -> None:
    """Fail unless ``workers`` cells of ``threads`` threads each fit in the machine's cores.

    Raises:
        ConfigError: naming ``--threads-per-cell``, its value and the values allowed.

    Example:
        >>> from mappo_torchrl.benchmark.executors import check_threads_per_cell
        >>> check_threads_per_cell(2, workers=2, cores=4)  # 2 x 2 threads on 4 cores: fine
        >>> try:
        ...     check_threads_per_cell(3, workers=2, cores=4)
        ... except ValueError as err:
        ...     print(err)
        --threads-per-cell=3: 2 worker(s) x 3 thread(s) need 6 cores and this machine has 4;
        allowed: 1 to 2
    """
    cores = cores or available_cores()
    if threads >= 1 and workers * threads <= cores:
        return
    most = cores // workers
    allowed = f"1 to {most}" if most else f"none while --workers {workers} exceeds the cores"
    if threads < 1:
        raise ConfigError("--threads-per-cell", threads, f"must be a positive integer ({allowed})")
    raise ConfigError(
        "--threads-per-cell",
        threads,
        f"{workers} worker(s) x {threads} thread(s) need {workers * threads} cores and this "
        f"machine has {cores}; allowed: {allowed}",
    )


def cell_job(
    spec: BenchmarkSpec,
    cell: Cell,
    root: str | Path,
    *,
    threads: int,
    action: str,
    exact_threads: bool = False,
) -> CellJob:
    """The :class:`CellJob` that runs ``cell`` of ``spec`` under ``root`` as ``action`` says.

    Args:
        threads: the cell's share of the cores. A ``mappo train`` cell's
            ``threads`` and ``update_threads`` are capped there, or, with
            ``exact_threads`` (``--threads-per-cell``), both set to it.
    """
    path = cell.path(root)
    python = ["-m"]
    if cell.arm == spec.baseline:
        argv = python + ["mappo_torchrl.benchmark.tutorial", "--run-dir", str(path)]
        argv += ["--scenario", cell.scenario, "--seed", str(cell.seed)]
        argv += ["--total-frames", str(spec.frames), "--threads", str(threads)]
        if spec.baseline_overrides:
            argv += ["--set", *(f"{k}={v}" for k, v in spec.baseline_overrides.items())]
        if action == "restart":
            argv.append("--overwrite")
    elif action == "resume":
        argv = python + ["mappo_torchrl.cli.main", "train", "--resume", str(path), "--no-progress"]
        # This command's share of the cores, not the one the cell was started with.
        argv += _thread_options(spec, cell, threads, exact=exact_threads)
    else:
        config = spec.run_config(cell)
        argv = python + ["mappo_torchrl.cli.main", "train", "--run-dir", str(path), "--no-progress"]
        argv += ["--scenario", cell.scenario, "--seed", str(cell.seed)]
        argv += ["--collector.total_frames", str(spec.frames)]
        if spec.preset:
            argv += ["--preset", spec.preset]
        for key, value in spec.variant(cell.arm).overrides.items():
            argv += [f"--{key}", value]
        argv += _thread_options(spec, cell, threads, exact=exact_threads)
        if threads < 2 and config.collector.overlap == "auto":
            # An overlapped worker needs a core beyond the update's: a one-core share has none.
            argv += ["--collector.overlap", "off"]
        if action == "restart":
            argv.append("--overwrite")  # the cell's own run, stopped before its first checkpoint
    return CellJob(cell, argv, cell.log(root), threads, action)


def _thread_options(spec: BenchmarkSpec, cell: Cell, threads: int, *, exact: bool) -> list[str]:
    """``--threads`` and ``--update_threads`` of a ``mappo train`` cell with ``threads`` cores."""
    if exact:
        return ["--threads", str(threads), "--update_threads", str(threads)]
    config = spec.run_config(cell)
    # Never more threads than the cell's share of the cores (0 means "all").
    return [
        "--threads",
        str(min(config.threads or threads, threads)),
        "--update_threads",
        str(min(config.update_threads or threads, threads)),
    ]


def cell_command(job: CellJob) -> list[str]:
    """The command that runs ``job`` here: ``python -m ...`` under the parent watchdog.

    The watchdog (:mod:`~mappo_torchrl.benchmark.watchdog`) stops the cell
    with one SIGTERM if the process that started it dies.
    """
    return [sys.executable, "-m", "mappo_torchrl.benchmark.watchdog", *job.argv]


class RunningCells:
    """The processes of the running cells, so that a stop reaches each of them once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running: set[subprocess.Popen] = set()
        self.stopping = False

    def start(self, job: CellJob, log):
        """Start ``job``'s process (a ``subprocess.Popen``) writing to ``log``, unless a stop
        came first (``None``)."""
        with self.lock:
            if self.stopping:
                return None
            env = {**os.environ, "OMP_NUM_THREADS": str(job.threads)}
            env["MKL_NUM_THREADS"] = str(job.threads)
            env[PARENT_ENV] = str(os.getpid())  # the cell stops if this process dies
            process = subprocess.Popen(
                cell_command(job),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                # Its own session: a Ctrl-C in the terminal reaches the benchmark only,
                # which passes on exactly one SIGINT (stop after this iteration).
                start_new_session=True,
            )
            self.running.add(process)
            return process

    def done(self, process) -> None:
        """Forget a process that has ended."""
        with self.lock:
            self.running.discard(process)

    def stop_all(self) -> None:
        """SIGINT to every running cell; none starts after this."""
        with self.lock:
            self.stopping = True
            for process in self.running:
                if process.poll() is None:
                    process.send_signal(signal.SIGINT)


def run_job(job: CellJob, processes: RunningCells | None = None) -> CellOutcome:
    """Run one cell's process to its end; its output is appended to ``job.log``.

    A ``KeyboardInterrupt`` while waiting (Ray's cancel) is passed on to the
    process as SIGINT, and the process is waited for.
    """
    processes = processes or RunningCells()
    job.log.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with job.log.open("a") as log:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        log.write(f"# {stamp} mappo benchmark: {job.action} {job.cell.label}\n")
        log.write(f"# {shlex.join(cell_command(job))}\n")
        log.flush()
        process = processes.start(job, log)
        if process is None:
            return CellOutcome(job.cell, -1, 0.0, job.log, "not started: the benchmark stopped")
        try:
            while True:
                try:
                    # In steps: Ray's cancel raises KeyboardInterrupt between bytecodes,
                    # which a single blocking wait would never reach.
                    code = process.wait(timeout=0.5)
                    break
                except subprocess.TimeoutExpired:
                    continue
                except KeyboardInterrupt:
                    process.send_signal(signal.SIGINT)
        finally:
            processes.done(process)
    seconds = time.perf_counter() - started
    return CellOutcome(job.cell, code, seconds, job.log, "" if code == 0 else _last_line(job.log))


def run_local(
    jobs: Iterable[CellJob],
    *,
    workers: int,
    on_start: Callable[[CellJob], None],
    on_done: Callable[[CellOutcome], None],
) -> None:
    """Run ``jobs``, at most ``workers`` at a time, on this machine.

    ``on_start`` and ``on_done`` are called from the pool's threads.

    Raises:
        KeyboardInterrupt: after passing a stop to the running cells and waiting for them.
    """
    processes = RunningCells()

    def run(job: CellJob) -> None:
        if processes.stopping:
            return
        on_start(job)
        outcome = run_job(job, processes)
        if outcome.returncode != -1:  # -1: not started, the benchmark was stopping
            on_done(outcome)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cell") as pool:
        pending = {pool.submit(run, job) for job in jobs}
        try:
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    future.result()
        except KeyboardInterrupt:
            processes.stop_all()
            for future in pending:
                future.cancel()
            _wait_for_running(pending, processes)
            raise


def _wait_for_running(pending, processes: RunningCells) -> None:
    """Wait for the cells still running; each further Ctrl-C passes on another SIGINT."""
    pending = {f for f in pending if not f.cancelled()}
    while pending:
        try:
            _, pending = wait(pending, return_when=FIRST_COMPLETED)
        except KeyboardInterrupt:
            processes.stop_all()  # a second SIGINT: mappo train stops at once


class ExecutorUnavailable(RuntimeError):
    """The chosen executor cannot run here (one line saying what to install or start)."""


def run_ray(
    jobs: Iterable[CellJob],
    *,
    address: str,
    cpus: float,
    gpus: float,
    on_start: Callable[[CellJob], None],
    on_done: Callable[[CellOutcome], None],
) -> None:
    """Run each job as a Ray task asking for ``cpus`` CPUs and ``gpus`` GPUs.

    Args:
        address: ``local`` starts a Ray instance on this machine for the
            command (and stops it after); ``auto`` joins the cluster started
            with ``ray start``; any other value is passed to ``ray.init``
            (e.g. ``ray://head:10001``).

    Raises:
        ExecutorUnavailable: if Ray is not installed or the cluster cannot be reached.
        KeyboardInterrupt: after cancelling the tasks (each passes a stop on to its cell).
    """
    try:
        import ray
    except ImportError:
        raise ExecutorUnavailable("--ray needs Ray: pip install 'mappo_torchrl[ray]'") from None
    sigterm = signal.getsignal(signal.SIGTERM)
    try:
        if address == "local":
            ray.init(
                address="local",
                num_cpus=available_cores(),
                include_dashboard=False,
                log_to_driver=False,
            )
        else:
            ray.init(address=address, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ExecutorUnavailable(f"--ray={address!r}: cannot start or join Ray: {first}") from None
    # Ray's driver ends the process on SIGTERM; the caller's handler passes the stop to the cells.
    signal.signal(signal.SIGTERM, sigterm)
    try:
        task = ray.remote(run_job).options(num_cpus=cpus, num_gpus=gpus, max_retries=0)
        pending = {}
        for job in jobs:
            pending[task.remote(job)] = job
            on_start(job)  # queued or running: Ray decides when
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                job = pending.pop(ready[0])
                on_done(_ray_outcome(ray, ready[0], job))
        except KeyboardInterrupt:
            for ref in pending:
                ray.cancel(ref)  # raises KeyboardInterrupt in run_job: SIGINT to the cell
            for ref, job in pending.items():
                outcome = _ray_outcome(ray, ref, job)
                if outcome.returncode != -1:
                    on_done(outcome)
            raise
    finally:
        ray.shutdown()


def _ray_outcome(ray, ref, job: CellJob) -> CellOutcome:
    try:
        return ray.get(ref)
    except ray.exceptions.TaskCancelledError:
        return CellOutcome(job.cell, -1, 0.0, job.log, "cancelled before it started")
    except ray.exceptions.RayError as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        return CellOutcome(job.cell, 1, 0.0, job.log, first)


def _last_line(log: Path) -> str:
    """The last non-empty line of a log (for a one-line failure report)."""
    try:
        with log.open("rb") as f:
            f.seek(max(0, log.stat().st_size - 4096))
            lines = f.read().decode(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""
