"""Names of the VMAS scenarios, and a helpful error for a wrong one."""

from __future__ import annotations

import difflib
from functools import cache

#: Defaults that differ from the scenario's own. The MAPPO tutorial and our
#: documented results use 3 navigation agents, where VMAS defaults to 4.
SCENARIO_DEFAULTS: dict[str, dict[str, object]] = {"navigation": {"n_agents": 3}}


@cache
def vmas_scenarios() -> tuple[str, ...]:
    """All scenario names VMAS can build (main, MPE and debug scenarios), sorted.

    Example:
        >>> from mappo_torchrl.envs import vmas_scenarios
        >>> {"navigation", "balance", "simple_tag"} <= set(vmas_scenarios())
        True
    """
    import vmas

    names = [*vmas.scenarios, *vmas.mpe_scenarios, *vmas.debug_scenarios]
    return tuple(sorted(set(names)))


def check_scenario(name: str) -> str:
    """Return ``name`` if VMAS knows it, else raise a ``ValueError`` that lists the names.

    Example:
        >>> from mappo_torchrl.envs import check_scenario
        >>> check_scenario("navigation")
        'navigation'
    """
    names = vmas_scenarios()
    if name in names:
        return name
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(
        f"env.scenario={name!r}: unknown VMAS scenario.{hint} Valid names: {', '.join(names)}"
    )
