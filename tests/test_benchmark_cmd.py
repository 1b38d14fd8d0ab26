"""``mappo benchmark``: the grid runs, reruns only what is missing, reports, and its math.

The commands run as subprocesses with tiny budgets (4 envs, 10-step episodes,
40 frames per iteration), so each cell takes seconds, most of it Python start-up.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from mappo_torchrl.benchmark.executors import cell_job
from mappo_torchrl.benchmark.grid import (
    SPEC_FILE,
    BenchmarkSpec,
    Cell,
    Variant,
    check_cell_matches,
    parse_variant,
    plan_cell,
)
from mappo_torchrl.benchmark.report import (
    bootstrap_ci,
    compute_results,
    format_markdown,
    iqm,
    marl_eval_data,
    normalise,
    stratified_bootstrap_ci,
    write_report,
)
from mappo_torchrl.cli.main import main
from mappo_torchrl.config import ConfigError, RunConfig, save_config
from mappo_torchrl.runs.directory import RunDir

ROOT = Path(__file__).resolve().parent.parent
TINY = [
    "collector.overlap=off",  # sync: no worker process to start per cell
    "env.num_envs=4",
    "env.max_steps=10",
    "collector.frames_per_batch=40",
    "optim.minibatch_size=20",
    "model.actor_cells=16",
    "model.critic_cells=16",
    "eval.episodes=4",
]
TINY_BASELINE = ["num_envs=4", "frames_per_batch=40", "minibatch_size=20", "max_steps=10"]
HAS_RAY = importlib.util.find_spec("ray") is not None


def benchmark(*args: str, cores: set[int] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "mappo_torchrl.cli.main", "benchmark", "--no-progress", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env=env,
        preexec_fn=None if cores is None else lambda: os.sched_setaffinity(0, cores),
    )


def status(path: Path) -> str | None:
    file = path / "status.json"
    return json.loads(file.read_text())["status"] if file.is_file() else None


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def assert_grid_results(
    out: Path, scenarios: list[str], seeds: list[int], arm: str, frames: int = 120
) -> dict:
    results = json.loads((out / "results.json").read_text())
    assert results["finished"] == results["cells"] == len(scenarios) * len(seeds)
    assert [(row["scenario"], row["arm"]) for row in results["table"]] == [
        (s, arm) for s in scenarios
    ]
    for row in results["table"]:
        assert sorted(row["seeds"]) == seeds
        low, high = row["final_return"]["ci95"]
        assert low <= row["final_return"]["mean"] <= high
        assert row["frames"] == frames
    table = (out / "results.md").read_text()
    for scenario in scenarios:
        assert f"| {scenario} | {arm} | {len(seeds)} |" in table
    # One arm: nothing to compare, so no normalised score (it would be a constant).
    assert "No normalised scores: they compare arms, and this grid has one." in table
    assert results["iqm"] == {}
    assert (out / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for scenario in scenarios:
        for seed in seeds:
            cell = out / scenario / arm / f"seed{seed}"
            assert status(cell) == "finished"
            assert (cell / "config.yaml").is_file() and (cell / "checkpoints").is_dir()
    return results


# -- the math, on hand-made numbers ---------------------------------------------------------


def test_bootstrap_ci_of_the_mean_on_hand_made_numbers():
    # Resampled means of [0, 1] are 0, 0.5 and 1 with chances 1/4, 1/2, 1/4: the
    # 30% and 70% quantiles both fall on 0.5, the 2.5% and 97.5% ones on 0 and 1.
    assert bootstrap_ci([0.0, 1.0], confidence=0.4) == (0.5, 0.5)
    assert bootstrap_ci([0.0, 1.0]) == (0.0, 1.0)
    assert bootstrap_ci([2.0, 2.0, 2.0]) == (2.0, 2.0)
    assert bootstrap_ci([3.5]) == (3.5, 3.5)
    assert all(math.isnan(v) for v in bootstrap_ci([]))
    assert bootstrap_ci([1.0, math.nan, 1.0]) == (1.0, 1.0)  # NaN (no episode ended) left out
    low, high = bootstrap_ci([1.0, 2.0, 3.0, 4.0, 5.0])
    assert 1.0 <= low < 3.0 < high <= 5.0


def test_iqm_cuts_a_quarter_at_each_end_like_scipy_trim_mean():
    values = [1, 2, 3, 4, 100, -50, 6, 7]
    assert iqm(values) == pytest.approx((2 + 3 + 4 + 6) / 4)
    assert iqm([1, 2, 9]) == pytest.approx(4.0)  # 3 values: nothing cut
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(1)
    for n in (4, 5, 7, 12, 13):
        x = rng.normal(size=n)
        assert iqm(x) == pytest.approx(scipy_stats.trim_mean(x, 0.25))


def test_normalise_is_min_max_and_one_half_when_all_equal():
    assert normalise([2.0, 4.0, 3.0], 2.0, 4.0).tolist() == [0.0, 1.0, 0.5]
    assert normalise([7.0, 7.0], 7.0, 7.0).tolist() == [0.5, 0.5]


def test_stratified_bootstrap_resamples_within_each_scenario():
    # Each resample keeps two values of each scenario: the pool is always [0, 0, 1, 1].
    assert stratified_bootstrap_ci([[0.0, 0.0], [1.0, 1.0]]) == (0.5, 0.5)
    low, high = stratified_bootstrap_ci([[0.0, 1.0, 0.2, 0.9], [0.5, 0.6]])
    assert 0.0 <= low < high <= 1.0


def fake_cell(
    root: Path,
    cell: Cell,
    returns: list[float],
    evals: dict[int, float],
    seconds_per_iteration: float = 1.0,
) -> None:
    """A finished run directory with the given train returns and evaluations."""
    path = cell.path(root)
    path.mkdir(parents=True)
    run = RunDir(path)
    for i, value in enumerate(returns, start=1):
        row = {"iteration": i, "frames": 40 * i, "train/episode_return": value}
        row["time/elapsed_s"] = seconds_per_iteration * i
        if i in evals:
            row["eval/episode_return"] = evals[i]
        run.log_metrics(row)
    wall = seconds_per_iteration * len(returns)
    run.write_status("finished", frames=40 * len(returns), wall_time_s=wall)


def test_results_from_hand_made_runs(tmp_path):
    spec = BenchmarkSpec(
        scenarios=["navigation", "balance"],
        seeds=[0, 1],
        frames=480,
        variants=[Variant("x"), Variant("y")],
    )
    # Final return = mean of the last 10 of 12 iterations: the first two (1000) are left out.
    finals = {
        ("navigation", "x"): [1.0, 3.0],
        ("navigation", "y"): [5.0, 7.0],
        ("balance", "x"): [10.0, 10.0],
        ("balance", "y"): [20.0, 20.0],
    }
    for (scenario, arm), values in finals.items():
        for seed, final in enumerate(values):
            if (scenario, arm, seed) == ("balance", "y", 1):
                continue  # a missing cell
            returns = [1000.0, 1000.0] + [final - 1.0, final + 1.0] * 5
            fake_cell(tmp_path, Cell(scenario, arm, seed), returns, {6: -1.0, 12: final / 2})
    results = compute_results(spec, tmp_path)
    rows = {(r["scenario"], r["arm"]): r for r in results["table"]}
    assert rows["navigation", "x"]["final_return"]["runs"] == [1.0, 3.0]
    assert rows["navigation", "x"]["final_return"]["mean"] == 2.0
    assert rows["navigation", "y"]["final_eval"]["runs"] == [2.5, 3.5]
    assert rows["balance", "y"]["seeds"] == [0]
    assert rows["navigation", "x"]["frames"] == 480
    assert results["normalisation"] == {
        "navigation": {"min": 1.0, "max": 7.0},
        "balance": {"min": 10.0, "max": 20.0},
    }
    # x: navigation 0, 1/3; balance 0, 0 -> IQM of [0, 0, 0, 1/3] = mean of [0, 0].
    # y: navigation 2/3, 1; balance 1   -> IQM of [2/3, 1, 1] (3 values, none cut) = 8/9.
    assert results["iqm"]["x"]["iqm"] == pytest.approx(0.0)
    assert results["iqm"]["y"]["iqm"] == pytest.approx(8 / 9)
    assert results["missing"] == [{"cell": "balance/y/seed1", "status": "not started"}]

    marl = marl_eval_data(spec, tmp_path)
    run = marl["vmas"]["navigation"]["y"]["seed_1"]
    assert run["step_0"] == {"step_count": 240, "return": [-1.0]}
    assert run["step_1"] == {"step_count": 480, "return": [3.5]}
    assert run["absolute_metrics"] == {"return": [3.5]}

    (tmp_path / SPEC_FILE).write_text(spec.to_json("mappo benchmark ..."))
    written = write_report(tmp_path)
    assert {p.name for p in written} == {
        "results.md",
        "results.json",
        "marl_eval.json",
        "learning_curves.png",
    }
    json.loads((tmp_path / "results.json").read_text(), parse_constant=pytest.fail)  # strict JSON
    assert "- balance/y/seed1: not started" in (tmp_path / "results.md").read_text()


def test_normalised_scores_leave_out_what_says_nothing(tmp_path):
    spec = BenchmarkSpec(
        scenarios=["navigation", "balance", "sampling"],
        seeds=[0],
        frames=480,
        variants=[Variant("x"), Variant("y")],
    )
    finals = {
        ("navigation", "x"): (1.0, 3),
        ("navigation", "y"): (3.0, 3),
        ("balance", "x"): (5.0, 3),
        ("balance", "y"): (5.0, 3),  # equal: each would be normalised to 0.5
        ("sampling", "x"): (2.0, 12),  # one arm only: it would rank its own seed
    }
    for (scenario, arm), (final, iterations) in finals.items():
        fake_cell(tmp_path, Cell(scenario, arm, 0), [final] * iterations, {iterations: final})
    results = compute_results(spec, tmp_path)
    assert results["normalisation"] == {"navigation": {"min": 1.0, "max": 3.0}}
    assert set(results["normalisation_left_out"]) == {"balance", "sampling"}
    assert results["iqm"]["x"]["iqm"] == 0.0 and results["iqm"]["y"]["iqm"] == 1.0
    assert all(math.isnan(v) for v in results["iqm"]["x"]["ci95"])
    table = format_markdown(results)
    # Runs of 3 and 12 iterations: the report says what it averaged.
    assert "over a run's last 3 to 10 iterations (its last 10, or all of a shorter run)" in table
    assert "balance: every finished run there has the same final return" in table
    assert "sampling: fewer than two arms have a finished run there" in table
    # One seed per scenario: each bootstrap resample is the same pool, so no interval.
    assert "| x | 1 | 1 | 0.000 | n/a (1 seed per scenario) |" in table
    assert "| navigation | x | 1 | 1.000 | n/a (1 seed) | 1.000 | n/a (1 seed) |" in table
    assert not re.search(r"\[-?\d+\.\d+, -?\d+\.\d+\]", table)


def test_time_to_target_and_the_curve_from_hand_made_runs(tmp_path):
    spec = BenchmarkSpec(
        scenarios=["navigation"],
        seeds=[0, 1],
        frames=480,
        variants=[Variant("slow"), Variant("fast"), Variant("never")],
    )
    curve = [0.0, 2.0, 4.0, 6.0, 8.0] + [10.0] * 7
    for seed in (0, 1):
        fake_cell(tmp_path, Cell("navigation", "slow", seed), curve, {}, seconds_per_iteration=10)
        fake_cell(tmp_path, Cell("navigation", "fast", seed), curve, {}, seconds_per_iteration=5)
        fake_cell(tmp_path, Cell("navigation", "never", seed), [0.0] * 12, {})
    results = compute_results(spec, tmp_path)
    assert results["reference"] == "slow"  # no baseline: the first variant
    speed = {row["arm"]: row for row in results["speed"]}
    # From the first return (0) to the reference's final return (the mean of its last 10
    # iterations: 8.8): 90% of the way is 7.92, which the mean of iterations 4-6 (8.0)
    # reaches first, at 240 frames.
    assert speed["slow"]["target"] == pytest.approx(7.92)
    assert speed["slow"]["frames_to_target"] == [240.0, 240.0]
    assert speed["slow"]["median_seconds"] == 60.0 and speed["fast"]["median_seconds"] == 30.0
    assert speed["fast"]["speedup"] == 2.0 and speed["slow"]["speedup"] == 1.0
    assert speed["never"]["reached"] == 0 and math.isnan(speed["never"]["speedup"])
    assert speed["fast"]["frames_per_s"] == pytest.approx(480 / 60)
    at = {row["arm"]: row["at"] for row in results["curve"]}
    # 48 frames: fewer than 3 iterations yet; 96: iterations 1-3; 240: 4-6; 480: the last 3.
    assert math.isnan(at["slow"]["48"]["mean"]) and at["slow"]["96"]["mean"] == 2.0
    assert at["slow"]["240"]["mean"] == 8.0
    assert at["fast"]["480"]["mean"] == 10.0 and at["never"]["480"]["mean"] == 0.0
    table = format_markdown(results)
    assert table.index("## Time to target") < table.index("## Final returns")
    assert "| navigation | 7.920 | fast | 2 of 2 | 30 | 240 | 2.00x | 8 |" in table
    assert "| navigation | 7.920 | never | 0 of 2 | not reached | - | - |" in table
    slow = "| navigation | slow | - | - | 2.000 | [2.000, 2.000] | 8.000 | [8.000, 8.000] |"
    assert slow in table


def test_the_report_names_the_baseline_its_deviations_and_measures_speed_against_it(tmp_path):
    spec = BenchmarkSpec(
        scenarios=["navigation"],
        seeds=[0],
        frames=12_000,  # the baseline's settings are checked: at least one 6 000-frame batch
        variants=[Variant("ours")],
        baseline="tutorial",
        baseline_overrides={"num_envs": "30"},
    )
    curve = [0.0, 2.0, 4.0, 6.0, 8.0] + [10.0] * 7
    fake_cell(tmp_path, Cell("navigation", "ours", 0), curve, {}, seconds_per_iteration=2)
    fake_cell(tmp_path, Cell("navigation", "tutorial", 0), curve, {}, seconds_per_iteration=3)
    results = compute_results(spec, tmp_path)
    assert results["reference"] == "tutorial"
    table = format_markdown(results)
    assert "gamma 0.99, lmbda 0.9, lr 0.0003, entropy_coeff 0.0001" in table
    assert "4 epochs over each batch instead of the tutorial's 30" in table
    assert "by --baseline-set, num_envs=30." in table
    assert "speed-up vs tutorial" in table
    assert "| navigation | 7.920 | ours | 1 of 1 | 12 | 240 | 1.50x |" in table


# -- the grid: what each cell gets ----------------------------------------------------------


def test_plan_skips_finished_resumes_checkpointed_restarts_the_rest(tmp_path):
    config = RunConfig()

    def cell(name: str, status: str | None, checkpoint: bool) -> Path:
        path = tmp_path / name
        path.mkdir()
        save_config(config, path / "config.yaml")
        if status:
            (path / "status.json").write_text(json.dumps({"status": status}))
        if checkpoint:
            (path / "checkpoints").mkdir()
            (path / "checkpoints" / "ckpt-000003.pt").write_bytes(b"")
        return path

    assert plan_cell(cell("finished", "finished", True)) == "skip"
    assert plan_cell(cell("stopped", "interrupted", True)) == "resume"
    assert plan_cell(cell("killed", "running", True)) == "resume"  # SIGKILL: status still running
    assert plan_cell(cell("early", "running", False)) == "restart"  # before its first checkpoint
    assert plan_cell(cell("baseline", "running", False), resumable=False) == "restart"
    assert plan_cell(tmp_path / "new") == "start"


def test_cell_commands_split_threads_and_resume(tmp_path):
    spec = BenchmarkSpec(
        scenarios=["balance"],
        seeds=[3],
        frames=12000,
        variants=[parse_variant(["g", "loss.gamma=0.99"])],
        baseline="tutorial",
        baseline_overrides={"gamma": "0.99"},
    )
    spec.validate()
    start = cell_job(spec, Cell("balance", "g", 3), tmp_path, threads=1, action="start").argv
    assert start[start.index("--run-dir") + 1] == str(tmp_path / "balance" / "g" / "seed3")
    assert start[start.index("--loss.gamma") + 1] == "0.99"
    assert start[start.index("--collector.total_frames") + 1] == "12000"
    # update_threads defaults to 2: one thread per worker caps it at 1.
    assert start[start.index("--update_threads") + 1] == "1"
    assert "--overwrite" not in start
    # A one-core share leaves no core for an overlapped collecting worker.
    assert start[start.index("--collector.overlap") + 1] == "off"
    restart = cell_job(spec, Cell("balance", "g", 3), tmp_path, threads=4, action="restart").argv
    assert restart[restart.index("--update_threads") + 1] == "2" and "--overwrite" in restart
    assert "--collector.overlap" not in restart  # the default, auto
    resume = cell_job(spec, Cell("balance", "g", 3), tmp_path, threads=1, action="resume").argv
    assert resume[resume.index("train") :] == [
        "train",
        "--resume",
        str(tmp_path / "balance" / "g" / "seed3"),
        "--no-progress",
        # This command's share of the cores, whatever the cell was started with.
        "--threads",
        "1",
        "--update_threads",
        "1",
    ]
    # --threads-per-cell: both counts set, not capped, on a start and on a resume.
    for action in ("start", "resume"):
        job = cell_job(
            spec, Cell("balance", "g", 3), tmp_path, threads=3, action=action, exact_threads=True
        )
        assert job.argv[-4:] == ["--threads", "3", "--update_threads", "3"] and job.threads == 3
    base = cell_job(spec, Cell("balance", "tutorial", 3), tmp_path, threads=1, action="start")
    assert "mappo_torchrl.benchmark.tutorial" in base.argv
    assert base.argv[base.argv.index("--set") + 1 :] == ["gamma=0.99"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--variant", "a", "optim.lr=1"], "--variant a: optim.lr='1': unknown option"),
        (["--variant", "a", "seed=3"], "seed is set by --seeds for every cell"),
        (["--variant", "a", "loss.gamma"], "must be KEY=VALUE"),
        (["--variant", "a/b"], "--variant='a/b': its first word is the arm's name"),
        (["--variant", "a", "--variant", "a"], "each variant needs its own name"),
        (["--scenarios", "navigaton"], "Did you mean 'navigation'?"),
        (["--frames", "10"], "--frames=10: must be at least collector.frames_per_batch (6000)"),
        (["--workers", "0"], "--workers=0: must be a positive integer"),
        (["--ray", "local", "--workers", "2"], "--workers is for local runs"),
        (["--cpus-per-cell", "2"], "--cpus-per-cell and --gpus-per-cell go with --ray"),
        (["--baseline-set", "gamma=0.99"], "--baseline-set needs --baseline"),
        (
            ["--threads-per-cell", "100000"],
            "--threads-per-cell=100000: 1 worker(s) x 100000 thread(s) need 100000 cores and "
            "this machine has",
        ),
        (["--threads-per-cell", "0"], "--threads-per-cell=0: must be a positive integer (1 to"),
        (["--ray", "local", "--threads-per-cell", "1"], "--threads-per-cell is for local runs"),
        (["--variant", "a", "threads=1"], "threads is set by --threads-per-cell"),
        (["--baseline", "tutorial", "--baseline-set", "gama=1"], "gama='1': not a tutorial"),
        (["--baseline", "tutorial", "--baseline-set", "seed=1"], "'seed': is set by --seeds"),
    ],
)
def test_bad_options_fail_with_one_line(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["benchmark", "--out", str(tmp_path / "b"), "--scenarios", "navigation", *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "b").exists()


def test_a_rerun_with_other_settings_is_refused(tmp_path, capsys):
    out = tmp_path / "b"
    spec = BenchmarkSpec(scenarios=["navigation"], seeds=[0], frames=12000)
    cell = Cell("navigation", "default", 0)
    cell.path(out).mkdir(parents=True)
    save_config(spec.run_config(cell), cell.path(out) / "config.yaml")
    with pytest.raises(SystemExit):
        main(["benchmark", "--out", str(out), "--scenarios", "navigation", "--seeds", "0"])
    err = capsys.readouterr().err
    assert "cell navigation/default/seed0 holds a run with collector.total_frames=12000" in err


def test_dry_run_prints_each_cell_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "b"
    grid = ["--scenarios", "navigation", "balance", "--seeds", "0", "--frames", "12000"]
    assert main(["benchmark", "--out", str(out), *grid, "--workers", "2", "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "2 cells in" in lines[0] and "2 to start; 2 worker(s)" in lines[0]
    assert lines[1].startswith("start    navigation/default/seed0: python -m mappo_torchrl.cli")
    assert lines[2].startswith("start    balance/default/seed0: ")
    assert not out.exists()


def test_report_of_a_folder_that_is_not_a_benchmark_fails(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["benchmark", "--report", str(tmp_path)])
    assert "not a benchmark directory (no benchmark.json)" in capsys.readouterr().err


# -- the command, end to end ----------------------------------------------------------------


def test_local_workers_run_the_grid_and_write_the_results(tmp_path):
    out = tmp_path / "bench"
    grid = ["--scenarios", "navigation", "balance", "--seeds", "0", "1", "--frames", "120"]
    done = benchmark(*grid, "--workers", "2", "--out", str(out), "--variant", "tiny", *TINY)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 worker(s) x 1 thread(s)" in done.stdout
    assert re.search(r"4 of 4 cells finished \(4 run by this command in \d+ s\)", done.stdout)
    results = assert_grid_results(out, ["navigation", "balance"], [0, 1], "tiny")
    marl = json.loads((out / "marl_eval.json").read_text())
    assert set(marl["vmas"]) == {"navigation", "balance"}
    assert set(marl["vmas"]["balance"]["tiny"]) == {"seed_0", "seed_1"}
    # Every cell is an ordinary run: mappo eval and mappo plot take it.
    assert main(["eval", str(out / "balance/tiny/seed0"), "--episodes", "2"]) == 0
    cells = [str(out / "balance/tiny/seed0"), str(out / "balance/tiny/seed1")]
    assert main(["plot", *cells, "--out", str(tmp_path / "curves.png")]) == 0
    # --report redraws the same results from the cells.
    (out / "results.md").unlink()
    assert main(["benchmark", "--report", str(out)]) == 0
    assert json.loads((out / "results.json").read_text())["table"] == results["table"]
    assert "mappo benchmark --scenarios navigation balance" in (out / "results.md").read_text()


@pytest.fixture(scope="module")
def two_iteration_grid(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """A grid of one cell (one scenario, seed and arm) of two iterations, one thread."""
    out = tmp_path_factory.mktemp("small") / "bench"
    done = benchmark(
        "--scenarios", "navigation", "--seeds", "0", "--frames", "80", "--workers", "1",
        "--threads-per-cell", "1", "--out", str(out), "--variant", "tiny", *TINY,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return out, done


def test_threads_per_cell_sets_each_cells_threads(two_iteration_grid):
    out, done = two_iteration_grid
    assert "1 worker(s) x 1 thread(s)" in done.stdout
    # Without it, --workers 1 on a machine of 2 cores or more gives update_threads 2.
    config = yaml.safe_load((out / "navigation/tiny/seed0/config.yaml").read_text())
    assert (config["threads"], config["update_threads"]) == (1, 1)
    log = (out / "logs" / "navigation-tiny-seed0.log").read_text()
    assert "--threads 1 --update_threads 1" in log
    assert "--threads-per-cell 1" in (out / "results.md").read_text()  # the command to rerun


def test_a_small_grids_results_say_nothing_false(two_iteration_grid):
    out, _ = two_iteration_grid
    table = (out / "results.md").read_text()
    # Two iterations were averaged, not ten.
    assert "last 10 iterations" not in table and "over a run's last 2 iterations" in table
    # One seed has no confidence interval (not [x, x]).
    assert not re.search(r"\[-?\d+\.\d+, -?\d+\.\d+\]", table)
    assert table.count("| n/a (1 seed) |") == 2  # final return and final eval
    assert "With one seed per row, each is that run's value" in table
    assert "CI over seeds" not in table
    # One arm: the normalised score would be a constant (0.500), so there is none.
    across = table.split("## Across scenarios")[1]
    assert "0.500" not in across and "IQM" not in across
    assert "No normalised scores: they compare arms, and this grid has one." in across
    results = json.loads((out / "results.json").read_text())
    row = results["table"][0]
    assert row["final_return"]["ci95"] == [None, None] and row["final_return"]["n"] == 1
    assert results["iqm"] == {}
    assert results["definitions"]["final_return"].endswith("over a run's last 2 iterations")


@pytest.mark.skipif(not HAS_RAY, reason="ray is not installed (pip install 'mappo_torchrl[ray]')")
def test_ray_local_runs_the_grid_stops_it_and_resumes_it(tmp_path):
    out = tmp_path / "bench"
    # Two cells: Ray's start-up and a Python process per cell dominate the test's time.
    grid = ["--scenarios", "navigation", "--seeds", "0", "1", "--frames", "4000"]
    args = [*grid, "--ray", "local", "--out", str(out), "--variant", "tiny", *TINY]
    args.append("checkpoint.interval=1")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "mappo_torchrl.cli.main", "benchmark", "--no-progress", *args]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600  # Ray's start-up is slow on a loaded machine
    while not list(out.glob("*/tiny/seed*/checkpoints/ckpt-*.pt")):
        assert process.poll() is None, "the benchmark ended before it could be stopped"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)  # a job scheduler's stop: Ray cancels the cells' tasks
    stdout, _ = process.communicate(timeout=120)
    assert process.returncode == 130, stdout
    assert "Ray (local), 1 CPU(s), 0 GPU(s) per cell" in stdout
    cells = sorted(out.glob("*/tiny/seed*"))
    assert all(status(c) in ("interrupted", "finished") for c in cells)
    # A cell stopped after its first checkpoint resumes; one stopped before it restarts.
    stopped = [
        c for c in cells if status(c) == "interrupted" and list(c.glob("checkpoints/ckpt-*.pt"))
    ]
    unsaved = [c for c in cells if status(c) == "interrupted" and c not in stopped]
    assert stopped

    done = benchmark(*args)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{len(stopped)} to resume, {len(unsaved)} to restart" in done.stdout
    assert_grid_results(out, ["navigation"], [0, 1], "tiny", frames=4000)
    for cell in stopped:
        with (cell / "metrics.csv").open() as f:
            iterations = [int(float(row["iteration"])) for row in csv.DictReader(f)]
        assert iterations == list(range(1, 101))


def test_a_stopped_benchmark_reruns_only_the_missing_cells(tmp_path):
    out = tmp_path / "bench"
    # 100 iterations a cell, a checkpoint after each: time to stop the second cell midway
    # even on a fast, idle machine (10 iterations took under a second there).
    args = ["--scenarios", "navigation", "--seeds", "0", "1", "--frames", "4000", "--workers", "1"]
    args += ["--out", str(out), "--variant", "tiny", *TINY, "checkpoint.interval=1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "mappo_torchrl.cli.main", "benchmark", "--no-progress", *args]
    first, second = out / "navigation/tiny/seed0", out / "navigation/tiny/seed1"
    # One core: one torch thread per cell, so a loaded machine slows the update less.
    one_core = {min(os.sched_getaffinity(0))}
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: os.sched_setaffinity(0, one_core),
    )
    deadline = time.monotonic() + 600
    while not (status(first) == "finished" and list(second.glob("checkpoints/ckpt-*.pt"))):
        assert process.poll() is None, "the benchmark ended before it could be stopped"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)  # what Ctrl-C does
    stdout, _ = process.communicate(timeout=120)
    assert process.returncode == 130, stdout
    assert "stopped; to continue, rerun" in stdout
    assert status(second) == "interrupted"
    before = snapshot(first)

    done = benchmark(*args, cores=one_core)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "1 finished already, 1 to resume, 0 to restart, 0 to start" in done.stdout
    assert snapshot(first) == before  # the finished cell was not touched
    log = (out / "logs" / "navigation-tiny-seed1.log").read_text()
    assert "mappo benchmark: resume navigation/tiny/seed1" in log
    with (second / "metrics.csv").open() as f:
        iterations = [int(float(row["iteration"])) for row in csv.DictReader(f)]
    assert iterations == list(range(1, 101))  # the rows after the checkpoint, written once
    assert status(second) == "finished"


def test_a_failed_cell_is_reported_and_the_others_finish(tmp_path):
    out = tmp_path / "bench"
    done = benchmark(
        "--scenarios", "navigation", "--seeds", "0", "--frames", "120", "--workers", "2",
        "--out", str(out), "--variant", "ok", *TINY,
        # Well-formed, but VMAS cannot build a navigation with no agent: the cell refuses it.
        "--variant", "broken", *TINY, 'env.scenario_kwargs={"n_agents": 0}',
        "--baseline", "tutorial", "--baseline-set", *TINY_BASELINE,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr[-3000:]
    failed = [line for line in done.stdout.splitlines() if "FAILED" in line]
    log = out / "logs" / "navigation-broken-seed0.log"
    assert len(failed) == 1 and "navigation/broken/seed0: FAILED (exit 2)" in failed[0]
    assert f"log: {log}" in failed[0] and "n_agents" in log.read_text()
    assert "2 of 3 cells finished, 1 failed (navigation/broken/seed0)" in done.stdout
    results = json.loads((out / "results.json").read_text())
    assert [row["arm"] for row in results["table"]] == ["ok", "tutorial"]
    assert results["missing"][0]["cell"] == "navigation/broken/seed0"
    baseline = out / "navigation/tutorial/seed0"
    assert yaml.safe_load((baseline / "baseline.yaml").read_text())["num_envs"] == 4
    assert "| navigation | tutorial | 1 |" in (out / "results.md").read_text()


def test_a_rerun_reuses_cells_whose_auto_overlap_was_turned_off_for_one_core(tmp_path, capsys):
    out = tmp_path / "b"
    spec = BenchmarkSpec(scenarios=["navigation"], seeds=[0], frames=12000)
    cell = Cell("navigation", "default", 0)
    cell.path(out).mkdir(parents=True)
    config = spec.run_config(cell)
    assert config.collector.overlap == "auto"
    config.collector.overlap = "off"  # what a --workers 2 cell on 2 cores ran with
    save_config(config, cell.path(out) / "config.yaml")
    check_cell_matches(spec, cell, out)  # reused, not refused
    config.loss.gamma = 0.5
    save_config(config, cell.path(out) / "config.yaml")
    with pytest.raises(ConfigError, match="holds a run with loss.gamma=0.5"):
        check_cell_matches(spec, cell, out)


# The values TorchRL's multi-agent PPO tutorial (tutorials/sphinx-tutorials/
# multiagent_ppo.py, torchrl 0.14) sets; num_epochs (30 there) is a listed deviation.
TUTORIAL_VALUES = {
    "num_envs": 60,
    "frames_per_batch": 6_000,
    "minibatch_size": 400,
    "lr": 3e-4,
    "max_grad_norm": 1.0,
    "clip_epsilon": 0.2,
    "gamma": 0.99,
    "lmbda": 0.9,
    "entropy_coeff": 1e-4,
    "max_steps": 100,
}


def test_the_baseline_and_the_tutorial_preset_use_the_tutorials_values():
    from mappo_torchrl.benchmark.tutorial import TutorialSettings
    from mappo_torchrl.config import RunConfig, apply_preset

    settings = TutorialSettings()
    assert {name: getattr(settings, name) for name in TUTORIAL_VALUES} == TUTORIAL_VALUES
    assert "num_epochs" in TutorialSettings.__doc__ and "30" in TutorialSettings.__doc__
    preset = apply_preset(RunConfig(), "tutorial")
    assert {
        "num_envs": preset.env.num_envs,
        "frames_per_batch": preset.collector.frames_per_batch,
        "minibatch_size": preset.optim.minibatch_size,
        "lr": preset.optim.actor_lr,
        "max_grad_norm": preset.optim.max_grad_norm,
        "clip_epsilon": preset.loss.clip_epsilon,
        "gamma": preset.loss.gamma,
        "lmbda": preset.loss.lmbda,
        "entropy_coeff": preset.loss.entropy_coeff,
        "max_steps": preset.env.max_steps,
    } == TUTORIAL_VALUES
    assert preset.optim.critic_lr == TUTORIAL_VALUES["lr"]
    assert preset.optim.num_epochs == settings.num_epochs


def test_the_committed_time_to_target_benchmark_reports_the_same_tables(tmp_path):
    """The committed cell files (config, metrics, status) alone give docs/results.md's table."""
    import shutil

    committed = Path(__file__).parents[1] / "benchmarks" / "results" / "time-to-target"
    copy = tmp_path / "bench"
    shutil.copytree(committed, copy, ignore=shutil.ignore_patterns("*.png"))
    write_report(copy)
    for name in ("results.md", "results.json"):
        assert (copy / name).read_text() == (committed / name).read_text(), name
