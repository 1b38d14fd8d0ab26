"""The results of a benchmark directory: ``results.md``, ``results.json``, a figure, marl-eval JSON.

What is computed, per scenario and arm, over the seeds of its finished cells:

- **final return**: the mean of ``train/episode_return`` over a run's last
  :data:`FINAL_ITERATIONS` iterations (iterations in which no episode ended
  are left out);
- **final evaluation**: a run's last ``eval/episode_return`` (the evaluation
  after its last iteration);
- their mean over seeds with a 95% percentile bootstrap confidence interval
  (:func:`bootstrap_ci`, resampling seeds), and the mean frames and wall time.

Across scenarios, per arm: the interquartile mean (:func:`iqm`) of the final
returns of all its runs (scenario x seed), each normalised per scenario by
min-max over *all* finished cells of that scenario (every arm and seed;
:func:`normalise`), with a stratified bootstrap CI (seeds resampled within
each scenario, :func:`stratified_bootstrap_ci`), as rliable does.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mappo_torchrl.benchmark.grid import SPEC_FILE, BenchmarkSpec, Cell
from mappo_torchrl.runs.directory import METRICS_FILE, read_metrics, read_status

#: Iterations at the end of a run whose mean train return is its final return.
FINAL_ITERATIONS = 10
#: Confidence level of every interval.
CONFIDENCE = 0.95
#: Bootstrap resamples of every interval.
RESAMPLES = 10_000
#: Files the report writes into the benchmark directory.
RESULTS_MD, RESULTS_JSON, FIGURE, MARL_EVAL_JSON = (
    "results.md",
    "results.json",
    "learning_curves.png",
    "marl_eval.json",
)

TRAIN_RETURN = "train/episode_return"
EVAL_RETURN = "eval/episode_return"


# -- statistics -------------------------------------------------------------------------


def iqm(values: Sequence[float] | np.ndarray, axis: int = -1) -> np.ndarray | float:
    """Interquartile mean: the mean of what is left after cutting ``int(n / 4)`` values at each end.

    This is ``scipy.stats.trim_mean(values, 0.25)``, rliable's IQM.

    Example:
        >>> from mappo_torchrl.benchmark.report import iqm
        >>> float(iqm([1, 2, 3, 4, 100, -50, 6, 7]))  # cuts -50, 1 and 7, 100
        3.75
    """
    x = np.sort(np.asarray(values, dtype=float), axis=axis)
    n = x.shape[axis]
    cut = int(0.25 * n)
    kept = np.take(x, np.arange(cut, n - cut), axis=axis)
    result = kept.mean(axis=axis)
    return float(result) if np.ndim(result) == 0 else result


def _mean(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return x.mean(axis=axis)


def bootstrap_ci(
    values: Sequence[float],
    *,
    statistic: Callable[..., Any] = _mean,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of ``statistic`` (default: the mean).

    ``statistic(samples, axis=-1)`` is computed on ``resamples`` draws with
    replacement of the finite ``values``; the interval is the
    ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of those. One
    value gives ``(v, v)``; none gives ``(nan, nan)``.

    Example:
        >>> from mappo_torchrl.benchmark.report import bootstrap_ci
        >>> low, high = bootstrap_ci([1.0, 2.0, 3.0, 4.0])
        >>> 1.0 <= low < 2.5 < high <= 4.0
        True
    """
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return (math.nan, math.nan)
    if x.size == 1:
        return (float(x[0]), float(x[0]))
    rng = np.random.default_rng(seed)
    samples = x[rng.integers(0, x.size, size=(resamples, x.size))]
    stats = statistic(samples, axis=-1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(stats, [tail, 1 - tail])
    return (float(low), float(high))


def stratified_bootstrap_ci(
    groups: Sequence[Sequence[float]],
    *,
    statistic: Callable[..., Any] = iqm,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> tuple[float, float]:
    """Bootstrap CI of ``statistic`` over the pooled ``groups``, resampling within each group.

    Each resample draws, in every group (a scenario), as many values as it
    has, with replacement, and pools them; so every scenario keeps its weight.
    """
    arrays = [np.asarray(g, dtype=float) for g in groups if len(g)]
    if not arrays:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    pooled = np.concatenate(
        [a[rng.integers(0, a.size, size=(resamples, a.size))] for a in arrays], axis=1
    )
    stats = statistic(pooled, axis=-1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(stats, [tail, 1 - tail])
    return (float(low), float(high))


def normalise(values: Sequence[float], low: float, high: float) -> np.ndarray:
    """``(values - low) / (high - low)``; 0.5 for every value when ``high == low``.

    Example:
        >>> from mappo_torchrl.benchmark.report import normalise
        >>> normalise([2.0, 4.0, 3.0], 2.0, 4.0).tolist()
        [0.0, 1.0, 0.5]
    """
    x = np.asarray(values, dtype=float)
    if high == low:
        return np.full_like(x, 0.5)
    return (x - low) / (high - low)


# -- reading the cells ------------------------------------------------------------------


@dataclass
class CellResult:
    """What one finished cell contributes to the report."""

    cell: Cell
    """The cell."""
    frames: np.ndarray
    """Frames at the end of each iteration."""
    returns: np.ndarray
    """``train/episode_return`` of each iteration."""
    evaluations: list[tuple[int, float]]
    """``(frames, eval/episode_return)`` of each evaluation."""
    wall_time_s: float
    """Wall time of the run (all its sessions)."""

    @property
    def final_return(self) -> float:
        """Mean train return of the last :data:`FINAL_ITERATIONS` iterations (NaN ones left out)."""
        last = self.returns[-FINAL_ITERATIONS:]
        last = last[np.isfinite(last)]
        return float(last.mean()) if last.size else math.nan

    @property
    def final_eval(self) -> float:
        """The last evaluation's mean return (NaN if the run has none)."""
        return self.evaluations[-1][1] if self.evaluations else math.nan

    @property
    def total_frames(self) -> int:
        """Frames of the whole run."""
        return int(self.frames[-1])


def load_cell(cell: Cell, root: str | Path) -> CellResult | None:
    """A cell's result if it finished, else ``None``."""
    path = cell.path(root)
    status = read_status(path)
    if status.get("status") != "finished" or not (path / METRICS_FILE).is_file():
        return None
    rows = read_metrics(path)
    if not rows:
        return None
    column = lambda name: np.array([r.get(name, math.nan) for r in rows])  # noqa: E731
    evaluations = [
        (int(r["frames"]), r[EVAL_RETURN])
        for r in rows
        if math.isfinite(r.get(EVAL_RETURN, math.nan))
    ]
    wall = status.get("wall_time_s", rows[-1].get("time/elapsed_s", math.nan))
    return CellResult(cell, column("frames"), column(TRAIN_RETURN), evaluations, float(wall))


# -- the report -------------------------------------------------------------------------


def _summary(values: list[float]) -> dict[str, Any]:
    finite = [v for v in values if math.isfinite(v)]
    mean = float(np.mean(finite)) if finite else math.nan
    return {"mean": mean, "ci95": list(bootstrap_ci(finite)), "runs": values}


def compute_results(spec: BenchmarkSpec, root: str | Path, command: str = "") -> dict[str, Any]:
    """Everything ``results.json`` holds, from the finished cells of ``spec`` under ``root``."""
    cells = spec.cells()
    loaded = {cell: load_cell(cell, root) for cell in cells}
    done = {cell: r for cell, r in loaded.items() if r is not None}
    table = []
    bounds: dict[str, dict[str, float]] = {}
    for scenario in spec.scenarios:
        finals = [r.final_return for c, r in done.items() if c.scenario == scenario]
        finite = [v for v in finals if math.isfinite(v)]
        if finite:
            bounds[scenario] = {"min": min(finite), "max": max(finite)}
        for arm in spec.arms:
            runs = [r for c, r in done.items() if c.scenario == scenario and c.arm == arm]
            if not runs:
                continue
            table.append(
                {
                    "scenario": scenario,
                    "arm": arm,
                    "seeds": [r.cell.seed for r in runs],
                    "final_return": _summary([r.final_return for r in runs]),
                    "final_eval": _summary([r.final_eval for r in runs]),
                    "frames": float(np.mean([r.total_frames for r in runs])),
                    "wall_time_s": _summary([r.wall_time_s for r in runs]),
                }
            )
    across = {}
    for arm in spec.arms:
        groups = []
        for scenario, b in bounds.items():
            values = [
                r.final_return
                for c, r in done.items()
                if c.scenario == scenario and c.arm == arm and math.isfinite(r.final_return)
            ]
            if values:
                groups.append(normalise(values, b["min"], b["max"]).tolist())
        if groups:
            pooled = [v for g in groups for v in g]
            across[arm] = {
                "iqm": iqm(pooled),
                "ci95": list(stratified_bootstrap_ci(groups)),
                "runs": len(pooled),
                "scenarios": len(groups),
            }
    missing = [
        {"cell": c.label, "status": read_status(c.path(root)).get("status", "not started")}
        for c in cells
        if c not in done
    ]
    return {
        "command": command,
        "spec": dataclasses.asdict(spec),
        "definitions": {
            "final_return": f"mean of {TRAIN_RETURN} over a run's last {FINAL_ITERATIONS} "
            "iterations",
            "final_eval": f"a run's last {EVAL_RETURN} (the evaluation after its last iteration)",
            "ci95": f"{CONFIDENCE:.0%} percentile bootstrap over seeds, {RESAMPLES} resamples",
            "normalisation": "per scenario, min-max over the final returns of all finished "
            "cells of that scenario (every arm and seed); 0.5 where they are all equal",
            "iqm": "interquartile mean (25% trimmed mean) of an arm's normalised final returns "
            "over all its runs, CI by stratified bootstrap (seeds resampled within each scenario)",
        },
        "table": table,
        "normalisation": bounds,
        "iqm": across,
        "finished": len(done),
        "cells": len(cells),
        "missing": missing,
    }


def _fmt(x: float) -> str:
    return "-" if not math.isfinite(x) else f"{x:.3f}"


def _ci(ci: list[float]) -> str:
    return "-" if not all(math.isfinite(v) for v in ci) else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def format_markdown(results: dict[str, Any]) -> str:
    """``results.md``: the command, the per-scenario table, the IQM table and the figure."""
    spec = results["spec"]
    defs = results["definitions"]
    lines = ["# Benchmark results", ""]
    if results["command"]:
        lines += ["```bash", results["command"], "```", ""]
    arms = [v["name"] for v in spec["variants"]] + ([spec["baseline"]] if spec["baseline"] else [])
    lines += [
        f"{len(spec['scenarios'])} scenario(s) x {len(spec['seeds'])} seed(s) x {len(arms)} "
        f"arm(s) ({', '.join(arms)}), {spec['frames']:,} frames per run; "
        f"{results['finished']} of {results['cells']} cells finished.",
        "",
        f"Final return: {defs['final_return']}. Final evaluation: {defs['final_eval']}. "
        f"Each is the mean over seeds with its confidence interval: {defs['ci95']}.",
        "",
        "| scenario | arm | seeds | final return | 95% CI | final eval | 95% CI | frames "
        "| wall time per run (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results["table"]:
        fr, fe, wall = row["final_return"], row["final_eval"], row["wall_time_s"]
        lines.append(
            f"| {row['scenario']} | {row['arm']} | {len(row['seeds'])} | {_fmt(fr['mean'])} "
            f"| {_ci(fr['ci95'])} | {_fmt(fe['mean'])} | {_ci(fe['ci95'])} "
            f"| {row['frames']:,.0f} | {wall['mean']:,.0f} |"
        )
    lines += [
        "",
        "## Across scenarios",
        "",
        f"Normalisation: {defs['normalisation']}. IQM: {defs['iqm']}.",
        "",
        "| arm | scenarios | runs | IQM of normalised final return | 95% CI |",
        "|---|---|---|---|---|",
    ]
    for arm, row in results["iqm"].items():
        lines.append(
            f"| {arm} | {row['scenarios']} | {row['runs']} | {_fmt(row['iqm'])} "
            f"| {_ci(row['ci95'])} |"
        )
    lines += ["", f"![Learning curves, mean and 95% CI over seeds]({FIGURE})", ""]
    if results["missing"]:
        lines += ["## Cells without a result", ""]
        lines += [f"- {m['cell']}: {m['status']}" for m in results["missing"]]
        lines.append("")
    return "\n".join(lines)


def plot_curves(spec: BenchmarkSpec, root: str | Path, out: str | Path) -> Path | None:
    """One panel per scenario: each arm's train return against frames, mean ± 95% CI band.

    Returns ``None`` (and draws nothing) when matplotlib is not installed.
    """
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import EngFormatter

    results = {c: load_cell(c, root) for c in spec.cells()}
    n = len(spec.scenarios)
    cols = min(4, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for ax, scenario in zip(axes.flat, spec.scenarios, strict=False):
        for arm in spec.arms:
            runs = [r for c, r in results.items() if r and c.scenario == scenario and c.arm == arm]
            if not runs:
                continue
            length = min(len(r.returns) for r in runs)
            frames = runs[0].frames[:length]
            curves = np.array([r.returns[:length] for r in runs])
            mean = np.nanmean(curves, axis=0)
            (line,) = ax.plot(frames, mean, label=f"{arm} ({len(runs)})")
            if len(runs) > 1:
                low, high = _curve_band(curves)
                ax.fill_between(frames, low, high, color=line.get_color(), alpha=0.2, lw=0)
        ax.set_title(scenario)
        ax.set_xlabel("frames")
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))  # 200k, not 200000 run together
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel("episode return")
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    if axes.flat[0].get_legend_handles_labels()[0]:
        axes.flat[0].legend(fontsize=8, title="arm (seeds)", title_fontsize=8)
    fig.suptitle(f"train episode return: mean and {CONFIDENCE:.0%} bootstrap CI over seeds")
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def _curve_band(curves: np.ndarray, resamples: int = 2_000) -> tuple[np.ndarray, np.ndarray]:
    """Per-iteration bootstrap CI of the mean over seeds (rows of ``curves``)."""
    rng = np.random.default_rng(0)
    picks = curves[rng.integers(0, len(curves), size=(resamples, len(curves)))]
    tail = (1 - CONFIDENCE) / 2
    with warnings.catch_warnings():  # an iteration where no seed finished an episode
        warnings.simplefilter("ignore", RuntimeWarning)
        means = np.nanmean(picks, axis=1)
        return np.nanquantile(means, tail, axis=0), np.nanquantile(means, 1 - tail, axis=0)


def marl_eval_data(spec: BenchmarkSpec, root: str | Path) -> dict[str, Any]:
    """The finished runs in marl-eval's raw-data layout (as BenchMARL writes it).

    ``{"vmas": {scenario: {arm: {"seed_N": {"step_K": {"step_count": frames,
    "return": [mean return]}, ..., "absolute_metrics": {"return": [best]}}}}}}``:
    one ``step_K`` per evaluation, in order. ``mappo train`` keeps each
    evaluation's mean (and std), not every episode's return, so each list
    holds that mean; ``absolute_metrics`` holds the best evaluation, as in
    BenchMARL's JSON.
    """
    data: dict[str, Any] = {}
    for cell in spec.cells():
        result = load_cell(cell, root)
        if result is None or not result.evaluations:
            continue
        run = {
            f"step_{k}": {"step_count": frames, "return": [value]}
            for k, (frames, value) in enumerate(result.evaluations)
        }
        run["absolute_metrics"] = {"return": [max(v for _, v in result.evaluations)]}
        tasks = data.setdefault("vmas", {}).setdefault(cell.scenario, {})
        tasks.setdefault(cell.arm, {})[f"seed_{cell.seed}"] = run
    return data


def write_report(root: str | Path) -> list[Path]:
    """Write ``results.md``, ``results.json``, the figure and ``marl_eval.json`` into ``root``.

    The grid is read from ``root/benchmark.json`` (written by ``mappo
    benchmark``); only finished cells count, the others are listed as missing.

    Raises:
        FileNotFoundError: if ``root`` holds no ``benchmark.json``.
    """
    root = Path(root)
    spec_file = root / SPEC_FILE
    if not spec_file.is_file():
        raise FileNotFoundError(
            f"{str(root)!r}: not a benchmark directory (no {SPEC_FILE}); "
            "run mappo benchmark --out DIR first"
        )
    spec, command = BenchmarkSpec.from_json(spec_file.read_text())
    results = compute_results(spec, root, command)
    written = [root / RESULTS_JSON, root / RESULTS_MD, root / MARL_EVAL_JSON]
    (root / RESULTS_JSON).write_text(json.dumps(_strict(results), indent=2) + "\n")
    (root / RESULTS_MD).write_text(format_markdown(results))
    marl_eval = _strict(marl_eval_data(spec, root))
    (root / MARL_EVAL_JSON).write_text(json.dumps(marl_eval, indent=2) + "\n")
    figure = plot_curves(spec, root, root / FIGURE)
    if figure is not None:
        written.append(figure)
    return written


def _strict(value: Any) -> Any:
    """``value`` with NaN and infinities as ``null``: strict JSON, which any reader accepts."""
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
