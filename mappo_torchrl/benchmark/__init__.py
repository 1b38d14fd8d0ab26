"""``mappo benchmark``: a grid of runs (scenarios x seeds x variants) and its results report.

- :mod:`~mappo_torchrl.benchmark.grid`: what to run (the spec, its cells, what a
  rerun does with each cell);
- :mod:`~mappo_torchrl.benchmark.executors`: where it runs (local worker
  processes or Ray tasks);
- :mod:`~mappo_torchrl.benchmark.watchdog`: stops a cell whose benchmark
  died;
- :mod:`~mappo_torchrl.benchmark.report`: ``results.md``, ``results.json``, the
  learning-curve figure and the marl-eval JSON;
- :mod:`~mappo_torchrl.benchmark.tutorial`: the tutorial-style TorchRL pipeline
  that ``--baseline tutorial`` runs as an extra arm.
"""
