"""A results table from finished run directories: arms side by side, mean ± std over seeds.

Each ``--arm LABEL DIR...`` names a set of run directories (written by ``mappo train``);
their scenario and seed are read from each run's ``config.yaml``. The table has one row
per scenario and, per arm, the final return (mean of ``train/episode_return`` over the
last ``--last`` iterations) and the final evaluation, as mean ± std over the seeds, and
the difference of each arm's final return to the first arm's.

    python benchmarks/run_table.py --arm before runs/old/* --arm after runs/new/*
"""

from __future__ import annotations

import argparse
import csv
import statistics
from pathlib import Path

import yaml


def run_summary(run_dir: Path, last: int) -> tuple[str, int, float, float]:
    """``(scenario, seed, final return, final evaluation)`` of one finished run."""
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    with (run_dir / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    returns = [float(row["train/episode_return"]) for row in rows[-last:]]
    evals = [float(row["eval/episode_return"]) for row in rows if row.get("eval/episode_return")]
    evals = [value for value in evals if value == value]  # iterations without one are nan
    return (
        config["env"]["scenario"],
        config["seed"],
        statistics.fmean(returns),
        evals[-1] if evals else float("nan"),
    )


def cell(values: list[float]) -> str:
    std = statistics.pstdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.3f} ± {std:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--arm", nargs="+", action="append", required=True, metavar=("LABEL", "DIR"),
        help="a label and its run directories",
    )  # fmt: skip
    parser.add_argument("--last", type=int, default=5, help="iterations in the final return")
    args = parser.parse_args()
    arms = {label: [run_summary(Path(d), args.last) for d in dirs] for label, *dirs in args.arm}
    scenarios = sorted({s for runs in arms.values() for s, *_ in runs})
    labels = list(arms)
    head = ["scenario"]
    for label in labels:
        head += [f"{label}: last {args.last} iterations", f"{label}: final evaluation"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for scenario in scenarios:
        row = [scenario]
        reference = None
        for label in labels:
            runs = [r for r in arms[label] if r[0] == scenario]
            if not runs:
                row += ["-", "-"]
                continue
            finals = [r[2] for r in runs]
            text = f"{cell(finals)} (seeds {','.join(str(r[1]) for r in sorted(runs))})"
            if reference is None:
                reference = statistics.fmean(finals)
            else:
                text += f" ({statistics.fmean(finals) - reference:+.3f})"
            row += [text, cell([r[3] for r in runs])]
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
