"""One command line for every habit: both spellings, key=value, did-you-mean, --version."""

import json
import subprocess
import sys
import sysconfig
import time
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

from mappo_torchrl.cli.main import build_parser

MAPPO = str(Path(sysconfig.get_path("scripts")) / "mappo")
TINY = [
    "collector.overlap=off",  # sync: no worker process to start per test
    "env.num_envs=4", "env.max_steps=10", "collector.frames_per_batch=40",
    "collector.total_frames=40", "optim.minibatch_size=20", "model.actor_cells=16",
    "model.critic_cells=16", "eval.episodes=2",
]  # fmt: skip


def mappo(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([MAPPO, *args], capture_output=True, text=True, timeout=600)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def _long_options(parser):
    subparsers = parser._subparsers._group_actions[0]
    for command, sub in subparsers.choices.items():
        for action in sub._actions:
            for option in action.option_strings:
                if option.startswith("--") and option != "--help":
                    yield command, sub, action, option


def test_every_option_takes_hyphens_and_underscores_alike():
    parser = build_parser()
    checked = 0
    for command, _, action, option in _long_options(parser):
        takes_value = not isinstance(action, argparse_no_value_actions())
        positional = ["x"] if command == "eval" else ["x"] if command == "plot" else []
        for spelling in (
            option,
            "--" + option[2:].replace("_", "-"),
            "--" + option[2:].replace("-", "_"),
        ):
            value = [str(next(iter(action.choices or ["1"])))] if takes_value else []
            value *= action.nargs if isinstance(action.nargs, int) else 1
            args = [command, spelling, *value, *positional]
            parsed = vars(parser.parse_args(args))
            assert parsed[action.dest] not in (None, False), (command, spelling)
        checked += 1
    assert checked > 60  # every config field of mappo train, and the other commands' options


def argparse_no_value_actions():
    import argparse

    return (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._VersionAction)


def test_key_value_overrides_and_both_spellings_through_the_console_script(tmp_path):
    run_dir = tmp_path / "run"
    mappo(
        "train", "--run_dir", str(run_dir), "--update-threads", "1", "--no_progress",
        "env.scenario=balance", "loss.gamma=0.99", "seed=3", "--optim.actor-lr=0.001", *TINY,
    )  # fmt: skip
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["env"]["scenario"] == "balance"
    assert config["loss"]["gamma"] == 0.99
    assert config["seed"] == 3
    assert config["optim"]["actor_lr"] == 0.001
    assert config["update_threads"] == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--optim.actor_lrr", "1"],
         "mappo train: error: unrecognized arguments: --optim.actor_lrr 1 "
         "(did you mean --optim.actor_lr?)"),
        (["train", "los.gamma=0.9"],
         "mappo train: error: 'los.gamma=0.9': no option --los.gamma for a key=value override "
         "(did you mean --loss.gamma?)"),
        (["eval", "run", "--episode-count", "3"],
         "mappo eval: error: unrecognized arguments: --episode-count 3"),
        (["plot", "run", "--outt", "x.png"],
         "mappo plot: error: unrecognized arguments: --outt x.png (did you mean --out?)"),
    ],
)  # fmt: skip
def test_unknown_option_names_the_subcommand_and_the_closest_option(tmp_path, args, message):
    done = mappo(*args, check=False)
    assert done.returncode == 2
    assert done.stderr.strip() == message


def test_version():
    assert mappo("--version").stdout.strip() == f"mappo {version('mappo_torchrl')}"


def test_train_help_is_plain_text():
    out = mappo("train", "--help").stdout
    assert "``" not in out and ":class:" not in out and ":func:" not in out
    assert "'mappo scenarios'" in out  # was ``mappo scenarios``
    assert "key=value" in out


def test_scenarios_answers_fast_without_importing_torch():
    probe = (
        "import sys, contextlib, io\n"
        "from mappo_torchrl.cli.main import main\n"
        "with contextlib.redirect_stdout(io.StringIO()): main(['scenarios'])\n"
        "print(sorted(m for m in ('torch', 'vmas', 'torchrl') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.stdout.strip() == "[]", done.stderr
    best = min(_timed(MAPPO, "scenarios") for _ in range(3))
    assert best < 2.0, f"mappo scenarios took {best:.2f} s"


def _timed(*command: str) -> float:
    start = time.perf_counter()
    subprocess.run(command, capture_output=True, check=True)
    return time.perf_counter() - start


def test_scenarios_lists_groups_agents_actions_and_observations():
    out = mappo("scenarios").stdout
    rows = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert "adversary (3), agent (1)" in rows["simple_tag"]
    assert "agents (3)" in rows["navigation"]  # our default: 3 navigation agents
    assert "2 / 9" in rows["navigation"]  # continuous action size / discrete actions


def test_scenarios_name_shows_kwargs_and_defaults():
    out = mappo("scenarios", "simple_tag").stdout
    assert out.startswith("simple_tag: adversary x3 (obs 16")
    kwargs = dict(line.split() for line in out.splitlines() if line.startswith("  num_"))
    assert kwargs["num_adversaries"] == "3" and kwargs["num_good_agents"] == "1"
    example = out.splitlines()[-1].split("--env.scenario_kwargs ")[1].strip("'")
    ((key, value),) = json.loads(example).items()
    assert str(value) == kwargs.get(key, str(value))  # a listed kwarg at its default
    assert key in out.split("kwargs (default):")[1]
    done = mappo("scenarios", "simple_tg", check=False)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "mappo scenarios: error: 'simple_tg': unknown VMAS scenario; did you mean 'simple_tag'?"
    )


@pytest.mark.parametrize("name", ["navigation", "simple_tag", "balance"])
def test_shipped_catalogue_matches_what_vmas_builds(name):
    from mappo_torchrl.envs.catalog import describe_scenario, scenario_catalog, vmas_version
    from mappo_torchrl.envs.scenarios import vmas_scenarios

    shipped = json.loads(Path(__file__).parents[1].joinpath(
        "mappo_torchrl", "envs", "scenarios.json").read_text())  # fmt: skip
    assert shipped["vmas"] == vmas_version()
    assert set(scenario_catalog()) == set(vmas_scenarios())
    assert scenario_catalog()[name] == describe_scenario(name)


def test_key_value_words_are_values_where_an_option_takes_several():
    """``mappo benchmark --variant NAME key=value`` keeps its words; only train reads overrides."""
    args = build_parser().parse_args(
        ["benchmark", "--scenarios", "navigation", "balance", "--variant", "g", "loss.gamma=0.99"]
    )
    assert args.variant == [["g", "loss.gamma=0.99"]]
    assert args.scenarios == ["navigation", "balance"]
