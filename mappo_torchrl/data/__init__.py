"""Collection and storage: a TorchRL collector feeding a replay buffer."""

from mappo_torchrl.data.buffer import make_replay_buffer
from mappo_torchrl.data.collector import CollectorStalled, WorkerFailed, make_collector

__all__ = ["CollectorStalled", "WorkerFailed", "make_collector", "make_replay_buffer"]
