"""What a benchmark runs: its spec, the cells of its grid, and what a rerun does with each.

A benchmark directory holds one ordinary run directory per cell,
``OUT/<scenario>/<arm>/seed<N>``, where an *arm* is a variant of the config or
the baseline pipeline. A rerun of the same command looks at each cell
(:func:`plan_cell`): a finished cell is skipped, an interrupted one resumes
from its newest checkpoint (``mappo train --resume``), one with nothing to
resume from starts again.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mappo_torchrl.config import (
    PRESETS,
    ConfigError,
    RunConfig,
    apply_overrides,
    apply_preset,
    flatten,
    load_run_config,
    to_dict,
)
from mappo_torchrl.envs import check_scenario
from mappo_torchrl.runs.checkpoint import checkpoint_files
from mappo_torchrl.runs.directory import CONFIG_FILE, read_status

#: The suite of the results page: VMAS scenarios with their default agent counts.
SUITE = (
    "navigation",
    "balance",
    "sampling",
    "dispersion",
    "discovery",
    "flocking",
    "reverse_transport",
    "simple_spread",
)
#: The suite's seeds.
SUITE_SEEDS = (0, 1, 2)
#: The suite's frames per run.
SUITE_FRAMES = 600_000
#: The arm name of the config without changes, when no ``--variant`` is given.
DEFAULT_VARIANT = "default"
#: Baseline pipelines ``--baseline`` can add as an arm.
BASELINES = ("tutorial",)
#: Options a variant may not set, and the benchmark option that sets them instead.
RESERVED = {
    "env.scenario": "--scenarios",
    "seed": "--seeds",
    "collector.total_frames": "--frames",
    "threads": "--threads-per-cell (or --workers, or --cpus-per-cell with --ray)",
    "update_threads": "--threads-per-cell (or --workers, or --cpus-per-cell with --ray)",
}
#: Where the spec of the last command is kept, in the benchmark directory.
SPEC_FILE = "benchmark.json"
#: Where each cell's output (stdout and stderr of its process) goes.
LOG_DIR = "logs"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass
class Variant:
    """A named change of the base config: one arm of the grid."""

    name: str
    """Its name: the arm's folder and its label in the results."""
    overrides: dict[str, str] = field(default_factory=dict)
    """``{"section.field": "value"}``, applied on top of the defaults and ``--preset``."""


def parse_variant(tokens: list[str]) -> Variant:
    """``["NAME", "KEY=VALUE", ...]`` (one ``--variant``) as a :class:`Variant`.

    Raises:
        ConfigError: on a name that cannot be a folder, a token without ``=``,
            or a key the grid sets itself (seed, scenario, frames, threads).

    Example:
        >>> from mappo_torchrl.benchmark.grid import parse_variant
        >>> parse_variant(["gamma99", "loss.gamma=0.99"])
        Variant(name='gamma99', overrides={'loss.gamma': '0.99'})
    """
    name, *pairs = tokens
    if not _NAME.fullmatch(name) or name in BASELINES:
        raise ConfigError(
            "--variant",
            name,
            "its first word is the arm's name: letters, digits, '_', '.', '-' "
            f"(not {', '.join(BASELINES)})",
        )
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.removeprefix("--")
        if not sep or not key:
            raise ConfigError(f"--variant {name}", pair, "must be KEY=VALUE, e.g. loss.gamma=0.99")
        if key in RESERVED:
            raise ConfigError(
                f"--variant {name}", pair, f"{key} is set by {RESERVED[key]} for every cell"
            )
        overrides[key] = value
    return Variant(name, overrides)


