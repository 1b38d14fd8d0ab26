"""Save and restore the simulation state of a VMAS environment.

VMAS keeps its state in plain Python objects: the ``Environment`` (step
counter), its ``World``, every entity's ``state`` (positions, velocities,
forces...) and whatever the scenario stores itself (goals, shaping distances,
which landmark an agent must reach). None of it is in a ``state_dict``, and the
objects cannot be pickled (VMAS loads scenario classes from files, without an
importable module). So this module walks that object graph generically and
records every tensor, number and object reference it finds by attribute path,
keeping track of which paths share one tensor. Restoring writes all of it back
into a freshly built env of the same scenario and size, with the same sharing,
so that the restored env steps exactly like the original (checked for every
VMAS scenario in ``tests/test_vmas_state.py``).

VMAS's random numbers are not in the env but in a class attribute shared by
all VMAS envs; :mod:`mappo_torchrl.rng` saves those.

Example:
    Snapshot an env, step it, go back and take the same step again:

    >>> import torch
    >>> from mappo_torchrl.envs import make_env
    >>> from mappo_torchrl.envs.vmas_state import load_vmas_state, vmas_state
    >>> env = make_env("navigation", num_envs=2, seed=0)
    >>> _, td = env.step_and_maybe_reset(env.rand_action(env.reset()))
    >>> td = env.rand_action(td)
    >>> state = vmas_state(env)
    >>> first = env.step(td.clone())["next", "agents", "observation"]
    >>> load_vmas_state(env, state)  # back to where it was
    >>> torch.equal(env.step(td.clone())["next", "agents", "observation"], first)
    True

    The snapshot is taken after a first step: VMAS scenarios create some
    attributes on their first step (navigation's ``distance_to_goal``), and
    a snapshot taken before them does not fit an env that has them.
"""

from __future__ import annotations

import numbers
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import torch
from torchrl.envs import EnvBase

#: Attributes that hold rendering state, not simulation state.
_SKIP = frozenset({"viewer", "headless", "visible_display", "text_lines"})


class EnvStateError(ValueError):
    """A saved env state does not fit this env (one line, says what differs)."""


def vmas_env(env: EnvBase) -> Any:
    """The ``vmas.simulator.environment.Environment`` inside a TorchRL env.

    Raises:
        EnvStateError: if ``env`` does not wrap a VMAS environment.
    """
    base = getattr(env, "base_env", env)
    inner = getattr(base, "_env", None)
    if inner is None or not type(inner).__module__.startswith("vmas"):
        raise EnvStateError(f"{type(base).__name__} is not a VMAS env; cannot save its state")
    return inner


def is_vmas_env(env: EnvBase) -> bool:
    """Whether ``env`` wraps a VMAS environment, whose state this module can save."""
    try:
        vmas_env(env)
    except EnvStateError:
        return False
    return True


def vmas_state(env: EnvBase) -> dict[str, Any]:
    """The simulation state of a VMAS env, as plain data ``torch.save`` can store.

    Returns ``{"leaves": {path: leaf}, "owners": {path: (owner path, key)},
    "tensors": [tensor, ...]}``. A leaf is the index of a (cloned) tensor,
    ``("value", number or None)`` or ``("ref", path)`` (the attribute points at
    the object entered at ``path``). Paths that point at one tensor share its
    index, so sharing survives the round trip.
    """
    graph = _walk(vmas_env(env))
    tensors: list[torch.Tensor] = []
    index: dict[int, int] = {}
    leaves: dict[str, Any] = {}
    for path, (_, _, value) in graph.leaves.items():
        if isinstance(value, torch.Tensor):
            if id(value) not in index:
                index[id(value)] = len(tensors)
                tensors.append(value.detach().clone())
            leaves[path] = index[id(value)]
        elif isinstance(value, _Ref):
            leaves[path] = ("ref", value.path)
        else:
            leaves[path] = ("value", value.item() if hasattr(value, "item") else value)
    owners = {p: (o, _key_spec(k)) for p, (o, k) in graph.owners.items()}
    containers = {
        p: ("list", len(o)) if isinstance(o, list) else ("dict", 0)
        for p, o in graph.objects.items()
        if isinstance(o, (list, dict))
    }
    return {"leaves": leaves, "owners": owners, "containers": containers, "tensors": tensors}


