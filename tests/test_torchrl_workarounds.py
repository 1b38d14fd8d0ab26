"""Behaviours of torchrl 0.14 that mappo_torchrl works around, pinned down as tests.

If one of these starts failing after a torchrl upgrade, the bug is fixed
upstream and the matching workaround can go.
"""

import os
import signal
import subprocess
import sys

import pytest
import torch
from torchrl.modules import PopArtValueNorm
from torchrl.objectives.multiagent import MAPPOLoss
from torchrl.objectives.value import MultiAgentGAE

from mappo_torchrl.envs import group_keys
from mappo_torchrl.models import make_actor, make_critic
from mappo_torchrl.objectives import ActiveAgentGAE, make_loss


def test_assigning_value_estimator_attribute_is_silently_ignored(nav_env):
    """``loss.value_estimator = module`` registers a submodule; the loss keeps its own.

    nn.Module.__setattr__ intercepts Module values before the property setter
    runs. make_loss therefore calls the property's setter explicitly.
    """
    keys = group_keys(nav_env, "agents")
    loss = make_loss(make_actor(nav_env, "agents"), make_critic(nav_env, "agents"), keys)
    replacement = MultiAgentGAE(gamma=0.5, lmbda=0.5, value_network=None)
    loss.value_estimator = replacement
    assert loss.value_estimator is not replacement  # the torchrl bug
    assert isinstance(loss.value_estimator, ActiveAgentGAE)  # what make_loss installed


def test_make_loss_really_installs_its_estimator(nav_env):
    keys = group_keys(nav_env, "agents")
    loss = make_loss(make_actor(nav_env, "agents"), make_critic(nav_env, "agents"), keys, gamma=0.7)
    estimator = loss.value_estimator
    assert isinstance(estimator, ActiveAgentGAE)
    assert estimator.gamma.item() == torch.tensor(0.7).item()
    assert estimator.tensor_keys.advantage == ("agents", "advantage")


def test_gae_standardisation_depends_on_whether_a_mask_is_given():
    """MultiAgentGAE uses Bessel's correction without a mask and not with one.

    ``shifted=True`` passes a (possibly all-true) mask, so its standardised
    advantages would differ from the two-pass path; ActiveAgentGAE always
    passes one.
    """
    gae = MultiAgentGAE(gamma=0.9, lmbda=0.9, value_network=None)
    adv = torch.randn(4, 10, 3, 1)
    unmasked = gae._normalize_advantage(adv, None)
    all_valid = gae._normalize_advantage(adv, torch.ones(4, 10, 3, dtype=torch.bool))
    assert not torch.allclose(unmasked, all_valid)
    n = 4 * 10
    assert torch.allclose(all_valid, unmasked * (n / (n - 1)) ** 0.5, atol=1e-5)


def test_mlflow_log_hparams_needs_omegaconf_even_for_a_plain_dict(tmp_path, monkeypatch):
    """TorchRL's MLFlowLogger.log_hparams imports OmegaConf unconditionally.

    mlflow-skinny does not bring OmegaConf, so mappo_torchrl's MLflow logger
    sends the params with ``mlflow.log_params`` itself.
    """
    import importlib.util

    import pytest

    if importlib.util.find_spec("omegaconf") is not None:
        pytest.skip("OmegaConf is installed here; the failure needs it absent")
    pytest.importorskip("mlflow")
    from torchrl.record.loggers import MLFlowLogger

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    logger = MLFlowLogger(exp_name="pin", tracking_uri=(tmp_path / "mlruns").as_uri())
    try:
        with pytest.raises(ModuleNotFoundError, match="omegaconf"):
            logger.log_hparams({"loss.gamma": 0.9})
    finally:
        import mlflow

        mlflow.end_run()


def test_tensorboard_video_needs_moviepy_editor(tmp_path):
    """TorchRL's TensorboardLogger.log_video needs moviepy; torch's add_video needs
    ``moviepy.editor``, which moviepy 2 removed. mappo_torchrl writes the GIF with Pillow.
    """
    import importlib.util

    import pytest

    pytest.importorskip("tensorboard")
    from torchrl.record.loggers import TensorboardLogger

    logger = TensorboardLogger(exp_name="pin", log_dir=str(tmp_path))
    video = torch.zeros(1, 3, 3, 8, 8, dtype=torch.uint8)
    if importlib.util.find_spec("moviepy") is not None:
        pytest.skip("moviepy is installed here; the failure needs it absent")
    with pytest.raises(Exception, match="moviepy not found"):
        logger.log_video("v", video, step=0)


