"""The ``mappo`` command line: one module per sub-command (train, eval, plot, ...)."""
