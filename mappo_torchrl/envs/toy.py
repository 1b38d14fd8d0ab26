"""A tiny batched multi-agent env with action masks, early-finishing agents and a global state.

VMAS agents never leave an episode early and VMAS has no action masks or
global state, so this env exists to exercise (and teach) the parts of MAPPO
that need them: masked categorical policies, death masking and state-based
critics. It follows TorchRL's multi-agent layout exactly, so the pipeline
treats it like any other env.
"""

from __future__ import annotations

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Binary, Bounded, Categorical, Composite, Unbounded
from torchrl.envs import EnvBase


class TargetPickingEnv(EnvBase):
    """Each agent must pick its hidden target action; a correct pick ends its episode.

    Every agent sees a one-hot of its target among ``n_actions`` actions. At
    each step a random half of the wrong actions is unavailable
    (``("agents", "action_mask")``); the target is always available. A correct
    pick earns ``+1`` and makes the agent inactive (``("agents", "mask")`` is
    false) for the rest of the episode; every step an agent is still active
    costs ``step_penalty``. The team episode terminates when all agents are
    done and is truncated after ``max_steps``. The root ``"state"`` holds every agent's target and
    active flag.

    A random policy needs several tries per agent; a trained one picks right at
    once, so the per-agent return rises from below ``1 - step_penalty`` to ``1``.

    Args:
        num_envs: batch size.
        n_agents: agents in the single group ``"agents"``.
        n_actions: size of the discrete action space.
        max_steps: episode length limit.
        step_penalty: cost of each step an agent is still active.
        device: device of all tensors.
        seed: seed of the env's own generator.

    Example:
        >>> env = TargetPickingEnv(num_envs=2, n_agents=3)
        >>> data = env.rollout(4, break_when_any_done=False)  # 4 steps, whatever the actions
        >>> data["agents", "action_mask"].shape
        torch.Size([2, 4, 3, 5])
    """

    def __init__(
        self,
        *,
        num_envs: int = 16,
        n_agents: int = 3,
        n_actions: int = 5,
        max_steps: int = 8,
        step_penalty: float = 0.1,
        device: torch.device | str = "cpu",
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size=torch.Size([num_envs]), device=device)
        self.n_agents, self.n_actions = n_agents, n_actions
        self.max_steps, self.step_penalty = max_steps, step_penalty
        self.group_map = {"agents": [f"agent_{i}" for i in range(n_agents)]}
        self._generator = torch.Generator(device=self.device)
        self._generator.manual_seed(seed)
        b, n, k = num_envs, n_agents, n_actions
        self.observation_spec = Composite(
            agents=Composite(
                observation=Bounded(0.0, 1.0, shape=(b, n, k + 1), device=self.device),
                action_mask=Binary(n=k, shape=(b, n, k), dtype=torch.bool, device=self.device),
                mask=Categorical(2, shape=(b, n), dtype=torch.bool, device=self.device),
                shape=(b, n),
            ),
            state=Bounded(0.0, 1.0, shape=(b, n * (k + 1)), device=self.device),
            shape=(b,),
        )
        _set_team_specs(self, b, n, k)
        self.target = torch.zeros(b, n, dtype=torch.long, device=self.device)
        self.active = torch.ones(b, n, dtype=torch.bool, device=self.device)
        self.steps = torch.zeros(b, dtype=torch.long, device=self.device)
        self.action_mask = torch.ones(b, n, k, dtype=torch.bool, device=self.device)

    def _draw_action_mask(self) -> torch.Tensor:
        noise = torch.rand(
            *self.target.shape, self.n_actions, generator=self._generator, device=self.device
        )
        mask = noise < 0.5
        return mask.scatter(-1, self.target.unsqueeze(-1), True)

    def _observe(self, terminated: torch.Tensor, truncated: torch.Tensor) -> TensorDict:
        onehot = torch.nn.functional.one_hot(self.target, self.n_actions).float()
        observation = torch.cat([onehot, self.active.unsqueeze(-1).float()], dim=-1)
        return TensorDict(
            {
                "agents": TensorDict(
                    {
                        "observation": observation,
                        "action_mask": self.action_mask.clone(),
                        "mask": self.active.clone(),
                    },
                    batch_size=self.target.shape,
                ),
                "state": observation.flatten(-2, -1),
                "done": terminated | truncated,
                "terminated": terminated,
                "truncated": truncated,
            },
            batch_size=self.batch_size,
            device=self.device,
        )

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        reset = None if tensordict is None else tensordict.get("_reset", None)
        envs = (
            torch.ones(self.batch_size, dtype=torch.bool, device=self.device)
            if reset is None
            else reset.reshape(self.batch_size)
        )
        new_target = torch.randint(
            self.n_actions, self.target.shape, generator=self._generator, device=self.device
        )
        self.target = torch.where(envs.unsqueeze(-1), new_target, self.target)
        self.active = self.active | envs.unsqueeze(-1)
        self.steps = torch.where(envs, torch.zeros_like(self.steps), self.steps)
        self.action_mask = self._draw_action_mask()
        no = torch.zeros(*self.batch_size, 1, dtype=torch.bool, device=self.device)
        return self._observe(no, no.clone())

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        action = tensordict.get(("agents", "action"))
        correct = (action == self.target) & self.active
        reward = correct.float() - self.step_penalty * self.active.float()
        self.active = self.active & ~correct
        self.steps = self.steps + 1
        self.action_mask = self._draw_action_mask()
        terminated = ~self.active.any(-1, keepdim=True)
        truncated = (self.steps >= self.max_steps).unsqueeze(-1) & ~terminated
        out = self._observe(terminated, truncated)
        out.set(("agents", "reward"), reward.unsqueeze(-1))
        return out

    def _set_seed(self, seed: int | None) -> None:
        if seed is not None:
            self._generator.manual_seed(seed)


