"""A plain TorchRL MAPPO pipeline in the style of TorchRL's multi-agent PPO tutorial.

This is the baseline the benchmarks compare mappo_torchrl against. It is
written the way the tutorial writes it (``ClipPPOLoss`` + ``GAE``, done flags
expanded to the agents by hand, ``replay_buffer.sample()`` per minibatch),
with the tutorial's hyper-parameters as defaults, and none of this project's
code. It is not used by the library.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from tensordict.nn import NormalParamExtractor, TensorDictModule
from torchrl.collectors import Collector
from torchrl.data import LazyTensorStorage, ReplayBuffer, SamplerWithoutReplacement
from torchrl.envs import RewardSum, TransformedEnv
from torchrl.envs.libs.vmas import VmasEnv
from torchrl.modules import MultiAgentMLP, ProbabilisticActor, TanhNormal
from torchrl.objectives import ClipPPOLoss, ValueEstimators


@dataclass
class TutorialSettings:
    """The tutorial's hyper-parameters (VMAS navigation, 3 agents)."""

    num_envs: int = 60
    frames_per_batch: int = 6_000
    total_frames: int = 60_000
    num_epochs: int = 4
    minibatch_size: int = 400
    lr: float = 3e-4
    max_grad_norm: float = 1.0
    clip_epsilon: float = 0.2
    gamma: float = 0.9
    lmbda: float = 0.9
    entropy_coeff: float = 1e-4
    max_steps: int = 100
    n_agents: int = 3
    seed: int = 0
    device: str = "cpu"


def run_tutorial_pipeline(s: TutorialSettings) -> list[dict[str, float]]:
    """Train with the tutorial pipeline; one dict of numbers per iteration."""
    torch.manual_seed(s.seed)
    env = VmasEnv(
        scenario="navigation",
        num_envs=s.num_envs,
        continuous_actions=True,
        max_steps=s.max_steps,
        device=s.device,
        seed=s.seed,
        n_agents=s.n_agents,
    )
    env = TransformedEnv(
        env, RewardSum(in_keys=[env.reward_key], out_keys=[("agents", "episode_reward")])
    )
    action_spec = env.full_action_spec_unbatched[env.action_key]
    obs_dim = env.observation_spec["agents", "observation"].shape[-1]
    policy_net = torch.nn.Sequential(
        MultiAgentMLP(
            n_agent_inputs=obs_dim,
            n_agent_outputs=2 * action_spec.shape[-1],
            n_agents=s.n_agents,
            centralized=False,
            share_params=True,
            device=s.device,
            depth=2,
            num_cells=256,
            activation_class=torch.nn.Tanh,
        ),
        NormalParamExtractor(),
    )
    policy = ProbabilisticActor(
        TensorDictModule(
            policy_net,
            in_keys=[("agents", "observation")],
            out_keys=[("agents", "loc"), ("agents", "scale")],
        ),
        spec=env.full_action_spec_unbatched,
        in_keys=[("agents", "loc"), ("agents", "scale")],
        out_keys=[env.action_key],
        distribution_class=TanhNormal,
        distribution_kwargs={"low": action_spec.space.low, "high": action_spec.space.high},
        return_log_prob=True,
    )
    critic = TensorDictModule(
        MultiAgentMLP(
            n_agent_inputs=obs_dim,
            n_agent_outputs=1,
            n_agents=s.n_agents,
            centralized=True,
            share_params=True,
            device=s.device,
            depth=2,
            num_cells=256,
            activation_class=torch.nn.Tanh,
        ),
        in_keys=[("agents", "observation")],
        out_keys=[("agents", "state_value")],
    )
    collector = Collector(
        env,
        policy,
        device=s.device,
        storing_device=s.device,
        frames_per_batch=s.frames_per_batch,
        total_frames=s.total_frames,
        auto_register_policy_transforms=False,
    )
    replay_buffer = ReplayBuffer(
        storage=LazyTensorStorage(s.frames_per_batch, device=s.device),
        sampler=SamplerWithoutReplacement(),
        batch_size=s.minibatch_size,
    )
    loss_module = ClipPPOLoss(
        actor_network=policy,
        critic_network=critic,
        clip_epsilon=s.clip_epsilon,
        entropy_coeff=s.entropy_coeff,
        normalize_advantage=False,
    )
    loss_module.set_keys(
        reward=env.reward_key,
        action=env.action_key,
        value=("agents", "state_value"),
        done=("agents", "done"),
        terminated=("agents", "terminated"),
    )
    loss_module.make_value_estimator(ValueEstimators.GAE, gamma=s.gamma, lmbda=s.lmbda)
    gae = loss_module.value_estimator
    optim = torch.optim.Adam(loss_module.parameters(), s.lr)

    history = []
    frames = 0
    start = time.perf_counter()
    for tensordict_data in collector:
        collect_s = time.perf_counter() - start
        update_start = time.perf_counter()
        for key in ("done", "terminated"):
            tensordict_data.set(
                ("next", "agents", key),
                tensordict_data.get(("next", key))
                .unsqueeze(-1)
                .expand(tensordict_data.get_item_shape(("next", env.reward_key))),
            )
        with torch.no_grad():
            gae(
                tensordict_data,
                params=loss_module.critic_network_params,
                target_params=loss_module.target_critic_network_params,
            )
        replay_buffer.extend(tensordict_data.reshape(-1))
        for _ in range(s.num_epochs):
            for _ in range(s.frames_per_batch // s.minibatch_size):
                subdata = replay_buffer.sample()
                loss_vals = loss_module(subdata)
                loss_value = (
                    loss_vals["loss_objective"]
                    + loss_vals["loss_critic"]
                    + loss_vals["loss_entropy"]
                )
                loss_value.backward()
                torch.nn.utils.clip_grad_norm_(loss_module.parameters(), s.max_grad_norm)
                optim.step()
                optim.zero_grad()
        collector.update_policy_weights_()
        update_s = time.perf_counter() - update_start
        frames += tensordict_data.numel()
        done = tensordict_data.get(("next", "agents", "done"))
        episode_return = tensordict_data.get(("next", "agents", "episode_reward"))[done].mean()
        history.append(
            {
                "frames": tensordict_data.numel(),
                "total_frames": frames,
                "episode_return": float(episode_return),
                "collect_s": collect_s,
                "update_s": update_s,
            }
        )
        start = time.perf_counter()
    collector.shutdown()
    return history


if __name__ == "__main__":
    torch.set_num_threads(1)
    for row in run_tutorial_pipeline(TutorialSettings()):
        print(row)
