"""Compile the offline intersphinx fallbacks in ``docs/_inventories/*.txt``.

Each ``NAME.txt`` lists, one per line, ``ROLE PAGE NAME [ALIAS ...]``: an
object of the project NAME, the page (relative to the project's online docs)
that documents it, and the other dotted paths under which Python knows the same
object (``torchrl.envs.common.EnvBase`` for ``torchrl.envs.EnvBase``), which is
what autodoc writes for type hints. Lines starting with ``#`` are comments.

The result is a standard ``objects.inv`` (format 2) per file, so intersphinx
reads it like a downloaded one.

As a Sphinx extension it sets ``intersphinx_mapping`` from the config value
``offline_inventories`` (``{NAME: URL of the project's online docs}``), with
the ``.inv`` files compiled into ``inventories/`` of the build's doctree
folder (``.doctrees`` in the output folder unless told otherwise): a build
writes nothing in the source tree.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Any

from sphinx.errors import ConfigError


def read_entries(path: Path) -> list[tuple[str, str, str]]:
    """``(name, role, page)`` for every name and alias listed in ``path``."""
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue  # no inline comments: pages contain '#'
        if len(fields) < 3 or ":" not in fields[0]:
            raise ValueError(f"{path}:{number}: expected 'ROLE PAGE NAME [ALIAS ...]'")
        role, page, *names = fields
        entries.extend((name, role, page) for name in names)
    return entries


def compile_inventories(source: Path, target: Path) -> dict[str, Path]:
    """Write ``target/NAME.inv`` for every ``source/NAME.txt``; return the paths by NAME."""
    target.mkdir(parents=True, exist_ok=True)
    compiled = {}
    for txt in sorted(source.glob("*.txt")):
        body = "".join(f"{name} {role} 1 {page} -\n" for name, role, page in read_entries(txt))
        header = (
            "# Sphinx inventory version 2\n"
            f"# Project: {txt.stem}\n"
            "# Version: offline\n"
            "# The remainder of this file is compressed using zlib.\n"
        )
        inv = target / f"{txt.stem}.inv"
        tmp = inv.with_name(f".{inv.name}.{os.getpid()}.tmp")
        tmp.write_bytes(header.encode() + zlib.compress(body.encode(), 9))
        os.replace(tmp, inv)  # concurrent builds never read a half-written file
        compiled[txt.stem] = inv
    return compiled


def set_intersphinx_mapping(app: Any, config: Any) -> None:
    """Point ``intersphinx_mapping`` at inventories compiled for this build.

    Runs on ``config-inited``, before intersphinx checks the mapping.
    """
    source = Path(app.confdir) / "_inventories"
    compiled = compile_inventories(source, Path(app.doctreedir) / "inventories")
    missing = sorted(set(config.offline_inventories) - set(compiled))
    if missing:
        raise ConfigError(f"offline_inventories: no {source}/NAME.txt for {', '.join(missing)}")
    config.intersphinx_mapping = {
        name: (url, str(compiled[name])) for name, url in config.offline_inventories.items()
    }


def setup(app: Any) -> dict[str, Any]:
    """Register the ``offline_inventories`` config value and fill ``intersphinx_mapping``."""
    app.add_config_value("offline_inventories", {}, "env", types=[dict])
    # intersphinx validates the mapping on config-inited at priority 800; this runs first.
    app.connect("config-inited", set_intersphinx_mapping, priority=400)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
