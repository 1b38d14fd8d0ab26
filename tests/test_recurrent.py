"""Recurrent MAPPO: hidden states carried, reset, chunked and resumed exactly."""

import math
import signal
import subprocess
import sys

import pytest
import torch
from conftest import tiny_config
from tensordict import TensorDict
from test_checkpoint import HOOKED_MAPPO, TINY, _comparable_rows
from torchrl.modules import set_recurrent_mode

from mappo_torchrl.cli.main import main
from mappo_torchrl.config import ConfigError, RunConfig
from mappo_torchrl.envs import make_env
from mappo_torchrl.envs.toy import CueMemoryEnv, TargetPickingEnv
from mappo_torchrl.models import MultiAgentRNN, add_recurrent_state, make_actor, make_critic
from mappo_torchrl.runs.checkpoint import checkpoint_files, load_checkpoint
from mappo_torchrl.training import Trainer

HIDDEN = ("agents", "actor_hidden")
CRITIC_HIDDEN = ("agents", "critic_hidden")


def _picking_config(**model) -> RunConfig:
    """Target picking: episodes of different lengths per env, masks and inactive agents."""
    cfg = tiny_config(
        env={"num_envs": 8},
        collector={"frames_per_batch": 8 * 12, "total_frames": 8 * 24},
        optim={"minibatch_size": 24, "chunk_length": 4},
        model={"recurrent": "gru", "rnn_hidden": 8, **model},
    )
    return cfg


def _picking_trainer(**model) -> Trainer:
    cfg = _picking_config(**model)
    return Trainer(cfg, env=TargetPickingEnv(num_envs=8, n_agents=3, max_steps=5, seed=1))


def _first_batch(trainer: Trainer) -> TensorDict:
    batch = next(iter(trainer.collector))
    trainer.collector.shutdown()
    return batch


@pytest.fixture(scope="module")
def picking():
    """A trainer on target picking and its first collected batch (after GAE)."""
    trainer = _picking_trainer()
    batch = _first_batch(trainer)
    with torch.no_grad():
        for group in trainer.groups.values():
            group.loss.value_estimator(batch)
    return trainer, batch


# -- the hidden state during collection -------------------------------------------


def test_hidden_state_is_zero_exactly_at_each_envs_episode_starts(picking):
    _, batch = picking
    is_init = batch["is_init"].squeeze(-1)  # [envs, T]
    # Episodes end at different times in different envs.
    assert (is_init.any(0) & ~is_init.all(0)).any()
    for key in (HIDDEN, CRITIC_HIDDEN):
        hidden = batch[key]  # [envs, T, agents, layers, hidden]
        zero = (hidden == 0).flatten(2).all(-1)
        assert torch.equal(zero, is_init), key
        # Elsewhere it is the previous step's output, carried over.
        carried = batch[("next", *key)][:, :-1]
        later = ~is_init[:, 1:]
        assert torch.equal(hidden[:, 1:][later], carried[later]), key


def test_agents_of_one_env_keep_separate_hidden_states(picking):
    _, batch = picking
    hidden = batch[HIDDEN][~batch["is_init"].squeeze(-1)]  # [steps, agents, ...]
    assert not torch.equal(hidden[:, 0], hidden[:, 1])


# -- chunks -----------------------------------------------------------------------


