"""Command-line options generated from the config dataclasses."""

from __future__ import annotations

import argparse
import sys
import typing
from typing import Any, NoReturn

from mappo_torchrl.config import RunConfig, flatten, iter_options, to_dict


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr and exit code 2.

    Prefixes of long options are not accepted (``allow_abbrev=False``): a
    misspelled ``--env.num_env`` is an error, never silently another option.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        fail(f"{self.prog}: error: {message}")


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``message`` as one line on stderr and exit with ``code``."""
    print(" ".join(message.split()), file=sys.stderr)
    raise SystemExit(code)


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """One ``--section.field VALUE`` option per config field, documented from its docstring."""
    defaults = flatten(to_dict(RunConfig()))
    groups: dict[str, argparse._ArgumentGroup] = {}
    for name, hint, doc in iter_options():
        section = name.split(".")[0] if "." in name else "run"
        if section not in groups:
            groups[section] = parser.add_argument_group(f"{section} options")
        default = defaults[name]
        groups[section].add_argument(
            f"--{name}",
            dest=f"cfg:{name}",
            metavar=_metavar(hint),
            default=None,
            help=f"{doc} (default: {_show(default)})".replace("%", "%%"),
        )


def config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The ``--section.field`` values given on the command line, by dotted name."""
    return {
        key[len("cfg:") :]: value
        for key, value in vars(args).items()
        if key.startswith("cfg:") and value is not None
    }


def _metavar(hint: Any) -> str:
    if hint is bool:
        return "{true,false}"
    if typing.get_origin(hint) is dict:
        return "YAML"
    return getattr(hint, "__name__", "VALUE").upper()


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return "{}" if not value else str(value)
    return str(value)
