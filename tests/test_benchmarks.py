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
    out = run(
        "benchmarks/ablation.py", "--scenarios", "navigation", "--seeds", "0",
        "--frames", "80", "--variants", "base", "huber", "--out", str(out_md),
        "--set", "env.num_envs=4", "--set", "env.max_steps=10",
        "--set", "collector.frames_per_batch=40", "--set", "optim.minibatch_size=20",
    )  # fmt: skip
    assert "| huber | Huber critic loss, delta 10 |" in out
    results = json.loads(out_md.with_suffix(".json").read_text())
    assert set(results["navigation"]) == {"base", "huber"}
    figure = out_md.with_suffix(".png")
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    figure.unlink()
    run("benchmarks/ablation.py", "--replot", str(out_md.with_suffix(".json")))
    assert figure.exists()