def test_chunks_are_consecutive_steps_of_one_env_starting_at_the_stored_state(picking):
    trainer, batch = picking
    chunks = trainer.samples(batch)
    length = trainer.chunk_length
    assert chunks.batch_size == torch.Size([8 * 12 // length, length])
    per_env = 12 // length
    for index in (0, 1, per_env, len(chunks) - 1):
        env, start = divmod(index, per_env)
        span = slice(start * length, (start + 1) * length)
        assert torch.equal(chunks[index][HIDDEN][0], batch[env, start * length][HIDDEN])
        assert torch.equal(
            chunks[index]["agents", "observation"], batch[env, span]["agents", "observation"]
        )


def _recompute(actor, data: TensorDict) -> torch.Tensor:
    keys = [k for k in actor.in_keys if k in data.keys(True, True)]
    dist = actor.get_dist(data.select(*keys, ("agents", "action")))
    return dist.log_prob(data["agents", "action"])


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_sequence_mode_over_chunks_gives_the_log_probs_of_collection(kind):
    """Discrete actions with masks, resets inside chunks; the stored log-probs come
    from the step-by-step collection."""
    trainer = _picking_trainer(recurrent=kind)
    batch = _first_batch(trainer)
    actor = trainer.groups["agents"].actor
    chunks = trainer.samples(batch)
    assert chunks["is_init"][:, 1:].any()  # some chunks cross an episode start
    with torch.no_grad(), set_recurrent_mode(True):
        log_prob = _recompute(actor, chunks)
    torch.testing.assert_close(log_prob, chunks["agents", "action_log_prob"], atol=1e-5, rtol=0)


def test_sequence_mode_matches_collection_for_continuous_actions():
    cfg = tiny_config(model={"recurrent": "gru", "rnn_hidden": 8}, optim={"chunk_length": 5})
    trainer = Trainer(cfg)
    batch = _first_batch(trainer)
    actor = trainer.groups["agents"].actor
    chunks = trainer.samples(batch)
    with torch.no_grad(), set_recurrent_mode(True):
        log_prob = _recompute(actor, chunks)
    torch.testing.assert_close(log_prob, chunks["agents", "action_log_prob"], atol=1e-5, rtol=0)


def test_sequence_mode_without_the_stored_state_differs(picking):
    """The check above is not vacuous: starting chunks from zeros changes the outputs."""
    trainer, batch = picking
    actor = trainer.groups["agents"].actor
    chunks = trainer.samples(batch)
    zeroed = chunks.clone()
    zeroed[HIDDEN] = torch.zeros_like(zeroed[HIDDEN])
    with torch.no_grad(), set_recurrent_mode(True):
        stored, zero = _recompute(actor, chunks), _recompute(actor, zeroed)
    starts_mid_episode = ~chunks["is_init"][:, 0].squeeze(-1)
    assert not torch.allclose(stored[starts_mid_episode], zero[starts_mid_episode])


def test_gradients_flow_through_time_inside_a_chunk():
    rnn = MultiAgentRNN(
        kind="gru",
        input_size=3,
        hidden_size=4,
        num_layers=1,
        n_agents=2,
        in_key=("agents", "x"),
        out_key=("agents", "y"),
        state_prefix=("agents", "actor"),
    )
    x = torch.randn(1, 6, 2, 3, requires_grad=True)
    data = TensorDict(
        {"agents": {"x": x}, "is_init": torch.zeros(1, 6, 1, dtype=torch.bool)}, [1, 6]
    )
    data["is_init"][0, 3] = True  # an episode starts at step 3
    with set_recurrent_mode(True):
        rnn(data)["agents", "y"][0, 2, :, 0].sum().backward()  # (a LayerNorm output sums to 0)
    grad = x.grad.abs().flatten(2).sum(-1)[0]  # per step
    assert (grad[:3] > 0).all() and (grad[3:] == 0).all()
    # The last output before the reset depends on the first step; none after it does.
    x.grad = None
    with set_recurrent_mode(True):
        rnn(data)["agents", "y"][0, 5, :, 0].sum().backward()
    grad = x.grad.abs().flatten(2).sum(-1)[0]
    assert (grad[:3] == 0).all() and (grad[3:] > 0).all()


# -- GAE and the loss -------------------------------------------------------------


def test_gae_uses_the_values_stored_at_collection(picking):
    trainer, batch = picking
    critic = trainer.groups["agents"].critic
    with torch.no_grad():
        recomputed = critic(batch.select(*critic.in_keys, strict=False).clone())
    torch.testing.assert_close(recomputed["agents", "state_value"], batch["agents", "state_value"])
    # The next value continues from the stored next state: equal to the next
    # step's value wherever that step does not start a new episode.
    same = ~batch["is_init"][:, 1:].squeeze(-1)
    next_value = batch["next", "agents", "state_value"][:, :-1][same]
    torch.testing.assert_close(next_value, batch["agents", "state_value"][:, 1:][same])


def test_inactive_agents_do_not_change_the_loss(picking):
    trainer, batch = picking
    group = trainer.groups["agents"]
    chunks = trainer.samples(batch)
    inactive = ~chunks["agents", "mask"]
    assert inactive.any()
    corrupted = chunks.clone()
    for key in (("agents", "advantage"), ("agents", "value_target"), ("agents", "action_log_prob")):
        value = corrupted[key]
        value[inactive] = 1e3
    with torch.no_grad(), set_recurrent_mode(True):
        clean, dirty = group.loss(chunks.clone()), group.loss(corrupted)
    for term in ("loss_objective", "loss_critic"):
        torch.testing.assert_close(clean[term], dirty[term])


# -- training, evaluation, checkpoints --------------------------------------------


@pytest.mark.parametrize(
    "model",
    [
        {"recurrent": "gru"},
        {"recurrent": "lstm", "rnn_layers": 2},
        {"recurrent": "gru", "recurrent_critic": False},
        {"recurrent": "gru", "share_params": False},
        {"recurrent": "gru", "critic_input": "agent_state"},
    ],
)
def test_recurrent_variants_train_on_masked_env(model):
    trainer = _picking_trainer(**model)
    history = trainer.train(progress=False)
    assert math.isfinite(history[-1]["train/loss_objective"])
    assert math.isfinite(history[-1]["train/loss_critic"])


def test_value_norm_trains_with_a_recurrent_critic():
    cfg = tiny_config(
        model={"recurrent": "gru", "rnn_hidden": 8},
        optim={"chunk_length": 5},
        loss={"value_norm": "popart"},
    )
    trainer = Trainer(cfg)
    history = trainer.train(progress=False)
    assert math.isfinite(history[-1]["train/loss_critic"])
    assert trainer.groups["agents"].value_norm.debiasing_term > 0


def test_two_groups_train_with_recurrent_networks():
    cfg = tiny_config(
        env={"scenario": "simple_tag"}, model={"recurrent": "gru"}, optim={"chunk_length": 5}
    )
    trainer = Trainer(cfg)
    history = trainer.train(progress=False)
    for group in ("adversary", "agent"):
        assert math.isfinite(history[-1][f"train/{group}/loss_objective"])
        assert (group, "actor_hidden") in trainer.env.full_observation_spec.keys(True, True)


def test_evaluation_carries_the_hidden_state_across_the_episode():
    env = make_env("navigation", num_envs=3, max_steps=6, seed=0)
    actor = make_actor(env, "agents", recurrent="gru", num_cells=16, rnn_hidden=8)
    env = add_recurrent_state(env, actor)
    from torchrl.envs.utils import ExplorationType, set_exploration_type

    with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
        rollout = env.rollout(6, actor)
    hidden = rollout[HIDDEN]
    assert (hidden[:, 0] == 0).all() and (hidden[:, 1:] != 0).any(-1).all()
    torch.testing.assert_close(hidden[:, 1:], rollout[("next", *HIDDEN)][:, :-1])


def test_critic_reads_a_global_state_through_its_recurrent_layer():
    env = TargetPickingEnv(num_envs=4, n_agents=3)
    critic = make_critic(
        env, "agents", critic_input="state", recurrent="gru", num_cells=16, rnn_hidden=8
    )
    env = add_recurrent_state(env, critic)
    data = env.reset()
    assert critic(data)["agents", "state_value"].shape == torch.Size([4, 3, 1])
    assert "state" in critic.in_keys and CRITIC_HIDDEN in critic.in_keys


# Episodes of 7 steps straddle the batches of 10, so hidden states live across iterations.
RECURRENT = [
    *TINY, "--model.recurrent", "gru", "--optim.chunk_length", "5", "--env.max_steps", "7"
]  # fmt: skip


def test_recurrent_run_killed_with_sigkill_resumes_bit_for_bit(tmp_path, capsys):
    killed = tmp_path / "killed"
    child = subprocess.Popen(
        [sys.executable, "-c", HOOKED_MAPPO, "3", "sleep", "train", "--run-dir", str(killed)]
        + RECURRENT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = []
    for line in child.stdout:
        output.append(line)
        if "ITERATION-DONE" in line:
            break
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL, "".join(output)
    assert [p.name for p in checkpoint_files(killed)] == ["ckpt-000002.pt"]
    saved = load_checkpoint(checkpoint_files(killed)[-1])
    # The collector's live hidden states are part of the checkpoint.
    assert saved["carrier"]["agents"]["actor_hidden"].abs().sum() > 0

    assert main(["train", "--resume", str(killed), "--no-progress"]) == 0
    straight = tmp_path / "straight"
    assert main(["train", "--run-dir", str(straight), *RECURRENT]) == 0
    resumed_rows, straight_rows = _comparable_rows(killed), _comparable_rows(straight)
    assert [r["iteration"] for r in resumed_rows] == ["1", "2", "3", "4", "5", "6"]
    assert resumed_rows == straight_rows
    resumed, uninterrupted = (load_checkpoint(checkpoint_files(d)[-1]) for d in (killed, straight))
    for name, value in uninterrupted["groups"]["agents"]["loss"].items():
        assert torch.equal(resumed["groups"]["agents"]["loss"][name], value), name
    for key in ("actor_hidden", "critic_hidden"):
        assert torch.equal(
            resumed["carrier"]["agents"][key], uninterrupted["carrier"]["agents"][key]
        )


def test_mappo_eval_plays_a_recurrent_checkpoint(tmp_path, capsys):
    run_dir = tmp_path / "run"
    args = ["train", "--run-dir", str(run_dir), *RECURRENT, "--collector.total_frames", "80"]
    assert main(args) == 0
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--episodes", "3"]) == 0
    assert "sum of all agents" in capsys.readouterr().out


# -- configuration ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"model.recurrent": "rnn"},
            "model.recurrent='rnn': must be one of none, gru, lstm",
        ),
        (
            {"model.recurrent": "gru", "optim.chunk_length": 7},
            "optim.chunk_length=7: must divide the steps each env collects per batch (100 = "
            "collector.frames_per_batch / env.num_envs)",
        ),
        (
            {"model.recurrent": "gru", "optim.minibatch_size": 5},
            "optim.minibatch_size=5: must be at least optim.chunk_length (10)",
        ),
        (
            {"model.recurrent": "gru", "perf.shifted_gae": True},
            "perf.shifted_gae=True: cannot be used with a recurrent model",
        ),
        (
            {"model.recurrent": "lstm", "perf.compile_update": True},
            "perf.compile_update=True: cannot be used with a recurrent model",
        ),
        ({"model.rnn_hidden": 0}, "model.rnn_hidden=0: must be a positive integer"),
    ],
)
def test_bad_recurrent_options_give_one_line(values, message):
    from mappo_torchrl.config import apply_overrides

    cfg = apply_overrides(RunConfig(), values)
    with pytest.raises(ConfigError) as err:
        cfg.validate()
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_feed_forward_ignores_chunk_length():
    from mappo_torchrl.config import apply_overrides

    apply_overrides(RunConfig(), {"optim.chunk_length": 7}).validate()


