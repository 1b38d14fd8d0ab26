"""Run management around the training loop: the session ``mappo train`` runs, the run
directory, checkpoints and resume state, loggers and evaluation.

Imports go one way: :mod:`mappo_torchrl.runs` uses :mod:`mappo_torchrl.training`,
never the reverse.
"""
