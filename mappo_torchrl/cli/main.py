"""The ``mappo`` command."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from mappo_torchrl.cli import eval as eval_command
from mappo_torchrl.cli import plot, train
from mappo_torchrl.cli.options import OneLineParser


def build_parser() -> OneLineParser:
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
    scenarios = subparsers.add_parser("scenarios", help="list the VMAS scenario names")
    scenarios.set_defaults(func=_list_scenarios)
    return parser


def _list_scenarios(args) -> int:
    from mappo_torchrl.envs import vmas_scenarios

    print("\n".join(vmas_scenarios()))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
