"""Collection in worker processes: overlapped with the update, or spread over workers."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import tiny_config
from tensordict import TensorDict

from mappo_torchrl.cli.main import main
from mappo_torchrl.config import ConfigError
from mappo_torchrl.data.collector import env_rows, shutdown_collector
from mappo_torchrl.runs.checkpoint import (
    load_checkpoint,
    load_trainer_state,
    save_checkpoint,
    trainer_state,
)
from mappo_torchrl.training import Trainer


def _record_updates(trainer: Trainer) -> list[tuple[TensorDict, TensorDict]]:
    """Make ``trainer`` keep each update's batch and the actor weights the update started from."""
    seen = []
    real_advantages = trainer.compute_advantages
    actor = next(iter(trainer.groups.values())).actor

    def compute_advantages(batch):  # an update's first stage
        seen.append((batch.clone(), TensorDict.from_module(actor).clone()))
        return real_advantages(batch)

    trainer.compute_advantages = compute_advantages
    return seen


def _log_prob_under(trainer: Trainer, weights: TensorDict, batch: TensorDict) -> torch.Tensor:
    group = trainer.groups["agents"]
    keys = group.loss.tensor_keys
    with torch.no_grad(), weights.to_module(group.actor):
        dist = group.actor.get_dist(batch.clone())
        return dist.log_prob(batch[keys.action])


@pytest.mark.parametrize("overlap", ["off", "on"])
def test_a_batch_carries_the_log_probs_of_the_weights_that_collected_it(overlap):
    trainer = Trainer(tiny_config(collector={"overlap": overlap, "total_frames": 160}))
    seen = _record_updates(trainer)
    history = trainer.train(progress=False)
    stored_key = trainer.groups["agents"].loss.tensor_keys.sample_log_prob
    assert len(seen) == 4
    for k, (batch, weights) in enumerate(seen):
        stored = batch[stored_key]
        now = _log_prob_under(trainer, weights, batch)
        if overlap == "off" or k == 0:
            # Collected by the weights the update starts from: PPO's first ratio is 1.
            torch.testing.assert_close(now, stored, atol=1e-4, rtol=1e-4)
            assert history[k]["train/behaviour_kl"] == pytest.approx(0.0, abs=1e-6)
        else:
            # Overlapped: collected by the weights one update earlier, and only those.
            before = _log_prob_under(trainer, seen[k - 1][1], batch)
            torch.testing.assert_close(before, stored, atol=1e-4, rtol=1e-4)
            assert (now - stored).abs().max() > 1e-3
            assert history[k]["train/behaviour_kl"] != 0.0
        assert history[k]["collector/policy_lag"] == (1.0 if overlap == "on" else 0.0)


def test_overlapped_runs_with_the_same_seed_are_the_same():
    runs = [
        Trainer(tiny_config(collector={"overlap": "on"})).train(progress=False) for _ in range(2)
    ]
    for first, second in zip(*runs, strict=True):
        assert {k: v for k, v in first.items() if not k.startswith("time/")} == {
            k: v for k, v in second.items() if not k.startswith("time/")
        }


@pytest.mark.parametrize("workers", [1, 2])
def test_workers_give_batches_of_the_requested_shape(workers):
    trainer = Trainer(tiny_config(collector={"workers": workers}))
    seen = _record_updates(trainer)
    history = trainer.train(progress=False)
    assert [m["frames"] for m in history] == [40, 80]
    for batch, _ in seen:
        assert batch.batch_size == torch.Size([4, 10])  # num_envs x steps, as with one process
        assert batch["next", "agents", "reward"].shape == (4, 10, 3, 1)
    if workers == 2:
        # Each worker steps its own half of the envs, seeded differently.
        obs = seen[0][0]["agents", "observation"][:, 0]
        assert not torch.equal(obs[:2], obs[2:])


