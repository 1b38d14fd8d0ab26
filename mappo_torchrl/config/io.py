"""Read, write and override :class:`RunConfig` objects.

A config is a tree of dataclasses. It round-trips through plain dicts, so it
can be stored as YAML or JSON next to a run, and any leaf can be set from the
command line with a dotted name (``optim.actor_lr=1e-3``).
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import textwrap
import typing
import warnings
from collections.abc import Collection, Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from mappo_torchrl.config.checks import first_line
from mappo_torchrl.config.schema import ConfigError, RunConfig

#: What :func:`from_dict` says of a key that is no option.
_UNKNOWN = "unknown option"


class ConfigFileError(ConfigError):
    """A config file sets an option it may not: one line naming the file and the line.

    For example ``bad.yaml:3: loss.gama: unknown option; allowed: gamma, ...``
    or ``bad.yaml:2: env.num_envs='many': must be an integer``. ``option``,
    ``value`` and ``allowed`` are those of the :class:`ConfigError` it
    stands for; ``path`` is the file and ``line`` the line (None if unknown).
    """

    def __init__(self, path: str | Path, error: ConfigError, *, line: int | None = None) -> None:
        super().__init__(error.option, error.value, error.allowed)
        self.path = Path(path)
        self.line = line
        where = f"{path}:{line}" if line is not None else str(path)
        unknown = error.allowed.startswith(_UNKNOWN)
        scalar = isinstance(error.value, (bool, int, float, str))
        # An unknown key's value says nothing, and a whole section's is too long to show.
        what = str(error) if scalar and not unknown else f"{error.option}: {error.allowed}"
        self.args = (f"{where}: {what}",)


def to_dict(config: Any) -> dict[str, Any]:
    """The config as nested plain dicts (ready for YAML or JSON).

    Example:
        >>> from mappo_torchrl.config import RunConfig, to_dict
        >>> to_dict(RunConfig())["loss"]["gamma"]
        0.9
    """
    return dataclasses.asdict(config)


def from_dict(data: Mapping[str, Any], cls: type = RunConfig, prefix: str = "") -> Any:
    """Build ``cls`` from nested dicts; unknown keys raise :class:`ConfigError`.

    Missing keys keep their defaults, and values are type-checked (an ``int``
    is accepted where a ``float`` is expected).

    Example:
        >>> from mappo_torchrl.config import from_dict
        >>> from_dict({"env": {"scenario": "balance"}, "seed": 3}).env.scenario
        'balance'
        >>> from_dict({"optim": {"lr": 1e-3}})
        Traceback (most recent call last):
        ...
        mappo_torchrl.config.schema.ConfigError: optim.lr=0.001: unknown option; allowed: ...
    """
    if not isinstance(data, Mapping):
        raise ConfigError(prefix.rstrip(".") or "config", data, "must be a mapping")
    data = _renamed(data, prefix)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(f"{prefix}{key}", value, f"{_UNKNOWN}; allowed: " + ", ".join(fields))
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = from_dict(value, hint, prefix=f"{prefix}{key}.")
        else:
            kwargs[key] = _coerce(f"{prefix}{key}", value, hint)
    return cls(**kwargs)


#: Options that were renamed: old dotted name -> (new field, old value -> new value).
RENAMED = {
    "loss.normalize_advantage": ("advantage_norm", {True: "per_agent", False: "none"}),
}


def _renamed(data: Mapping[str, Any], prefix: str) -> Mapping[str, Any]:
    """``data`` with renamed options (from older config files) under their new names."""
    old = [key for key in data if f"{prefix}{key}" in RENAMED]
    if not old:
        return data
    data = dict(data)
    for key in old:
        new, values = RENAMED[f"{prefix}{key}"]
        value = data.pop(key)
        if value not in values:
            raise ConfigError(f"{prefix}{key}", value, "must be true or false")
        data.setdefault(new, values[value])
        warnings.warn(
            f"{prefix}{key} is deprecated: read as {prefix}{new}={values[value]}",
            FutureWarning,
            stacklevel=3,
        )
    return data


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The nested dict a ``.yaml``/``.yml`` or ``.json`` config file holds (only its own keys).

    Raises:
        ConfigFileError: for an unknown option or a value of the wrong type,
            naming the file and the line (where the file is YAML, or JSON that
            YAML reads).
        ConfigError: for a file that is missing, unreadable, not UTF-8 text,
            not YAML/JSON, or not a mapping of options.
    """
    path = Path(path)
    text = _config_text(path)
    data = _parse_config(path, text)
    try:
        from_dict(data)  # unknown keys and wrong types fail here, naming the option
    except ConfigError as err:
        raise ConfigFileError(path, err, line=option_line(text, err.option)) from None
    return data


