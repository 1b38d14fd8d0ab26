import math

import pytest
from conftest import tiny_config

from mappo_torchrl.runs.directory import (
    RunDir,
    RunDirError,
    is_run_dir,
    parse_metrics,
    read_metrics,
    read_status,
    run_state,
)


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


def _header(run_dir) -> list[str]:
    with (run_dir / "metrics.csv").open() as f:
        return f.readline().strip().split(",")


def test_iteration_and_frames_are_the_first_columns(tmp_path):
    run = RunDir.create(tmp_path / "run", tiny_config())
    run.log_metrics({"train/x": 0.5, "time/fps": 9.0, "iteration": 1, "frames": 40})
    run.log_metrics({"train/x": 0.25, "eval/y": 1.0, "iteration": 2, "frames": 80})
    assert _header(tmp_path / "run") == ["iteration", "frames", "train/x", "time/fps", "eval/y"]


# What versions before the reordering wrote: iteration and frames after the train/ columns.
OLD_ORDER = "train/x,time/fps,iteration,frames\n0.5,9.0,1,40\n0.25,8.0,2,80\n0.125,7.0,3,120\n"


def test_a_file_in_the_old_column_order_reads_by_name(tmp_path):
    (tmp_path / "metrics.csv").write_text(OLD_ORDER)
    rows = read_metrics(tmp_path)
    assert [(r["iteration"], r["frames"], r["train/x"]) for r in rows] == [
        (1.0, 40.0, 0.5),
        (2.0, 80.0, 0.25),
        (3.0, 120.0, 0.125),
    ]


def test_resuming_a_run_with_the_old_column_order_keeps_every_row_aligned(tmp_path):
    RunDir.create(tmp_path / "run", tiny_config()).close()
    (tmp_path / "run" / "metrics.csv").write_text(OLD_ORDER)
    resumed = RunDir.reopen(tmp_path / "run", keep_through=2)
    resumed.log_metrics({"train/x": 2.0, "time/fps": 6.0, "iteration": 3, "frames": 120})
    resumed.log_metrics({"train/x": 3.0, "time/fps": 5.0, "eval/y": 1.5, "iteration": 4})
    assert _header(tmp_path / "run") == ["iteration", "frames", "train/x", "time/fps", "eval/y"]
    columns, rows, damaged = parse_metrics(tmp_path / "run" / "metrics.csv")
    assert damaged == 0
    assert [(r["iteration"], r["frames"], r["train/x"], r["eval/y"]) for r in rows] == [
        ("1", "40", "0.5", "nan"),
        ("2", "80", "0.25", "nan"),
        ("3", "120", "2.0", "nan"),
        ("4", "nan", "3.0", "1.5"),
    ]
    assert not list((tmp_path / "run").glob(".*.tmp"))


@pytest.mark.parametrize(
    "content", [b"\x89\xff\xfe\x00binary", b"[1, 2]", b"null", b"42", b'"running"', b"{"]
)
def test_a_damaged_status_file_reads_as_no_status(tmp_path, content):
    (tmp_path / "status.json").write_bytes(content)
    assert read_status(tmp_path) == {}
    assert run_state(tmp_path) == "unknown"
    assert not is_run_dir(tmp_path)
