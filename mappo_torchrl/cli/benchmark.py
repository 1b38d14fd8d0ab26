"""``mappo benchmark``: run a grid of scenarios x seeds x variants and write its results."""

from __future__ import annotations

import argparse
import contextlib
import shlex
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from mappo_torchrl.cli.options import fail


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``benchmark`` sub-command and its options to ``subparsers``."""
    from mappo_torchrl.benchmark.grid import (
        BASELINES,
        SUITE,
        SUITE_FRAMES,
        SUITE_SEEDS,
    )
    from mappo_torchrl.config import PRESETS

    parser = subparsers.add_parser(
        "benchmark",
        help="run scenarios x seeds x variants (locally or on Ray) and report the results",
        description=(
            "Run every scenario with every seed and every variant, each cell an ordinary run "
            "directory OUT/<scenario>/<arm>/seed<N> (mappo eval and mappo plot work on it), "
            "then write OUT/results.md, results.json, learning_curves.png and marl_eval.json. "
            "Rerunning the same command skips finished cells and resumes interrupted ones; a "
            "failed cell is reported and the others go on. Ctrl-C stops every running cell "
            "after its current iteration, with a checkpoint; so does killing the command "
            "outright. One command at a time may run in an --out (it holds OUT/.lock)."
        ),
    )
    parser.add_argument(
        "--scenarios",
        nargs="+",
        metavar="NAME",
        default=list(SUITE),
        help=f"VMAS scenarios (default: the suite, {' '.join(SUITE)})",
    )
    parser.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        metavar="N",
        default=list(SUITE_SEEDS),
        help=f"seeds (default: {' '.join(map(str, SUITE_SEEDS))})",
    )
    parser.add_argument(
        "--frames",
        type=int,
        metavar="N",
        default=SUITE_FRAMES,
        help=f"frames per run, collector.total_frames (default: {SUITE_FRAMES})",
    )
    parser.add_argument(
        "--variant",
        action="append",
        nargs="+",
        default=[],
        metavar=("NAME", "KEY=VALUE"),
        help="an arm: a name and the options it changes, e.g. --variant gamma99 loss.gamma=0.99 "
        "(repeatable; default: one arm, 'default', with no change)",
    )
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="every variant starts from this preset instead of the library defaults",
    )
    parser.add_argument(
        "--baseline",
        choices=BASELINES,
        help="also run this pipeline as an arm, with the same scenarios, seeds and frames "
        "(tutorial: the tutorial-style TorchRL pipeline)",
    )
    parser.add_argument(
        "--baseline-set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="change a setting of the baseline pipeline, e.g. num_envs=30 lr=0.001",
    )
    parser.add_argument(
        "--out", metavar="DIR", help="the benchmark directory (cells, logs and results)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="cells run at once on this machine, each with max(1, cores // N) torch threads "
        "unless --threads-per-cell says (default: 1)",
    )
    parser.add_argument(
        "--threads-per-cell",
        type=int,
        metavar="N",
        help="torch threads of each local cell, collecting and updating alike (threads and "
        "update_threads; an overlapped cell's collecting worker gets N too, and VMAS slows "
        "down with threads competing for cores); --workers x N may not exceed this "
        "machine's cores (default: max(1, cores // --workers), each cell keeping its own "
        "threads and update_threads capped there: the defaults' 1 and 2)",
    )
    parser.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="run each cell as a Ray task instead: 'local' starts Ray on this machine, 'auto' "
        "joins the cluster started with 'ray start' (needs the ray extra)",
    )
    parser.add_argument(
        "--cpus-per-cell",
        type=float,
        default=1.0,
        metavar="N",
        help="with --ray: CPUs each cell's task asks for, also its torch threads (default: 1)",
    )
    parser.add_argument(
        "--gpus-per-cell",
        type=float,
        default=0.0,
        metavar="N",
        help="with --ray: GPUs each cell's task asks for (default: 0; set --variant ... "
        "device=cuda too)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print what each cell would do, run nothing"
    )
    parser.add_argument(
        "--report",
        metavar="DIR",
        help="only redraw the results of the benchmark directory DIR from its finished cells",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=benchmark_command)


def benchmark_command(args: argparse.Namespace) -> int:
    """Run (or resume) the grid ``args`` describe and write its results; return the exit code.

    0 when every cell finished, 1 when a cell failed, 130 when stopped.
    """
    from mappo_torchrl.benchmark.report import write_report

    if args.report is not None:
        if args.out is not None:
            fail("mappo benchmark: error: --report DIR redraws DIR's results; drop --out")
        try:
            written = write_report(args.report)
        except FileNotFoundError as err:
            fail(f"mappo benchmark: error: --report: {err}")
        except OSError as err:
            where = f"--report={args.report!r}"
            fail(f"mappo benchmark: error: {where}: cannot write there ({_why(err)})")
        print(f"mappo benchmark: {', '.join(str(p) for p in written)}")
        return 0
    if args.out is None:
        fail("mappo benchmark: error: --out DIR is required (or --report DIR to redraw results)")
    spec = _spec(args)
    root = Path(args.out)
    _check_cells(spec, root)
    if args.dry_run:
        return _run_grid(args, spec, root, _plan(spec, root))
    lock = _claim_out(root, spec.to_json(command_line(spec, args)))
    try:
        if not _wait_for_live_cells(spec, root):
            return 130
        return _run_grid(args, spec, root, _plan(spec, root))
    finally:
        lock.release()


def _spec(args: argparse.Namespace):
    from mappo_torchrl.benchmark.executors import check_threads_per_cell
    from mappo_torchrl.benchmark.grid import DEFAULT_VARIANT, BenchmarkSpec, Variant, parse_variant
    from mappo_torchrl.config import ConfigError

    if args.workers < 1:
        fail(f"mappo benchmark: error: --workers={args.workers}: must be a positive integer")
    if args.ray is not None and args.workers != 1:
        fail(
            "mappo benchmark: error: --workers is for local runs; with --ray, Ray places the "
            "cells (size them with --cpus-per-cell)"
        )
    if args.ray is None and (args.cpus_per_cell != 1.0 or args.gpus_per_cell != 0.0):
        fail("mappo benchmark: error: --cpus-per-cell and --gpus-per-cell go with --ray")
    if args.cpus_per_cell <= 0 or args.gpus_per_cell < 0:
        fail(
            f"mappo benchmark: error: --cpus-per-cell={args.cpus_per_cell} must be > 0 and "
            f"--gpus-per-cell={args.gpus_per_cell} >= 0"
        )
    if args.baseline_set and args.baseline is None:
        fail("mappo benchmark: error: --baseline-set needs --baseline")
    if args.threads_per_cell is not None and args.ray is not None:
        fail(
            "mappo benchmark: error: --threads-per-cell is for local runs; with --ray, "
            "--cpus-per-cell sets each cell's threads"
        )
    try:
        if args.threads_per_cell is not None:
            check_threads_per_cell(args.threads_per_cell, args.workers)
        variants = [parse_variant(tokens) for tokens in args.variant] or [Variant(DEFAULT_VARIANT)]
        overrides = {}
        for item in args.baseline_set:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise ConfigError("--baseline-set", item, "must be KEY=VALUE, e.g. num_envs=30")
            overrides[key] = value
        spec = BenchmarkSpec(
            scenarios=list(args.scenarios),
            seeds=list(args.seeds),
            frames=args.frames,
            variants=variants,
            preset=args.preset,
            baseline=args.baseline,
            baseline_overrides=overrides,
        )
        spec.validate()
    except ConfigError as err:
        fail(f"mappo benchmark: error: {err}")
    return spec


def _check_cells(spec, root: Path) -> None:
    """Fail (one line, nothing written) if a cell under ``root`` holds a run of other settings."""
    from mappo_torchrl.benchmark.grid import check_cell_matches
    from mappo_torchrl.config import ConfigError

    for cell in spec.cells():
        try:
            check_cell_matches(spec, cell, root)
        except ConfigError as err:
            fail(f"mappo benchmark: error: {err}")


def _plan(spec, root: Path) -> dict:
    """What each cell gets: skip, resume, restart or start."""
    from mappo_torchrl.benchmark.grid import plan_cell

    return {
        cell: plan_cell(cell.path(root), resumable=cell.arm != spec.baseline)
        for cell in spec.cells()
    }


def _claim_out(root: Path, spec_json: str):
    """Create and lock the benchmark directory ``root`` and write its spec; the lock (a
    :class:`~mappo_torchrl.runs.directory.RunLock`) is held until released or this process
    ends, however it ends.

    Fails with one line if ``root`` cannot be written or another ``mappo benchmark`` holds it.
    """
    from mappo_torchrl.benchmark.grid import SPEC_FILE
    from mappo_torchrl.runs.directory import LOCK_FILE, RunLock

    where = f"mappo benchmark: error: --out={str(root)!r}"
    if root.exists() and not root.is_dir():
        fail(f"{where}: is a file, not a directory; choose another --out")
    lock = RunLock(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        if not lock.acquire():
            fail(
                f"{where}: another mappo benchmark is running there (it holds "
                f"{root / LOCK_FILE}); wait for it to end or choose another --out"
            )
        (root / SPEC_FILE).write_text(spec_json)
    except OSError as err:
        lock.release()
        fail(f"{where}: cannot write there ({_why(err)}); choose another --out")
    return lock


def _why(err: OSError) -> str:
    """An OS error in a few words: ``Permission denied: '/data/bench'``."""
    from mappo_torchrl.config.checks import first_line

    if err.strerror and err.filename:
        return f"{err.strerror}: {str(err.filename)!r}"
    return first_line(err)


def _live_cells(spec, root: Path) -> list:
    """The cells in which a process trains now (a driver killed earlier left it running)."""
    from mappo_torchrl.runs.directory import run_is_live

    return [cell for cell in spec.cells() if run_is_live(cell.path(root))]


def _still_running(cell, root: Path) -> str:
    from mappo_torchrl.runs.directory import read_status

    status = read_status(cell.path(root))
    who = f"process {status.get('pid', '?')} on {status.get('host', '?')}"
    return f"mappo benchmark: {cell.label}: still running from an earlier driver ({who})"


def _wait_for_live_cells(spec, root: Path, poll_s: float = 1.0) -> bool:
    """Wait until no cell of the grid is being trained in; False if stopped while waiting.

    A driver that died (``kill -9``) leaves cells that stop after their
    current iteration (they get SIGTERM on Linux) or, elsewhere, train on to
    their end; their run directories are locked until then. Starting them
    again meanwhile would fail, so this waits for them and then plans every
    cell from what it holds.
    """
    told: set = set()
    try:
        with _stops_raise_interrupt():
            while live := _live_cells(spec, root):
                for cell in live:
                    if cell not in told:
                        told.add(cell)
                        print(f"{_still_running(cell, root)}; waiting for it to stop", flush=True)
                time.sleep(poll_s)
    except KeyboardInterrupt:
        print("mappo benchmark: stopped while waiting; nothing ran, the results are unchanged")
        return False
    return True


def command_line(spec, args: argparse.Namespace) -> str:
    """The ``mappo benchmark`` command that runs ``spec`` as ``args`` ask (for the results)."""
    parts = ["mappo", "benchmark", "--scenarios", *spec.scenarios]
    parts += ["--seeds", *map(str, spec.seeds), "--frames", str(spec.frames)]
    if spec.preset:
        parts += ["--preset", spec.preset]
    for v in spec.variants:
        if v.overrides or len(spec.variants) > 1 or v.name != "default":
            parts += ["--variant", v.name, *(f"{k}={x}" for k, x in v.overrides.items())]
    if spec.baseline:
        parts += ["--baseline", spec.baseline]
        if spec.baseline_overrides:
            parts += ["--baseline-set", *(f"{k}={x}" for k, x in spec.baseline_overrides.items())]
    parts += ["--out", args.out]
    if args.threads_per_cell is not None:
        parts += ["--threads-per-cell", str(args.threads_per_cell)]
    if args.ray:
        parts += ["--ray", args.ray]
        if args.cpus_per_cell != 1.0:
            parts += ["--cpus-per-cell", f"{args.cpus_per_cell:g}"]
        if args.gpus_per_cell:
            parts += ["--gpus-per-cell", f"{args.gpus_per_cell:g}"]
    else:
        parts += ["--workers", str(args.workers)]
    return shlex.join(parts)


def _run_grid(args: argparse.Namespace, spec, root: Path, plan: dict) -> int:
    from mappo_torchrl.benchmark.executors import (
        ExecutorUnavailable,
        cell_job,
        threads_per_worker,
    )
    from mappo_torchrl.benchmark.report import RESULTS_MD, write_report

    if args.ray:
        threads = max(1, int(args.cpus_per_cell))
    else:
        threads = args.threads_per_cell or threads_per_worker(args.workers)
    exact = args.threads_per_cell is not None
    jobs = [
        cell_job(spec, cell, root, threads=threads, action=action, exact_threads=exact)
        for cell, action in plan.items()
        if action != "skip"
    ]
    counts = {a: sum(1 for x in plan.values() if x == a) for a in ("skip", "resume", "restart")}
    where = (
        f"Ray ({args.ray}), {args.cpus_per_cell:g} CPU(s), {args.gpus_per_cell:g} GPU(s) per cell"
        if args.ray
        else f"{args.workers} worker(s) x {threads} thread(s)"
    )
    print(
        f"mappo benchmark: {len(plan)} cells in {root}: {counts['skip']} finished already, "
        f"{counts['resume']} to resume, {counts['restart']} to restart, "
        f"{len(jobs) - counts['resume'] - counts['restart']} to start; {where}",
        flush=True,
    )
    if args.dry_run:
        for cell in _live_cells(spec, root):
            print(f"{_still_running(cell, root)}; a real run waits for it to stop first")
        for job in jobs:
            print(f"{job.action:8} {job.cell.label}: python {shlex.join(job.argv)}")
        return 0

    progress = _GridProgress(
        root, len(plan), counts["skip"], queued=bool(args.ray), off=args.no_progress
    )
    interrupted = False
    started = time.perf_counter()
    try:
        with _stops_raise_interrupt():
            _run_jobs(args, jobs, progress)
    except KeyboardInterrupt:
        interrupted = True
    except ExecutorUnavailable as err:
        progress.close()
        fail(f"mappo benchmark: error: {err}")
    finally:
        progress.close()
    write_report(root)
    failed = progress.failed
    finished = counts["skip"] + progress.finished
    print(
        f"mappo benchmark: {finished} of {len(plan)} cells finished"
        + (f", {len(failed)} failed ({', '.join(failed)})" if failed else "")
        + f" ({len(jobs)} run by this command in {time.perf_counter() - started:.0f} s)"
        + f"; results: {root / RESULTS_MD}"
    )
    if interrupted:
        print(f"mappo benchmark: stopped; to continue, rerun: {command_line(spec, args)}")
        return 130
    return 1 if failed else 0


def _run_jobs(args: argparse.Namespace, jobs: list, progress: _GridProgress) -> None:
    """Run ``jobs`` on Ray or in local worker processes, as ``args`` say."""
    from mappo_torchrl.benchmark.executors import run_local, run_ray

    if args.ray:
        run_ray(
            jobs,
            address=args.ray,
            cpus=args.cpus_per_cell,
            gpus=args.gpus_per_cell,
            on_start=progress.started,
            on_done=progress.done,
        )
    else:
        run_local(jobs, workers=args.workers, on_start=progress.started, on_done=progress.done)


@contextlib.contextmanager
def _stops_raise_interrupt() -> Iterator[None]:
    """SIGTERM and SIGINT raise ``KeyboardInterrupt`` inside the block."""
    # SIGINT explicitly too: a process started in the background inherits it ignored.
    previous = {s: signal.signal(s, _raise_interrupt) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


class _GridProgress:
    """A tqdm bar over the grid's cells, with finished / running / failed counts and ETA."""

    def __init__(self, root: Path, total: int, already: int, *, queued: bool, off: bool) -> None:
        from tqdm import tqdm

        self.root = root
        self.lock = threading.Lock()
        self.bar = tqdm(
            total=total, initial=already, unit="cell", desc="benchmark", disable=off, smoothing=0
        )
        self.write = tqdm.write
        self.running_word = "running or queued" if queued else "running"
        self.running = 0
        self.finished = 0
        self.failed: list[str] = []
        self.already = already
        self._show()

    def _show(self) -> None:
        self.bar.set_postfix_str(
            f"finished {self.already + self.finished}, {self.running_word} {self.running}, "
            f"failed {len(self.failed)}"
        )

    def started(self, job) -> None:
        with self.lock:
            self.running += 1
            self._show()

    def done(self, outcome) -> None:
        from mappo_torchrl.runs.directory import read_status

        label = outcome.cell.label
        with self.lock:
            self.running = max(0, self.running - 1)
            status = read_status(outcome.cell.path(self.root)).get("status")
            if outcome.returncode == 0 and status == "finished":
                self.finished += 1
                self.bar.update(1)
                self.write(f"mappo benchmark: {label}: finished in {outcome.seconds:.0f} s")
            elif outcome.returncode == 130:
                self.write(f"mappo benchmark: {label}: stopped (rerun to resume)")
            else:
                self.failed.append(label)
                self.bar.update(1)
                why = f": {outcome.error}" if outcome.error else ""
                self.write(
                    f"mappo benchmark: {label}: FAILED (exit {outcome.returncode}){why}; "
                    f"log: {outcome.log}"
                )
            self._show()

    def close(self) -> None:
        self.bar.close()
