"""A non-VMAS env through the same pipeline: PettingZoo MPE via TorchRL's wrapper."""

import math
import warnings

import pytest
from conftest import tiny_config

from mappo_torchrl.envs import group_keys
from mappo_torchrl.training import Trainer

simple_spread_v3 = pytest.importorskip(
    "mpe2.simple_spread_v3", reason="install the pettingzoo extra (part of dev)"
)


def _spread_env():
    from torchrl.envs.libs.pettingzoo import PettingZooWrapper

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchrl notes the PettingZoo version it tests
        return PettingZooWrapper(
            simple_spread_v3.parallel_env(N=3, max_cycles=10, continuous_actions=False),
            use_mask=True,
            return_state=True,
            seed=0,
        )


def test_pettingzoo_keys_are_resolved():
    keys = group_keys(_spread_env(), "agent")
    assert keys.n_agents == 3
    assert keys.done == ("agent", "done")  # per-agent flags exist ...
    assert keys.team_done == "done"  # ... and so does the team's
    assert keys.agent_mask == ("agent", "mask")
    assert keys.state == "state"


@pytest.mark.parametrize("critic_input", ["observations", "state", "agent_state"])
def test_pettingzoo_mpe_trains_through_the_pipeline(critic_input):
    cfg = tiny_config(model={"critic_input": critic_input})
    cfg.collector.frames_per_batch, cfg.collector.total_frames = 40, 80
    history = Trainer(cfg, env=_spread_env()).train(progress=False)
    last = history[-1]
    assert math.isfinite(last["train/loss_objective"])
    # Episodes of 10 steps end in every 40-frame batch; simple_spread rewards are negative.
    assert last["train/episode_return"] < 0
