"""Bad input, case by case: one line and exit code 2 (CLI), or a ValueError/TypeError
naming the argument (library), and never a run directory created or a file touched."""

from __future__ import annotations

import os

import pytest
import torch
from conftest import tiny_config

from mappo_torchrl.cli.main import main
from mappo_torchrl.runs.checkpoint import save_checkpoint, trainer_state

TINY = [
    "--collector.overlap", "off",  # sync: no worker process to start per test
    "--env.num_envs", "4",
    "--env.max_steps", "10",
    "--collector.frames_per_batch", "40",
    "--collector.total_frames", "80",
    "--optim.minibatch_size", "20",
    "--model.actor_cells", "16",
    "--model.critic_cells", "16",
    "--threads", "1",
    "--no-progress",
]  # fmt: skip

# A 432-byte "billion laughs": each line doubles the one before, 2**9 lists of 2**9...
ALIAS_BOMB = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def _one_line_exit_2(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


# (extra train options, text the one-line message must hold)
TRAIN_CASES = {
    "negative seed": (["--seed", "-1"], "seed=-1: must be an integer in [0, 4294967295]"),
    "huge seed": (["--seed", "99999999999999999999"], "must be an integer in [0, 4294967295]"),
    "infinite actor lr": (["--optim.actor_lr", "inf"], "optim.actor_lr=inf: must be a finite"),
    "nan critic lr": (["--optim.critic_lr", "nan"], "optim.critic_lr=nan"),
    "zero agents": (["--env.scenario_kwargs", '{"n_agents": 0}'], "cannot be built"),
    "negative agents": (["--env.scenario_kwargs", '{"n_agents": -3}'], "cannot be built"),
    "agents as a word": (["--env.scenario_kwargs", '{"n_agents": "three"}'], "cannot be built"),
    "num_envs in scenario kwargs": (
        ["--env.scenario_kwargs", '{"num_envs": 8}'],
        "env.scenario_kwargs={'num_envs': 8}: must not set 'num_envs'",
    ),
    "misspelled scenario kwarg": (
        ["--env.scenario_kwargs", '{"n_agentz": 4}'],
        "has no option 'n_agentz'. Did you mean 'n_agents'?",
    ),
    "negative eval seed": (["--eval.seed", "-1"], "eval.seed=-1: must be an integer in"),
    "huge eval episodes": (["--eval.episodes", "100000000"], "eval.episodes=100000000"),
    "huge num_envs": (
        ["--env.num_envs", "1000000000", "--collector.frames_per_batch", "1000000000"],
        "env.num_envs=1000000000: must be a positive integer, at most",
    ),
    "abbreviated option": (["--env.num_env", "4"], "unrecognized arguments: --env.num_env"),
    "prefix of another option": (["--optim.lr", "1e-3"], "unrecognized arguments: --optim.lr"),
    "unknown scenario": (["--scenario", "navigaton"], "Did you mean 'navigation'?"),
    "zero-width network": (["--model.actor_cells", "0"], "model.actor_cells=0"),
}


@pytest.mark.parametrize("case", list(TRAIN_CASES))
def test_bad_train_option_is_one_line_and_creates_nothing(tmp_path, capsys, case):
    extra, message = TRAIN_CASES[case]
    run_dir = tmp_path / "run"
    err = _one_line_exit_2(capsys, ["train", "--run-dir", str(run_dir), *TINY, *extra])
    assert message in err
    assert not run_dir.exists()
    assert os.listdir(tmp_path) == []


def test_empty_run_dir_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    err = _one_line_exit_2(capsys, ["train", "--run-dir", "", *TINY])
    assert "--run-dir='': must be a directory path" in err
    assert os.listdir(tmp_path) == []


def test_yaml_alias_bomb_is_refused_at_once(tmp_path, capsys):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(ALIAS_BOMB)
    err = _one_line_exit_2(
        capsys, ["train", "--config", str(bomb), "--run-dir", str(tmp_path / "run"), *TINY]
    )
    assert "more than 16 aliases" in err
    assert sorted(os.listdir(tmp_path)) == ["bomb.yaml"]


def test_run_dir_that_is_a_file_is_refused(tmp_path, capsys):
    file = tmp_path / "notes.txt"
    file.write_text("mine")
    for overwrite in ([], ["--overwrite"]):
        err = _one_line_exit_2(capsys, ["train", "--run-dir", str(file), *TINY, *overwrite])
        assert "is a file, not a directory" in err
        assert file.read_text() == "mine"


def test_symlinked_run_dir_is_refused_even_with_overwrite(tmp_path, capsys):
    target = tmp_path / "data"
    target.mkdir()
    (target / "thesis.txt").write_text("x")
    link = tmp_path / "link"
    link.symlink_to(target)
    err = _one_line_exit_2(capsys, ["train", "--run-dir", str(link), *TINY, "--overwrite"])
    assert "is a symbolic link" in err
    assert (target / "thesis.txt").read_text() == "x" and link.is_symlink()


# -- checkpoints and run directories given to --resume and mappo eval ---------------


@pytest.fixture(scope="module")
def checkpoint_state():
    cfg = tiny_config()
    from mappo_torchrl.training import Trainer

    return trainer_state(Trainer(cfg))


def _stopped_run(tmp_path, state, config_text: str | None) -> str:
    """A run directory with one checkpoint, as a stopped run leaves it."""
    from mappo_torchrl.config import from_dict, save_config

    run = tmp_path / "run"
    save_checkpoint(state, run / "checkpoints" / "ckpt-000001.pt")
    if config_text is None:
        save_config(from_dict(state["config"]), run / "config.yaml")
    elif config_text:
        (run / "config.yaml").write_text(config_text)
    (run / "status.json").write_text('{"status": "interrupted"}')
    return str(run)


def test_resume_of_a_run_without_its_config_is_one_line(tmp_path, capsys, checkpoint_state):
    run = _stopped_run(tmp_path, checkpoint_state, config_text="")
    err = _one_line_exit_2(capsys, ["train", "--resume", run])
    assert "not a run directory (no config.yaml)" in err


def test_resume_of_a_run_naming_an_unknown_scenario_is_one_line(tmp_path, capsys, checkpoint_state):
    run = _stopped_run(tmp_path, checkpoint_state, config_text="env:\n  scenario: nosuch\n")
    err = _one_line_exit_2(capsys, ["train", "--resume", run])
    assert "env.scenario='nosuch': unknown VMAS scenario" in err


def test_eval_of_a_checkpoint_without_a_config_is_one_line(tmp_path, capsys, checkpoint_state):
    state = {k: v for k, v in checkpoint_state.items() if k != "config"}
    path = save_checkpoint(state, tmp_path / "ckpt.pt")
    assert "holds no config" in _one_line_exit_2(capsys, ["eval", str(path)])


def test_eval_of_a_checkpoint_naming_an_unknown_scenario_is_one_line(
    tmp_path, capsys, checkpoint_state
):
    state = dict(checkpoint_state)
    state["config"] = {**state["config"], "env": {**state["config"]["env"], "scenario": "nosuch"}}
    path = save_checkpoint(state, tmp_path / "ckpt.pt")
    assert "unknown VMAS scenario" in _one_line_exit_2(capsys, ["eval", str(path)])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--seed", "-1"], "--seed=-1: must be an integer in [0, 4294967295]"),
        (["--episodes", "0"], "--episodes=0: must be a positive integer"),
        (["--episodes", "100000000"], "--episodes=100000000: must be a positive integer"),
    ],
)
def test_bad_eval_option_is_one_line(tmp_path, capsys, checkpoint_state, extra, message):
    path = save_checkpoint(checkpoint_state, tmp_path / "ckpt.pt")
    assert message in _one_line_exit_2(capsys, ["eval", str(path), *extra])