def load_vmas_state(env: EnvBase, state: dict[str, Any]) -> None:
    """Write a :func:`vmas_state` snapshot back into ``env``.

    ``env`` is typically freshly built from the same config: attributes the
    saved env had set by then (VMAS fills some lazily) are created. Everything
    is checked before anything is written, so a snapshot that does not fit
    leaves ``env`` as it was.

    Raises:
        EnvStateError: if the snapshot's paths or shapes do not match ``env``
            (another scenario, another number of agents or of envs).
    """
    graph = _walk(vmas_env(env))
    saved: dict[str, Any] = state["leaves"]
    tensors: list[torch.Tensor] = state["tensors"]
    _add_missing_containers(graph, state, write=False)
    _check_fits(graph, state)
    _add_missing_containers(graph, state, write=True)
    for path in saved.keys() - graph.leaves.keys():
        owner_path, key = state["owners"][path]
        graph.leaves[path] = (graph.objects[owner_path], _resolve_key(graph, key), None)

    groups: dict[int, list[str]] = {}
    for path, leaf in saved.items():
        if isinstance(leaf, int):
            groups.setdefault(leaf, []).append(path)
    users: dict[int, int] = {}
    for _, _, value in graph.leaves.values():
        if isinstance(value, torch.Tensor):
            users[id(value)] = users.get(id(value), 0) + 1
    for i, paths in groups.items():
        current = [graph.leaves[p][2] for p in paths]
        first = current[0]
        shared_alike = (
            isinstance(first, torch.Tensor)
            and all(v is first for v in current)
            and users[id(first)] == len(paths)
        )
        if not (shared_alike and _copy_into(first, tensors[i])):
            device = first.device if isinstance(first, torch.Tensor) else vmas_env(env).device
            fresh = tensors[i].clone().to(device)
            for path in paths:
                _assign(graph.leaves[path], fresh)
    for path, leaf in saved.items():
        if not isinstance(leaf, int):
            kind, value = leaf
            _assign(graph.leaves[path], graph.objects[value] if kind == "ref" else value)


def _add_missing_containers(graph: _Graph, state: dict[str, Any], *, write: bool) -> None:
    """Lists and dicts the saved env had made by then (``world.forces_dict``).

    With ``write=False`` they are only registered in ``graph``, for the checks.
    """
    missing = sorted(state["containers"].keys() - graph.objects.keys(), key=len)
    for path in missing:  # shortest first: a container's holder comes before it
        owner_path, key = state["owners"][path]
        kind, length = state["containers"][path]
        owner = graph.objects.get(owner_path)
        key = _resolve_key(graph, key)
        if owner is None or isinstance(owner, tuple) or key is None:
            raise EnvStateError(f"env state does not fit this env (saved {path}, not here)")
        container = [None] * length if kind == "list" else {}
        graph.objects[path] = container
        if write:
            _assign((owner, key, None), container)


def _check_fits(graph: _Graph, state: dict[str, Any]) -> None:
    saved, tensors = state["leaves"], state["tensors"]
    extra = sorted(graph.leaves.keys() - saved.keys())
    if extra:
        raise EnvStateError(f"env state does not fit this env ({extra[0]} is not saved)")
    for path in sorted(saved.keys() - graph.leaves.keys()):
        owner_path, key = state["owners"].get(path, (None, None))
        owner = graph.objects.get(owner_path)
        if owner is None or isinstance(owner, tuple) or _resolve_key(graph, key) is None:
            raise EnvStateError(f"env state does not fit this env (saved {path}, not here)")
    for path, leaf in saved.items():
        current = graph.leaves.get(path, (None, None, None))[2]
        if isinstance(leaf, int) and isinstance(current, torch.Tensor):
            if tensors[leaf].shape != current.shape:
                raise EnvStateError(
                    f"env state does not fit this env ({path} has shape "
                    f"{tuple(tensors[leaf].shape)} saved, {tuple(current.shape)} here)"
                )
        if isinstance(leaf, tuple) and leaf[0] == "ref" and leaf[1] not in graph.objects:
            raise EnvStateError(f"env state does not fit this env ({leaf[1]} is not here)")


