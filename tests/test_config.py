import json

import pytest

from mappo_torchrl.config import (
    ConfigError,
    RunConfig,
    apply_overrides,
    from_dict,
    iter_options,
    load_config,
    save_config,
    to_dict,
)


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


def test_unknown_key_in_file_is_an_error(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("optim:\n  epochs: 3\n")
    with pytest.raises(ConfigError, match="optim.epochs=3: unknown option"):
        load_config(path)


def test_to_dict_from_dict_round_trip():
    cfg = RunConfig()
    assert from_dict(to_dict(cfg)) == cfg
