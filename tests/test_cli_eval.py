import math
import re

import pytest

from mappo_torchrl.cli.main import main
from mappo_torchrl.runs.checkpoint import checkpoint_files


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("eval") / "run"
    args = [
        "train", "--run-dir", str(path), "--env.num_envs", "4", "--env.max_steps", "10",
        "--collector.frames_per_batch", "40", "--collector.total_frames", "80",
        "--optim.minibatch_size", "20", "--model.actor_cells", "16",
        "--model.critic_cells", "16", "--eval.episodes", "3", "--threads", "1",
        "--no-progress",
    ]  # fmt: skip
    assert main(args) == 0
    return path


@pytest.fixture(scope="module")
def tag_run_dir(tmp_path_factory):
    """simple_tag: two groups that compete (adversaries chase the agent).

    50 steps: long enough for a catch, so that the stochastic figure is not 0.
    """
    path = tmp_path_factory.mktemp("eval") / "tag"
    args = [
        "train", "--run-dir", str(path), "--scenario", "simple_tag", "--collector.overlap", "off",
        "--env.num_envs", "4", "--env.max_steps", "50", "--collector.frames_per_batch", "40",
        "--collector.total_frames", "80", "--optim.minibatch_size", "20",
        "--model.actor_cells", "16", "--model.critic_cells", "16", "--eval.episodes", "3",
        "--threads", "1", "--no-progress",
    ]  # fmt: skip
    assert main(args) == 0
    return path


def _table(capsys) -> dict[str, str]:
    """Rows of the printed table by their second column."""
    return _table_of(capsys.readouterr().out)


def _table_of(out: str) -> dict[str, str]:
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("group"))
    rows = [re.split(r"\s{2,}", line.strip()) for line in lines[start + 2 :] if line.strip()]
    return {cells[1]: cells[2] for cells in rows if len(cells) == 3}


def test_prints_per_agent_and_team_returns(run_dir, capsys):
    assert main(["eval", str(run_dir), "--episodes", "3"]) == 0
    rows = _table(capsys)
    assert {"agent_0", "agent_1", "agent_2", "sum of all agents", "length (steps)"} <= set(rows)
    assert "±" in rows["agent_0"]


def test_final_evaluation_of_training_matches_mappo_eval(run_dir, capsys):
    """Same checkpoint, same eval seed and episode count: the same team return."""
    from mappo_torchrl.runs.directory import read_metrics

    assert main(["eval", str(run_dir), "--episodes", "3"]) == 0
    team = float(_table(capsys)["sum of all agents"].split()[0])
    logged = read_metrics(run_dir)[-1]["eval/team_return"]
    assert team == pytest.approx(logged, abs=1e-3)


def test_checkpoint_file_and_stochastic_mode(run_dir, capsys):
    checkpoint = checkpoint_files(run_dir)[-1]
    assert main(["eval", str(checkpoint), "--episodes", "3"]) == 0
    deterministic = _table(capsys)["agent_0"]
    assert main(["eval", str(checkpoint), "--episodes", "3", "--stochastic"]) == 0
    out = capsys.readouterr().out
    assert "stochastic episodes" in out
    assert deterministic not in out


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("truncated", "is truncated or corrupt"),
        ("missing_file", "no such run directory or checkpoint file"),
        ("episodes", "--episodes=0: must be a positive integer"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(run_dir, tmp_path, capsys, breakage, message):
    source = tmp_path / "ckpt.pt"
    args = ["eval", str(source)]
    if breakage == "truncated":
        source.write_bytes(checkpoint_files(run_dir)[-1].read_bytes()[:1000])
    elif breakage == "episodes":
        args = ["eval", str(run_dir), "--episodes", "0"]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1


def _modes(out: str) -> dict[str, tuple[float, float]]:
    """Each group's (deterministic, stochastic) mean return from the line that names both."""
    (line,) = [line for line in out.splitlines() if "competing groups" in line]
    number = r"(-?\d+\.\d+) ± \d+\.\d+"
    found = re.findall(rf"(\w+) {number} deterministic, {number} stochastic", line)
    return {group: (float(mode), float(sampled)) for group, mode, sampled in found}


def test_competing_groups_print_the_stochastic_return_beside(tag_run_dir, capsys):
    from mappo_torchrl.runs.directory import read_metrics

    assert main(["eval", str(tag_run_dir), "--episodes", "3"]) == 0
    out = capsys.readouterr().out
    assert "3 deterministic episodes" in out
    modes = _modes(out)
    assert set(modes) == {"adversary", "agent"}
    assert any(sampled for _, sampled in modes.values())  # a catch: no 0 == 0 below
    table = _table_of(out)
    assert modes["agent"][0] == pytest.approx(float(table["agent_0"].split()[0]), abs=1e-3)

    # The stochastic figure is what --stochastic plays, and what training logged.
    assert main(["eval", str(tag_run_dir), "--episodes", "3", "--stochastic"]) == 0
    out = capsys.readouterr().out
    assert "competing groups" not in out
    sampled = float(_table_of(out)["agent_0"].split()[0])
    assert modes["agent"][1] == pytest.approx(sampled, abs=1e-3)
    last = read_metrics(tag_run_dir)[-1]
    for group, (mode, sampled) in modes.items():
        assert mode == pytest.approx(last[f"eval/{group}/episode_return"], abs=1e-3)
        assert sampled == pytest.approx(last[f"eval/stochastic/{group}/episode_return"], abs=1e-3)


def test_training_logs_the_stochastic_return_of_competing_groups(tag_run_dir):
    from mappo_torchrl.runs.directory import read_metrics

    last = read_metrics(tag_run_dir)[-1]
    for column in (
        "eval/stochastic/episode_return",
        "eval/stochastic/adversary/episode_return",
        "eval/stochastic/agent/episode_return",
    ):
        assert math.isfinite(last[column]), column


def test_one_group_has_no_stochastic_figure(run_dir, capsys):
    from mappo_torchrl.runs.directory import read_metrics

    assert main(["eval", str(run_dir), "--episodes", "3"]) == 0
    assert "stochastic" not in capsys.readouterr().out
    columns = set().union(*read_metrics(run_dir))
    assert not any(column.startswith("eval/stochastic/") for column in columns)
