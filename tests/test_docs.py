"""The documentation: it builds without a warning, covers the public API, and its examples run."""

from __future__ import annotations

import dataclasses
import doctest
import importlib
import inspect
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sphinx.pycode import ModuleAnalyzer

from mappo_torchrl.cli.main import build_parser
from mappo_torchrl.config import RunConfig, field_docs, iter_options

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

#: Subpackages whose ``__all__`` is the public API, each with its reference page.
PACKAGES = {
    "mappo_torchrl.config": "config",
    "mappo_torchrl.envs": "envs",
    "mappo_torchrl.models": "models",
    "mappo_torchrl.objectives": "objectives",
    "mappo_torchrl.data": "data",
    "mappo_torchrl.training": "training",
}
#: Public modules without ``__all__``: their own classes and functions are public.
MODULES = [
    "mappo_torchrl.runs.directory",
    "mappo_torchrl.runs.session",
    "mappo_torchrl.runs.resume",
    "mappo_torchrl.runs.evaluation",
    "mappo_torchrl.runs.checkpoint",
    "mappo_torchrl.runs.loggers",
    "mappo_torchrl.rng",
    "mappo_torchrl.training.threads",
    "mappo_torchrl.envs.vmas_state",
    "mappo_torchrl.envs.boundaries",
    "mappo_torchrl.viz.video",
    "mappo_torchrl.viz.plot",
    "mappo_torchrl.cli.main",
    "mappo_torchrl.benchmark.grid",
    "mappo_torchrl.benchmark.executors",
    "mappo_torchrl.benchmark.report",
    "mappo_torchrl.benchmark.tutorial",
    "mappo_torchrl.benchmark.watchdog",
]


def public_objects():
    """``(qualified name, object)`` for every public class and function."""
    for package in PACKAGES:
        module = importlib.import_module(package)
        for name in module.__all__:
            yield f"{package}.{name}", getattr(module, name)
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        for name, obj in vars(module).items():
            is_own = getattr(obj, "__module__", None) == module_name
            if not name.startswith("_") and is_own and callable(obj):
                yield f"{module_name}.{name}", obj


def defining_module(package: str, name: str) -> str:
    """The submodule of ``package`` that assigns its public data ``name``."""
    for info in pkgutil.iter_modules(importlib.import_module(package).__path__):
        module = importlib.import_module(f"{package}.{info.name}")
        if (
            name in vars(module)
            and ("", name) in ModuleAnalyzer.for_module(module.__name__).find_attr_docs()
        ):
            return module.__name__
    raise LookupError(f"{package}.{name}: no '#:' comment or docstring where it is defined")


def missing_docstrings() -> list[str]:
    missing = []
    for qualname, obj in public_objects():
        if not callable(obj):  # module data, e.g. a dict of defaults
            package, name = qualname.rsplit(".", 1)
            try:
                defining_module(package, name)
            except LookupError:
                missing.append(qualname)
            continue
        if not inspect.getdoc(obj):
            missing.append(qualname)
        if not inspect.isclass(obj):
            continue
        for attr, member in vars(obj).items():
            if attr.startswith("_"):
                continue
            if isinstance(member, (property, classmethod, staticmethod)) or inspect.isfunction(
                member
            ):
                function = member.fget if isinstance(member, property) else member
                if not getattr(function, "__module__", "").startswith("mappo_torchrl"):
                    continue  # added by TorchRL (LossModule wraps forward), documented there
                # Its own docstring: the docs do not inherit TorchRL's (conf.py).
                if not (function.__doc__ or "").strip():
                    missing.append(f"{qualname}.{attr}")
    return missing


def test_every_public_class_function_and_method_has_a_docstring():
    assert missing_docstrings() == []


def config_sections() -> list[type]:
    """RunConfig and the dataclass of each of its sections."""
    fields = dataclasses.fields(RunConfig)
    return [
        RunConfig,
        *(f.default_factory for f in fields if dataclasses.is_dataclass(f.default_factory)),
    ]


def test_every_config_field_has_a_docstring():
    from mappo_torchrl.config import EnvConfig, OptimConfig

    assert {EnvConfig, OptimConfig} <= set(config_sections())
    for cls in config_sections():
        undocumented = [f.name for f in dataclasses.fields(cls) if not field_docs(cls).get(f.name)]
        assert undocumented == [], cls.__name__


# -- the built site ---------------------------------------------------------------


def untracked_files(folder: Path) -> dict[str, int]:
    """Files under ``folder`` that git does not track (ignored ones too), with their mtimes.

    Python's ``__pycache__`` is left out: importing docs/_ext writes it, not the build.
    """
    listed = subprocess.run(
        ["git", "ls-files", "--others", "-z", folder],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    ).stdout
    files = [ROOT / name for name in listed.split("\0") if name and "__pycache__" not in name]
    return {str(f.relative_to(ROOT)): f.stat().st_mtime_ns for f in files if f.is_file()}


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> tuple[Path, dict[str, int], dict[str, int]]:
    """Build the docs once, as CI does (warnings are errors), into a temporary folder.

    Returns the output folder and :func:`untracked_files` of docs/ before and after.
    """
    before = untracked_files(DOCS)
    out = tmp_path_factory.mktemp("html")
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", DOCS, out],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, f"sphinx-build failed:\n{result.stderr[-6000:]}"
    return out, before, untracked_files(DOCS)


@pytest.fixture(scope="module")
def site(build) -> Path:
    return build[0]


def test_docs_build_with_warnings_as_errors(site):
    for page in ("index", "getting-started", "concepts", "results", "howto/index"):
        assert (site / f"{page}.html").is_file(), page


