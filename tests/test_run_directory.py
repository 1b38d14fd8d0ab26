import math

import pytest
from conftest import tiny_config

from mappo_torchrl.runs.directory import RunDir, RunDirError, read_metrics


def test_a_metric_that_appears_later_adds_a_column(tmp_path):
    run = RunDir.create(tmp_path / "run", tiny_config())
    run.log_metrics({"iteration": 1, "train/episode_return": 0.5})
    run.log_metrics({"iteration": 2, "train/episode_return": 0.25, "eval/episode_return": 1.5})
    run.log_metrics({"iteration": 3, "train/episode_return": 0.125})
    rows = read_metrics(tmp_path / "run")
    assert [r["train/episode_return"] for r in rows] == [0.5, 0.25, 0.125]
    assert math.isnan(rows[0]["eval/episode_return"])
    assert rows[1]["eval/episode_return"] == 1.5
    assert math.isnan(rows[2]["eval/episode_return"])


def test_values_are_written_exactly(tmp_path):
    run = RunDir.create(tmp_path / "run", tiny_config())
    value = 0.1 + 0.2  # not representable in a short decimal
    run.log_metrics({"iteration": 1, "x": value})
    assert read_metrics(tmp_path / "run")[0]["x"] == value


def test_reopen_drops_rows_after_the_checkpoint_and_continues(tmp_path):
    run = RunDir.create(tmp_path / "run", tiny_config())
    for i in range(1, 6):
        run.log_metrics({"iteration": i, "x": float(i)})
    run.close()  # the run stops (and lets go of its lock)
    resumed = RunDir.reopen(tmp_path / "run", keep_through=3)
    resumed.log_metrics({"iteration": 4, "x": 40.0})
    assert [(r["iteration"], r["x"]) for r in read_metrics(tmp_path / "run")] == [
        (1.0, 1.0),
        (2.0, 2.0),
        (3.0, 3.0),
        (4.0, 40.0),
    ]


def test_existing_run_is_not_replaced(tmp_path):
    RunDir.create(tmp_path / "run", tiny_config())
    with pytest.raises(RunDirError, match="already holds a run"):
        RunDir.create(tmp_path / "run", tiny_config())
