"""A plain TorchRL MAPPO pipeline in the style of TorchRL's multi-agent PPO tutorial.

The baseline the benchmarks compare mappo_torchrl against. Its code lives in
:mod:`mappo_torchrl.benchmark.tutorial` (none of the library's training code,
only TorchRL modules), so that ``mappo benchmark --baseline tutorial`` runs it
from an installed package; this script keeps the old name for
``throughput.py`` and for running the pipeline on its own::

    python benchmarks/tutorial_pipeline.py    # navigation, tutorial settings, 60k frames
"""

from __future__ import annotations

import torch

from mappo_torchrl.benchmark.tutorial import TutorialSettings, run_tutorial_pipeline

__all__ = ["TutorialSettings", "run_tutorial_pipeline"]

if __name__ == "__main__":
    torch.set_num_threads(1)
    for row in run_tutorial_pipeline(TutorialSettings()):
        print(row)
