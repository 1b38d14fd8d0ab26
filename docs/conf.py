"""Sphinx configuration of the mappo_torchrl documentation.

Build it with ``python -m sphinx -W -b html docs docs/_build/html`` (the test
``tests/test_docs.py`` runs the same command, so CI fails on any warning).
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))

from sphinx.ext import napoleon  # noqa: E402

project = "mappo_torchrl"
author = "mappo_torchrl contributors"
copyright = "2026, mappo_torchrl contributors"
release = version = "0.1.0"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "myst_parser",
    "sphinxarg.ext",
    "config_tables",  # docs/_ext: option and preset tables generated from the config
    "offline_inventories",  # docs/_ext: intersphinx_mapping from docs/_inventories/*.txt
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "_inventories", "Thumbs.db", ".DS_Store"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
# Smart quotes would turn the "--" of command-line options into dashes.
smartquotes = False

# Every cross-reference must resolve: a broken :class: or :func: is a warning,
# and the build runs with -W.
nitpicky = True
nitpick_ignore = [
    # Documented nowhere online: TorchRL's docs dropped their MultiAgentMLP page
    # (0.11), and TensorDict documents NestedKey only in prose. Autodoc still
    # names them in base classes and type hints.
    ("py:class", "torchrl.modules.models.multiagent.MultiAgentMLP"),
    ("py:class", "tensordict._nestedkey.NestedKey"),
    # Sphinx reads a class's constructor annotations as unevaluated strings
    # (``from __future__ import annotations``): Trainer's ``env: EnvBase | None``
    # reaches it as the bare name, which no inventory holds.
    ("py:class", "EnvBase"),
    # TorchRL documents no BaseCollector page; the collector factory returns one.
    ("py:class", "torchrl.collectors._base.BaseCollector"),
    ("py:class", "NestedKey"),
    ("py:class", "TensorDictModuleBase"),
    ("py:class", "Path"),
    ("py:class", "Logger"),
    # TorchRL documents its loggers with its function template (py:function in its
    # objects.inv), which a type hint, a class reference, cannot link to.
    ("py:class", "torchrl.record.loggers.common.Logger"),
]

# -- autodoc ------------------------------------------------------------------
# Napoleon reads an attribute docstring "Hidden activation: tanh or relu." as
# "TYPE: description". Our attribute docstrings (config fields, GroupKeys
# properties) are plain sentences and their types come from the annotations,
# so napoleon is kept away from them. conf.py runs before napoleon's setup(),
# which connects whatever this module attribute holds.
_napoleon_process_docstring = napoleon._process_docstring


def _process_docstring(app, what, name, obj, options, lines):
    if what not in ("attribute", "property", "data"):
        _napoleon_process_docstring(app, what, name, obj, options, lines)


napoleon._process_docstring = _process_docstring

# No "show-inheritance": "Bases: object" on every dataclass is noise, and the
# classes that extend TorchRL's say so in their first line.
autodoc_default_options = {
    "members": True,
    "member-order": "bysource",
}
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_preserve_defaults = True
# An override without a docstring of its own is left out rather than shown
# with TorchRL's, whose markup names objects these docs cannot link to.
autodoc_inherit_docstrings = False
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_attr_annotations = True

# -- intersphinx --------------------------------------------------------------
# Links to TorchRL, TensorDict, PyTorch and Python resolve through inventories
# compiled from docs/_inventories/*.txt, never through downloaded ones: CI and
# most build machines have no network, and the same inventory everywhere makes
# the -W build the same everywhere. Each .txt lists the objects these docs link
# to, with the pages (and roles) of that project's own objects.inv. A new link
# to an object not listed fails the build ("reference target not found"): add
# a line for it, with the page from the project's online docs. The extension
# compiles them into the build's doctree folder, never into docs/.
offline_inventories = {
    "torchrl": "https://docs.pytorch.org/rl/stable/",
    "tensordict": "https://docs.pytorch.org/tensordict/stable/",
    "torch": "https://docs.pytorch.org/docs/stable/",
    "python": "https://docs.python.org/3/",
    "numpy": "https://numpy.org/doc/stable/",
}

# -- HTML ---------------------------------------------------------------------
html_theme = "furo"
html_title = "mappo_torchrl"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
