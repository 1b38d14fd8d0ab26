"""CUDA-only checks of the fast path. CI has no GPU: benchmarks/gpu_check.sh runs these
on a CUDA machine. Their CPU counterparts are in test_perf.py."""

import pytest
import torch
from conftest import tiny_config

from mappo_torchrl.training import Trainer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

COMPARED = ("train/loss_objective", "train/loss_critic", "train/entropy", "train/kl_approx")


def _history(**perf):
    cfg = tiny_config(perf=perf)
    cfg.device = "cuda"
    cfg.collector.total_frames = 160
    return Trainer(cfg).train(progress=False)


def _assert_close(a, b):
    for row_a, row_b in zip(a, b, strict=True):
        for key in COMPARED:
            assert row_a[key] == pytest.approx(row_b[key], rel=1e-3, abs=1e-5), key


def test_eager_cuda_matches_cpu_within_tolerance():
    cpu = Trainer(tiny_config()).train(progress=False)[:1]
    cfg = tiny_config()
    cfg.device = "cuda"
    cuda = Trainer(cfg).train(progress=False)[:1]
    assert cuda[0]["train/episode_return"] == pytest.approx(
        cpu[0]["train/episode_return"], rel=1e-3, abs=1e-4
    )


def test_cudagraph_update_matches_eager():
    _assert_close(_history(cudagraph_update=True), _history())


def test_compiled_update_matches_eager_on_cuda():
    torch._dynamo.reset()
    _assert_close(_history(compile_update=True), _history())


def test_cudagraph_policy_runs_and_learns_the_same():
    _assert_close(_history(cudagraph_policy=True), _history())


def test_no_host_sync_in_the_captured_update():
    cfg = tiny_config(perf={"cudagraph_update": True})
    cfg.device = "cuda"
    trainer = Trainer(cfg)
    trainer.train(progress=False)  # warm-up and capture
    batch = next(iter(trainer.collector))
    with torch.no_grad():
        trainer.groups["agents"].loss.value_estimator(batch)
    trainer.buffer.extend(batch.reshape(-1))
    minibatch = trainer.buffer.sample().split(trainer.minibatch_size)[0]
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        trainer.compiled_update_step(minibatch)  # the captured graph
    finally:
        torch.cuda.set_sync_debug_mode("default")
