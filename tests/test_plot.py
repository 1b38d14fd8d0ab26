import math

import pytest
from conftest import tiny_config

from mappo_torchrl.cli.main import main
from mappo_torchrl.config import RunConfig
from mappo_torchrl.runs.directory import RunDir
from mappo_torchrl.runs.session import TrainingSession
from mappo_torchrl.training import Trainer
from mappo_torchrl.viz.plot import curves, group_by_config, load_run, make_figure

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three seeds of one config, and one run of another config."""
    root = tmp_path_factory.mktemp("runs")
    paths = []
    for name, seed, cells in (("a0", 0, 16), ("a1", 1, 16), ("a2", 2, 16), ("b0", 0, 32)):
        cfg = tiny_config(collector={"total_frames": 120}, model={"actor_cells": cells})
        cfg.seed = seed
        cfg.eval.interval = 1
        cfg.eval.episodes = 2
        TrainingSession(Trainer(cfg), RunDir.create(root / name, cfg)).train(progress=False)
        paths.append(root / name)
    return paths


def test_seeds_of_one_config_are_one_curve(runs):
    groups = group_by_config([load_run(p) for p in runs])
    assert sorted(len(members) for members in groups.values()) == [1, 3]
    assert any("model.actor_cells=32" in label for label in groups)


def test_plot_of_three_seeds_writes_a_png(runs, tmp_path, capsys):
    out = tmp_path / "curves.png"
    assert main(["plot", *map(str, runs[:3]), "--out", str(out)]) == 0
    data = out.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width == 1200 and height > 450  # the legend has its own room below the panels
    assert "3 runs ->" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--out", "curves.pdf"], "must be a .png file"),
        ([], "not a run directory"),
    ],
)
def test_bad_input_is_one_line(runs, tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["plot", str(runs[0]), str(tmp_path / "nothing"), *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1


def fake_run(root, name, *, seed=0, groups=(), **fields):
    """A run directory with a config and three metrics rows, without training."""
    cfg = RunConfig()
    cfg.seed = seed
    for dotted, value in fields.items():
        section, field = dotted.split("__")
        setattr(getattr(cfg, section), field, value)
    run_dir = RunDir.create(root / name, cfg)
    for i in range(1, 4):
        row = {"iteration": i, "frames": 100 * i, "train/episode_return": float(i + seed)}
        for j, group in enumerate(groups):
            row[f"train/{group}/episode_return"] = float(10 * j + i)
        row.update({"time/elapsed_s": float(i), "eval/episode_return": math.nan})
        run_dir.log_metrics(row)
    return root / name


def test_fields_that_do_not_affect_learning_do_not_split_a_curve(tmp_path):
    paths = [
        fake_run(tmp_path, "a", seed=0, logger__backend="tensorboard"),
        fake_run(tmp_path, "b", seed=1, eval__interval=5, checkpoint__keep=1),
        fake_run(tmp_path, "c", seed=2, eval__video_interval=3),
        fake_run(tmp_path, "d", seed=0, loss__gamma=0.95),
    ]
    groups = group_by_config([load_run(p) for p in paths])
    assert sorted(len(members) for members in groups.values()) == [1, 3]
    assert sorted(groups) == ["navigation, loss.gamma=0.9", "navigation, loss.gamma=0.95"]


def test_same_run_twice_counts_once_and_seeds_are_counted_distinct(tmp_path):
    a, b = fake_run(tmp_path, "a", seed=0), fake_run(tmp_path, "b", seed=0)
    c = fake_run(tmp_path, "c", seed=1)
    (curve,) = curves([load_run(a), load_run(tmp_path / "." / "a"), load_run(c)])
    assert curve.seeds() == "2 seeds" and len(curve.runs) == 2
    (curve,) = curves([load_run(a), load_run(b)])
    assert curve.seeds() == "2 runs, 1 seed"


def test_several_groups_get_one_curve_each_and_no_pooled_curve(tmp_path):
    path = fake_run(tmp_path, "tag", groups=("adversary", "agent"), env__scenario="simple_tag")
    lines = curves([load_run(path)])
    assert [(c.label, c.train) for c in lines] == [
        ("simple_tag, adversary", "train/adversary/episode_return"),
        ("simple_tag, agent", "train/agent/episode_return"),
    ]
    assert [c.eval for c in lines] == ["eval/adversary/episode_return", "eval/agent/episode_return"]


def test_legend_of_six_runs_covers_neither_panel_nor_axis_label(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = [fake_run(tmp_path, f"r{i}", loss__gamma=0.9 + i / 100) for i in range(6)]
    fig = make_figure([load_run(p) for p in paths])
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    (legend,) = fig.legends
    box = legend.get_window_extent(renderer)
    assert len(legend.get_texts()) == 6
    for ax in fig.axes:
        assert not box.overlaps(ax.get_tightbbox(renderer)), ax.get_xlabel()
    assert fig.get_suptitle() == "6 runs: 6 configurations"
    plt.close(fig)


def test_title_says_what_the_lines_and_bands_are(runs):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = make_figure([load_run(p) for p in runs[:3]])
    title = fig.get_suptitle()
    plt.close(fig)
    assert title == "3 runs: one configuration, 3 seeds; lines: mean over seeds, bands: ± 1 std"
