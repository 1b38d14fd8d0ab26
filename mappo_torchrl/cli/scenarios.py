"""``mappo scenarios``: what each VMAS scenario is, from the shipped catalogue (fast)."""

from __future__ import annotations

import argparse
import difflib
import json

from mappo_torchrl.cli.options import fail


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``scenarios`` sub-command to ``subparsers``."""
    parser = subparsers.add_parser(
        "scenarios",
        help="list the VMAS scenarios: groups, agents, action and observation sizes",
        description=(
            "List the VMAS scenarios as mappo train builds them with default kwargs: agent "
            "groups and agents per group, per-agent observation size, and action size "
            "(continuous, the default, and discrete with --env.continuous_actions false). "
            "With NAME: that scenario's kwargs and their defaults, which "
            "--env.scenario_kwargs can set."
        ),
    )
    parser.add_argument("name", nargs="?", metavar="NAME", help="one scenario to describe")
    parser.set_defaults(func=scenarios_command)


def scenarios_command(args: argparse.Namespace) -> int:
    """Print the catalogue, or one scenario's details."""
    from mappo_torchrl.envs.catalog import scenario_catalog

    catalog = scenario_catalog()
    if args.name is None:
        rows = [("scenario", "groups (agents)", "obs", "actions: continuous / discrete")]
        for name, info in sorted(catalog.items()):
            if info.error:
                rows.append((name, "-", "-", f"not buildable with default kwargs: {info.error}"))
                continue
            groups = ", ".join(f"{g} ({len(a)})" for g, a in info.groups.items())
            obs = ", ".join(str(n) for n in info.observation.values())
            actions = ", ".join(
                f"{info.actions[g]} / {info.discrete_actions[g]}" for g in info.groups
            )
            rows.append((name, groups, obs, actions))
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        for row in rows:
            print("  ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[3]]))
        print("\nmappo scenarios NAME: one scenario's kwargs and their defaults")
        return 0
    if args.name not in catalog:
        close = difflib.get_close_matches(args.name, list(catalog), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        fail(f"mappo scenarios: error: {args.name!r}: unknown VMAS scenario{hint}")
    info = catalog[args.name]
    print(info.summary())
    if info.groups:
        for group, agents in info.groups.items():
            print(f"  {group}: {', '.join(agents)}")
    if info.kwargs:
        print("kwargs (default):")
        width = max(len(k) for k in info.kwargs)
        for key, default in info.kwargs.items():
            print(f"  {key.ljust(width)}  {default}")
        key, default = next(iter(info.kwargs.items()))
        example = json.dumps({key: _example(default)})
        command = f"mappo train --scenario {args.name} --env.scenario_kwargs '{example}'"
        print(f"set them with: {command}")
    else:
        print("kwargs: none")
    return 0


def _example(default: str):
    try:
        return json.loads(default.replace("True", "true").replace("False", "false"))
    except ValueError:
        return default
