"""Each choice list and default is declared once: in the config dataclasses.

The factories take their defaults from there, and every mapping from a choice
to what it builds covers exactly the declared choices.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing

import pytest

from mappo_torchrl.config import EnvConfig, LossConfig, ModelConfig, PerfConfig, schema
from mappo_torchrl.data import make_collector
from mappo_torchrl.envs import make_env
from mappo_torchrl.models import make_actor, make_critic
from mappo_torchrl.objectives import ActiveAgentGAE, make_loss, make_value_norm

#: factory -> (config section, {factory argument: config field}).
FACTORY_DEFAULTS = {
    make_env: (
        EnvConfig,
        {
            "scenario": "scenario",
            "num_envs": "num_envs",
            "max_steps": "max_steps",
            "continuous_actions": "continuous_actions",
            "truncate_at_max_steps": "truncate_at_max_steps",
        },
    ),
    make_actor: (
        ModelConfig,
        {
            "num_cells": "actor_cells",
            "depth": "actor_depth",
            "activation": "activation",
            "share_params": "share_params",
            "feature_norm": "feature_norm",
            "orthogonal_init": "orthogonal_init",
            "action_dist": "action_dist",
            "recurrent": "recurrent",
            "rnn_hidden": "rnn_hidden",
            "rnn_layers": "rnn_layers",
        },
    ),
    make_critic: (
        ModelConfig,
        {
            "centralized": "centralized_critic",
            "critic_input": "critic_input",
            "agent_id": "critic_agent_id",
            "death_masking": "death_masking",
            "num_cells": "critic_cells",
            "depth": "critic_depth",
            "activation": "activation",
            "share_params": "share_params",
            "feature_norm": "feature_norm",
            "orthogonal_init": "orthogonal_init",
            "recurrent": "recurrent",
            "rnn_hidden": "rnn_hidden",
            "rnn_layers": "rnn_layers",
        },
    ),
    make_loss: (
        LossConfig,
        {
            "gamma": "gamma",
            "lmbda": "lmbda",
            "clip_epsilon": "clip_epsilon",
            "entropy_coeff": "entropy_coeff",
            "entropy_samples": "entropy_samples",
            "critic_coeff": "critic_coeff",
            "critic_loss": "critic_loss",
            "huber_delta": "huber_delta",
            "clip_value": "clip_value",
            "advantage_norm": "advantage_norm",
        },
    ),
    make_value_norm: (LossConfig, {"beta": "value_norm_beta"}),
    ActiveAgentGAE: (LossConfig, {"advantage_norm": "advantage_norm"}),
    make_collector: (
        PerfConfig,
        {"compile_policy": "compile_policy", "cudagraph_policy": "cudagraph_policy"},
    ),
}


def _config_default(section: type, name: str):
    field = {f.name: f for f in dataclasses.fields(section)}[name]
    return field.default


@pytest.mark.parametrize("factory", FACTORY_DEFAULTS, ids=lambda f: f.__name__)
def test_every_factory_default_is_the_config_default(factory):
    section, arguments = FACTORY_DEFAULTS[factory]
    parameters = inspect.signature(factory).parameters
    differ = {
        argument: (parameters[argument].default, _config_default(section, field))
        for argument, field in arguments.items()
        if parameters[argument].default != _config_default(section, field)
    }
    assert differ == {}


def test_make_loss_shifted_default_is_the_perf_default():
    assert inspect.signature(make_loss).parameters["shifted"].default == PerfConfig.shifted_gae


def test_gamma_default_is_the_same_for_the_loss_and_the_config():
    """The drift this file exists for: make_loss(gamma=0.99) against LossConfig.gamma = 0.9."""
    assert inspect.signature(make_loss).parameters["gamma"].default == LossConfig().gamma


CHOICES = {
    "group_map": (EnvConfig, schema.GROUP_MAPS),
    "activation": (ModelConfig, schema.ACTIVATIONS),
    "critic_input": (ModelConfig, schema.CRITIC_INPUTS),
    "action_dist": (ModelConfig, schema.ACTION_DISTS),
    "recurrent": (ModelConfig, schema.RECURRENT),
    "critic_loss": (LossConfig, schema.CRITIC_LOSSES),
    "advantage_norm": (LossConfig, schema.ADVANTAGE_NORMS),
    "value_norm": (LossConfig, schema.VALUE_NORMS),
}


@pytest.mark.parametrize("field", CHOICES)
def test_each_choice_field_is_typed_by_its_choice_list(field):
    section, choices = CHOICES[field]
    hint = typing.get_type_hints(section)[field]
    assert typing.get_origin(hint) is typing.Literal
    assert typing.get_args(hint) == choices
    assert _config_default(section, field) in choices


def test_what_each_choice_builds_covers_exactly_the_choices():
    from mappo_torchrl.envs.factory import GROUP_MAP_TYPES
    from mappo_torchrl.models.mlp import ACTIVATION_MODULES
    from mappo_torchrl.models.recurrent import RNN_KINDS

    assert tuple(GROUP_MAP_TYPES) == schema.GROUP_MAPS
    assert tuple(ACTIVATION_MODULES) == schema.ACTIVATIONS
    assert ("none", *RNN_KINDS) == schema.RECURRENT


def test_a_choice_shows_its_values_in_help(capsys):
    from mappo_torchrl.cli.main import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "--model.activation {tanh,relu}" in capsys.readouterr().out


def test_every_logger_backend_but_csv_names_the_package_it_needs():
    from mappo_torchrl.runs.loggers import BACKEND_PACKAGES

    assert ("csv", *BACKEND_PACKAGES) == schema.LOGGERS