class CueMemoryEnv(EnvBase):
    """Each agent is shown a cue at the first step and must report it at the last one.

    An episode lasts ``delay + 1`` steps. At step 0 every agent observes a
    one-hot cue among ``n_cues``; afterwards its observation is blank except
    for a flag at the last step asking for the answer. The action taken there
    earns ``+1`` if it names the cue; every other action earns nothing. A
    feed-forward policy sees nothing of the cue when it answers, so it cannot
    beat chance (``1 / n_cues``); a recurrent one can remember it and reach 1.

    The observation, per agent: ``n_cues`` cue entries (zero after step 0)
    then the answer flag. Actions are categorical, ``n_cues`` of them. The
    team episode terminates after the answer.

    Args:
        num_envs: batch size.
        n_agents: agents in the single group ``"agents"``, each with its own cue.
        n_cues: number of possible cues (and actions).
        delay: blank steps between the cue and the answer.
        device: device of all tensors.
        seed: seed of the env's own generator.

    Example:
        >>> env = CueMemoryEnv(num_envs=2, n_agents=2, n_cues=3, delay=2)
        >>> env.reset()["agents", "observation"][0]  # each agent's cue, then the answer flag
        tensor([[0., 0., 1., 0.],
                [1., 0., 0., 0.]])
    """

    def __init__(
        self,
        *,
        num_envs: int = 16,
        n_agents: int = 2,
        n_cues: int = 4,
        delay: int = 3,
        device: torch.device | str = "cpu",
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size=torch.Size([num_envs]), device=device)
        self.n_agents, self.n_cues, self.delay = n_agents, n_cues, delay
        self.group_map = {"agents": [f"agent_{i}" for i in range(n_agents)]}
        self._generator = torch.Generator(device=self.device)
        self._generator.manual_seed(seed)
        b, n, k = num_envs, n_agents, n_cues
        self.observation_spec = Composite(
            agents=Composite(
                observation=Bounded(0.0, 1.0, shape=(b, n, k + 1), device=self.device),
                shape=(b, n),
            ),
            shape=(b,),
        )
        _set_team_specs(self, b, n, k)
        self.cue = torch.zeros(b, n, dtype=torch.long, device=self.device)
        self.steps = torch.zeros(b, dtype=torch.long, device=self.device)

    def _observe(self, terminated: torch.Tensor) -> TensorDict:
        show = (self.steps == 0).reshape(-1, 1, 1).float()
        cue = torch.nn.functional.one_hot(self.cue, self.n_cues).float() * show
        ask = (self.steps == self.delay).reshape(-1, 1, 1).float().expand(*self.cue.shape, 1)
        return TensorDict(
            {
                "agents": TensorDict(
                    {"observation": torch.cat([cue, ask], dim=-1)}, batch_size=self.cue.shape
                ),
                "done": terminated.clone(),
                "terminated": terminated,
                "truncated": torch.zeros_like(terminated),
            },
            batch_size=self.batch_size,
            device=self.device,
        )

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        reset = None if tensordict is None else tensordict.get("_reset", None)
        envs = (
            torch.ones(self.batch_size, dtype=torch.bool, device=self.device)
            if reset is None
            else reset.reshape(self.batch_size)
        )
        new_cue = torch.randint(
            self.n_cues, self.cue.shape, generator=self._generator, device=self.device
        )
        self.cue = torch.where(envs.unsqueeze(-1), new_cue, self.cue)
        self.steps = torch.where(envs, torch.zeros_like(self.steps), self.steps)
        return self._observe(torch.zeros(*self.batch_size, 1, dtype=torch.bool, device=self.device))

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        action = tensordict.get(("agents", "action"))
        answering = (self.steps == self.delay).unsqueeze(-1)
        reward = ((action == self.cue) & answering).float()
        self.steps = self.steps + 1
        terminated = (self.steps > self.delay).unsqueeze(-1)
        out = self._observe(terminated)
        out.set(("agents", "reward"), reward.unsqueeze(-1))
        return out

    def _set_seed(self, seed: int | None) -> None:
        if seed is not None:
            self._generator.manual_seed(seed)


def _set_team_specs(env: EnvBase, b: int, n: int, k: int) -> None:
    """Action, reward and done specs of a toy env: ``b`` envs of ``n`` agents in one
    ``"agents"`` group, each picking one of ``k`` actions; team done flags at the root."""
    env.action_spec = Composite(
        agents=Composite(action=Categorical(k, shape=(b, n), device=env.device), shape=(b, n)),
        shape=(b,),
    )
    env.reward_spec = Composite(
        agents=Composite(reward=Unbounded(shape=(b, n, 1), device=env.device), shape=(b, n)),
        shape=(b,),
    )
    flag = {"n": 2, "shape": (b, 1), "dtype": torch.bool, "device": env.device}
    env.done_spec = Composite(
        done=Categorical(**flag),
        terminated=Categorical(**flag),
        truncated=Categorical(**flag),
        shape=(b,),
    )