def _copy_into(target: torch.Tensor, value: torch.Tensor) -> bool:
    """Copy in place, so that references held outside the walked graph see it too."""
    if target.shape != value.shape or target.dtype != value.dtype:
        return False
    try:
        with torch.no_grad():
            target.copy_(value)
    except RuntimeError:  # an expanded tensor: its elements share memory
        return False
    return True


def _assign(slot: tuple[Any, Any, Any], value: Any) -> None:
    owner, key, _ = slot
    if isinstance(owner, (list, dict)):
        owner[key] = value
    else:
        # Straight into __dict__: VMAS property setters validate and convert.
        vars(owner)[key] = value


@dataclass
class _Ref:
    """Another path to the object first entered at ``path``."""

    path: str


@dataclass
class _Graph:
    #: path -> (owner, key, value) for every tensor, number and reference.
    leaves: dict[str, tuple[Any, Any, Any]] = field(default_factory=dict)
    #: path -> object, for every object entered.
    objects: dict[str, Any] = field(default_factory=dict)
    #: leaf or object path -> (path of the object holding it, attribute name or key).
    owners: dict[str, tuple[str, Any]] = field(default_factory=dict)


def _walk(root: Any) -> _Graph:
    """Breadth-first walk of a VMAS env's object graph.

    It enters VMAS objects, the scenario's own objects and the lists, tuples
    and dicts that hold them. Each object is entered once, at its shortest
    path (``env.world._landmarks[1]``), which is the same in any env of the
    same scenario; every other path to it becomes a :class:`_Ref` leaf.
    Dicts keyed by entities (as some scenarios keep them) use the entity's
    name in the path.
    """
    scenario_module = type(root.scenario).__module__
    graph = _Graph(objects={"env": root})
    entered = {id(root): "env"}
    queue = deque([(root, "env")])

    def enters(value: Any) -> bool:
        if isinstance(value, (list, tuple, dict)):
            return True
        module = type(value).__module__
        return hasattr(value, "__dict__") and (
            module.startswith("vmas") or module == scenario_module
        )

    while queue:
        obj, path = queue.popleft()
        if isinstance(obj, (list, tuple)):
            items = [(i, f"{path}[{i}]", v) for i, v in enumerate(obj)]
        elif isinstance(obj, dict):
            items = [(k, f"{path}[{_label(k)}]", v) for k, v in obj.items() if _label(k)]
        else:
            items = [(k, f"{path}.{k}", v) for k, v in vars(obj).items() if k not in _SKIP]
        # Nothing can be written back into a tuple; VMAS keeps no state in one.
        writable = not isinstance(obj, tuple)
        for key, child, value in items:
            if value is None or isinstance(value, (torch.Tensor, bool, numbers.Number)):
                if writable:
                    graph.leaves[child] = (obj, key, value)
                    graph.owners[child] = (path, key)
            elif enters(value):
                if id(value) in entered:
                    if writable:
                        graph.leaves[child] = (obj, key, _Ref(entered[id(value)]))
                        graph.owners[child] = (path, key)
                else:
                    entered[id(value)] = child
                    graph.objects[child] = value
                    graph.owners[child] = (path, key)
                    queue.append((value, child))
    return graph


def _key_spec(key: Any) -> Any:
    """A key as saved: literal, or ``("name", entity name)`` for an entity key."""
    return key if isinstance(key, (str, int)) else ("name", key.name)


def _resolve_key(graph: _Graph, spec: Any) -> Any:
    """The key object :func:`_key_spec` describes, in ``graph`` (None if absent)."""
    if not isinstance(spec, tuple):
        return spec
    return next((o for o in graph.objects.values() if getattr(o, "name", None) == spec[1]), None)


def _label(key: Any) -> str | None:
    """A dict key as written in a path: a literal, or an entity's ``<name>``."""
    if isinstance(key, (str, int)):
        return repr(key)
    name = getattr(key, "name", None)
    return f"<{name}>" if isinstance(name, str) else None