# -- library factories: ValueError/TypeError naming the argument ---------------------


def _nav(num_envs: int = 2):
    from mappo_torchrl.envs import make_env

    return make_env("navigation", num_envs=num_envs, max_steps=10, seed=0)


def _actor(**kwargs):
    from mappo_torchrl.models import make_actor

    return make_actor(_nav(), "agents", **kwargs)


def _critic(**kwargs):
    from mappo_torchrl.models import make_critic

    return make_critic(_nav(), "agents", **kwargs)


def _loss(**kwargs):
    from mappo_torchrl.envs import group_keys
    from mappo_torchrl.models import make_actor, make_critic
    from mappo_torchrl.objectives import make_loss

    env = _nav()
    actor, critic = make_actor(env, "agents"), make_critic(env, "agents")
    return make_loss(actor, critic, group_keys(env, "agents"), **kwargs)


def _buffer(**kwargs):
    from mappo_torchrl.data import make_replay_buffer

    return make_replay_buffer(**{"size": 100, "minibatch_size": 10, **kwargs})


def _collector(**kwargs):
    from mappo_torchrl.data import make_collector
    from mappo_torchrl.models import make_actor

    env = _nav(num_envs=2)
    args = {"frames_per_batch": 40, "total_frames": 80, **kwargs}
    return make_collector(env, make_actor(env, "agents"), **args)