def test_workers_run_copies_of_an_unbatched_env():
    pytest.importorskip("mpe2.simple_spread_v3")
    from test_pettingzoo import _spread_env as spread

    config = tiny_config(collector={"workers": 2, "frames_per_batch": 20, "total_frames": 40})
    config.env.num_envs = 1
    config.optim.minibatch_size = 10
    trainer = Trainer(config, env_fn=spread)
    seen = _record_updates(trainer)
    history = trainer.train(progress=False)
    assert [m["frames"] for m in history] == [20, 40]
    assert seen[0][0].batch_size == torch.Size([2, 10])  # one row per worker's env


def test_env_rows_flattens_the_workers_stack():
    stacked = TensorDict({"x": torch.arange(24).reshape(2, 3, 4)}, batch_size=[2, 3, 4])
    assert env_rows(stacked).batch_size == torch.Size([6, 4])
    assert torch.equal(env_rows(stacked)["x"][3], stacked["x"][1, 0])
    single = TensorDict(batch_size=[5, 4])
    assert env_rows(single) is single


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"overlap": "yes"}, "collector.overlap='yes': must be one of off, on, auto"),
        ({"workers": 0}, "collector.workers=0: must be an integer in [1, 256]"),
        ({"workers": 3}, "collector.workers=3: must divide env.num_envs (4)"),
        (
            {"workers": 2, "overlap": "on"},
            "collector.workers=2: must be 1 with collector.overlap=on",
        ),
    ],
)
def test_bad_collection_options_are_one_line(overrides, message):
    with pytest.raises(ConfigError) as info:
        Trainer(tiny_config(collector=overrides))
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_an_env_instance_cannot_go_to_workers(nav_env):
    with pytest.raises(ConfigError, match=r"collector.workers=2: needs Trainer\(env_fn=...\)"):
        Trainer(tiny_config(collector={"workers": 2}), env=nav_env)
    # auto keeps a given env instance in this process.
    trainer = Trainer(tiny_config(collector={"overlap": "auto"}), env=nav_env)
    assert not trainer.overlap
    trainer.collector.shutdown()


def _checkpoints(run: Path) -> list[Path]:
    return sorted((run / "checkpoints").glob("ckpt-*.pt"))


def _overlapped_argv(run: Path) -> list[str]:
    return [
        "train", "--run-dir", str(run), "--no-progress",
        "--env.num_envs", "4", "--env.max_steps", "10",
        "--collector.frames_per_batch", "40", "--collector.total_frames", "1600",
        "--collector.overlap", "on",
        "--optim.minibatch_size", "20", "--optim.num_epochs", "2",
        "--model.actor_cells", "16", "--model.critic_cells", "16",
        "--eval.interval", "0", "--checkpoint.interval", "5", "--threads", "1",
    ]  # fmt: skip


def _losses(run: Path) -> list[tuple[int, str]]:
    with (run / "metrics.csv").open(newline="") as f:
        return [(int(row["iteration"]), row["train/loss_objective"]) for row in csv.DictReader(f)]


def test_an_overlapped_run_killed_with_sigkill_resumes_bit_for_bit(tmp_path, capsys):
    straight = tmp_path / "straight"
    assert main(_overlapped_argv(straight)) == 0
    run = tmp_path / "run"
    child = subprocess.Popen(
        [sys.executable, "-m", "mappo_torchrl.cli.main", *_overlapped_argv(run)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # kill -9 the trainer and its collecting worker together
    )
    deadline = time.monotonic() + 240
    while len(_checkpoints(run)) < 2 and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert child.poll() is None, child.stderr.read().decode()
    os.killpg(child.pid, signal.SIGKILL)
    child.wait(timeout=60)
    child.stderr.close()
    saved = int(_checkpoints(run)[-1].stem.split("-")[1])
    assert 0 < saved < 40
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert "not bit for bit" not in capsys.readouterr().out
    # Every iteration once, to the last, with the losses of the run never killed
    # (the worker collected its batch in progress again, from where it had started).
    assert _losses(run) == _losses(straight)
    assert [i for i, _ in _losses(run)] == list(range(1, 41))
    ours = torch.load(_checkpoints(run)[-1], weights_only=True)["groups"]["agents"]["loss"]
    theirs = torch.load(_checkpoints(straight)[-1], weights_only=True)["groups"]["agents"]["loss"]
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs), "weights differ"


