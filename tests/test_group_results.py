"""Competitive envs (several agent groups): results per group everywhere, never pooled."""

import re
import statistics
import subprocess
import sysconfig
from pathlib import Path

import pytest

from mappo_torchrl.runs.directory import read_metrics

MAPPO = str(Path(sysconfig.get_path("scripts")) / "mappo")
TAG = [
    "--collector.overlap", "off",  # sync: no worker process to start per test
    "--scenario", "simple_tag",
    "--env.num_envs", "4", "--env.max_steps", "10",
    "--collector.frames_per_batch", "40", "--collector.total_frames", "120",
    "--optim.minibatch_size", "20", "--model.actor_cells", "16", "--model.critic_cells", "16",
    "--eval.interval", "1", "--eval.episodes", "3",
    "--threads", "1", "--no-progress",
]  # fmt: skip


def mappo(*args: str) -> str:
    done = subprocess.run([MAPPO, *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def tag_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("tag") / "run"
    out = mappo("train", "--run-dir", str(path), *TAG)
    return path, out


def test_metrics_have_train_and_eval_returns_per_group(tag_run):
    path, _ = tag_run
    rows = read_metrics(path)
    for group in ("adversary", "agent"):
        for column in ("episode_return", "loss_critic"):
            assert f"train/{group}/{column}" in rows[-1]
        for column in ("episode_return", "episode_return_std", "team_return"):
            assert f"eval/{group}/{column}" in rows[-1]


def test_closing_line_gives_each_group_its_own_returns(tag_run):
    path, out = tag_run
    rows = read_metrics(path)
    (line,) = [line for line in out.splitlines() if line.startswith("mappo: done:")]
    assert "over the last 3 iterations, by group: adversary" in line
    train_part, evaluation = line.split("; final evaluation, by group: ")
    numbers = dict(re.findall(r"(adversary|agent) (-?\d+\.\d+)", train_part))
    train = statistics.fmean(r["train/agent/episode_return"] for r in rows[-5:])
    assert float(numbers["agent"]) == pytest.approx(train, abs=1e-3)
    assert f"adversary {rows[-1]['eval/adversary/episode_return']:.3f}" in evaluation
    assert "final evaluation: " not in line  # no pooled figure mixing predators and prey


def test_mappo_eval_sums_each_team_apart(tag_run):
    path, _ = tag_run
    out = mappo("eval", str(path), "--episodes", "3")
    rows = {}
    for line in out.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) == 3:
            rows[(cells[0], cells[1])] = cells[2]
    assert ("team", "sum of all agents") not in rows
    adversaries = rows[("adversary team", "sum of its 3 agents")]
    assert ("agent team", "its one agent") in rows
    logged = read_metrics(path)[-1]["eval/adversary/team_return"]
    assert float(adversaries.split()[0]) == pytest.approx(logged, abs=1e-3)


def test_plot_draws_one_curve_per_group(tag_run, tmp_path):
    from mappo_torchrl.viz.plot import curves, load_run

    path, _ = tag_run
    assert [c.label for c in curves([load_run(path)])] == [
        "simple_tag, adversary",
        "simple_tag, agent",
    ]
    out = tmp_path / "tag.png"
    assert "1 run ->" in mappo("plot", str(path), "--out", str(out))
    assert out.read_bytes()[:4] == b"\x89PNG"
