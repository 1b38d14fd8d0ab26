"""Argument checks for the public factories: one line naming the argument, its value and
what is allowed, as a ``TypeError`` (wrong kind) or ``ValueError`` (wrong value)."""

from __future__ import annotations

import math
from typing import Any


def check_int(name: str, value: Any, *, low: int, high: int | None = None) -> None:
    """Require an ``int`` (not a ``bool``) in ``[low, high]``.

    Example:
        >>> from mappo_torchrl.config.checks import check_int
        >>> check_int("num_cells", 0, low=1)
        Traceback (most recent call last):
        ...
        ValueError: num_cells=0: must be an integer >= 1
    """
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name}={value!r}: must be an integer")
    if value < low or (high is not None and value > high):
        allowed = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name}={value!r}: must be an integer {allowed}")


def check_number(
    name: str, value: Any, *, low: float, high: float = math.inf, open_low: bool = False
) -> None:
    """Require a finite real number in ``[low, high]`` (``(low, high]`` if ``open_low``)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{name}={value!r}: must be a number")
    above = value > low if open_low else value >= low
    if not (math.isfinite(value) and above and value <= high):
        left = "(" if open_low else "["
        right = ")" if math.isinf(high) else "]"
        raise ValueError(f"{name}={value!r}: must be a finite number in {left}{low}, {high}{right}")


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    """Require one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name}={value!r}: must be one of {', '.join(choices)}")


def first_line(err: BaseException, *, limit: int = 200) -> str:
    """The first line of an error's message (its type's name if it has none), at most
    ``limit`` characters: what one-line error reports quote.

    Example:
        >>> from mappo_torchrl.config.checks import first_line
        >>> first_line(ValueError("bad value")), first_line(KeyError())
        ('bad value', 'KeyError')
    """
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0][:limit]


def check_multi_agent_env(name: str, env: Any, group: str | None = None) -> None:
    """Require a TorchRL env with agent groups (and ``group`` among them, if given)."""
    from torchrl.envs import EnvBase

    group_map = getattr(env, "group_map", None) if isinstance(env, EnvBase) else None
    if not isinstance(group_map, dict) or not group_map:
        what = type(env).__name__ if not isinstance(env, str) else f"the string {env!r}"
        raise TypeError(
            f"{name}={what}: must be a TorchRL multi-agent env with a group_map, e.g. "
            "make_env('navigation') (a scenario name goes in config.env.scenario)"
        )
    if group is not None and group not in group_map:
        raise ValueError(
            f"group={group!r}: not a group of this env; its groups: {sorted(group_map)}"
        )
