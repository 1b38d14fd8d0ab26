"""Tables of options and presets, generated from the code when the docs are built.

Three directives, so that the pages cannot drift from the config:

``{config-options} SECTION``
    One row per option of a :class:`~mappo_torchrl.config.RunConfig` section
    (``eval``, ``checkpoint``, ``perf``...): ``--section.field``, its default
    and the docstring written under the field.

``{preset-sources}``
    Each preset of :data:`~mappo_torchrl.config.presets.PRESETS` and where
    its values come from.

``{preset-values}``
    Every option any preset sets, with the default and each preset's value
    (bold where it differs from the default; empty where the preset leaves
    the option alone).
"""

from __future__ import annotations

import re
from typing import Any

from docutils import nodes
from sphinx.util.docutils import SphinxDirective

_CODE = re.compile(r"``(.+?)``")


def show(value: Any) -> str:
    """A value as it is written on the command line (``true``, ``0.0005``, ``{}``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict):
        return "{}" if not value else repr(value)
    return str(value)


def defaults() -> dict[str, Any]:
    """``{dotted option: default}`` for every option of RunConfig."""
    from mappo_torchrl.config import RunConfig, flatten, to_dict

    return flatten(to_dict(RunConfig()))


def _text(text: str) -> list[nodes.Node]:
    """Plain text with ``code`` spans turned into literals (the config docstrings' markup)."""
    parts = _CODE.split(text)
    return [nodes.literal(p, p) if i % 2 else nodes.Text(p) for i, p in enumerate(parts) if p]


def _cell(content: list[nodes.Node] | str) -> nodes.entry:
    if isinstance(content, str):
        content = _text(content)
    return nodes.entry("", nodes.paragraph("", "", *content))


def _table(header: list[str], rows: list[list], widths: list[int]) -> nodes.table:
    group = nodes.tgroup(cols=len(header))
    group += [nodes.colspec(colwidth=w) for w in widths]
    group += nodes.thead("", nodes.row("", *[_cell(h) for h in header]))
    group += nodes.tbody("", *[nodes.row("", *[_cell(c) for c in row]) for row in rows])
    return nodes.table("", group, classes=["generated-table"])


def _code(text: str, *, bold: bool = False) -> list[nodes.Node]:
    literal = nodes.literal(text, text)
    return [nodes.strong("", "", literal)] if bold else [literal]


class ConfigOptions(SphinxDirective):
    """``{config-options} SECTION``: the options of one config section."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        from mappo_torchrl.config import iter_options

        section = self.arguments[0]
        values = defaults()
        rows = [
            [_code(f"--{name}"), _code(show(values[name])), doc]
            for name, _, doc in iter_options()
            if name.startswith(f"{section}.")
        ]
        if not rows:
            raise self.error(f"config-options: no config section {section!r}")
        return [_table(["option", "default", "what it does"], rows, [3, 1, 6])]


class PresetSources(SphinxDirective):
    """``{preset-sources}``: each preset and where its values come from."""

    def run(self) -> list[nodes.Node]:
        from mappo_torchrl.config import PRESETS

        rows = [
            [_code(f"--preset {name}"), preset["source"], str(len(preset["overrides"]))]
            for name, preset in PRESETS.items()
        ]
        return [_table(["preset", "source", "options set"], rows, [2, 7, 1])]


class PresetValues(SphinxDirective):
    """``{preset-values}``: every option a preset sets, with each preset's value."""

    def run(self) -> list[nodes.Node]:
        from mappo_torchrl.config import PRESETS, iter_options

        values = defaults()
        names = [name for name, _, _ in iter_options()]
        used = {option for preset in PRESETS.values() for option in preset["overrides"]}
        rows = []
        for name in (n for n in names if n in used):
            row = [_code(name), _code(show(values[name]))]
            for preset in PRESETS.values():
                if name in preset["overrides"]:
                    value = preset["overrides"][name]
                    row.append(_code(show(value), bold=value != values[name]))
                else:
                    row.append("")
            rows.append(row)
        unknown = used - set(names)
        if unknown:
            raise self.error(f"preset-values: presets set unknown options {sorted(unknown)}")
        header = ["option", "default", *PRESETS]
        return [_table(header, rows, [4, 2, *[2] * len(PRESETS)])]


def setup(app) -> dict[str, Any]:
    app.add_directive("config-options", ConfigOptions)
    app.add_directive("preset-sources", PresetSources)
    app.add_directive("preset-values", PresetValues)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
