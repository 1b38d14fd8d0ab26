import pytest
from conftest import tiny_config

from mappo_torchrl.cli.main import main
from mappo_torchrl.training import Trainer
from mappo_torchrl.training.rundir import RunDir
from mappo_torchrl.training.session import TrainingRun
from mappo_torchrl.viz.plot import group_by_config, load_run

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
        TrainingRun(Trainer(cfg), RunDir.create(root / name, cfg)).train(progress=False)
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
    assert (width, height) == (1200, 450)
    assert "3 run(s)" in capsys.readouterr().out


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
