"""What each VMAS scenario is: groups, agents, actions, observations and kwargs.

``mappo scenarios`` prints this. Building every scenario takes a minute, so the
facts are computed once per VMAS version (:func:`write_catalog`) and shipped
as ``scenarios.json`` next to this module; reading them imports neither torch
nor VMAS. With another VMAS version installed the catalogue is computed live
instead (slow, and said so).

The kwargs and their defaults are read from each scenario's source
(``kwargs.pop("n_agents", 4)`` and ``kwargs.get(...)`` calls in ``make_world``):
VMAS has no other record of them.
"""

from __future__ import annotations

import ast
import importlib.metadata
import inspect
import json
import textwrap
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

CATALOG_FILE = Path(__file__).with_name("scenarios.json")


@dataclass
class ScenarioInfo:
    """One scenario as ``mappo train --scenario NAME`` builds it (default kwargs).

    Attributes:
        name: the VMAS scenario name.
        groups: agent names per group (VMAS's grouping by name prefix).
        observation: per-agent observation size, per group.
        actions: per-agent action size with continuous actions, per group.
        discrete_actions: per-agent number of discrete actions, per group.
        kwargs: the scenario's kwargs and their defaults (what
            ``--env.scenario_kwargs`` can set), as their Python source text.
        error: why the scenario could not be built with default kwargs, if it could not.
    """

    name: str
    groups: dict[str, list[str]] = field(default_factory=dict)
    observation: dict[str, int] = field(default_factory=dict)
    actions: dict[str, int] = field(default_factory=dict)
    discrete_actions: dict[str, int] = field(default_factory=dict)
    kwargs: dict[str, str] = field(default_factory=dict)
    error: str = ""

    def summary(self) -> str:
        """One line: groups with their agent counts, action and observation sizes."""
        if self.error:
            return f"{self.name}: cannot be built with default kwargs ({self.error})"
        parts = []
        for group, agents in self.groups.items():
            parts.append(
                f"{group} x{len(agents)} (obs {self.observation[group]}, "
                f"act {self.actions[group]} continuous / {self.discrete_actions[group]} discrete)"
            )
        return f"{self.name}: " + "; ".join(parts)


def vmas_version() -> str:
    """The installed VMAS version (without importing it)."""
    return importlib.metadata.version("vmas")


@cache
def scenario_catalog() -> dict[str, ScenarioInfo]:
    """Every scenario's :class:`ScenarioInfo`, by name: shipped, or built live for another VMAS.

    Example:
        >>> from mappo_torchrl.envs.catalog import scenario_catalog
        >>> tag = scenario_catalog()["simple_tag"]
        >>> {group: len(agents) for group, agents in tag.groups.items()}
        {'adversary': 3, 'agent': 1}
        >>> tag.kwargs["num_good_agents"], tag.kwargs["num_adversaries"]
        ('1', '3')
    """
    shipped = json.loads(CATALOG_FILE.read_text()) if CATALOG_FILE.is_file() else {}
    if shipped.get("vmas") == vmas_version():
        return {name: ScenarioInfo(**info) for name, info in shipped["scenarios"].items()}
    return build_catalog()


def build_catalog() -> dict[str, ScenarioInfo]:
    """Build every scenario once (one env, default kwargs) and read off its facts."""
    from mappo_torchrl.envs.scenarios import vmas_scenarios

    return {name: describe_scenario(name) for name in vmas_scenarios()}


def describe_scenario(name: str) -> ScenarioInfo:
    """Build ``name`` as ``mappo train`` would (one env) and record its :class:`ScenarioInfo`."""
    from mappo_torchrl.envs import make_env
    from mappo_torchrl.envs.scenarios import SCENARIO_DEFAULTS
    from mappo_torchrl.rng import isolated_rng

    info = ScenarioInfo(name, kwargs=scenario_kwargs(name))
    for key, value in SCENARIO_DEFAULTS.get(name, {}).items():
        info.kwargs[key] = repr(value)
    try:
        with isolated_rng():
            envs = {
                continuous: make_env(name, num_envs=1, seed=0, continuous_actions=continuous)
                for continuous in (True, False)
            }
    except Exception as err:  # scenarios raise whatever they raise
        from mappo_torchrl.config.checks import first_line

        info.error = first_line(err)
        return info
    env = envs[True]
    info.groups = {group: list(agents) for group, agents in env.group_map.items()}
    for group in env.group_map:
        info.observation[group] = _size(env.observation_spec[group, "observation"].shape)
        info.actions[group] = int(env.full_action_spec[group, "action"].shape[-1])
        discrete = envs[False].full_action_spec[group, "action"]
        info.discrete_actions[group] = int(getattr(discrete.space, "n", discrete.shape[-1]))
    for built in envs.values():
        built.close()
    return info


def scenario_kwargs(name: str) -> dict[str, str]:
    """The kwargs ``name``'s ``make_world`` reads, with their defaults as source text."""
    from vmas.scenarios import load

    scenario = load(f"{name}.py").Scenario
    from mappo_torchrl.envs.scenarios import kwargs_read

    source = textwrap.dedent(inspect.getsource(scenario.make_world))
    return kwargs_read(ast.parse(source))


def write_catalog(path: str | Path = CATALOG_FILE) -> Path:
    """Build the catalogue for the installed VMAS and write it as JSON (for maintainers)."""
    catalog = build_catalog()
    payload: dict[str, Any] = {
        "vmas": vmas_version(),
        "scenarios": {name: asdict(info) for name, info in catalog.items()},
    }
    path = Path(path)
    path.write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n")
    return path


def _size(shape) -> int:
    return int(shape[-1]) if len(shape) else 1


if __name__ == "__main__":
    print(write_catalog())