def test_upstream_value_clip_fires_without_any_parameter_change(nav_env):
    """TorchRL's MAPPOLoss clips ``norm(denorm(v))`` with statistics that moved in between.

    With a critic that writes de-normalised values (as the original MAPPO's
    does for GAE), MAPPOLoss normalises the prediction and the stored value
    again with the statistics it has just updated, so the value clip fires
    with no optimiser step at all. MultiAgentPPOLoss compares the network's
    own outputs instead (tests/test_original_formulas.py).
    """
    value_norm = PopArtValueNorm(shape=1, beta=0.9)
    keys = group_keys(nav_env, "agents")
    actor = make_actor(nav_env, "agents", num_cells=16)
    critic = make_critic(nav_env, "agents", num_cells=16, value_norm=value_norm)
    ours = make_loss(actor, critic, keys, value_norm=value_norm, clip_value=True)
    with torch.no_grad():
        data = nav_env.rollout(10, actor)
        ours.value_estimator(data)
    data = data.reshape(-1)
    data["agents", "value_target"] = data["agents", "value_target"] * 50 + 20
    upstream = MAPPOLoss(actor, critic, value_norm=value_norm, clip_value=0.2, functional=False)
    upstream.set_keys(
        action=keys.action,
        sample_log_prob=keys.log_prob,
        value=keys.state_value,
        advantage=keys.advantage,
        value_target=keys.value_target,
    )
    fractions = [upstream(data)["value_clip_fraction"].item() for _ in range(5)]
    assert max(fractions) > 0.1  # the upstream behaviour
    assert [ours(data)["value_clip_fraction"].item() for _ in range(5)] == [0.0] * 5


# -- mappo_torchrl.compat: each private TorchRL attribute it reaches, pinned ---------


def _collector(env):
    from mappo_torchrl.data import make_collector

    actor = make_actor(env, "agents", num_cells=8)
    n = env.batch_size.numel()
    return make_collector(env, actor, frames_per_batch=2 * n, total_frames=4 * n)


def test_collector_carrier_is_the_tensordict_the_next_batch_starts_from(nav_env):
    from mappo_torchrl.compat import collector_carrier

    collector = _collector(nav_env)
    batch = next(iter(collector))
    carrier = collector_carrier(collector)
    # The carrier holds the last step's "next" observation: where the next batch starts.
    last_next = batch["next", "agents", "observation"][:, -1]
    assert torch.equal(carrier["agents", "observation"], last_next)
    collector.shutdown()


def test_trajectory_ids_are_restored_from_the_collector_state(nav_env):
    from mappo_torchrl.compat import load_trajectory_ids

    collector = _collector(nav_env)
    next(iter(collector))
    saved = collector.state_dict()
    assert "traj_pool" in saved
    before = {k: v.clone() for k, v in collector._traj_pool.state_dict().items()}
    collector._traj_pool.get_traj_and_increment(3)
    load_trajectory_ids(collector, saved["traj_pool"])
    after = collector._traj_pool.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    collector.shutdown()


def test_set_value_estimator_installs_the_estimator(nav_env):
    from mappo_torchrl.compat import set_value_estimator

    keys = group_keys(nav_env, "agents")
    loss = make_loss(make_actor(nav_env, "agents"), make_critic(nav_env, "agents"), keys)
    replacement = MultiAgentGAE(gamma=0.5, lmbda=0.5, value_network=None)
    set_value_estimator(loss, replacement)
    assert loss.value_estimator is replacement


def test_standardize_per_agent_is_a_masked_per_agent_standardisation():
    from mappo_torchrl.compat import standardize_per_agent

    gae = MultiAgentGAE(gamma=0.9, lmbda=0.9, value_network=None)
    adv = torch.randn(4, 10, 3, 1)
    active = torch.ones(4, 10, 3, dtype=torch.bool)
    out = standardize_per_agent(gae, adv, active)
    mean = adv.mean(dim=(0, 1, 3), keepdim=True)
    std = adv.std(dim=(0, 1, 3), keepdim=True, correction=0)
    assert torch.allclose(out, (adv - mean) / std, atol=1e-4)


def test_agent_net_template_names_the_per_agent_layers():
    from torch import nn

    from mappo_torchrl.compat import agent_net_template
    from mappo_torchrl.models import make_mlp

    mlp = make_mlp(
        n_agent_inputs=4, n_agent_outputs=1, n_agents=3, centralized=False, share_params=False,
        num_cells=8, depth=2, activation="tanh", feature_norm=False, orthogonal_init=False,
        head_gain=1.0,
    )  # fmt: skip
    linear = [n for n, m in agent_net_template(mlp).named_modules() if isinstance(m, nn.Linear)]
    assert len(linear) == 3  # two hidden layers and the head
    assert all(mlp.params.get((*n.split("."), "weight")) is not None for n in linear)