def in_config_file(
    error: ConfigError, path: str | Path | None, *, overridden: Collection[str] = ()
) -> ConfigError:
    """``error`` as a :class:`ConfigFileError` if the config file ``path`` set its option.

    For an error found after the file was merged with other settings (by
    :meth:`RunConfig.validate`): it is the file's when the file sets the
    option and none of ``overridden`` (the options set after the file) does.
    Otherwise, and when the file can no longer be read, ``error`` itself.
    """
    if path is None or error.option in overridden or isinstance(error, ConfigFileError):
        return error
    try:
        text = _config_text(Path(path))
        data = _parse_config(Path(path), text)
    except ConfigError:
        return error
    if error.option not in flatten(data):
        return error
    return ConfigFileError(path, error, line=option_line(text, error.option))


def option_line(text: str, option: str) -> int | None:
    """The line (from 1) of the key that sets the dotted ``option`` in a config file's text.

    None where the text does not set it with that key or is not YAML (JSON is
    YAML here, as far as PyYAML reads it).

    Example:
        >>> from mappo_torchrl.config.io import option_line
        >>> option_line("seed: 1\\nloss:\\n  gama: 0.99\\n", "loss.gama")
        3
    """
    try:
        node = yaml.compose(text, Loader=_AliasLimitedLoader)  # noqa: S506 - a SafeLoader
    except (yaml.YAMLError, RecursionError):
        return None
    line = None
    for key in option.split("."):
        if not isinstance(node, yaml.MappingNode):
            return None
        found = [(k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == key]
        if not found:
            return None
        key_node, node = found[-1]  # YAML keeps the last of repeated keys
        line = key_node.start_mark.line + 1
    return line


def _config_text(path: Path) -> str:
    """The text of the config file ``path`` (a one-line :class:`ConfigError` if unreadable)."""
    if not path.is_file():
        raise ConfigError("config", str(path), "no such file")
    try:
        return path.read_text()
    except UnicodeDecodeError as err:
        raise ConfigError(
            "config",
            str(path),
            f"not valid YAML/JSON (not text: byte {err.object[err.start]:#04x} at offset "
            f"{err.start} is not {err.encoding})",
        ) from None
    except OSError as err:
        raise ConfigError("config", str(path), f"cannot be read ({first_line(err)})") from None


def _parse_config(path: Path, text: str) -> dict[str, Any]:
    """The mapping a config file's ``text`` holds (``{}`` when empty)."""
    try:
        data = json.loads(text) if path.suffix == ".json" else load_yaml(text)
    except (json.JSONDecodeError, yaml.YAMLError, RecursionError) as err:
        raise ConfigError(
            "config", str(path), f"not valid YAML/JSON ({first_line(err, limit=1000)})"
        ) from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(
            "config",
            str(path),
            f"must hold a mapping of options (e.g. loss: {{gamma: 0.99}}), "
            f"not a {type(data).__name__}",
        )
    return dict(data)


#: Aliases (``*name``) a YAML config may use. Each one can double the data it
#: expands to, so a few hundred bytes of nested aliases ("billion laughs") would
#: otherwise hang whatever walks the result.
MAX_YAML_ALIASES = 16


class _AliasLimitedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses more than :data:`MAX_YAML_ALIASES` aliases."""

    aliases = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_YAML_ALIASES:
                raise yaml.YAMLError(
                    f"more than {MAX_YAML_ALIASES} aliases (*name); refused, as a config "
                    "needs few and many can expand without bound"
                )
        return super().compose_node(parent, index)


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` with at most :data:`MAX_YAML_ALIASES` aliases.

    Example:
        >>> from mappo_torchrl.config.io import load_yaml
        >>> load_yaml("a: &x 1\\nb: *x")
        {'a': 1, 'b': 1}
    """
    return yaml.load(text, Loader=_AliasLimitedLoader)  # noqa: S506 - a SafeLoader


def load_config(path: str | Path) -> RunConfig:
    """Load a :class:`RunConfig` from a ``.yaml``/``.yml`` or ``.json`` file.

    Options the file does not set keep their defaults.
    """
    return from_dict(read_config_file(path))


#: Options added after runs began saving their configs, each with the value that
#: behaves as the code did before it existed (float32 networks, collection in the
#: training process). A saved config without one was written by an older version.
ADDED_OPTIONS: dict[str, Any] = {"collector.overlap": "off", "perf.precision": "float32"}


def from_saved_dict(data: Mapping[str, Any]) -> RunConfig:
    """The :class:`RunConfig` a run saved (its ``config.yaml`` or a checkpoint's config).

    Unlike :func:`from_dict`, options the run's version did not have take
    their ``ADDED_OPTIONS`` value (in ``mappo_torchrl.config.io``), not
    today's default, so that a run of an older version resumes, and is
    evaluated, as it ran.

    Example:
        >>> from mappo_torchrl.config.io import from_saved_dict
        >>> from_saved_dict({"env": {"scenario": "balance"}}).perf.precision
        'float32'
    """
    if not isinstance(data, Mapping):
        return from_dict(data)
    data = dict(data)
    for name, value in ADDED_OPTIONS.items():
        section, key = name.split(".")
        part = data.get(section, {})
        if isinstance(part, Mapping) and key not in part:
            data[section] = {**part, key: value}
    return from_dict(data)


def load_run_config(path: str | Path) -> RunConfig:
    """:func:`from_saved_dict` of a run's saved config file."""
    return from_saved_dict(read_config_file(path))


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config dicts as ``{"section.field": value}`` (mappings in a leaf stay whole)."""
    hints = {name for name, _, _ in iter_options()}
    flat = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and name not in hints:
            flat.update(flatten(value, prefix=f"{name}."))
        else:
            flat[name] = value
    return flat


def save_config(config: RunConfig, path: str | Path) -> None:
    """Write the config as YAML (or JSON when ``path`` ends in ``.json``)."""
    path = Path(path)
    data = to_dict(config)
    if path.suffix == ".json":
        path.write_text(json.dumps(data, indent=2) + "\n")
    else:
        path.write_text(yaml.safe_dump(data, sort_keys=False))


def apply_overrides(config: RunConfig, overrides: Mapping[str, Any]) -> RunConfig:
    """Return a copy of ``config`` with dotted-name overrides applied.

    Values may be typed already or strings (parsed as YAML scalars, so
    ``"1e-3"``, ``"true"`` and ``'{"n_agents": 4}'`` all work).

    Example:
        >>> from mappo_torchrl.config import RunConfig, apply_overrides
        >>> cfg = apply_overrides(RunConfig(), {"optim.actor_lr": "1e-3"})
        >>> cfg.optim.actor_lr
        0.001
    """
    data = to_dict(config)
    hints = {name: hint for name, hint, _ in iter_options()}
    for name, value in overrides.items():
        if name not in hints:
            raise ConfigError(name, value, f"{_UNKNOWN} (see mappo train --help)")
        node = data
        *parents, leaf = name.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = _parse_text(value, hints[name]) if isinstance(value, str) else value
    return from_dict(data)


def iter_options(cls: type = RunConfig, prefix: str = "") -> Iterator[tuple[str, Any, str]]:
    """Yield ``(dotted_name, type_hint, docstring)`` for every leaf option.

    Example:
        >>> from mappo_torchrl.config import iter_options
        >>> next(iter_options())
        ('env.scenario', <class 'str'>, 'VMAS scenario name, e.g. navigation, ...')
    """
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            yield from iter_options(hint, prefix=f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", hint, docs.get(f.name, "")


@cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstring written under each field of a dataclass, by field name.

    Example:
        >>> from mappo_torchrl.config import LossConfig, field_docs
        >>> field_docs(LossConfig)["gamma"]
        'Discount factor.'
    """
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body
    docs = {}
    for node, following in zip(body, body[1:], strict=False):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[node.target.id] = " ".join(following.value.value.split())
    return docs


def _parse_text(text: str, hint: Any) -> Any:
    """Read a command-line string as a value for a field of type ``hint``."""
    if hint is str or _is_choice(hint):
        return text
    # YAML 1.1 reads "1e-3" as a string, so numbers are tried first.
    for number in (int, float):
        try:
            return number(text)
        except ValueError:
            pass
    try:
        return load_yaml(text)
    except yaml.YAMLError:
        return text


def _coerce(option: str, value: Any, hint: Any) -> Any:
    """Check ``value`` against a field's type, converting int to float where exact."""
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(option, value, "must be true or false")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(option, value, "must be an integer")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(option, value, "must be a number")
    if hint is str or _is_choice(hint):  # a choice's value is checked by validate()
        if isinstance(value, str):
            return value
        raise ConfigError(option, value, "must be a string")
    origin = typing.get_origin(hint)
    if origin is dict:
        if isinstance(value, Mapping):
            return dict(value)
        raise ConfigError(option, value, 'must be a mapping, e.g. {"n_agents": 4}')
    return value


def _is_choice(hint: Any) -> bool:
    """Whether ``hint`` is a ``Literal`` of strings (a field with a fixed set of values)."""
    return typing.get_origin(hint) is typing.Literal
