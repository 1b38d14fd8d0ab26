"""The ``mappo`` command."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from mappo_torchrl import __version__
from mappo_torchrl.cli import scenarios
from mappo_torchrl.cli.options import OneLineParser

#: Sub-commands that answer without importing torch (see :func:`main`).
LIGHT_COMMANDS = ("scenarios",)


def build_parser(*, light: bool = False) -> OneLineParser:
    """The ``mappo`` argument parser, with one sub-command per verb.

    The docs render their command-line reference from this parser. With
    ``light``, only the sub-commands that need no torch (``scenarios``).

    Example:
        >>> from mappo_torchrl.cli.main import build_parser
        >>> args = build_parser().parse_args(["train", "--optim.actor_lr", "1e-3"])
        >>> args.command, vars(args)["cfg:optim.actor_lr"]
        ('train', '1e-3')
    """
    parser = OneLineParser(
        prog="mappo",
        description="Multi-Agent PPO on TorchRL and VMAS.",
        epilog="Run 'mappo COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"mappo {__version__}")
    subparsers = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=OneLineParser, required=True
    )
    if not light:
        from mappo_torchrl.cli import benchmark, plot, train
        from mappo_torchrl.cli import eval as eval_command

        train.add_parser(subparsers)
        eval_command.add_parser(subparsers)
        plot.add_parser(subparsers)
        benchmark.add_parser(subparsers)
    scenarios.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``mappo`` command with ``argv`` (default: ``sys.argv[1:]``).

    ``mappo --version`` and ``mappo scenarios`` build a parser without the
    training commands, whose modules import torch: they answer in well
    under a second.

    Returns:
        The exit code: 0 on success, 130 when training was interrupted. Bad
        input raises ``SystemExit(2)`` after printing one line on stderr.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    light = bool(argv) and (argv[0] in LIGHT_COMMANDS or argv == ["--version"])
    args = build_parser(light=light).parse_args(argv)
    # TorchRL logs routine notes at INFO ("Initialized LazyTensorStorage ..."),
    # which would land in the middle of the progress bar.
    logging.getLogger("torchrl").setLevel(logging.WARNING)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