def _env(**kwargs):
    from mappo_torchrl.envs import make_env

    return make_env(**{"scenario": "navigation", "num_envs": 2, **kwargs})


def _trainer(env):
    from mappo_torchrl.training import Trainer

    return Trainer(tiny_config(), env=env)


def _single_agent_env():
    from torchrl.testing.mocking_classes import ContinuousActionVecMockEnv

    return ContinuousActionVecMockEnv()


LIBRARY_CASES = {
    "actor zero width": (lambda: _actor(num_cells=0), ValueError, "num_cells=0"),
    "actor depth as text": (lambda: _actor(depth="2"), TypeError, "depth='2'"),
    "actor activation": (lambda: _actor(activation="gelu"), ValueError, "activation='gelu'"),
    "critic zero depth": (lambda: _critic(depth=0), ValueError, "depth=0"),
    "loss gamma above 1": (lambda: _loss(gamma=2.0), ValueError, "gamma=2.0"),
    "loss negative clip": (lambda: _loss(clip_epsilon=-0.1), ValueError, "clip_epsilon=-0.1"),
    "loss infinite entropy": (
        lambda: _loss(entropy_coeff=float("inf")),
        ValueError,
        "entropy_coeff=inf",
    ),
    "buffer of size 0": (lambda: _buffer(size=0), ValueError, "size=0"),
    "negative minibatch": (lambda: _buffer(minibatch_size=-1), ValueError, "minibatch_size=-1"),
    "batch not a multiple of envs": (
        lambda: _collector(frames_per_batch=5),
        ValueError,
        "frames_per_batch=5: must be a multiple of the env's batch size (2",
    ),
    "env with no envs": (lambda: _env(num_envs=0), ValueError, "num_envs=0"),
    "env with negative seed": (lambda: _env(seed=-1), ValueError, "seed=-1"),
    "env with unknown kwarg": (
        lambda: _env(scenario_kwargs={"n_agentz": 4}),
        ValueError,
        "Did you mean 'n_agents'",
    ),
    "trainer given a scenario name": (
        lambda: _trainer("navigation"),
        TypeError,
        "env=the string 'navigation': must be a TorchRL multi-agent env",
    ),
    "trainer given a single-agent env": (
        lambda: _trainer(_single_agent_env()),
        TypeError,
        "env=ContinuousActionVecMockEnv: must be a TorchRL multi-agent env",
    ),
}


@pytest.mark.parametrize("case", list(LIBRARY_CASES))
def test_bad_factory_argument_names_it(case):
    build, error, message = LIBRARY_CASES[case]
    with pytest.raises(error) as info:
        build()
    assert message in str(info.value)
    assert len(str(info.value).splitlines()) == 1


def test_actor_for_a_group_the_env_lacks_names_the_groups():
    with pytest.raises(ValueError, match=r"group='adversaries': not a group of this env"):
        from mappo_torchrl.models import make_actor

        make_actor(_nav(), "adversaries")


def test_valid_input_still_builds():
    """The checks above refuse only what is wrong: the defaults still build and act."""
    actor = _actor(num_cells=8, depth=1)
    env = _nav()
    assert actor(env.reset())["agents", "action"].shape == torch.Size([2, 3, 2])


# -- --overwrite removes only a run directory mappo wrote ----------------------------


def _tree(folder) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"<dir>"
        for p in sorted(folder.rglob("*"))
    }


def _plain_folder(tmp_path):
    """The issue's case: mkdir -p p/sub; echo x > p/thesis.txt."""
    folder = tmp_path / "p"
    (folder / "sub").mkdir(parents=True)
    (folder / "thesis.txt").write_text("x\n")
    return folder