def test_docs_build_writes_nothing_in_the_source_tree(build):
    out, before, after = build
    assert {name: mtime for name, mtime in after.items() if before.get(name) != mtime} == {}
    # The offline inventories intersphinx read are the build's own, in its doctree folder.
    names = {p.stem for p in (out / ".doctrees" / "inventories").glob("*.inv")}
    assert names == {p.stem for p in (DOCS / "_inventories").glob("*.txt")}


def test_reference_documents_every_public_object(site):
    for package, page in PACKAGES.items():
        html = (site / "reference" / f"{page}.html").read_text()
        module = importlib.import_module(package)
        missing = []
        for name in module.__all__:
            obj = getattr(module, name)
            # Module data is documented where it is defined (autodoc reads its '#:' comment there).
            where = package if callable(obj) else defining_module(package, name)
            if f'id="{where}.{name}"' not in html:
                missing.append(name)
        assert missing == [], package


def test_reference_documents_every_config_field(site):
    html = (site / "reference" / "config.html").read_text()
    for cls in config_sections():
        for f in dataclasses.fields(cls):
            assert f'id="mappo_torchrl.config.{cls.__name__}.{f.name}"' in html, f.name


def test_cli_reference_lists_every_option(site):
    html = (site / "reference" / "cli.html").read_text()
    for name, _, _ in iter_options():
        assert f"--{name}" in html, name
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    for action in train._actions:
        if action.dest == "help":
            continue  # sphinx-argparse leaves -h/--help out
        for flag in action.option_strings:
            assert flag in html, flag


def test_torchrl_links_point_to_torchrl_docs(site):
    html = (site / "concepts.html").read_text()
    assert (
        "https://docs.pytorch.org/rl/stable/reference/generated/torchrl.collectors.Collector.html"
        in html
    )


# -- examples on the pages ------------------------------------------------------------

PYCON = re.compile(r"^```pycon\n(.*?)^```", re.S | re.M)
PAGES_WITH_EXAMPLES = sorted(p for p in DOCS.rglob("*.md") if PYCON.search(p.read_text()))


def test_pages_with_examples_are_found():
    assert {"index.md", "getting-started.md", "concepts.md"} <= {
        p.name for p in PAGES_WITH_EXAMPLES
    }


def test_getting_started_has_the_readme_quickstart_commands():
    readme = (ROOT / "README.md").read_text()
    quickstart = readme[readme.index("## Quickstart") :]
    commands = re.search(r"```bash\n(.*?)```", quickstart, re.S).group(1)
    assert len(commands.strip().splitlines()) == 2
    assert commands in (DOCS / "getting-started.md").read_text()


@pytest.mark.parametrize("page", PAGES_WITH_EXAMPLES, ids=lambda p: str(p.relative_to(DOCS)))
def test_page_examples_run(page):
    """Every ``pycon`` block of a page, run in order in one namespace, as a reader would."""
    source = "\n".join(m.group(1) for m in PYCON.finditer(page.read_text()))
    test = doctest.DocTestParser().get_doctest(source, {}, page.name, str(page), 0)
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    runner = doctest.DocTestRunner(optionflags=flags)
    report: list[str] = []
    runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)
    assert runner.tries > 0


# -- tables that must match the code ----------------------------------------------------


def test_readme_presets_table_matches_presets():
    sys.path.insert(0, str(DOCS / "_ext"))
    from config_tables import defaults, show

    from mappo_torchrl.config import PRESETS

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Presets") :]
    rows = re.findall(r"^\| `(\w+)` \| (.+?) \| (.+?) \|$", section, re.M)
    assert [name for name, _, _ in rows] == list(PRESETS)
    values = defaults()
    for name, source, changes in rows:
        assert source == PRESETS[name]["source"], name
        expected = {
            f"{option}={show(value)}"
            for option, value in PRESETS[name]["overrides"].items()
            if value != values[option]
        }
        assert set(re.findall(r"`([^`]+)`", changes)) == expected, name


def test_getting_started_tables_match_what_mappo_train_writes(tmp_path):
    from mappo_torchrl.cli.main import main

    run = tmp_path / "run"
    tiny = ["--env.num_envs", "4", "--env.max_steps", "10", "--collector.frames_per_batch", "40"]
    tiny += ["--collector.total_frames", "80", "--optim.minibatch_size", "20", "--no-progress"]
    assert main(["train", "--run-dir", str(run), *tiny]) == 0
    page = (DOCS / "getting-started.md").read_text()
    first_cells = re.findall(r"^\| (.+?) \|", page, re.M)
    documented = {name for cell in first_cells for name in re.findall(r"`([^`]+)`", cell)}
    written = {p.name + "/" if p.is_dir() else p.name for p in run.iterdir()}
    assert written <= documented
    with (run / "metrics.csv").open() as f:
        columns = set(f.readline().strip().split(","))
    assert columns <= documented
    # ...and no documented column that a run no longer writes.
    metric = re.compile(r"(iteration|frames|(train|eval|time)/\w+)")
    assert {name for name in documented if metric.fullmatch(name)} <= columns


def test_concepts_layout_names_every_module():
    text = (DOCS / "concepts.md").read_text()
    layout = text[text.index("## Where the code lives") :]
    package = ROOT / "mappo_torchrl"
    missing = [
        str(path.relative_to(package))
        for path in sorted(package.rglob("*.py"))
        if path.name != "__init__.py" and path.name not in layout
    ]
    assert missing == []
    folders = {p.parent.name for p in package.rglob("*/__init__.py")}
    assert all(f"{folder}/" in layout for folder in folders), folders