@dataclass
class BenchmarkSpec:
    """The grid one ``mappo benchmark`` command describes."""

    scenarios: list[str] = field(default_factory=lambda: list(SUITE))
    """VMAS scenarios."""
    seeds: list[int] = field(default_factory=lambda: list(SUITE_SEEDS))
    """Seeds; every scenario and arm runs each."""
    frames: int = SUITE_FRAMES
    """Frames per run (``collector.total_frames``)."""
    variants: list[Variant] = field(default_factory=lambda: [Variant(DEFAULT_VARIANT)])
    """The config arms."""
    preset: str | None = None
    """Preset every variant starts from (``None``: the library defaults)."""
    baseline: str | None = None
    """A baseline pipeline run as an extra arm, or ``None``."""
    baseline_overrides: dict[str, str] = field(default_factory=dict)
    """Settings of the baseline pipeline
    (:class:`~mappo_torchrl.benchmark.tutorial.TutorialSettings` fields)."""

    @property
    def arms(self) -> list[str]:
        """The arm names: the variants, then the baseline."""
        return [v.name for v in self.variants] + ([self.baseline] if self.baseline else [])

    def cells(self) -> list[Cell]:
        """Every cell, seed by seed, so that an early stop has covered every scenario."""
        return [
            Cell(scenario, arm, seed)
            for seed in self.seeds
            for scenario in self.scenarios
            for arm in self.arms
        ]

    def variant(self, name: str) -> Variant:
        """The variant called ``name``."""
        return next(v for v in self.variants if v.name == name)

    def run_config(self, cell: Cell) -> RunConfig:
        """The validated config of a ``mappo train`` cell (threads left at their defaults)."""
        config = apply_preset(RunConfig(), self.preset) if self.preset else RunConfig()
        overrides: dict[str, Any] = {
            "env.scenario": cell.scenario,
            "seed": cell.seed,
            "collector.total_frames": self.frames,
        }
        overrides.update(self.variant(cell.arm).overrides)
        config = apply_overrides(config, overrides)
        config.validate()
        return config

    def baseline_settings(self, cell: Cell):
        """The validated settings of a baseline cell."""
        from mappo_torchrl.benchmark.tutorial import tutorial_settings

        return tutorial_settings(
            {
                **self.baseline_overrides,
                "scenario": cell.scenario,
                "seed": cell.seed,
                "total_frames": self.frames,
            }
        )

    def validate(self) -> None:
        """Check every option and build every cell's config, before anything runs.

        Raises:
            ConfigError: naming the option (with the variant), the value and what is allowed.
        """
        if not self.scenarios:
            raise ConfigError("--scenarios", self.scenarios, "name at least one scenario")
        if not self.seeds:
            raise ConfigError("--seeds", self.seeds, "give at least one seed")
        for scenario in self.scenarios:
            try:
                check_scenario(scenario)
            except ValueError as err:
                raise ConfigError("--scenarios", scenario, str(err).split(": ", 1)[1]) from None
        for option, values in (("--scenarios", self.scenarios), ("--seeds", self.seeds)):
            if len(set(values)) != len(values):
                raise ConfigError(option, values, "each value may appear once")
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ConfigError("--variant", names, "each variant needs its own name")
        if self.preset is not None and self.preset not in PRESETS:
            raise ConfigError("--preset", self.preset, "must be one of " + ", ".join(PRESETS))
        if self.baseline is not None and self.baseline not in BASELINES:
            raise ConfigError("--baseline", self.baseline, "must be one of " + ", ".join(BASELINES))
        if self.frames <= 0:
            raise ConfigError("--frames", self.frames, "must be a positive integer")
        for key, axis in (("scenario", "--scenarios"), ("seed", "--seeds")):
            if key in self.baseline_overrides:
                raise ConfigError("--baseline-set", key, f"is set by {axis} for every cell")
        if "total_frames" in self.baseline_overrides:
            raise ConfigError("--baseline-set", "total_frames", "is set by --frames for every cell")
        first = self.scenarios[0], self.seeds[0]
        for arm in self.arms:
            cell = Cell(*first[:1], arm, first[1])
            try:
                if arm == self.baseline:
                    self.baseline_settings(cell)
                else:
                    self.run_config(cell)
            except ConfigError as err:
                if err.option in ("collector.total_frames", "total_frames"):
                    raise ConfigError("--frames", self.frames, err.allowed) from None
                where = "--baseline-set" if arm == self.baseline else f"--variant {arm}"
                raise ConfigError(f"{where}: {err.option}", err.value, err.allowed) from None

    def to_json(self, command: str = "") -> str:
        """The spec as JSON, with the command line that gave it (what ``SPEC_FILE`` holds)."""
        return json.dumps({"command": command, **dataclasses.asdict(self)}, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> tuple[BenchmarkSpec, str]:
        """The spec and command line a ``SPEC_FILE`` holds."""
        data = json.loads(text)
        command = data.pop("command", "")
        data["variants"] = [Variant(**v) for v in data["variants"]]
        return cls(**data), command


@dataclass(frozen=True)
class Cell:
    """One run of the grid."""

    scenario: str
    """VMAS scenario."""
    arm: str
    """Variant or baseline name."""
    seed: int
    """Seed."""

    @property
    def label(self) -> str:
        """``scenario/arm/seedN``: its path under the benchmark directory."""
        return f"{self.scenario}/{self.arm}/seed{self.seed}"

    def path(self, root: str | Path) -> Path:
        """Its run directory under the benchmark directory ``root``."""
        return Path(root) / self.scenario / self.arm / f"seed{self.seed}"

    def log(self, root: str | Path) -> Path:
        """Its log file (the process's output, appended to on every attempt)."""
        return Path(root) / LOG_DIR / f"{self.scenario}-{self.arm}-seed{self.seed}.log"


#: What a rerun does with a cell, by what its run directory holds.
ACTIONS = ("skip", "resume", "restart", "start")


def plan_cell(path: str | Path, *, resumable: bool = True) -> str:
    """What to do with the cell in ``path``: one of :data:`ACTIONS`.

    ``skip`` a finished run; ``resume`` one with a checkpoint (a ``mappo
    train`` cell: ``resumable``); ``restart`` a directory that holds a run with
    nothing to resume from (stopped before its first checkpoint, or a baseline
    cell); ``start`` a new one.
    """
    path = Path(path)
    if read_status(path).get("status") == "finished":
        return "skip"
    if not path.is_dir() or not any(path.iterdir()):
        return "start"
    if resumable and (path / CONFIG_FILE).is_file() and checkpoint_files(path):
        return "resume"
    return "restart"


def check_cell_matches(spec: BenchmarkSpec, cell: Cell, root: str | Path) -> None:
    """Fail if the run already in the cell's directory was made with other settings.

    A rerun must ask for the same grid: a cell run for 12 000 frames is not
    reused by a command that asks 60 000. Thread counts may differ, and so may
    any setting the grid leaves ``auto``: the cell records what ``auto`` chose
    there (``perf.precision``), or the benchmark chose for it
    (``collector.overlap`` is off for a cell with one core).

    Raises:
        ConfigError: naming the cell, the first setting that differs, and both values.
    """
    from mappo_torchrl.benchmark.tutorial import SETTINGS_FILE

    path = cell.path(root)
    if cell.arm == spec.baseline:
        file = path / SETTINGS_FILE
        if not file.is_file():
            return
        saved = yaml.safe_load(file.read_text()) or {}
        wanted = dataclasses.asdict(spec.baseline_settings(cell))
    else:
        file = path / CONFIG_FILE
        if not file.is_file():
            return
        saved = flatten(to_dict(load_run_config(file)))
        wanted = flatten(to_dict(spec.run_config(cell)))
    for key in sorted(set(saved) | set(wanted)):
        if key in ("threads", "update_threads"):
            continue
        if wanted.get(key) == "auto":
            continue  # resolved by the cell, or by cell_job for a one-core share (overlap)
        if saved.get(key) != wanted.get(key):
            raise ConfigError(
                "--out",
                str(root),
                f"cell {cell.label} holds a run with {key}={saved.get(key)!r} where this "
                f"command asks {wanted.get(key)!r}; rerun with the same options or choose "
                "another --out",
            )