# -- memory -----------------------------------------------------------------------


def _memory_run(recurrent: str) -> list[float]:
    cfg = RunConfig()
    cfg.env.num_envs = 32
    cfg.collector.frames_per_batch = 32 * 16
    cfg.collector.total_frames = 32 * 16 * 16
    cfg.optim.minibatch_size = 128
    cfg.optim.chunk_length = 8
    cfg.optim.actor_lr = cfg.optim.critic_lr = 3e-3
    cfg.model.actor_cells = cfg.model.critic_cells = cfg.model.rnn_hidden = 32
    cfg.model.recurrent = recurrent
    cfg.loss.entropy_coeff = 0.01
    cfg.update_threads = 1
    env = CueMemoryEnv(num_envs=32, n_agents=2, n_cues=4, delay=3, seed=0)
    history = Trainer(cfg, env=env).train(progress=False)
    return [m["train/episode_return"] for m in history]


def test_gru_remembers_the_cue_where_feed_forward_cannot():
    """Chance is 1/4: only a policy with memory can answer right."""
    gru, feed_forward = _memory_run("gru"), _memory_run("none")
    gru_final, ff_final = sum(gru[-3:]) / 3, sum(feed_forward[-3:]) / 3
    assert gru_final > 0.8, gru
    assert ff_final < 0.4, feed_forward
    assert gru_final - ff_final > 0.4


# -- partially observable navigation ----------------------------------------------


def test_goal_is_zeroed_from_the_given_step_of_each_episode():
    from mappo_torchrl.envs import make_env_from_config

    cfg = tiny_config(env={"goal_visible_steps": 3, "max_steps": 5})
    env = make_env_from_config(cfg)
    data = env.rollout(8, break_when_any_done=False)
    goal = data["agents", "observation"][..., 4:6].abs().flatten(2).sum(-1)  # [envs, T]
    steps = data["step_count"].squeeze(-1)  # 0 at each reset
    assert torch.equal(goal > 0, steps < 3)
    assert (steps[:, 5] == 0).all()  # a second episode, seen again at first
    rest = data["agents", "observation"][..., :4]
    assert (rest != 0).any(-1).all()  # position and velocity stay visible


def test_only_navigation_can_hide_its_goal():
    cfg = tiny_config(env={"scenario": "balance", "goal_visible_steps": 3})
    with pytest.raises(ConfigError, match="env.goal_visible_steps=3: only the navigation"):
        cfg.validate()
