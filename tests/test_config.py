import json

import pytest

from mappo_torchrl.config import (
    ConfigError,
    ConfigFileError,
    RunConfig,
    apply_overrides,
    from_dict,
    iter_options,
    load_config,
    read_config_file,
    save_config,
    to_dict,
)
from mappo_torchrl.config.io import option_line


def test_every_option_has_a_docstring():
    missing = [name for name, _, doc in iter_options() if not doc]
    assert missing == []


def test_overrides_parse_strings_to_field_types():
    cfg = apply_overrides(
        RunConfig(),
        {
            "optim.actor_lr": "1e-3",
            "env.num_envs": "8",
            "loss.clip_value": "true",
            "env.scenario_kwargs": '{"n_agents": 4}',
        },
    )
    assert cfg.optim.actor_lr == pytest.approx(1e-3)
    assert cfg.env.num_envs == 8
    assert cfg.loss.clip_value is True
    assert cfg.env.scenario_kwargs == {"n_agents": 4}


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"optim.nope": "1"}, "optim.nope='1': unknown option"),
        ({"env.num_envs": "many"}, "env.num_envs='many': must be an integer"),
        ({"loss.clip_value": "maybe"}, "loss.clip_value='maybe': must be true or false"),
    ],
)
def test_bad_overrides_name_option_value_and_rule(overrides, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(")):
        apply_overrides(RunConfig(), overrides)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"collector.total_frames": 0}, "collector.total_frames=0: must be a positive integer"),
        (
            {"collector.frames_per_batch": 6001},
            "collector.frames_per_batch=6001: must be a multiple of env.num_envs (60)",
        ),
        (
            {"optim.minibatch_size": 7000},
            "optim.minibatch_size=7000: must be at most collector.frames_per_batch (6000)",
        ),
        ({"device": "tpu"}, "device='tpu': must be cpu, cuda or cuda:N"),
        ({"loss.value_norm": "yes"}, "loss.value_norm='yes': must be one of none, popart, running"),
    ],
)
def test_validate_rejects_bad_values_with_one_line(overrides, message):
    cfg = apply_overrides(RunConfig(), overrides)
    with pytest.raises(ConfigError) as err:
        cfg.validate()
    assert str(err.value) == message
    assert "\n" not in str(err.value)


def test_defaults_validate():
    RunConfig().validate()


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_config_file_round_trip(tmp_path, suffix):
    cfg = apply_overrides(RunConfig(), {"loss.gamma": 0.95, "env.scenario": "balance"})
    path = tmp_path / f"cfg{suffix}"
    save_config(cfg, path)
    assert load_config(path) == cfg


def test_partial_config_file_keeps_other_defaults(tmp_path):
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({"optim": {"num_epochs": 7}}))
    cfg = load_config(path)
    assert cfg.optim.num_epochs == 7
    assert cfg.optim.minibatch_size == RunConfig().optim.minibatch_size


def test_unknown_key_in_file_is_an_error_naming_the_file_and_line(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("seed: 1\noptim:\n  epochs: 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert isinstance(err.value, ConfigFileError)
    assert str(err.value).startswith(f"{path}:3: optim.epochs: unknown option; allowed: ")
    assert (err.value.option, err.value.value, err.value.line) == ("optim.epochs", 3, 3)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("cfg.yaml", "env:\n  num_envs: many\n", "cfg.yaml:2: env.num_envs='many': must be an"),
        ("cfg.json", '{"loss": {\n  "gama": 0.99}}', "cfg.json:2: loss.gama: unknown option"),
        ("cfg.yaml", "loss: 5\n", "cfg.yaml:1: loss=5: must be a mapping"),
        ("cfg.yaml", "optimm:\n  lr: 1\n", "cfg.yaml:1: optimm: unknown option; allowed: env,"),
    ],
)
def test_bad_option_in_a_file_names_the_file_and_line(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigFileError) as err:
        read_config_file(path)
    assert str(err.value).startswith(f"{tmp_path}/{message}")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\xff\xfe", "not valid YAML/JSON (not text: byte 0x89 at offset 0"),
        (b"[1, 2]\n", "must hold a mapping of options (e.g. loss: {gamma: 0.99}), not a list"),
        (b"just words\n", "must hold a mapping of options"),
        (b"a: [\n", "not valid YAML/JSON"),
    ],
)
def test_unreadable_config_file_is_one_line_naming_it(tmp_path, content, message):
    path = tmp_path / "cfg.bin"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as err:
        read_config_file(path)
    assert str(err.value).startswith(f"config={str(path)!r}: {message}")
    assert "\n" not in str(err.value)


def test_empty_config_file_keeps_the_defaults(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("# nothing set\n")
    assert load_config(path) == RunConfig()


@pytest.mark.parametrize(
    ("option", "line"),
    [("seed", 1), ("loss.gamma", 4), ("loss", 2), ("loss.lmbda", None), ("seed.x", None)],
)
def test_option_line_finds_the_key_that_sets_an_option(option, line):
    text = "seed: 1\nloss:\n  # the discount\n  gamma: 0.9\n"
    assert option_line(text, option) == line
    assert option_line("a: [", "a") is None


def test_to_dict_from_dict_round_trip():
    cfg = RunConfig()
    assert from_dict(to_dict(cfg)) == cfg
