"""Learning curves of one or more runs, as a PNG.

Runs whose ``config.yaml`` files are equal except for ``seed`` are one
configuration: their curves are averaged iteration by iteration and drawn as
mean ± std over the seeds. Two panels show the return against environment
frames and against wall time; evaluation returns (``eval/episode_return``),
where a run has them, are drawn as markers over the training curve.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mappo_torchrl.config import flatten
from mappo_torchrl.config.io import load_yaml
from mappo_torchrl.training.rundir import CONFIG_FILE, METRICS_FILE, parse_metrics

TRAIN_RETURN = "train/episode_return"
EVAL_RETURN = "eval/episode_return"


class PlotError(ValueError):
    """Runs cannot be plotted (one line, names the run and what is wrong)."""


@dataclass
class Run:
    """One run directory: its path, ``config.yaml`` and ``metrics.csv`` rows."""

    path: Path
    config: dict[str, Any]
    rows: list[dict[str, float]]

    def column(self, name: str) -> np.ndarray:
        """One metric over the iterations (NaN where a row lacks it)."""
        return np.array([row.get(name, math.nan) for row in self.rows], dtype=float)

    def wall_time(self) -> np.ndarray:
        """Seconds since the run started, at the end of each iteration."""
        elapsed = self.column("time/elapsed_s")
        if np.isfinite(elapsed).all():
            return elapsed
        # Runs from before time/elapsed_s: training time only.
        return np.cumsum(self.column("time/collect_s") + self.column("time/update_s"))


def load_run(path: str | Path) -> Run:
    """A run directory's config and metrics."""
    path = Path(path)
    if not (path / METRICS_FILE).is_file():
        raise PlotError(f"{str(path)!r}: not a run directory (no {METRICS_FILE})")
    try:
        config = (
            load_yaml((path / CONFIG_FILE).read_text()) if (path / CONFIG_FILE).is_file() else {}
        )
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise PlotError(f"{str(path / CONFIG_FILE)!r}: not readable YAML ({err})") from None
    _, raw, damaged = parse_metrics(path / METRICS_FILE)
    if not raw:
        unreadable = f" ({damaged} unreadable line(s))" if damaged else ""
        raise PlotError(f"{str(path)!r}: {METRICS_FILE} has no iterations yet{unreadable}")
    if damaged:
        print(
            f"mappo plot: warning: {path / METRICS_FILE}: skipped {damaged} unreadable "
            f"line(s) after iteration {len(raw)}",
            file=sys.stderr,
        )
    rows = [{k: float(v) for k, v in row.items()} for row in raw]
    return Run(path, config or {}, rows)


def group_by_config(runs: list[Run]) -> dict[str, list[Run]]:
    """Runs with the same config but for the seed, under a label naming what differs."""
    groups: dict[str, list[Run]] = {}
    keys: dict[str, dict[str, Any]] = {}
    for run in runs:
        key = yaml.safe_dump(_without_seed(run.config), sort_keys=True)
        groups.setdefault(key, []).append(run)
        keys[key] = flatten(_without_seed(run.config))
    differing = sorted(
        {name for flat in keys.values() for name in flat if _varies(name, keys.values())}
    )
    labelled = {}
    for key, members in groups.items():
        flat = keys[key]
        scenario = flat.get("env.scenario", members[0].path.name)
        label = ", ".join([str(scenario), *(f"{n}={flat.get(n)}" for n in differing[:3])])
        if label in labelled:  # two configs that differ only beyond the first three options
            label = f"{label} ({members[0].path.name})"
        labelled[label] = members
    return labelled


def plot_runs(paths: list[str | Path], out: str | Path) -> Path:
    """Write learning curves of the runs in ``paths`` to the PNG ``out``.

    Raises:
        PlotError: if a path is not a run directory.
        ImportError: if matplotlib is not installed (the ``plot`` extra).
    """
    if importlib.util.find_spec("matplotlib") is None:
        raise ImportError("mappo plot needs matplotlib: pip install 'mappo_torchrl[plot]'")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [load_run(p) for p in paths]
    groups = group_by_config(runs)
    fig, (by_frames, by_time) = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for color, (label, members) in zip(_colors(), groups.items(), strict=False):
        length = min(len(r.rows) for r in members)
        frames = members[0].column("frames")[:length]
        wall = np.mean([r.wall_time()[:length] for r in members], axis=0)
        train = np.array([r.column(TRAIN_RETURN)[:length] for r in members])
        seeds = f"{len(members)} seed{'s' if len(members) > 1 else ''}"
        for ax, x in ((by_frames, frames), (by_time, wall)):
            _band(ax, x, train, color=color, label=f"{label} — train ({seeds})")
            evals = np.array([r.column(EVAL_RETURN)[:length] for r in members])
            done = np.isfinite(evals).all(axis=0)
            if done.any():
                _band(
                    ax,
                    x[done],
                    evals[:, done],
                    color=color,
                    label=f"{label} — eval ({seeds})",
                    marker="o",
                    linestyle="--",
                )
    by_frames.set_xlabel("environment frames")
    by_time.set_xlabel("wall time (s)")
    by_frames.set_ylabel("mean episode return per agent")
    for ax in (by_frames, by_time):
        ax.grid(alpha=0.3)
    by_frames.legend(fontsize=8, loc="best")
    title = f"{len(runs)} run{'s' if len(runs) > 1 else ''}: mean ± std over seeds"
    fig.suptitle(title)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def _band(ax, x, ys: np.ndarray, *, color, label: str, **line) -> None:
    mean = np.nanmean(ys, axis=0) if np.isfinite(ys).any() else ys[0]
    ax.plot(x, mean, color=color, label=label, **line)
    if len(ys) > 1:
        std = np.nanstd(ys, axis=0)
        ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)


def _colors():
    import matplotlib.pyplot as plt

    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    while True:
        yield from cycle


def _without_seed(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k != "seed"}


def _varies(name: str, configs) -> bool:
    values = [yaml.safe_dump(flat.get(name)) for flat in configs]
    return len(set(values)) > 1
