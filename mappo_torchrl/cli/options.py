"""Command-line options generated from the config dataclasses."""

from __future__ import annotations

import argparse
import difflib
import re
import sys
import typing
from typing import Any, NoReturn

from mappo_torchrl.config import RunConfig, flatten, iter_options, to_dict


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr and exit code 2.

    Besides what argparse does, it:

    - accepts ``-`` and ``_`` alike inside option names (``--run_dir`` is
      ``--run-dir``, ``--update-threads`` is ``--update_threads``), and
      ``--option=value``;
    - reads Hydra-style ``key=value`` words as ``--key value`` (``mappo train
      env.scenario=balance loss.gamma=0.99``);
    - names the sub-command and the closest option when one is unknown;
    - shows help text as plain text (docstrings' ``literal`` markup removed).

    Prefixes of long options are not accepted (``allow_abbrev=False``): a
    misspelled ``--env.num_env`` is an error, never silently another option.

    Example:
        >>> from mappo_torchrl.cli.main import build_parser
        >>> args = build_parser().parse_args(["train", "--run_dir", "x", "loss.gamma=0.99"])
        >>> args.run_dir, vars(args)["cfg:loss.gamma"]
        ('x', '0.99')
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args=None, namespace=None):
        args = self._canonical(list(sys.argv[1:] if args is None else args))
        namespace, extras = super().parse_known_args(args, namespace)
        unknown = [a for a in extras if a.startswith("-") and a != "--"]
        if unknown and not self._subparsers_action():
            # A sub-command reports its own unknown options, under its own name.
            self.error(f"unrecognized arguments: {' '.join(extras)}{self._did_you_mean(unknown)}")
        return namespace, extras

    def format_help(self) -> str:
        return _plain(super().format_help())

    def error(self, message: str) -> NoReturn:
        fail(f"{self.prog}: error: {message}")

    # -- spelling ---------------------------------------------------------------

    def _options(self) -> dict[str, str]:
        """Every long option by its spelling with ``_`` for ``-``."""
        return {
            "--" + name[2:].replace("-", "_"): name
            for name in self._option_string_actions
            if name.startswith("--")
        }

    def _canonical(self, args: list[str]) -> list[str]:
        options = self._options()
        # key=value words are config overrides only where config options exist (mappo
        # train); elsewhere (mappo benchmark --variant NAME key=value) they are values.
        overrides = any(a.dest.startswith("cfg:") for a in self._actions)
        out: list[str] = []
        takes_value = False  # the next word is the value of the option before it
        values = False  # the words up to the next option are values (nargs="+" or "*")
        for i, arg in enumerate(args):
            if arg == "--" or self._subparsers_action_for(arg):
                return [*out, *args[i:]]  # the rest belongs to a sub-command (or is positional)
            if takes_value or (values and not arg.startswith("-")):
                out.append(arg)
                takes_value = False
                continue
            values = False
            if arg.startswith("--"):
                name, eq, value = arg.partition("=")
                name = options.get("--" + name[2:].replace("-", "_"), name)
                out.append(name + eq + value)
                action = self._option_string_actions.get(name)
                if action is not None and not eq and not isinstance(action, _NO_VALUE):
                    takes_value = action.nargs is None
                    values = action.nargs in ("+", "*", argparse.REMAINDER) or (
                        isinstance(action.nargs, int) and action.nargs > 0
                    )
                continue
            key, eq, value = arg.partition("=")
            if overrides and eq and _KEY.fullmatch(key):
                name = options.get("--" + key.replace("-", "_"))
                if name is None:
                    self.error(
                        f"{arg!r}: no option --{key} for a key=value override"
                        f"{self._did_you_mean(['--' + key])}"
                    )
                out += [name, value]
                continue
            out.append(arg)
        return out

    def _did_you_mean(self, unknown: list[str]) -> str:
        options = self._options()
        name = "--" + unknown[0].partition("=")[0][2:].replace("-", "_")
        close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.75)
        return f" (did you mean {options[close[0]]}?)" if close else ""

    def _subparsers_action(self) -> argparse._SubParsersAction | None:
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                return action
        return None

    def _subparsers_action_for(self, arg: str) -> bool:
        action = self._subparsers_action()
        return action is not None and arg in action.choices


_NO_VALUE = (
    argparse._StoreTrueAction,
    argparse._StoreFalseAction,
    argparse._HelpAction,
    argparse._VersionAction,
    argparse._CountAction,
)

#: ``section.field`` or ``field``: the key of a ``key=value`` override.
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)*")


def _plain(text: str) -> str:
    """reStructuredText markup in help text as plain text.

    Example:
        >>> from mappo_torchrl.cli.options import _plain
        >>> _plain("see ``mappo scenarios`` and :class:`~mappo_torchrl.config.RunConfig`")
        "see 'mappo scenarios' and RunConfig"
    """
    text = re.sub(r":[a-z:]+:`~?(?:[^`]*\.)?([^`.]+)`", r"\1", text)
    return re.sub(r"``([^`]+)``", r"'\1'", text)


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
    if typing.get_origin(hint) is typing.Literal:
        return "{" + ",".join(typing.get_args(hint)) + "}"
    return getattr(hint, "__name__", "VALUE").upper()


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return "{}" if not value else str(value)
    return str(value)
