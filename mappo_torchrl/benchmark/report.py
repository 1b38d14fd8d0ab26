"""The results of a benchmark directory: ``results.md``, ``results.json``, a figure, marl-eval JSON.

What is computed, per scenario and arm, over the seeds of its finished cells:

- **final return**: the mean of ``train/episode_return`` over a run's last
  :data:`FINAL_ITERATIONS` iterations, or all of a shorter run's (iterations
  in which no episode ended are left out); the report says how many it took;
- **final evaluation**: a run's last ``eval/episode_return`` (the evaluation
  after its last iteration);
- their mean over seeds with a 95% percentile bootstrap confidence interval
  (:func:`bootstrap_ci`, resampling seeds; none with one seed), and the mean
  frames and wall time.

Speed, per scenario: the **time to target**, the wall time and the frames until a
run's training return first reaches the scenario's target (:func:`time_to_target`;
the mean of :data:`TARGET_WINDOW` consecutive iterations must reach it), with each
arm's median over seeds against the reference arm's (the baseline, or the first
variant); and the **return at** :data:`CURVE_POINTS` of the run's frames, mean over
seeds with its CI, which compares the learning curves early, midway and at the end.

Across scenarios, per arm: the interquartile mean (:func:`iqm`) of the final
returns of all its runs (scenario x seed), each normalised per scenario by
min-max over *all* finished cells of that scenario (every arm and seed;
:func:`normalise`), with a stratified bootstrap CI (seeds resampled within
each scenario, :func:`stratified_bootstrap_ci`), as rliable does. Only where
it carries information: a grid of one arm gets no normalised scores, and a
scenario where fewer than two arms finished, or every final return is the
same, is left out of them.
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
from mappo_torchrl.benchmark.tutorial import DEVIATIONS, SETTINGS_FILE
from mappo_torchrl.config import read_config_file
from mappo_torchrl.runs.directory import CONFIG_FILE, METRICS_FILE, read_metrics, read_status

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
ELAPSED = "time/elapsed_s"
#: Consecutive iterations whose mean train return must reach the target; also the
#: iterations averaged for the return at each curve point.
TARGET_WINDOW = 3
#: The target of a scenario lies this fraction of the way from the mean first-iteration
#: return of its runs to the reference arm's mean final return.
TARGET_FRACTION = 0.9
#: Fractions of a run's frames at which the report gives the return (the curve).
CURVE_POINTS = (0.1, 0.2, 0.5, 1.0)


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
    elapsed_s: np.ndarray = dataclasses.field(default_factory=lambda: np.array([]))
    """Wall time since the run started, at the end of each iteration (NaN if not logged)."""
    ran_with: str = ""
    """How the run collected and in which precision (:func:`ran_with`)."""

    @property
    def final_iterations(self) -> int:
        """Iterations :attr:`final_return` averages: :data:`FINAL_ITERATIONS`, or fewer if the
        run has fewer."""
        return min(FINAL_ITERATIONS, len(self.returns))

    @property
    def final_return(self) -> float:
        """Mean train return of the last :attr:`final_iterations` iterations (NaN ones left
        out)."""
        last = self.returns[-self.final_iterations :]
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
    wall = status.get("wall_time_s", rows[-1].get(ELAPSED, math.nan))
    return CellResult(
        cell,
        column("frames"),
        column(TRAIN_RETURN),
        evaluations,
        float(wall),
        column(ELAPSED),
        ran_with(path),
    )


def ran_with(path: str | Path) -> str:
    """What a cell's run recorded about how it ran: ``overlapped, bfloat16, 1+2 threads``
    (collection and update threads) or ``on-policy, float32, ...`` for a ``mappo train``
    run (its ``config.yaml`` holds what ``auto`` chose), ``tutorial pipeline, float32``
    for the baseline; ``""`` if unknown.
    """
    path = Path(path)
    if (path / SETTINGS_FILE).is_file():
        return "tutorial pipeline, float32"
    try:
        config = read_config_file(path / CONFIG_FILE)
        overlap = config["collector"]["overlap"]
        precision = config["perf"]["precision"]
        threads = f"{config['threads']}+{config['update_threads']} threads"
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    collection = {"on": "overlapped", "off": "on-policy"}.get(str(overlap), f"overlap {overlap}")
    return f"{collection}, {precision}, {threads}"


def rolling_returns(run: CellResult, window: int = TARGET_WINDOW) -> np.ndarray:
    """The mean train return of each iteration and the ``window - 1`` before it (NaN
    until ``window`` iterations exist; iterations in which no episode ended are left out
    of each mean).

    >>> r = CellResult(None, np.array([1, 2, 3, 4]), np.array([0.0, 3.0, 6.0, 9.0]), [], 0.0)
    >>> rolling_returns(r, window=2).tolist()
    [nan, 1.5, 4.5, 7.5]
    """
    out = np.full(len(run.returns), math.nan)
    for i in range(window - 1, len(run.returns)):
        last = run.returns[i - window + 1 : i + 1]
        last = last[np.isfinite(last)]
        if last.size:
            out[i] = last.mean()
    return out


def time_to_target(run: CellResult, target: float) -> tuple[float, float]:
    """``(frames, wall seconds)`` at the end of the first iteration whose
    :func:`rolling_returns` reaches ``target``; ``(nan, nan)`` if none does.

    >>> r = CellResult(None, np.array([10, 20, 30, 40]), np.array([0.0, 3.0, 6.0, 9.0]), [],
    ...                4.0, np.array([1.0, 2.0, 3.0, 4.0]))
    >>> time_to_target(r, 3.0)  # the mean of 0, 3 and 6
    (30.0, 3.0)
    >>> time_to_target(r, 100.0)
    (nan, nan)
    """
    reached = np.flatnonzero(rolling_returns(run) >= target)
    if not reached.size:
        return math.nan, math.nan
    i = reached[0]
    return float(run.frames[i]), float(run.elapsed_s[i]) if run.elapsed_s.size else math.nan


def return_at(run: CellResult, frames: float) -> float:
    """:func:`rolling_returns` at the first iteration with at least ``frames`` frames."""
    at = np.flatnonzero(run.frames >= frames)
    return float(rolling_returns(run)[at[0]]) if at.size else math.nan


# -- the report -------------------------------------------------------------------------


def _summary(values: list[float]) -> dict[str, Any]:
    """Mean, CI (NaN with fewer than two values: one seed has no interval), count and values."""
    finite = [v for v in values if math.isfinite(v)]
    mean = float(np.mean(finite)) if finite else math.nan
    ci = bootstrap_ci(finite) if len(finite) > 1 else (math.nan, math.nan)
    return {"mean": mean, "ci95": list(ci), "n": len(finite), "runs": values}


def _iterations_words(counts: set[int]) -> str:
    """``last 10 iterations``, ``last iteration``, ``last 2 to 10 iterations (...)``."""
    low, high = (min(counts), max(counts)) if counts else (FINAL_ITERATIONS, FINAL_ITERATIONS)
    if low == high:
        return "last iteration" if low == 1 else f"last {low} iterations"
    return f"last {low} to {high} iterations (its last {FINAL_ITERATIONS}, or all of a shorter run)"


def _normalisation(
    spec: BenchmarkSpec, done: dict[Cell, CellResult]
) -> tuple[dict[str, dict[str, float]], dict[str, str]]:
    """Per scenario, the min and max final return normalising it, or why it is left out.

    A scenario says nothing across arms where fewer than two arms finished
    there (min-max over one arm's seeds ranks only its seeds) or where every
    final return is the same (each would be 0.5).
    """
    bounds, left_out = {}, {}
    for scenario in spec.scenarios:
        runs = [
            r for c, r in done.items() if c.scenario == scenario and math.isfinite(r.final_return)
        ]
        if not runs:
            continue
        values = [r.final_return for r in runs]
        if len({r.cell.arm for r in runs}) < 2:
            left_out[scenario] = "fewer than two arms have a finished run there"
        elif min(values) == max(values):
            left_out[scenario] = "every finished run there has the same final return"
        else:
            bounds[scenario] = {"min": min(values), "max": max(values)}
    return bounds, left_out


def compute_results(spec: BenchmarkSpec, root: str | Path, command: str = "") -> dict[str, Any]:
    """Everything ``results.json`` holds, from the finished cells of ``spec`` under ``root``."""
    cells = spec.cells()
    loaded = {cell: load_cell(cell, root) for cell in cells}
    done = {cell: r for cell, r in loaded.items() if r is not None}
    table = []
    for scenario in spec.scenarios:
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
                    "ran_with": "; ".join(sorted({r.ran_with for r in runs if r.ran_with})),
                }
            )
    bounds, left_out = _normalisation(spec, done)
    speed = _speed(spec, done)
    curve = _curve(spec, done)
    across = {}
    for arm in spec.arms if len(spec.arms) > 1 else []:
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
            # One seed in every scenario: each resample is the same pool, no interval.
            varies = any(len(g) > 1 for g in groups)
            across[arm] = {
                "iqm": iqm(pooled),
                "ci95": list(stratified_bootstrap_ci(groups) if varies else (math.nan, math.nan)),
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
            "final_return": f"mean of {TRAIN_RETURN} over a run's "
            + _iterations_words({r.final_iterations for r in done.values()}),
            "final_eval": f"a run's last {EVAL_RETURN} (the evaluation after its last iteration)",
            "ci95": f"{CONFIDENCE:.0%} percentile bootstrap over seeds, {RESAMPLES} resamples "
            "(none with one seed)",
            "normalisation": "per scenario, min-max over the final returns of all finished "
            "cells of that scenario (every arm and seed); a scenario where fewer than two arms "
            "finished, or all final returns are equal, is left out",
            "iqm": "interquartile mean (25% trimmed mean) of an arm's normalised final returns "
            "over all its runs, CI by stratified bootstrap (seeds resampled within each "
            "scenario; none with one seed per scenario)",
            "target": f"per scenario, {TARGET_FRACTION:.0%} of the way from the mean "
            "first-iteration return of its finished runs to the reference arm's mean final "
            "return (the reference: the baseline, or the first variant)",
            "time_to_target": f"wall time (and frames) at the end of the first iteration "
            f"where the mean {TRAIN_RETURN} of it and the {TARGET_WINDOW - 1} before reaches "
            "the target; each arm's median over seeds, and the reference's median divided "
            "by it (speed-up; only where every seed of both reached the target)",
            "return_at": f"mean {TRAIN_RETURN} of the {TARGET_WINDOW} iterations ending at "
            "the first with at least that many frames, mean over seeds with the CI above",
        },
        "table": table,
        "reference": _reference_arm(spec),
        "baseline": _baseline(spec),
        "speed": speed,
        "curve": curve,
        "normalisation": bounds,
        "normalisation_left_out": left_out,
        "iqm": across,
        "finished": len(done),
        "cells": len(cells),
        "missing": missing,
    }


#: The baseline settings the report names (the rest are the cell's, or the env's).
_BASELINE_SHOWN = ("gamma", "lmbda", "lr", "entropy_coeff", "clip_epsilon", "num_epochs")


def _baseline(spec: BenchmarkSpec) -> dict[str, Any] | None:
    """The baseline's main settings, where they deviate from the tutorial, and what
    ``--baseline-set`` changed; ``None`` without a baseline."""
    if not spec.baseline:
        return None
    settings = spec.baseline_settings(Cell(spec.scenarios[0], spec.baseline, spec.seeds[0]))
    return {
        "name": spec.baseline,
        "settings": {name: getattr(settings, name) for name in _BASELINE_SHOWN},
        "deviations": list(DEVIATIONS),
        "changed": dict(spec.baseline_overrides),
    }


def _reference_arm(spec: BenchmarkSpec) -> str:
    """The arm speed-ups are measured against: the baseline, or the first variant."""
    return spec.baseline or spec.arms[0]


def _runs(done: dict[Cell, CellResult], scenario: str, arm: str) -> list[CellResult]:
    return [r for c, r in done.items() if c.scenario == scenario and c.arm == arm]


def _speed(spec: BenchmarkSpec, done: dict[Cell, CellResult]) -> list[dict[str, Any]]:
    """Per scenario and arm: the target, time to target per seed, medians and speed-up."""
    reference, rows = _reference_arm(spec), []
    for scenario in spec.scenarios:
        runs = [r for c, r in done.items() if c.scenario == scenario]
        ref_runs = _runs(done, scenario, reference)
        firsts = [r.returns[0] for r in runs if r.returns.size and math.isfinite(r.returns[0])]
        ref_final = [r.final_return for r in ref_runs if math.isfinite(r.final_return)]
        if not firsts or not ref_final:
            continue
        start, goal = float(np.mean(firsts)), float(np.mean(ref_final))
        target = start + TARGET_FRACTION * (goal - start)
        medians = {}
        for arm in spec.arms:
            arm_runs = _runs(done, scenario, arm)
            if not arm_runs:
                continue
            reached = [time_to_target(r, target) for r in arm_runs]
            seconds = [t for _, t in reached]
            all_reached = all(math.isfinite(t) for t in seconds)
            medians[arm] = float(np.median(seconds)) if all_reached else math.nan
            rows.append(
                {
                    "scenario": scenario,
                    "arm": arm,
                    "target": target,
                    "seeds": [r.cell.seed for r in arm_runs],
                    "reached": sum(math.isfinite(t) for t in seconds),
                    "frames_to_target": [f for f, _ in reached],
                    "seconds_to_target": seconds,
                    "median_frames": float(np.median([f for f, _ in reached]))
                    if all_reached
                    else math.nan,
                    "median_seconds": medians[arm],
                    "frames_per_s": float(
                        np.median([r.total_frames / r.wall_time_s for r in arm_runs])
                    ),
                }
            )
        for row in rows:
            if row["scenario"] == scenario:
                ref = medians.get(reference, math.nan)
                row["speedup"] = ref / row["median_seconds"] if row["median_seconds"] else math.nan
    return rows


def _curve(spec: BenchmarkSpec, done: dict[Cell, CellResult]) -> list[dict[str, Any]]:
    """Per scenario and arm: :func:`return_at` each of :data:`CURVE_POINTS`, over seeds."""
    points = [round(f * spec.frames) for f in CURVE_POINTS]
    rows = []
    for scenario in spec.scenarios:
        for arm in spec.arms:
            runs = _runs(done, scenario, arm)
            if runs:
                rows.append(
                    {
                        "scenario": scenario,
                        "arm": arm,
                        "at": {str(p): _summary([return_at(r, p) for r in runs]) for p in points},
                    }
                )
    return rows


def _fmt(x: float) -> str:
    return "-" if not math.isfinite(x) else f"{x:.3f}"


def _ci(ci: list[float], none: str = "-") -> str:
    """``[low, high]``, or ``none`` where there is no interval."""
    return none if not all(math.isfinite(v) for v in ci) else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def _row_ci(summary: dict[str, Any]) -> str:
    """A table row's CI; ``n/a (1 seed)`` where one seed leaves nothing to resample."""
    return _ci(summary["ci95"], "n/a (1 seed)" if summary.get("n") == 1 else "-")


def format_markdown(results: dict[str, Any]) -> str:
    """``results.md``: the command, the per-scenario table, the IQM table and the figure."""
    spec = results["spec"]
    defs = results["definitions"]
    lines = ["# Benchmark results", ""]
    if results["command"]:
        lines += ["```bash", results["command"], "```", ""]
    arms = [v["name"] for v in spec["variants"]] + ([spec["baseline"]] if spec["baseline"] else [])
    seeds = [len(row["seeds"]) for row in results["table"]]
    if seeds and max(seeds) == 1:
        over = "With one seed per row, each is that run's value, without a confidence interval."
    else:
        over = f"Each is the mean over seeds with its confidence interval: {defs['ci95']}."
    lines += [
        f"{len(spec['scenarios'])} scenario(s) x {len(spec['seeds'])} seed(s) x {len(arms)} "
        f"arm(s) ({', '.join(arms)}), {spec['frames']:,} frames per run; "
        f"{results['finished']} of {results['cells']} cells finished.",
        "",
        *_baseline_lines(results),
        *_speed_lines(results),
        *_curve_lines(results),
        "## Final returns",
        "",
        f"Final return: {defs['final_return']}. Final evaluation: {defs['final_eval']}. {over}",
        "",
        "| scenario | arm | seeds | final return | 95% CI | final eval | 95% CI | frames "
        "| wall time per run (s) | ran with |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results["table"]:
        fr, fe, wall = row["final_return"], row["final_eval"], row["wall_time_s"]
        lines.append(
            f"| {row['scenario']} | {row['arm']} | {len(row['seeds'])} | {_fmt(fr['mean'])} "
            f"| {_row_ci(fr)} | {_fmt(fe['mean'])} | {_row_ci(fe)} "
            f"| {row['frames']:,.0f} | {wall['mean']:,.0f} | {row.get('ran_with') or '-'} |"
        )
    lines += ["", "## Across scenarios", "", *_across_lines(results, arms), ""]
    band = "mean and 95% CI over seeds" if seeds and max(seeds) > 1 else "one seed: no CI band"
    lines += [f"![Learning curves, {band}]({FIGURE})", ""]
    if results["missing"]:
        lines += ["## Cells without a result", ""]
        lines += [f"- {m['cell']}: {m['status']}" for m in results["missing"]]
        lines.append("")
    return "\n".join(lines)


def _seconds(x: float) -> str:
    return "not reached" if not math.isfinite(x) else f"{x:,.0f}"


def _baseline_lines(results: dict[str, Any]) -> list[str]:
    """What the baseline arm ran: its main settings and where they leave the tutorial."""
    baseline = results.get("baseline")
    if not baseline:
        return []
    settings = ", ".join(f"{k} {v:g}" for k, v in baseline["settings"].items())
    changed = ", ".join(f"{k}={v}" for k, v in baseline["changed"].items())
    lines = [
        f"Baseline `{baseline['name']}`: TorchRL's multi-agent PPO tutorial written with "
        f"TorchRL modules only ({settings}). It differs from the tutorial in: "
        + "; ".join(baseline["deviations"])
        + (f"; and, by --baseline-set, {changed}." if changed else "."),
        "",
    ]
    return lines


def _speed_lines(results: dict[str, Any]) -> list[str]:
    """The time-to-target section (first: it is what a user waits for)."""
    if not results["speed"]:
        return []
    defs = results["definitions"]
    reference = results["reference"]
    lines = [
        "## Time to target",
        "",
        f"Target: {defs['target']}. Time to target: {defs['time_to_target']}. "
        "Frames per second (the median over seeds of frames / wall time) is secondary: "
        "it says nothing about how much each frame teaches.",
        "",
        f"| scenario | target | arm | reached | median wall time to target (s) "
        f"| median frames to target | speed-up vs {reference} | frames/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in results["speed"]:
        frames, speedup = row["median_frames"], row["speedup"]
        lines.append(
            f"| {row['scenario']} | {row['target']:.3f} | {row['arm']} "
            f"| {row['reached']} of {len(row['seeds'])} | {_seconds(row['median_seconds'])} "
            f"| {'-' if not math.isfinite(frames) else f'{frames:,.0f}'} "
            f"| {'-' if not math.isfinite(speedup) else f'{speedup:.2f}x'} "
            f"| {row['frames_per_s']:,.0f} |"
        )
    return [*lines, ""]


def _curve_lines(results: dict[str, Any]) -> list[str]:
    """The return at a few points of the run: the learning curve early, midway, at the end."""
    if not results["curve"]:
        return []
    points = list(results["curve"][0]["at"])
    head = " | ".join(f"{int(p):,} frames | 95% CI" for p in points)
    lines = [
        "## Learning curve",
        "",
        f"Return at: {results['definitions']['return_at']}.",
        "",
        f"| scenario | arm | {head} |",
        "|---|---|" + "---|---|" * len(points),
    ]
    for row in results["curve"]:
        cells = " | ".join(f"{_fmt(v['mean'])} | {_row_ci(v)}" for v in row["at"].values())
        lines.append(f"| {row['scenario']} | {row['arm']} | {cells} |")
    return [*lines, ""]


def _across_lines(results: dict[str, Any], arms: list[str]) -> list[str]:
    """The across-scenario section: the IQM table, or why there is none."""
    defs, left_out = results["definitions"], results.get("normalisation_left_out", {})
    if len(arms) < 2:
        return ["No normalised scores: they compare arms, and this grid has one."]
    skipped = "; ".join(f"{s}: {why}" for s, why in left_out.items())
    if not results["iqm"]:
        return [
            "No normalised scores: no scenario has finished runs of two arms whose final "
            "returns differ" + (f" ({skipped})." if skipped else ".")
        ]
    lines = [f"Normalisation: {defs['normalisation']}. IQM: {defs['iqm']}."]
    if skipped:
        lines += ["", f"Left out of the normalisation: {skipped}."]
    lines += [
        "",
        "| arm | scenarios | runs | IQM of normalised final return | 95% CI |",
        "|---|---|---|---|---|",
    ]
    for arm, row in results["iqm"].items():
        none = "n/a (1 seed per scenario)" if row["runs"] == row["scenarios"] else "-"
        lines.append(
            f"| {arm} | {row['scenarios']} | {row['runs']} | {_fmt(row['iqm'])} "
            f"| {_ci(row['ci95'], none)} |"
        )
    return lines


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
    seeds = max((len(r) for r in _runs_by_panel(spec, results)), default=0)
    band = f"mean and {CONFIDENCE:.0%} bootstrap CI over seeds" if seeds > 1 else "one seed"
    fig.suptitle(f"train episode return: {band}")
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def _runs_by_panel(spec: BenchmarkSpec, results: dict) -> list[list[CellResult]]:
    """The finished runs of each scenario and arm (one list per curve)."""
    return [
        [r for c, r in results.items() if r and c.scenario == scenario and c.arm == arm]
        for scenario in spec.scenarios
        for arm in spec.arms
    ]


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