@pytest.mark.parametrize(
    ("collector", "saved"), [({"overlap": "on"}, True), ({"workers": 2}, False)]
)
def test_checkpoints_hold_the_overlapped_workers_env_but_not_several_workers(collector, saved):
    trainer = Trainer(tiny_config(collector=collector))
    try:
        assert trainer.collects_in_workers
        assert trainer.saves_worker_envs is saved
        trainer.train(progress=False)
        state = trainer_state(trainer)
        assert (state["overlap"] is not None) is saved
        assert state["env"] is None  # this process's env never stepped
    finally:
        trainer.collector.shutdown()


AUTO_SCRIPT = """
from mappo_torchrl.config import RunConfig
from mappo_torchrl.training import Trainer

def check():
    cfg = RunConfig()  # collector.overlap: auto
    cfg.env.num_envs, cfg.env.max_steps = 4, 10
    cfg.collector.frames_per_batch, cfg.collector.total_frames = 40, 40
    cfg.optim.minibatch_size = 20
    trainer = Trainer(cfg)
    print("overlap", trainer.overlap, flush=True)
"""


@pytest.mark.parametrize("guarded", [True, False])
def test_auto_overlap_needs_a_main_guard_and_says_so_without_one(tmp_path, guarded):
    script = tmp_path / "train.py"
    tail = 'if __name__ == "__main__":\n    check()\n' if guarded else "check()\n"
    script.write_text(AUTO_SCRIPT + tail)
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert f"overlap {guarded}" in done.stdout
    warned = "collector.overlap=auto is off" in done.stderr
    assert warned is not guarded, done.stderr


@pytest.mark.parametrize(
    "sections",
    [
        {"model": {"recurrent": "gru", "rnn_hidden": 8}, "optim": {"chunk_length": 5}},
        {"env": {"scenario": "simple_tag"}},  # two agent groups
        {"perf": {"precision": "bfloat16"}},  # auto's choice on a CPU with bfloat16
    ],
    ids=["recurrent", "heterogeneous", "bfloat16"],
)
def test_an_overlapped_run_resumed_from_a_checkpoint_is_the_same_run(tmp_path, sections):
    def config():
        cfg = tiny_config(**sections)
        cfg.collector.overlap, cfg.collector.total_frames = "on", 40 * 5
        return cfg

    straight, path = Trainer(config()), tmp_path / "ckpt.pt"
    try:
        later = []
        for metrics in straight.iterations():
            if metrics["iteration"] == 2:
                save_checkpoint(trainer_state(straight), path)
            elif metrics["iteration"] > 2:
                later.append(metrics["train/episode_return"])
    finally:
        shutdown_collector(straight.collector)
    resumed = Trainer(config())
    try:
        load_trainer_state(resumed, load_checkpoint(path))
        history = list(resumed.iterations())
    finally:
        shutdown_collector(resumed.collector)
    assert [m["iteration"] for m in history] == [3, 4, 5]
    # The same batches (their returns) and the same weights at the end.
    assert [m["train/episode_return"] for m in history] == later
    for name, group in resumed.groups.items():
        ours, theirs = (
            TensorDict.from_module(group.actor),
            TensorDict.from_module(straight.groups[name].actor),
        )
        assert (ours == theirs).all(), name


def test_saving_the_workers_state_does_not_change_the_run(monkeypatch):
    def history():
        trainer = Trainer(tiny_config(collector={"overlap": "on", "total_frames": 160}))
        saves = trainer.saves_worker_envs
        return saves, [m["train/loss_objective"] for m in trainer.train(progress=False)]

    saving, with_files = history()
    monkeypatch.setattr("mappo_torchrl.training.trainer.is_vmas_env", lambda env: False)
    not_saving, without_files = history()
    assert saving and not not_saving
    assert with_files == without_files
