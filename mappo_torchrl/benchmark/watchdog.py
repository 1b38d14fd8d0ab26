"""Run a benchmark cell so that it stops when the process that started it dies.

``python -m mappo_torchrl.benchmark.watchdog -m MODULE ARGS...`` runs
``python -m MODULE ARGS...`` in this process, beside a thread that watches its
parent (the benchmark, or the Ray worker running the cell's task). When the
parent is gone (``kill -9``, an out-of-memory kill, a lost Ray driver), the
thread sends this process one SIGTERM: ``mappo train`` then stops after its
current iteration with a checkpoint, exactly as after Ctrl-C on the benchmark,
so a rerun resumes the cell instead of finding an orphan still training in it.

One signal, not one per thread of the dying parent: Linux's
``PR_SET_PDEATHSIG`` fires again each time the child is handed on to another
of the parent's threads as they exit, and a second SIGTERM stops ``mappo
train`` at once, in the middle of an iteration.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
import threading
import time

#: The environment variable holding the pid of the process that started the cell; without
#: it, the parent at start-up is watched.
PARENT_ENV = "MAPPO_BENCHMARK_PARENT"
#: Seconds between two looks at the parent.
POLL_S = 0.5


def watch_parent(parent: int, poll_s: float = POLL_S) -> threading.Thread:
    """Start a daemon thread that sends this process SIGTERM once ``parent`` is not its parent.

    A parent that died before this was called is noticed at the first look.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=watch, name="parent-watchdog", daemon=True)
    thread.start()
    return thread


def main(argv: list[str] | None = None) -> None:
    """Watch the parent, then run ``-m MODULE ARGS...`` as ``python`` would (its exit is ours)."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2 or argv[0] != "-m":
        sys.exit("usage: python -m mappo_torchrl.benchmark.watchdog -m MODULE [ARGS...]")
    parent = os.environ.pop(PARENT_ENV, "")
    watch_parent(int(parent) if parent.isdigit() else os.getppid())
    sys.argv = [argv[1], *argv[2:]]  # run_module sets argv[0] to the module's file
    runpy.run_module(argv[1], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
