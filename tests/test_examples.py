"""Every example script runs with --smoke, as a user would run it, and says what it did."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

#: What each example's smoke run must print (a regular expression per line).
EXPECTED = {
    "train_navigation.py": [r"frames +80 +episode return", r"metrics: .*metrics\.csv"],
    "custom_loop.py": [r"iteration +2 +frames +80 +episode return -?\d+\.\d+"],
    "swap_scenarios.py": [
        r"navigation +agents×3 +40 ",
        r"balance +agents×3 +40 ",
        r"sampling +agents×4 +40 ",
    ],
    "heterogeneous_groups.py": [
        r"groups: \{'adversary': \[.*\], 'agent': \['agent_0'\]\}",
        r"adversary +loss_objective",
        # one finished episode per env (4 in the smoke run), one return per agent
        r"agent +mean episode return [-+]\d+\.\d+ over 4\b",
        r"adversary +mean episode return [-+]\d+\.\d+ over 12\b",
    ],
    "mappo_vs_ippo.py": [
        r"MAPPO seed 0: ",
        r"IPPO seed 0: ",
        r"MAPPO +-?\d+\.\d+ ± \d+\.\d+",
        r"IPPO +-?\d+\.\d+ ± \d+\.\d+",
    ],
    "pettingzoo_mpe.py": [
        r"groups: \{'agent': \['agent_0', 'agent_1', 'agent_2'\]\}",
        r"frames +200 +episode return +-?\d+\.\d+",
    ],
    "recurrent.py": [
        r"GRU +memory: final episode return \d+\.\d+",
        r"feed-forward +memory: final episode return \d+\.\d+",
    ],
    "custom_env.py": [r"actor distribution: MaskedCategorical", r"masked actions taken: 0 of \d+"],
    "evaluate_and_render.py": [
        r"policy: runs/navigation-seed0-[\d-]+/checkpoints/ckpt-000002\.pt "
        r"\(iteration 2, 80 frames\)",
        r"evaluation: 4 deterministic episodes, seed 1000",
        r"agents +agent_2 +-?\d+\.\d+ ± \d+\.\d+",
        r"team +sum of all agents +-?\d+\.\d+ ± \d+\.\d+",
        # The rest depends on the machine: see video_expectation().
    ],
}


def video_expectation(script: str) -> tuple[list[str], list[str]]:
    """How to launch an example that renders, and what its last line must be.

    evaluate_and_render.py runs under whatever renders VMAS here (directly or under
    xvfb-run); it must write the video when something does, and say why not otherwise.
    """
    if script != "evaluate_and_render.py":
        return [], []
    from conftest import render_launcher

    prefix, _ = render_launcher()
    if prefix is None:
        return [], [r"no video: VMAS cannot render here \(.+\)"]
    # 10-step episodes: 11 frames.
    return prefix, [r"video: episode\.(mp4|gif) \(11 frames\)"]


def test_every_example_is_checked():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_example_smoke_run(script, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher, expected = video_expectation(script)
    # cwd=tmp_path: whatever an example writes (runs/...) lands there.
    result = subprocess.run(
        [*launcher, sys.executable, str(EXAMPLES / script), "--smoke"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    for pattern in EXPECTED[script] + expected:
        assert re.search(pattern, result.stdout), f"{pattern!r} not in:\n{result.stdout}"
    assert not re.search(r"\bnan\b", result.stdout), result.stdout
    results = [line for line in result.stdout.splitlines() if line.startswith("frames ")]
    assert len(results) == len(set(results)), f"a result line printed twice:\n{result.stdout}"
