"""Imports run one way: each subpackage imports only the layers below it.

Lazy imports inside functions count too: a layer that reaches up is a cycle
waiting to happen, and makes the layout in docs/concepts.md untrue.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "mappo_torchrl"
BASE = {"config", "compat", "rng"}

#: What each part may import from mappo_torchrl (besides itself).
ALLOWED = {
    "config": set(),
    "compat": set(),
    "rng": set(),
    "envs": BASE,
    "models": BASE | {"envs"},
    "objectives": BASE | {"envs", "models"},
    "data": BASE | {"envs", "models"},
    "training": BASE | {"envs", "models", "objectives", "data"},
    "runs": BASE | {"envs", "models", "objectives", "data", "training", "viz"},
}


def _imported_parts(path: Path) -> set[str]:
    parts = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            if name.startswith("mappo_torchrl."):
                parts.add(name.split(".")[1])
    return parts


@pytest.mark.parametrize("part", ALLOWED)
def test_each_part_imports_only_the_layers_below_it(part):
    files = [PACKAGE / f"{part}.py"] if (PACKAGE / f"{part}.py").exists() else []
    files += sorted((PACKAGE / part).glob("*.py"))
    assert files, part
    reaching_up = {
        f"{path.relative_to(PACKAGE)} imports {other}"
        for path in files
        for other in _imported_parts(path) - ALLOWED[part] - {part}
    }
    assert reaching_up == set()
