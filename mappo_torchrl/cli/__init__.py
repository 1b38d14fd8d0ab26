"""The ``mappo`` command line: ``mappo train`` and ``mappo scenarios``."""