def _source_folder(tmp_path, monkeypatch):
    """The issue's other case: --run-dir . in a folder with source files."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "main.py").write_text("print('mine')\n")
    (tmp_path / "README.md").write_text("# mine\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _run_with_a_user_file(tmp_path):
    """A run directory to which the user added a file of their own."""
    from mappo_torchrl.runs.directory import RunDir

    run = RunDir.create(tmp_path / "run", tiny_config())
    run.write_status("interrupted")
    run.close()
    (run.path / "notes.txt").write_text("my notes\n")
    return run.path


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("plain folder", "this one has no config.yaml; nothing was removed"),
        ("dot with source files", "this one has no config.yaml; nothing was removed"),
        ("run with a user file", "holds 'notes.txt', which a run does not write"),
    ],
)
def test_overwrite_of_anything_but_a_run_leaves_every_file(
    tmp_path, monkeypatch, capsys, case, message
):
    if case == "plain folder":
        folder, arg = _plain_folder(tmp_path), str(tmp_path / "p")
    elif case == "dot with source files":
        folder, arg = _source_folder(tmp_path, monkeypatch), "."
    else:
        folder = _run_with_a_user_file(tmp_path)
        arg = str(folder)
    before = _tree(folder)
    err = _one_line_exit_2(capsys, ["train", "--run-dir", arg, "--overwrite", *TINY])
    assert "--overwrite only replaces a run directory" in err and message in err
    assert _tree(folder) == before


def test_plain_folder_without_overwrite_is_not_called_a_run(tmp_path, capsys):
    folder = _plain_folder(tmp_path)
    err = _one_line_exit_2(capsys, ["train", "--run-dir", str(folder), *TINY])
    assert "is not empty and not a run directory (it has no config.yaml)" in err
    assert (folder / "thesis.txt").read_text() == "x\n"


def test_overwrite_of_the_working_directory_is_refused_even_if_it_is_a_run(
    tmp_path, monkeypatch, capsys
):
    from mappo_torchrl.runs.directory import RunDir

    run = RunDir.create(tmp_path / "run", tiny_config())
    run.write_status("interrupted")
    run.close()
    before = _tree(run.path)
    monkeypatch.chdir(run.path)
    err = _one_line_exit_2(capsys, ["train", "--run-dir", ".", "--overwrite", *TINY])
    assert "is the working directory or holds it; nothing was removed" in err
    assert _tree(run.path) == before


def test_overwrite_replaces_a_stopped_run(tmp_path, capsys):
    from mappo_torchrl.runs.directory import RunDir, is_run_dir, read_status

    old = RunDir.create(tmp_path / "run", tiny_config())
    old.write_status("interrupted")
    old.close()
    assert is_run_dir(old.path)
    assert main(["train", "--run-dir", str(old.path), "--overwrite", *TINY, "--seed", "7"]) == 0
    assert read_status(old.path)["status"] == "finished"
    assert "seed: 7" in (old.path / "config.yaml").read_text()


@pytest.mark.parametrize(
    "content",
    [b"", b"garbage\x00\xff\xfe\n\x01\x02", b"iteration,frames\n1,40\n2,4", os.urandom(512)],
    ids=["empty", "garbage", "truncated", "binary"],
)
def test_plot_of_a_damaged_metrics_file_is_one_line(tmp_path, capsys, content):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.csv").write_bytes(content)
    out = tmp_path / "curves.png"
    if content.startswith(b"iteration,frames\n1,"):  # one sound row: plotted, with a warning
        assert main(["plot", str(run), "--out", str(out)]) == 0
        err = capsys.readouterr().err.strip()
        assert err == f"mappo plot: warning: {run / 'metrics.csv'}: skipped 1 unreadable " + (
            "line(s) after iteration 1"
        )
    else:
        err = _one_line_exit_2(capsys, ["plot", str(run), "--out", str(out)])
        assert f"{str(run)!r}: metrics.csv has no iterations yet" in err


# -- --config files: errors name the file and the line, not a command-line option ------


@pytest.mark.parametrize(
    ("text", "extra", "message"),
    [
        (
            "seed: 1\nloss:\n  gama: 0.99\n",
            [],
            "bad.yaml:3: loss.gama: unknown option; allowed: gamma, lmbda,",
        ),
        ("env:\n  num_envs: many\n", [], "bad.yaml:2: env.num_envs='many': must be an integer"),
        ("loss:\n  lmbda: 0.9\n  gamma: 5\n", [], "bad.yaml:3: loss.gamma=5.0: must be in [0, 1]"),
        # Set again on the command line, the bad value is the command line's.
        ("loss:\n  gamma: 0.9\n", ["--loss.gamma", "5"], "error: --loss.gamma=5.0: must be in"),
    ],
)
def test_bad_option_in_a_config_file_names_the_file_and_line(
    tmp_path, capsys, text, extra, message
):
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    argv = ["train", "--config", str(config), "--run-dir", str(tmp_path / "run"), *TINY, *extra]
    err = _one_line_exit_2(capsys, argv)
    assert message in err
    if not extra:
        assert err.startswith(f"mappo train: error: {tmp_path}/bad.yaml:")
    assert os.listdir(tmp_path) == ["bad.yaml"]


def test_binary_config_file_is_one_line_naming_it(tmp_path, capsys):
    config = tmp_path / "binary.bin"
    config.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe" + os.urandom(256))
    argv = ["train", "--config", str(config), "--run-dir", str(tmp_path / "run"), *TINY]
    err = _one_line_exit_2(capsys, argv)
    assert f"--config={str(config)!r}: not valid YAML/JSON (not text: byte 0x89" in err
    assert os.listdir(tmp_path) == ["binary.bin"]


def test_saved_config_with_an_unknown_option_names_it_once_on_resume(
    tmp_path, capsys, checkpoint_state
):
    run = _stopped_run(tmp_path, checkpoint_state, config_text="seed: 1\nloss:\n  gama: 0.9\n")
    err = _one_line_exit_2(capsys, ["train", "--resume", run])
    assert err.startswith(f"mappo train: error: --resume: {run}/config.yaml:3: loss.gama: unknown")


# -- a damaged status.json: read as a run without a status, never a traceback ---------

DAMAGED_STATUS = {"binary": b"\x89\xff\xfe\x00{", "list": b"[1, 2]", "null": b"null"}


@pytest.mark.parametrize("content", list(DAMAGED_STATUS.values()), ids=list(DAMAGED_STATUS))
def test_resume_of_a_run_with_a_damaged_status_file_continues_it(
    tmp_path, capsys, checkpoint_state, content
):
    from mappo_torchrl.runs.directory import read_metrics, read_status

    run = _stopped_run(tmp_path, checkpoint_state, config_text=None)
    (tmp_path / "run" / "status.json").write_bytes(content)
    argv = ["train", "--resume", run, "--collector.total_frames", "40", "--no-progress"]
    assert main(argv) == 0
    assert read_status(run)["status"] == "finished"
    assert [r["iteration"] for r in read_metrics(run)] == [1.0]


@pytest.mark.parametrize("content", list(DAMAGED_STATUS.values()), ids=list(DAMAGED_STATUS))
def test_a_damaged_status_file_of_a_live_or_overwritten_run_is_one_line(
    tmp_path, capsys, checkpoint_state, content
):
    from mappo_torchrl.runs.directory import RunLock

    run = _stopped_run(tmp_path, checkpoint_state, config_text=None)
    (tmp_path / "run" / "status.json").write_bytes(content)
    err = _one_line_exit_2(capsys, ["train", "--run-dir", run, "--overwrite", *TINY])
    assert "this one has no status.json written by mappo; nothing was removed" in err
    lock = RunLock(tmp_path / "run")
    assert lock.acquire()  # as a process training there holds it
    try:
        err = _one_line_exit_2(capsys, ["train", "--resume", run])
    finally:
        lock.release()
    assert "a live run is training there (process ? on ?); stop it first" in err


# -- ~ in paths: the user's home, also where the shell leaves it (quoted, or after =) -----


def test_tilde_in_path_options_is_the_home_folder(tmp_path, capsys, monkeypatch):
    home, work = tmp_path / "home", tmp_path / "work"
    (home / "notes").mkdir(parents=True)
    work.mkdir()
    (home / "notes" / "todo.txt").write_text("mine\n")
    (home / "bad.yaml").write_text("loss:\n  gama: 0.9\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    err = _one_line_exit_2(capsys, ["train", "--run-dir", "~", *TINY])
    assert f"run_dir={str(home)!r}: is not empty and not a run directory" in err
    err = _one_line_exit_2(capsys, ["train", "--run-dir=~/notes", *TINY])
    assert f"run_dir={str(home / 'notes')!r}: is not empty" in err
    err = _one_line_exit_2(capsys, ["train", "--config", "~/bad.yaml", *TINY])
    assert err.startswith(f"mappo train: error: {home}/bad.yaml:2: loss.gama: unknown option")
    err = _one_line_exit_2(capsys, ["train", "--resume", "~/notes"])
    assert f"--resume={str(home / 'notes')!r}: not a run directory" in err
    argv = ["train", "--init-from", "~/none.pt", "--run-dir", str(tmp_path / "run"), *TINY]
    assert f"'{home}/none.pt': no such checkpoint" in _one_line_exit_2(capsys, argv)
    assert os.listdir(work) == []
