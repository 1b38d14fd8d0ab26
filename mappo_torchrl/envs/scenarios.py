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


@cache
def scenario_options(name: str) -> tuple[str, ...]:
    """The keyword arguments a VMAS scenario reads (``kwargs.pop/get("name", ...)`` in its
    ``make_world``), found in its source; empty if they cannot be found.

    Example:
        >>> from mappo_torchrl.envs.scenarios import scenario_options
        >>> "n_agents" in scenario_options("navigation")
        True
    """
    import ast
    import importlib.util
    from pathlib import Path

    root = Path(importlib.util.find_spec("vmas.scenarios").origin).parent
    found = sorted(root.rglob(f"{name}.py"))
    if not found:
        return ()
    return tuple(sorted(kwargs_read(ast.parse(found[0].read_text()))))


def kwargs_read(tree) -> dict[str, str]:
    """The ``kwargs.pop/get("name", default)`` calls in a parsed source: each name with
    its default as source text (``"None"`` where none is given)."""
    import ast

    found: dict[str, str] = {}
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("pop", "get")
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "kwargs"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            default = ast.unparse(node.args[1]) if len(node.args) > 1 else "None"
            found.setdefault(node.args[0].value, default)
    return found


def check_scenario_kwargs(name: str, kwargs) -> None:
    """Raise a ``ValueError`` for a keyword argument scenario ``name`` does not read.

    The message suggests the closest option the scenario has. Names are read
    from the scenario's source (:func:`scenario_options`); where none can be
    found, building the env is the check (VMAS then warns, and
    :func:`~mappo_torchrl.envs.make_env` turns that into an error).
    """
    from mappo_torchrl.config.schema import ENV_OPTIONS

    for key in kwargs:
        if not isinstance(key, str):
            raise TypeError(f"scenario_kwargs={dict(kwargs)!r}: keys must be option names")
        if key in ENV_OPTIONS:
            raise ValueError(
                f"scenario_kwargs={dict(kwargs)!r}: must not set {key!r}, an option of its own"
            )
    options = scenario_options(name)
    if not options:
        return
    for key in kwargs:
        if key not in options:
            close = difflib.get_close_matches(key, options, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"scenario_kwargs={dict(kwargs)!r}: scenario {name!r} has no option {key!r}."
                f"{hint} Its options: {', '.join(options)}"
            )
