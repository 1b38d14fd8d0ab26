import torch
from tensordict import TensorDict

from mappo_torchrl.data import make_collector, make_replay_buffer
from mappo_torchrl.models import make_actor


def test_buffer_gives_fixed_size_minibatches_without_replacement():
    rb = make_replay_buffer(size=100, minibatch_size=30)
    rb.extend(TensorDict({"i": torch.arange(100)}, [100]))
    seen = torch.cat([rb.sample()["i"] for _ in range(100 // 30)])
    assert seen.shape == (90,)
    assert seen.unique().numel() == 90  # no sample drawn twice in an epoch


def test_buffer_rejects_minibatch_larger_than_batch():
    import pytest

    with pytest.raises(ValueError, match="minibatch_size=200: must be at most"):
        make_replay_buffer(size=100, minibatch_size=200)


def test_collector_batch_layout(nav_env):
    actor = make_actor(nav_env, "agents", num_cells=16)
    collector = make_collector(nav_env, actor, frames_per_batch=40, total_frames=80)
    batches = list(collector)
    collector.shutdown()
    assert len(batches) == 2
    batch = batches[0]
    assert batch.batch_size == (4, 10)
    assert batch["agents", "action_log_prob"].shape == (4, 10, 3)
    assert not batch["agents", "action_log_prob"].requires_grad
