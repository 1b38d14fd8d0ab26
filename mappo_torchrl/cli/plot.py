"""``mappo plot``: learning curves of runs as a PNG."""

from __future__ import annotations

import argparse

from mappo_torchrl.cli.options import fail


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "plot",
        help="plot learning curves of runs (mean ± std over seeds) to a PNG",
        description=(
            "Plot the episode return of one or more runs against frames and against wall "
            "time. Runs whose configs differ only by seed are drawn as one curve, mean ± std "
            "over the seeds; evaluation returns are drawn as markers."
        ),
    )
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories")
    parser.add_argument(
        "--out",
        metavar="FILE.png",
        default="learning_curves.png",
        help="where to write the PNG (default: learning_curves.png)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mappo_torchrl.viz.plot import PlotError, plot_runs

    if not args.out.lower().endswith(".png"):
        fail(f"mappo plot: error: --out={args.out!r}: must be a .png file")
    try:
        out = plot_runs(args.runs, args.out)
    except (PlotError, ImportError) as err:
        fail(f"mappo plot: error: {err}")
    print(f"mappo plot: {len(args.runs)} run(s) -> {out}")
    return 0
