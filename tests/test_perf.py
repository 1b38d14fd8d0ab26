"""Fast-path switches: each gives the same results as the plain eager path.

Compared in float32: with bfloat16 hidden layers (``perf.precision``), a different
batch shape (shifted GAE's T + 1 steps) or kernel fusion (torch.compile) rounds
differently, so those paths agree only to bfloat16's resolution.
"""

import traceback

import pytest
import torch
from conftest import tiny_config
from torch.overrides import TorchFunctionMode

from mappo_torchrl.config import ConfigError
from mappo_torchrl.data import make_replay_buffer
from mappo_torchrl.envs import group_keys, make_env
from mappo_torchrl.models import make_actor, make_critic
from mappo_torchrl.objectives import make_loss
from mappo_torchrl.training import Trainer

COMPARED = ("train/loss_objective", "train/loss_critic", "train/entropy", "train/kl_approx")


def _history(**perf):
    cfg = tiny_config(perf={"precision": "float32", **perf})
    return Trainer(cfg).train(progress=False)


def _assert_same_curves(a, b, rtol=1e-4, atol=1e-6):
    for row_a, row_b in zip(a, b, strict=True):
        for key in COMPARED:
            assert row_a[key] == pytest.approx(row_b[key], rel=rtol, abs=atol), key


def test_one_epoch_sample_equals_minibatch_by_minibatch_sampling():
    data = torch.arange(100)
    from tensordict import TensorDict

    def draws(epoch_at_once):
        torch.manual_seed(0)
        size = 30
        rb = make_replay_buffer(size=100, minibatch_size=90 if epoch_at_once else size)
        rb.extend(TensorDict({"i": data}, [100]))
        out = []
        for _ in range(3):  # epochs
            if epoch_at_once:
                out += list(rb.sample()["i"].split(size))
            else:
                out += [rb.sample()["i"] for _ in range(3)]
        return torch.stack(out)

    assert torch.equal(draws(True), draws(False))


def test_fused_adam_matches_the_per_tensor_loop():
    _assert_same_curves(_history(fused_adam=True), _history(fused_adam=False))


def test_shifted_gae_equals_two_critic_passes():
    # Rows of 25 steps with a time limit every 10: two truncations inside each row.
    env = make_env("navigation", num_envs=4, max_steps=10, seed=0)
    keys = group_keys(env, "agents")
    actor = make_actor(env, "agents", num_cells=16, precision="float32")
    critic = make_critic(env, "agents", num_cells=16, precision="float32")
    plain = make_loss(actor, critic, keys)
    shifted = make_loss(actor, critic, keys, shifted=True, shifted_budget=25 // 10 + 1)
    inputs = []
    critic.module.register_forward_hook(lambda mod, args, out: inputs.append(args[0].shape))
    with torch.no_grad():
        data = env.rollout(25, actor, break_when_any_done=False)
        assert data["next", "truncated"].sum() == 4 * 2
        a = plain.value_estimator(data.clone())
        inputs.clear()
        b = shifted.value_estimator(data.clone())
    # One critic call over T + budget: the budget held both resets, with no fallback pass.
    assert [shape[:2] for shape in inputs] == [(4, 25 + 3)]
    for key in (keys.advantage, keys.value_target, keys.state_value):
        assert torch.allclose(a[key], b[key], atol=1e-5), key


def test_trainer_shifted_gae_switch_gives_the_same_curve():
    _assert_same_curves(_history(shifted_gae=True), _history(shifted_gae=False))


@pytest.mark.slow  # compiling takes a minute on 2 cores
def test_compiled_update_matches_eager():
    torch._dynamo.reset()
    _assert_same_curves(_history(compile_update=True), _history(), rtol=1e-3, atol=1e-5)


@pytest.mark.slow  # compiling takes a minute on 2 cores
def test_compiled_policy_in_the_collector():
    torch._dynamo.reset()
    torch._inductor.config.fallback_random = True  # eager RNG, so samples can be compared
    try:
        compiled = _history(compile_policy=True)
    finally:
        torch._inductor.config.fallback_random = False
    _assert_same_curves(compiled, _history(), rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("switch", ["cudagraph_update", "cudagraph_policy"])
def test_cuda_graphs_need_cuda(switch):
    cfg = tiny_config(perf={switch: True})
    with pytest.raises(ConfigError, match=f"perf.{switch}=True: needs device=cuda"):
        cfg.validate()


class _HostSyncSpy(TorchFunctionMode):
    """Records tensor-to-Python conversions (each one a host sync on a GPU)."""

    CONVERSIONS = {"item", "__bool__", "__int__", "__float__", "__index__", "tolist", "numpy"}

    def __init__(self):
        super().__init__()
        self.origins: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in self.CONVERSIONS:
            frames = traceback.extract_stack()[:-1]
            caller = next(f for f in reversed(frames) if "/torch/" not in f.filename)
            self.origins.append(caller.filename)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("continuous", [True, False])
def test_update_step_has_no_host_sync_of_its_own(continuous):
    trainer = Trainer(tiny_config(env={"continuous_actions": continuous}))
    batch = next(iter(trainer.collector))
    with torch.no_grad():
        trainer.groups["agents"].loss.value_estimator(batch)
    trainer.buffer.extend(batch.reshape(-1))
    minibatch = trainer.buffer.sample().split(trainer.minibatch_size)[0]
    trainer.update_step(minibatch)
    spy = _HostSyncSpy()
    with spy:
        trainer.update_step(minibatch)
    ours = [f for f in spy.origins if "/mappo_torchrl/" in f]
    assert ours == []
    # What remains comes from torchrl's distributions and loss, which skip these
    # checks when compiled or captured (see test_torchrl_workarounds.py).
    assert all("/torchrl/" in f for f in spy.origins)
