"""``mappo plot``: learning curves of runs as a PNG."""

from __future__ import annotations

import argparse
from pathlib import Path

from mappo_torchrl.cli.options import fail


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "plot",
        help="plot learning curves of runs (mean ± std over seeds) to a PNG",
        description=(
            "Plot the episode return of one or more runs against frames and against wall "
            "time. Runs whose configs differ only by seed (or by fields that do not change "
            "learning: threads, logger, checkpoints, evaluation interval) are drawn as one "
            "curve, mean ± std over the seeds; a run directory given twice counts once. "
            "Evaluation returns are drawn as markers. Runs with several agent groups get one "
            "curve per group."
        ),
    )
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories")
    parser.add_argument(
        "--out",
        metavar="FILE.png",
        default="learning_curves.png",
        help="where to write the PNG (default: learning_curves.png)",
    )
    parser.set_defaults(func=plot_command)


def plot_command(args: argparse.Namespace) -> int:
    from mappo_torchrl.viz.plot import PlotError, plot_runs

    if not args.out.lower().endswith(".png"):
        fail(f"mappo plot: error: --out={args.out!r}: must be a .png file")
    try:
        out = plot_runs(args.runs, args.out)
    except (PlotError, ImportError) as err:
        fail(f"mappo plot: error: {err}")
    runs = len({Path(path).resolve() for path in args.runs})
    print(f"mappo plot: {runs} run{'s' if runs > 1 else ''} -> {out}")
    return 0