def test_wrap_agent_net_wraps_every_agent_network():
    from torch import nn

    from mappo_torchrl.compat import WrappableMultiAgentMLP

    class Counting(WrappableMultiAgentMLP):
        wrapped = 0

        def wrap_agent_net(self, net, *, device):
            type(self).wrapped += 1
            return nn.Sequential(nn.Identity(), net)

    mlp = Counting(n_agent_inputs=4, n_agent_outputs=2, n_agents=3, centralized=False,
                   share_params=False, num_cells=8, depth=1)  # fmt: skip
    assert Counting.wrapped >= 1
    assert mlp(torch.zeros(5, 3, 4)).shape == (5, 3, 2)
    assert ("1", "0", "weight") in mlp.params.keys(True, True)  # the net sits inside the wrapper


def test_tensorboard_file_writer_takes_summaries(tmp_path):
    import pytest

    pytest.importorskip("tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    from mappo_torchrl.compat import tensorboard_file_writer

    writer = SummaryWriter(log_dir=str(tmp_path))
    assert callable(tensorboard_file_writer(writer).add_summary)
    writer.close()


def test_a_multi_process_collector_shares_the_given_policys_own_parameters(nav_env):
    """Why the overlapped collector gets a copy of the policy: TorchRL moves the given
    module's parameters to shared memory, so the worker would see every in-place Adam
    step of the trained module in the middle of its batch."""
    from functools import partial

    from torchrl.collectors import MultiAsyncCollector

    from mappo_torchrl.compat import output_queue
    from mappo_torchrl.envs import make_env
    from mappo_torchrl.models import make_actor

    actor = make_actor(nav_env, "agents", num_cells=8)
    assert not any(p.is_shared() for p in actor.parameters())
    collector = MultiAsyncCollector(
        [partial(make_env, "navigation", num_envs=2, max_steps=5)],
        actor,
        frames_per_batch=10,
        total_frames=20,
    )
    try:
        assert all(p.is_shared() for p in actor.parameters())
        assert output_queue(collector).empty()  # no batch yet: nothing was asked for
    finally:
        collector.shutdown()


UNUSED_COLLECTOR = """
import sys
from functools import partial
from torchrl.collectors import MultiAsyncCollector
from mappo_torchrl.compat import shutdown_weight_sync
from mappo_torchrl.envs import make_env
from mappo_torchrl.models import make_actor

if __name__ == "__main__":
    env_fn = partial(make_env, "navigation", num_envs=2, max_steps=5)
    collector = MultiAsyncCollector(
        [env_fn], make_actor(env_fn(), "agents", num_cells=8), frames_per_batch=10,
        total_frames=20,
    )
    collector.shutdown()  # never iterated: no weights were ever sent
    if sys.argv[1] == "workaround":
        shutdown_weight_sync(collector)
    print("done", flush=True)
"""


@pytest.mark.parametrize("workaround", [False, True])
def test_a_multi_process_collector_never_iterated_hangs_the_exit_unless_its_schemes_stop(
    tmp_path, workaround
):
    """Why shutdown_collector also shuts down the weight-sync schemes: TorchRL's
    shutdown() leaves them to __del__, which at interpreter exit starts a queue
    thread and waits for it forever (a Trainer built only to load a checkpoint)."""
    script = tmp_path / "unused_collector.py"
    script.write_text(UNUSED_COLLECTOR)
    argv = [sys.executable, str(script), "workaround" if workaround else "plain"]
    if workaround:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and "done" in done.stdout, done.stderr
    else:
        with pytest.raises(subprocess.TimeoutExpired) as hung:
            subprocess.run(argv, capture_output=True, text=True, timeout=30)
        assert b"done" in hung.value.stdout  # the script ended; only the exit hangs


@pytest.mark.skipif(
    not (sys.platform.startswith("linux") and os.path.exists("/proc/cpuinfo")),
    reason="reads the CPU flags from Linux's /proc/cpuinfo",
)
def test_torchs_private_bfloat16_queries_agree_with_the_cpu_flags():
    # perf.precision auto rests on torch.cpu._is_avx512_bf16_supported and
    # _is_amx_tile_supported (private, no public query in torch 2.13).
    from mappo_torchrl.compat import cpu_has_bfloat16

    flags = set()
    for line in open("/proc/cpuinfo").read().splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
    assert cpu_has_bfloat16() == bool(flags & {"avx512_bf16", "amx_tile"})


def test_the_weight_ack_queue_holds_the_workers_answer_to_new_weights(nav_env):
    """Why the overlapped collector waits for acknowledgements itself: TorchRL's default
    scheme waits on this queue with no time limit (sync=True), so a stopped worker
    would block the trainer for ever; with sync=False each answer waits there."""
    from functools import partial

    from torchrl.collectors import MultiAsyncCollector
    from torchrl.weight_update import SharedMemWeightSyncScheme

    from mappo_torchrl.compat import shutdown_weight_sync, weight_ack_queue
    from mappo_torchrl.envs import make_env
    from mappo_torchrl.models import make_actor

    assert SharedMemWeightSyncScheme().sync is True
    collector = MultiAsyncCollector(
        [partial(make_env, "navigation", num_envs=2, max_steps=5)],
        make_actor(nav_env, "agents", num_cells=8),
        frames_per_batch=10,
        total_frames=20,
        weight_sync_schemes={"policy": SharedMemWeightSyncScheme(sync=False)},
    )
    try:
        queue = weight_ack_queue(collector)
        assert queue.empty()  # nothing was sent yet
        collector.update_policy_weights_()  # returns at once, without the answer
        assert queue.get(timeout=60) == "updated"
        assert weight_ack_queue(collector, worker=1) is None
    finally:
        collector.shutdown()
        shutdown_weight_sync(collector)


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="stops the worker with SIGSTOP")
def test_a_watchable_collector_is_told_each_second_it_waits_for_a_batch(nav_env):
    """Why OverlappedCollector hooks TorchRL's private _get_from_queue: its iterator
    polls the workers' queue a second at a time and tries again for ever."""
    import threading
    from functools import partial

    from mappo_torchrl.compat import WatchableMultiAsyncCollector, shutdown_weight_sync
    from mappo_torchrl.envs import make_env
    from mappo_torchrl.models import make_actor

    class Waited(Exception):
        pass

    class Collector(WatchableMultiAsyncCollector):
        def still_waiting(self) -> None:
            raise Waited

    collector = Collector(
        [partial(make_env, "navigation", num_envs=2, max_steps=5)],
        make_actor(nav_env, "agents", num_cells=8),
        frames_per_batch=10,
        total_frames=20,
    )
    worker = collector.procs[0]
    # Should the hook never be called, the worker dies and TorchRL's own check fails.
    guard = threading.Timer(60, worker.kill)
    try:
        os.kill(worker.pid, signal.SIGSTOP)
        guard.start()
        with pytest.raises(Waited):
            next(iter(collector))
    finally:
        guard.cancel()
        worker.kill()
        worker.join(timeout=30)
        collector.shutdown(raise_on_error=False)
        shutdown_weight_sync(collector)


