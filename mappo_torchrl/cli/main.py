"""The ``mappo`` command."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from mappo_torchrl.cli import benchmark, plot, train
from mappo_torchrl.cli import eval as eval_command
from mappo_torchrl.cli.options import OneLineParser


def build_parser() -> OneLineParser:
    """The ``mappo`` argument parser, with one sub-command per verb.

    The docs render their command-line reference from this parser.

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
    subparsers = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=OneLineParser, required=True
    )
    train.add_parser(subparsers)
    eval_command.add_parser(subparsers)
    plot.add_parser(subparsers)
    benchmark.add_parser(subparsers)
    scenarios = subparsers.add_parser("scenarios", help="list the VMAS scenario names")
    scenarios.set_defaults(func=_list_scenarios)
    return parser


def _list_scenarios(args) -> int:
    from mappo_torchrl.envs import vmas_scenarios

    print("\n".join(vmas_scenarios()))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``mappo`` command with ``argv`` (default: ``sys.argv[1:]``).

    Returns:
        The exit code: 0 on success, 130 when training was interrupted. Bad
        input raises ``SystemExit(2)`` after printing one line on stderr.
    """
    args = build_parser().parse_args(argv)
    # TorchRL logs routine notes at INFO ("Initialized LazyTensorStorage ..."),
    # which would land in the middle of the progress bar.
    logging.getLogger("torchrl").setLevel(logging.WARNING)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
