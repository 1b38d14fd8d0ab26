"""The benchmark scripts run, and print or draw what their docs say (tiny budgets)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> str:
    proc = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_throughput_prints_both_pipelines_and_the_scaling_table():
    out = run(
        "benchmarks/throughput.py", "--settings", "smoke", "--repeats", "1",
        "--tutorial-threads", "1", "2", "--scaling", "4", "--recurrent", "gru",
    )  # fmt: skip
    rows = [line for line in out.splitlines() if line.startswith("| smoke |")]
    assert [row.split("|")[2].strip() for row in rows] == [
        "tutorial-style TorchRL, 1 thread(s)",
        "tutorial-style TorchRL, 2 thread(s)",
        "mappo_torchrl",
        "mappo_torchrl, gru",
    ]
    ratios = [float(row.split("|")[-2].strip().rstrip("x")) for row in rows]
    assert max(ratios[:2]) == 1.0  # the fastest baseline is the reference
    assert any(line.startswith("| 4 |") for line in out.splitlines())


def test_ablation_writes_table_json_and_figure(tmp_path):
    out_md = tmp_path / "ablation.md"
    command = (
        "benchmarks/ablation.py", "--scenarios", "navigation", "--seeds", "0",
        "--frames", "80", "--variants", "base", "huber", "--out", str(out_md),
        "--set", "env.num_envs=4", "--set", "env.max_steps=10",
        "--set", "collector.frames_per_batch=40", "--set", "optim.minibatch_size=20",
    )  # fmt: skip
    out = run(*command, "--workers", "2")
    assert "| huber | Huber critic loss, delta 10 |" in out
    cache = out_md.with_suffix(".runs.jsonl")
    assert len(cache.read_text().splitlines()) == 2

    # A rerun finds both runs in the cache and trains nothing, with the same table.
    def table(text):
        return text[text.index("Final return") : text.index("Command:")]

    assert table(run(*command)) == table(out)
    assert len(cache.read_text().splitlines()) == 2
    results = json.loads(out_md.with_suffix(".json").read_text())
    assert set(results["navigation"]) == {"base", "huber"}
    figure = out_md.with_suffix(".png")
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    figure.unlink()
    run("benchmarks/ablation.py", "--replot", str(out_md.with_suffix(".json")))
    assert figure.exists()


def test_run_table_compares_arms_of_finished_runs(tmp_path):
    from mappo_torchrl.cli.main import main

    tiny = ["--env.num_envs", "4", "--env.max_steps", "10", "--collector.frames_per_batch", "40"]
    tiny += ["--collector.total_frames", "80", "--optim.minibatch_size", "20", "--no-progress"]
    dirs = {}
    for arm, extra in (("plain", []), ("joint", ["--loss.advantage_norm", "joint"])):
        dirs[arm] = [tmp_path / f"{arm}{seed}" for seed in (0, 1)]
        for seed, run_dir in enumerate(dirs[arm]):
            args = ["train", "--run-dir", str(run_dir), "--seed", str(seed), *tiny, *extra]
            assert main(args) == 0
    out = run(
        "benchmarks/run_table.py", "--last", "2",
        "--arm", "plain", *map(str, dirs["plain"]), "--arm", "joint", *map(str, dirs["joint"]),
    )  # fmt: skip
    rows = [line for line in out.splitlines() if line.startswith("| navigation |")]
    assert len(rows) == 1
    assert rows[0].count("(seeds 0,1)") == 2
    assert rows[0].count("±") == 4


def test_resets_compares_torchrl_partial_resets_with_ours():
    out = run("benchmarks/resets.py", "--scenario", "balance", "--batches", "1")
    rows = [line for line in out.splitlines() if line.startswith("| balance |")]
    assert [row.split("|")[3].strip() for row in rows] == [
        "TorchRL VmasEnv",
        "mappo_torchrl (one RNG swap)",
    ]
    envs_reset = [int(row.split("|")[5]) for row in rows]
    assert envs_reset[0] == envs_reset[1] > 0  # the same episodes end: the same states


def test_workers_prints_one_row_per_worker_count():
    out = run(
        "benchmarks/workers.py", "--workers", "1", "2", "--repeats", "1",
        "--iterations", "2", "--frames-per-batch", "100",
    )  # fmt: skip
    rows = [line.split("|")[1].strip() for line in out.splitlines() if line.startswith("| ")]
    assert rows[1:] == ["1", "2"]  # after the header
