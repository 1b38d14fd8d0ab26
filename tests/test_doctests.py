"""Every example in the library's docstrings runs, as a reader would paste it.

The modules are imported by their package names (``mappo_torchrl.config.io``),
the way users import them, and each module's examples run in one namespace.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import mappo_torchrl

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def modules_with_examples() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(mappo_torchrl.__path__, "mappo_torchrl."):
        module = importlib.import_module(info.name)
        if any(t.examples for t in doctest.DocTestFinder().find(module, info.name)):
            names.append(info.name)
    return sorted(names)


MODULES = modules_with_examples()


def test_examples_are_found():
    assert {"mappo_torchrl.envs.factory", "mappo_torchrl.training.trainer"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    report: list[str] = []
    for test in doctest.DocTestFinder().find(module, name):
        runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)
    assert runner.tries > 0
