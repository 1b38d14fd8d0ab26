"""Learning curves of one or more runs, as a PNG.

Runs whose ``config.yaml`` files are equal except for the seed and fields that
do not change learning (threads, logger, checkpoints, evaluation interval) are
one configuration: their curves are averaged iteration by iteration and drawn
as mean ± std over the seeds. Two panels show the return against environment
frames and against wall time; evaluation returns (``eval/episode_return``),
where a run has them, are drawn as markers over the training curve. Runs with
several agent groups get one curve per group.
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
from mappo_torchrl.runs.directory import CONFIG_FILE, METRICS_FILE, parse_metrics

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


#: Config fields that do not change what is learnt: runs differing only in these
#: are seeds of one configuration.
NOT_LEARNING = ("seed", "threads", "update_threads", "logger", "checkpoint", "eval.interval",
                "eval.video_interval")  # fmt: skip


def group_by_config(runs: list[Run]) -> dict[str, list[Run]]:
    """Runs with the same config but for the seed, under a label naming what differs.

    Fields that do not affect learning (:data:`NOT_LEARNING`: seed, threads,
    logger, checkpoints, evaluation interval) are left out of the comparison,
    and a run directory given twice counts once.
    """
    unique: dict[Path, Run] = {}
    for run in runs:
        unique.setdefault(run.path.resolve(), run)
    groups: dict[str, list[Run]] = {}
    keys: dict[str, dict[str, Any]] = {}
    for run in unique.values():
        flat = _learning_fields(run.config)
        key = yaml.safe_dump(flat, sort_keys=True)
        groups.setdefault(key, []).append(run)
        keys[key] = flat
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


def agent_groups(run: Run) -> list[str]:
    """The run's agent groups when it has several (``train/<group>/episode_return``), else []."""
    prefix, suffix = "train/", "/episode_return"
    return [
        name[len(prefix) : -len(suffix)]
        for name in run.rows[0]
        if name.startswith(prefix) and name.endswith(suffix) and name.count("/") == 2
    ]


@dataclass
class Curve:
    """One line of the figure: a configuration's return (one group's, when it has several)."""

    label: str
    runs: list[Run]
    train: str
    eval: str

    def seeds(self) -> str:
        """``"3 seeds"``, or ``"2 runs, 1 seed"`` when runs share a seed."""
        seeds = {r.config.get("seed") for r in self.runs}
        count = f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''}"
        if len(self.runs) > len(seeds):
            count = f"{len(self.runs)} runs, {count}"
        return count


def curves(runs: list[Run]) -> list[Curve]:
    """What :func:`plot_runs` draws: one curve per configuration and agent group.

    A run with one agent group gets one curve of ``train/episode_return``.
    With several groups (a competitive env such as simple_tag) the pooled
    return mixes opponents' returns, so each group gets its own curve of
    ``train/<group>/episode_return`` instead.
    """
    out = []
    for label, members in group_by_config(runs).items():
        groups = agent_groups(members[0])
        if not groups:
            out.append(Curve(label, members, TRAIN_RETURN, EVAL_RETURN))
        for group in groups:
            out.append(
                Curve(
                    f"{label}, {group}",
                    members,
                    f"train/{group}/episode_return",
                    f"eval/{group}/episode_return",
                )
            )
    return out


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

    fig = make_figure([load_run(p) for p in paths])
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def make_figure(runs: list[Run]):
    """The matplotlib figure :func:`plot_runs` saves (two panels, the legend below them)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import EngFormatter

    lines = curves(runs)
    fig, (by_frames, by_time) = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for color, curve in zip(_colors(), lines, strict=False):
        members = curve.runs
        length = min(len(r.rows) for r in members)
        frames = members[0].column("frames")[:length]
        wall = np.mean([r.wall_time()[:length] for r in members], axis=0)
        train = np.array([r.column(curve.train)[:length] for r in members])
        seeds = curve.seeds()
        for ax, x in ((by_frames, frames), (by_time, wall)):
            legend = ax is by_frames  # one legend entry per line, below both panels
            _band(
                ax,
                x,
                train,
                color=color,
                label=f"{curve.label}: train ({seeds})" if legend else None,
            )
            evals = np.array([r.column(curve.eval)[:length] for r in members])
            done = np.isfinite(evals).all(axis=0)
            if done.any():
                _band(
                    ax,
                    x[done],
                    evals[:, done],
                    color=color,
                    label=f"{curve.label}: eval ({seeds})" if legend else None,
                    marker="o",
                    linestyle="--",
                )
    by_frames.set_xlabel("environment frames")
    by_frames.xaxis.set_major_formatter(EngFormatter(sep=""))  # 200k, 1.5M
    by_time.set_xlabel("wall time (s)")
    by_frames.set_ylabel("mean episode return per agent")
    for ax in (by_frames, by_time):
        ax.grid(alpha=0.3)
    handles, labels = by_frames.get_legend_handles_labels()
    rows = math.ceil(len(labels) / 2)
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.suptitle(_title(lines))
    # Room below the panels for the legend, whatever the number of lines.
    fig.set_size_inches(12, 4.5 + 0.22 * rows)
    fig.tight_layout(rect=(0, 0.22 * rows / (4.5 + 0.22 * rows) + 0.01, 1, 1))
    return fig


def _title(lines: list[Curve]) -> str:
    """E.g. ``3 runs: one configuration, 3 seeds; lines: mean over seeds, bands: ± 1 std``."""
    configs = list({id(c.runs): c for c in lines}.values())
    runs = sum(len(c.runs) for c in configs)
    title = f"{runs} run{'s' if runs > 1 else ''}: "
    if len(configs) == 1:
        title += f"one configuration, {configs[0].seeds()}"
    else:
        title += f"{len(configs)} configurations"
    if any(len({r.config.get("seed") for r in c.runs}) > 1 for c in configs):
        title += "; lines: mean over seeds, bands: ± 1 std"
    return title


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


def _learning_fields(config: dict[str, Any]) -> dict[str, Any]:
    """The flattened config without the fields of :data:`NOT_LEARNING`."""
    return {
        name: value
        for name, value in flatten(config).items()
        if not any(name == f or name.startswith(f + ".") for f in NOT_LEARNING)
    }


def _varies(name: str, configs) -> bool:
    values = [yaml.safe_dump(flat.get(name)) for flat in configs]
    return len(set(values)) > 1