def test_ppo_current_log_prob_is_the_actors_log_prob_of_the_stored_action(nav_env):
    """``compat.ppo_current_log_prob`` wraps ``PPOLoss._get_cur_log_prob`` (private), which
    the decoupled objective calls once per batch for the proximal log-probabilities."""
    from mappo_torchrl.compat import ppo_current_log_prob

    keys = group_keys(nav_env, "agents")
    actor = make_actor(nav_env, "agents")
    loss = make_loss(actor, make_critic(nav_env, "agents"), keys)
    with torch.no_grad():
        data = nav_env.rollout(5, actor)
        expected = actor.get_dist(data.clone()).log_prob(data[keys.action])
        torch.testing.assert_close(ppo_current_log_prob(loss, data), expected)


def test_ppo_log_weight_returns_the_ratio_dist_kl_and_importance_weight(nav_env):
    """``MultiAgentPPOLoss._log_weight`` overrides TorchRL's private ``_log_weight``: four
    results, the last ``None`` while the proximal policy is the behaviour policy."""
    keys = group_keys(nav_env, "agents")
    actor = make_actor(nav_env, "agents")
    loss = MAPPOLoss(actor_network=actor, critic_network=make_critic(nav_env, "agents"))
    loss.set_keys(action=keys.action, sample_log_prob=keys.log_prob)
    with torch.no_grad():
        data = nav_env.rollout(5, actor)
    log_weight, dist, kl_approx, log_is_weight = loss._log_weight(data, data.shape + (3,))
    assert log_weight.shape == kl_approx.shape == data.shape + (3, 1)
    assert isinstance(dist, torch.distributions.Distribution)
    assert log_is_weight is None
    torch.testing.assert_close(log_weight, torch.zeros_like(log_weight), atol=1e-5, rtol=0)
