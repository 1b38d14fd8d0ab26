"""One small dataclass per concern, composed into :class:`RunConfig`.

Every field carries a docstring right below it; :func:`field_docs` reads those
docstrings so that ``mappo train --help`` and the Sphinx reference show the
same text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, get_args


class ConfigError(ValueError):
    """A config value is not allowed (a :class:`ValueError`).

    The message is one line that names the option, the bad value and what is
    allowed, e.g. ``collector.frames_per_batch=6001: must be a multiple of
    env.num_envs (60)``.
    """

    def __init__(self, option: str, value: Any, allowed: str) -> None:
        self.option = option
        self.value = value
        self.allowed = allowed
        super().__init__(f"{option}={value!r}: {allowed}")


#: Seeds: what numpy, torch and VMAS all accept.
MAX_SEED = 2**32 - 1
#: Vectorised envs simulated in one batch (training or evaluation episodes).
MAX_NUM_ENVS = 2**20
#: Frames held in memory at once: a collected batch, or the steps of one evaluation.
MAX_FRAMES_IN_MEMORY = 2**26
#: Width and depth of a network.
MAX_CELLS, MAX_DEPTH = 2**16, 64


def check_seed(option: str, value: Any) -> None:
    """Raise :class:`ConfigError` unless ``value`` is an integer seed in ``[0, MAX_SEED]``."""
    _check(
        isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_SEED,
        option,
        value,
        f"must be an integer in [0, {MAX_SEED}]",
    )


def _check(ok: bool, option: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(option, value, allowed)


def _choice(option: str, value: Any, choices: tuple[str, ...]) -> None:
    _check(value in choices, option, value, "must be one of " + ", ".join(choices))


# Each choice is declared once, here: as a Literal (the field's type, which
# ``--help`` shows) whose values are the tuple that validation and the factories
# check against.
GroupMapName = Literal["by_name", "all_in_one_group", "one_group_per_agent"]
GROUP_MAPS: tuple[str, ...] = get_args(GroupMapName)
OverlapMode = Literal["off", "on", "auto"]
OVERLAP_MODES: tuple[str, ...] = get_args(OverlapMode)
#: Collection worker processes.
MAX_WORKERS = 256


@dataclass
class EnvConfig:
    """Which environment to train on."""

    scenario: str = "navigation"
    """VMAS scenario name, e.g. navigation, balance, sampling (``mappo scenarios`` lists all)."""
    num_envs: int = 60
    """Number of vectorised environments simulated in one batch."""
    max_steps: int = 100
    """Episode length limit."""
    truncate_at_max_steps: bool = True
    """Mark the episode-length limit as truncation, which GAE bootstraps (VMAS itself marks it
    as termination, which it does not)."""
    continuous_actions: bool = True
    """Continuous (TanhNormal) actions if true, discrete (categorical) actions if false."""
    scenario_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments for the scenario, e.g. ``{"n_agents": 4}``."""
    group_map: GroupMapName = "by_name"
    """How agents form groups (one actor, critic and loss each): by_name (VMAS groups agents
    by name prefix), all_in_one_group or one_group_per_agent."""
    goal_visible_steps: int = 0
    """Navigation only: a partially observable variant where each agent sees its goal only in
    the first this many steps of an episode (0: always; see mappo_torchrl.envs.partial)."""

    def validate(self) -> None:
        """Raise :class:`ConfigError` on the first value that is not allowed."""
        _check(
            isinstance(self.scenario, str) and bool(self.scenario),
            "env.scenario",
            self.scenario,
            "must be a scenario name",
        )
        _check(
            0 < self.num_envs <= MAX_NUM_ENVS,
            "env.num_envs",
            self.num_envs,
            f"must be a positive integer, at most {MAX_NUM_ENVS}",
        )
        _check(self.max_steps > 0, "env.max_steps", self.max_steps, "must be a positive integer")
        _check(
            isinstance(self.scenario_kwargs, dict),
            "env.scenario_kwargs",
            self.scenario_kwargs,
            "must be a mapping of keyword arguments",
        )
        for name in ENV_OPTIONS:
            _check(
                name not in self.scenario_kwargs,
                "env.scenario_kwargs",
                self.scenario_kwargs,
                f"must not set {name!r} (an option of its own: --env.{name} or --{name})",
            )
        _choice("env.group_map", self.group_map, GROUP_MAPS)
        _check(
            self.goal_visible_steps >= 0,
            "env.goal_visible_steps",
            self.goal_visible_steps,
            "must be 0 (always visible) or a positive integer",
        )
        _check(
            self.goal_visible_steps == 0 or self.scenario == "navigation",
            "env.goal_visible_steps",
            self.goal_visible_steps,
            f"only the navigation scenario can hide its goal (env.scenario={self.scenario!r})",
        )


#: Env options that have their own config field (or are set by the trainer), so a
#: scenario keyword argument of the same name would clash.
ENV_OPTIONS = (
    "num_envs",
    "max_steps",
    "continuous_actions",
    "device",
    "seed",
    "group_map",
    "scenario",
    "categorical_actions",
)

ActivationName = Literal["tanh", "relu"]
ACTIVATIONS: tuple[str, ...] = get_args(ActivationName)
CriticInputName = Literal["observations", "state", "agent_state"]
CRITIC_INPUTS: tuple[str, ...] = get_args(CriticInputName)
ActionDistName = Literal["tanh_normal", "normal"]
ACTION_DISTS: tuple[str, ...] = get_args(ActionDistName)
RecurrentName = Literal["none", "gru", "lstm"]
RECURRENT: tuple[str, ...] = get_args(RecurrentName)


@dataclass
class ModelConfig:
    """Actor and critic networks."""

    actor_cells: int = 256
    """Width of each hidden layer of the actor."""
    actor_depth: int = 2
    """Number of hidden layers of the actor."""
    critic_cells: int = 256
    """Width of each hidden layer of the critic."""
    critic_depth: int = 2
    """Number of hidden layers of the critic."""
    activation: ActivationName = "tanh"
    """Hidden activation: tanh or relu."""
    share_params: bool = True
    """One set of actor and critic parameters for all agents of a group (false: one per agent)."""
    centralized_critic: bool = True
    """MAPPO critic over all agents' inputs if true; IPPO critic over the agent's own input
    if false."""
    critic_input: CriticInputName = "observations"
    """Centralised critic input: observations (all agents' observations), state (the env's
    global ``state`` entry) or agent_state (the global state plus the agent's one-hot id)."""
    critic_agent_id: bool = False
    """Append the agent's one-hot id to a centralised critic's observations input, so that a
    critic shared by all agents can give each agent its own value (agent_state always has it)."""
    action_dist: ActionDistName = "tanh_normal"
    """Continuous-action distribution: tanh_normal (a Normal squashed into the action bounds,
    state-dependent scale) or normal (the original code's DiagGaussian: an unbounded Normal
    with a learned state-independent log-std and a closed-form entropy; the env clamps actions
    to its bounds)."""
    feature_norm: bool = False
    """LayerNorm on the network inputs (the original code's use_feature_normalization)."""
    death_masking: bool = True
    """In envs whose agents can become inactive (a ``(group, "mask")`` entry), an inactive
    agent's critic sees zeros plus its one-hot id."""
    orthogonal_init: bool = False
    """Orthogonal weight init with gains (hidden: activation gain, policy head 0.01,
    value head 1)."""
    recurrent: RecurrentName = "none"
    """Recurrent networks (rMAPPO): none (feed-forward), gru or lstm. The recurrent layer sits
    between the hidden layers and the output head, keeps one state per agent and is trained on
    chunks of optim.chunk_length steps."""
    rnn_hidden: int = 64
    """Hidden size of the recurrent layer."""
    rnn_layers: int = 1
    """Number of stacked recurrent layers."""
    recurrent_critic: bool = True
    """With a recurrent model, make the critic recurrent too (false: only the actor is)."""

    def validate(self) -> None:
        """Raise :class:`ConfigError` on the first value that is not allowed."""
        for name in (
            "actor_cells",
            "actor_depth",
            "critic_cells",
            "critic_depth",
            "rnn_hidden",
            "rnn_layers",
        ):
            value = getattr(self, name)
            most = MAX_DEPTH if name.endswith("depth") else MAX_CELLS
            _check(
                0 < value <= most,
                f"model.{name}",
                value,
                f"must be a positive integer, at most {most}",
            )
        _choice("model.activation", self.activation, ACTIVATIONS)
        _choice("model.critic_input", self.critic_input, CRITIC_INPUTS)
        _choice("model.action_dist", self.action_dist, ACTION_DISTS)
        _choice("model.recurrent", self.recurrent, RECURRENT)

    @property
    def is_recurrent(self) -> bool:
        """Whether the actor (and possibly the critic) is recurrent."""
        return self.recurrent != "none"


CriticLossName = Literal["smooth_l1", "huber", "l2", "l1"]
CRITIC_LOSSES: tuple[str, ...] = get_args(CriticLossName)
ValueNormName = Literal["none", "popart", "running"]
VALUE_NORMS: tuple[str, ...] = get_args(ValueNormName)
AdvantageNormName = Literal["joint", "per_agent", "none"]
ADVANTAGE_NORMS: tuple[str, ...] = get_args(AdvantageNormName)


StaleCorrectionName = Literal["decoupled", "none"]
STALE_CORRECTIONS: tuple[str, ...] = get_args(StaleCorrectionName)


@dataclass
class LossConfig:
    """PPO objective and advantage estimation."""

    gamma: float = 0.9
    """Discount factor."""
    lmbda: float = 0.9
    """GAE lambda."""
    clip_epsilon: float = 0.2
    """PPO ratio clip."""
    entropy_coeff: float = 1e-4
    """Weight of the entropy bonus (0 turns the entropy term off)."""
    entropy_samples: int = 1
    """Samples of the Monte-Carlo entropy estimate, for distributions without a closed-form
    entropy (tanh_normal)."""
    critic_coeff: float = 1.0
    """Weight of the critic loss."""
    critic_loss: CriticLossName = "smooth_l1"
    """Critic distance: smooth_l1 (Huber with delta 1), huber (delta below), l2 or l1."""
    huber_delta: float = 10.0
    """Delta of the huber critic loss (the MAPPO paper uses 10)."""
    clip_value: bool = False
    """PPO-style clipped value loss: the critic output may move at most clip_epsilon from the
    one stored at collection (in normalised units under value_norm), as the original code."""
    advantage_norm: AdvantageNormName = "per_agent"
    """Standardise advantages over each batch: joint (one mean and std over all agents, the
    original code's), per_agent (one mean and std per agent) or none."""
    value_norm: ValueNormName = "none"
    """Value normalisation: none, popart (the original code's ValueNorm: EMA with decay
    value_norm_beta, variance floored at 0.01) or running (exact)."""
    value_norm_beta: float = 0.99999
    """Decay of the popart value normaliser."""
    stale_correction: StaleCorrectionName = "decoupled"
    """How the update treats a batch collected by weights one update old (collector.overlap):
    decoupled clips the ratio around the weights the update starts from, whose
    log-probabilities are computed once per batch, and weights the objective by their
    ratio to the collecting weights (Hilton et al. 2021); none clips around the collecting
    weights, as on-policy PPO does. Without overlap the data are never stale and the loss is
    on-policy PPO's either way."""

    def validate(self) -> None:
        """Raise :class:`ConfigError` on the first value that is not allowed."""
        _check(0.0 <= self.gamma <= 1.0, "loss.gamma", self.gamma, "must be in [0, 1]")
        _check(0.0 <= self.lmbda <= 1.0, "loss.lmbda", self.lmbda, "must be in [0, 1]")
        _check(self.clip_epsilon > 0, "loss.clip_epsilon", self.clip_epsilon, "must be > 0")
        _check(self.entropy_coeff >= 0, "loss.entropy_coeff", self.entropy_coeff, "must be >= 0")
        _check(self.critic_coeff > 0, "loss.critic_coeff", self.critic_coeff, "must be > 0")
        _check(
            self.entropy_samples > 0,
            "loss.entropy_samples",
            self.entropy_samples,
            "must be a positive integer",
        )
        _choice("loss.advantage_norm", self.advantage_norm, ADVANTAGE_NORMS)
        _choice("loss.critic_loss", self.critic_loss, CRITIC_LOSSES)
        _check(self.huber_delta > 0, "loss.huber_delta", self.huber_delta, "must be > 0")
        _choice("loss.value_norm", self.value_norm, VALUE_NORMS)
        _check(
            0.0 < self.value_norm_beta < 1.0,
            "loss.value_norm_beta",
            self.value_norm_beta,
            "must be in (0, 1)",
        )
        _choice("loss.stale_correction", self.stale_correction, STALE_CORRECTIONS)


@dataclass
class CollectorConfig:
    """How much experience to gather."""

    frames_per_batch: int = 6_000
    """Environment steps (summed over the vectorised envs) collected per iteration."""
    total_frames: int = 300_000
    """Environment steps for the whole run."""
    overlap: OverlapMode = "auto"
    """Collect the next batch in a worker process while the update learns from the last one:
    on, off, or auto (on for a CPU run with collector.workers=1, the config's VMAS env and a
    program whose training sits under if __name__ == "__main__", as the mappo command's does;
    off otherwise). Each batch is collected by the weights one update behind (one iteration of
    policy lag; PPO's ratio uses the stored log-probs). With a VMAS env a resumed run is bit for
    bit the run that never stopped (see docs/never-lost.md)."""
    workers: int = 1
    """Processes stepping copies of the env (TorchRL's MultiSyncCollector), for envs that are not
    vectorised (PettingZoo, your own); each holds env.num_envs / workers of the VMAS envs. 1
    steps the env in the training process."""
    stall_timeout_s: float = 60.0
    """With collector.overlap, the least time in seconds to wait for the collecting worker
    (a batch, or taking new weights) before the run fails as stalled: the worker is ended and
    the last iteration is checkpointed. The limit is 10 times the slowest wait so far when that
    is longer; the first batch may take this long."""

    def overlap_enabled(self, device: str) -> bool:
        """Whether ``overlap`` means on, for a run on ``device``."""
        auto = self.overlap == "auto" and device == "cpu" and self.workers == 1
        return self.overlap == "on" or auto

    def uses_workers(self) -> bool:
        """Whether collection runs in worker processes (overlap on, or several workers)."""
        return self.overlap == "on" or self.workers > 1

    def validate(self, num_envs: int) -> None:
        """Raise :class:`ConfigError` on the first value not allowed with ``num_envs`` envs."""
        _choice("collector.overlap", self.overlap, OVERLAP_MODES)
        _check(
            self.stall_timeout_s > 0,
            "collector.stall_timeout_s",
            self.stall_timeout_s,
            "must be > 0",
        )
        _check(
            isinstance(self.workers, int) and 1 <= self.workers <= MAX_WORKERS,
            "collector.workers",
            self.workers,
            f"must be an integer in [1, {MAX_WORKERS}]",
        )
        _check(
            self.workers == 1 or self.overlap != "on",
            "collector.workers",
            self.workers,
            "must be 1 with collector.overlap=on (one worker collects while the update runs)",
        )

    def validate_workers(self, num_envs: int, *, env_from_config: bool) -> None:
        """Raise :class:`ConfigError` unless ``workers`` can share the envs evenly.

        The config's VMAS envs are split between the workers; a given env is
        copied whole into each worker.
        """
        if env_from_config:
            _check(
                num_envs % self.workers == 0,
                "collector.workers",
                self.workers,
                f"must divide env.num_envs ({num_envs}): each worker steps an equal share",
            )
        else:
            _check(
                self.frames_per_batch % (num_envs * self.workers) == 0,
                "collector.workers",
                self.workers,
                f"times the env's batch size ({num_envs}) must divide "
                f"collector.frames_per_batch ({self.frames_per_batch}): each worker steps a copy",
            )
        _check(
            0 < self.frames_per_batch <= MAX_FRAMES_IN_MEMORY,
            "collector.frames_per_batch",
            self.frames_per_batch,
            f"must be a positive integer, at most {MAX_FRAMES_IN_MEMORY} (a batch is held "
            "in memory)",
        )
        _check(
            self.frames_per_batch % num_envs == 0,
            "collector.frames_per_batch",
            self.frames_per_batch,
            f"must be a multiple of env.num_envs ({num_envs})",
        )
        _check(
            self.total_frames > 0,
            "collector.total_frames",
            self.total_frames,
            "must be a positive integer",
        )
        _check(
            self.total_frames >= self.frames_per_batch,
            "collector.total_frames",
            self.total_frames,
            f"must be at least collector.frames_per_batch ({self.frames_per_batch})",
        )


DivergenceMode = Literal["stop", "warn", "off"]
DIVERGENCE_MODES: tuple[str, ...] = get_args(DivergenceMode)


@dataclass
class OptimConfig:
    """Epochs, minibatches and the optimisers."""

    num_epochs: int = 4
    """PPO epochs over each batch."""
    minibatch_size: int = 400
    """Samples (time steps, each with all agents) per gradient step."""
    num_minibatches: int = 0
    """If positive, split each batch into this many minibatches instead (overrides
    minibatch_size, like the original code's num_mini_batch)."""
    actor_lr: float = 5e-4
    """Adam learning rate of the actor."""
    critic_lr: float = 5e-4
    """Adam learning rate of the critic."""
    adam_eps: float = 1e-5
    """Adam epsilon."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip, applied to the actor and to the critic separately."""
    lr_decay: bool = False
    """Decay both learning rates linearly to zero over the run."""
    divergence: DivergenceMode = "warn"
    """What a finite divergence signal does (a gradient norm that is infinite or NaN, an
    explained variance that is NaN): stop the run, warn once per signal, or off.
    Non-finite losses or weights always stop the run, before the iteration is
    checkpointed."""
    chunk_length: int = 10
    """Recurrent models only: length of the sequences (per env, all agents together) that
    backpropagation through time runs over; each starts from the hidden state stored at
    collection. A minibatch holds minibatch_size // chunk_length chunks."""

    def validate(self, frames_per_batch: int) -> None:
        """Raise :class:`ConfigError` on the first value not allowed with that batch size."""
        _check(
            self.num_epochs > 0, "optim.num_epochs", self.num_epochs, "must be a positive integer"
        )
        _check(
            self.num_minibatches >= 0,
            "optim.num_minibatches",
            self.num_minibatches,
            "must be 0 (use optim.minibatch_size) or a positive integer",
        )
        _check(
            self.num_minibatches <= frames_per_batch,
            "optim.num_minibatches",
            self.num_minibatches,
            f"must be at most collector.frames_per_batch ({frames_per_batch})",
        )
        if self.num_minibatches == 0:
            _check(
                self.minibatch_size > 0,
                "optim.minibatch_size",
                self.minibatch_size,
                "must be a positive integer",
            )
            _check(
                self.minibatch_size <= frames_per_batch,
                "optim.minibatch_size",
                self.minibatch_size,
                f"must be at most collector.frames_per_batch ({frames_per_batch})",
            )
        for name in ("actor_lr", "critic_lr", "adam_eps", "max_grad_norm"):
            value = getattr(self, name)
            _check(value > 0, f"optim.{name}", value, "must be > 0")
        _choice("optim.divergence", self.divergence, DIVERGENCE_MODES)

    def resolved_minibatch_size(self, frames_per_batch: int) -> int:
        """Samples per minibatch: from num_minibatches when set, else minibatch_size."""
        if self.num_minibatches > 0:
            return frames_per_batch // self.num_minibatches
        return self.minibatch_size

    def chunks_per_minibatch(self, frames_per_batch: int) -> int:
        """Recurrent models: whole chunks per minibatch (num_minibatches or minibatch_size)."""
        chunks = frames_per_batch // self.chunk_length
        if self.num_minibatches > 0:
            return chunks // self.num_minibatches
        return self.minibatch_size // self.chunk_length

    def validate_chunks(self, frames_per_batch: int, num_envs: int) -> None:
        """Raise :class:`ConfigError` if a recurrent model cannot cut the batch into chunks."""
        steps = frames_per_batch // num_envs
        _check(
            self.chunk_length > 0,
            "optim.chunk_length",
            self.chunk_length,
            "must be a positive integer",
        )
        _check(
            steps % self.chunk_length == 0,
            "optim.chunk_length",
            self.chunk_length,
            f"must divide the steps each env collects per batch ({steps} = "
            "collector.frames_per_batch / env.num_envs)",
        )
        if self.num_minibatches > 0:
            chunks = frames_per_batch // self.chunk_length
            _check(
                self.num_minibatches <= chunks,
                "optim.num_minibatches",
                self.num_minibatches,
                f"must be at most the number of chunks per batch ({chunks}) with a recurrent model",
            )
        else:
            _check(
                self.minibatch_size >= self.chunk_length,
                "optim.minibatch_size",
                self.minibatch_size,
                f"must be at least optim.chunk_length ({self.chunk_length}) with a recurrent "
                "model (a minibatch holds whole chunks)",
            )


PrecisionName = Literal["auto", "float32", "bfloat16"]
PRECISIONS: tuple[str, ...] = get_args(PrecisionName)


@dataclass
class PerfConfig:
    """Speed switches. Each one leaves the algorithm unchanged (tests compare it with the
    plain eager path; ``precision`` within bfloat16's rounding)."""

    precision: PrecisionName = "auto"
    """Number format of the networks' hidden layers. bfloat16 runs their matrix products and
    activations under torch.autocast in bfloat16 (weights, input LayerNorm, output layer,
    distributions, losses and Adam stay float32); auto is bfloat16 on a CPU with bfloat16
    instructions (avx512_bf16 or AMX) and float32 elsewhere (GPUs included)."""

    fused_adam: bool = True
    """Adam's fused kernel (one kernel for all parameters instead of one per tensor)."""
    shifted_gae: bool = False
    """One critic pass over T+1 steps for GAE instead of two passes over T (torchrl's
    shifted=True); exact (in float32; with bfloat16 hidden layers, to bfloat16's rounding),
    with room for one time-limit reset per max_steps in each row."""
    compile_update: bool = False
    """torch.compile the update step (loss, backward, clipping, optimiser step)."""
    cudagraph_update: bool = False
    """Capture the update step as a CUDA graph (tensordict's CudaGraphModule; CUDA only)."""
    compile_policy: bool = False
    """torch.compile the policy inside the collector."""
    cudagraph_policy: bool = False
    """Capture the collector's policy as a CUDA graph (CUDA only)."""

    def validate(self, device: str, lr_decay: bool, recurrent: bool = False) -> None:
        """Raise :class:`ConfigError` on a switch that ``device``, ``lr_decay`` or a recurrent
        model rules out."""
        _choice("perf.precision", self.precision, PRECISIONS)
        if recurrent:
            for name, why in RECURRENT_REFUSED.items():
                value = getattr(self, name)
                _check(
                    not value,
                    f"perf.{name}",
                    value,
                    f"cannot be used with a recurrent model ({why})",
                )
        on_cuda = device.startswith("cuda")
        for name in ("cudagraph_update", "cudagraph_policy"):
            value = getattr(self, name)
            _check(not value or on_cuda, f"perf.{name}", value, "needs device=cuda")
        _check(
            not (self.cudagraph_update and lr_decay),
            "perf.cudagraph_update",
            self.cudagraph_update,
            "cannot be combined with optim.lr_decay (a captured graph keeps its learning rate)",
        )


#: Speed switches a recurrent model refuses, and why.
RECURRENT_REFUSED = {
    "shifted_gae": "its critic values come from the hidden states stored at collection",
    "compile_update": "chunks with episode resets have data-dependent shapes",
    "cudagraph_update": "chunks with episode resets have data-dependent shapes",
    "compile_policy": "the recurrent step checks for episode starts on the host",
    "cudagraph_policy": "the recurrent step checks for episode starts on the host",
}

LOGGERS = ("csv", "tensorboard", "wandb", "mlflow")


@dataclass
class EvalConfig:
    """Periodic evaluation of the policy on a separate env."""

    interval: int = 10
    """Evaluate every this many iterations, and after the last one (0: only after the last)."""
    episodes: int = 20
    """Episodes per evaluation, run side by side in as many vectorised envs."""
    seed: int = 1000
    """Seed of the evaluation env, separate from the run's: every evaluation plays the same
    episodes, so curves differ only by the policy."""
    deterministic: bool = True
    """Act with the policy's mode (true) or sample actions (false)."""
    video_interval: int = 0
    """Render one evaluation episode to RUN_DIR/videos every this many evaluations (0: never;
    needs the video extra and a display, e.g. xvfb-run)."""

    def validate(self) -> None:
        """Raise :class:`ConfigError` on the first value that is not allowed."""
        _check(
            self.interval >= 0, "eval.interval", self.interval, "must be 0 or a positive integer"
        )
        _check(
            0 < self.episodes <= MAX_NUM_ENVS,
            "eval.episodes",
            self.episodes,
            f"must be a positive integer, at most {MAX_NUM_ENVS} (one env per episode)",
        )
        check_seed("eval.seed", self.seed)
        _check(
            self.video_interval >= 0,
            "eval.video_interval",
            self.video_interval,
            "must be 0 or a positive integer",
        )


@dataclass
class CheckpointConfig:
    """Checkpoints that resume a run exactly."""

    interval: int = 10
    """Save every this many iterations, and after the last one (0: only after the last and on
    Ctrl-C)."""
    keep: int = 3
    """How many of the newest checkpoints to keep."""

    def validate(self) -> None:
        """Raise :class:`ConfigError` on the first value that is not allowed."""
        _check(
            self.interval >= 0,
            "checkpoint.interval",
            self.interval,
            "must be 0 or a positive integer",
        )
        _check(self.keep > 0, "checkpoint.keep", self.keep, "must be a positive integer")


@dataclass
class LoggerConfig:
    """Where metrics go, besides RUN_DIR/metrics.csv."""

    backend: str = "csv"
    """csv (metrics.csv only), tensorboard, wandb or mlflow, or several joined by commas
    (tensorboard,wandb). W&B is online when you are logged in or WANDB_MODE says so, offline
    otherwise; MLflow writes a file store in the run directory."""
    project: str = "mappo"
    """W&B project and MLflow experiment name (each run is named after its run directory)."""

    def backends(self) -> tuple[str, ...]:
        """The chosen backends, in order, without ``csv`` (metrics.csv is always written).

        Example:
            >>> from mappo_torchrl.config import LoggerConfig
            >>> LoggerConfig(backend="tensorboard,wandb").backends()
            ('tensorboard', 'wandb')
        """
        names = [name.strip() for name in self.backend.split(",")]
        return tuple(dict.fromkeys(name for name in names if name != "csv"))

    def validate(self) -> None:
        """Raise :class:`ConfigError` on the first value that is not allowed."""
        for name in self.backend.split(","):
            _check(
                name.strip() in LOGGERS,
                "logger.backend",
                self.backend,
                "must be one of " + ", ".join(LOGGERS) + ", or several joined by commas",
            )
        _check(bool(self.project.strip()), "logger.project", self.project, "must not be empty")


@dataclass
class RunConfig:
    """Everything one training run needs, one section per concern.

    Example:
        >>> from mappo_torchrl.config import RunConfig
        >>> config = RunConfig()
        >>> config.env.scenario, config.collector.total_frames, config.model.centralized_critic
        ('navigation', 300000, True)
        >>> config.optim.minibatch_size = 7000
        >>> config.validate()
        Traceback (most recent call last):
        ...
        mappo_torchrl.config.schema.ConfigError: optim.minibatch_size=7000: must be at most ...
    """

    env: EnvConfig = field(default_factory=EnvConfig)
    """Environment."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """Networks."""
    loss: LossConfig = field(default_factory=LossConfig)
    """Objective."""
    collector: CollectorConfig = field(default_factory=CollectorConfig)
    """Collection."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """Optimisation."""
    perf: PerfConfig = field(default_factory=PerfConfig)
    """Speed switches."""
    seed: int = 0
    """Seed for torch, numpy, python and the environments."""
    device: str = "cpu"
    """Device for simulation and training: cpu, cuda or cuda:N."""
    threads: int = 1
    """torch threads on CPU for collection and evaluation; 0 means one per core this process
    may use. VMAS steps many small tensors: threads competing for cores slow it down badly."""
    update_threads: int = 2
    """torch threads on CPU for the update (its matrix products use them well), at most one
    per core this process may use; 0 means one per such core."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Evaluation."""
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    """Checkpoints."""
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    """Logging."""

    def validate(self, *, num_envs: int | None = None) -> None:
        """Raise :class:`ConfigError` on the first value that is not allowed.

        Args:
            num_envs: batch size of the env actually used, when it is not built
                from ``self.env`` (defaults to ``env.num_envs``).
        """
        self.env.validate()
        self.model.validate()
        self.loss.validate()
        self.collector.validate(self.env.num_envs if num_envs is None else num_envs)
        self.collector.validate_workers(
            self.env.num_envs if num_envs is None else num_envs, env_from_config=num_envs is None
        )
        self.optim.validate(self.collector.frames_per_batch)
        self.eval.validate()
        _check(
            self.eval.episodes * self.env.max_steps <= MAX_FRAMES_IN_MEMORY,
            "eval.episodes",
            self.eval.episodes,
            f"times env.max_steps ({self.env.max_steps}) must be at most "
            f"{MAX_FRAMES_IN_MEMORY} (an evaluation keeps every step in memory)",
        )
        self.checkpoint.validate()
        self.logger.validate()
        _check(
            self.threads >= 0,
            "threads",
            self.threads,
            "must be 0 (one per available core) or a positive integer",
        )
        _check(
            self.update_threads >= 0,
            "update_threads",
            self.update_threads,
            "must be 0 (one per available core) or a positive integer",
        )
        check_seed("seed", self.seed)
        _check_finite(self)
        _check_device(self.device)
        on_cpu = self.device == "cpu"
        _check(
            on_cpu or self.collector.overlap != "on",
            "collector.overlap",
            self.collector.overlap,
            "on needs device=cpu (the worker collects on the cores the update leaves free); "
            "use off or auto",
        )
        _check(
            on_cpu or self.collector.workers == 1,
            "collector.workers",
            self.collector.workers,
            "must be 1 unless device=cpu (worker processes step CPU envs)",
        )
        if self.model.is_recurrent:
            self.optim.validate_chunks(
                self.collector.frames_per_batch, self.env.num_envs if num_envs is None else num_envs
            )
        self.perf.validate(self.device, self.optim.lr_decay, self.model.is_recurrent)


def _check_finite(config: Any, prefix: str = "") -> None:
    """Every float option must be a finite number (``inf``/``nan`` pass ``> 0`` checks)."""
    import dataclasses
    import math

    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            _check_finite(value, f"{prefix}{f.name}.")
        elif isinstance(value, float):
            _check(math.isfinite(value), f"{prefix}{f.name}", value, "must be a finite number")


def _check_device(device: str) -> None:
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError("device", device, "must be cpu, cuda or cuda:N") from None
    if parsed.type == "cpu":
        return
    _check(parsed.type == "cuda", "device", device, "must be cpu, cuda or cuda:N")
    _check(
        torch.cuda.is_available(),
        "device",
        device,
        "CUDA is not available on this machine; use cpu",
    )
    index = parsed.index or 0
    count = torch.cuda.device_count()
    _check(index < count, "device", device, f"this machine has {count} CUDA device(s)")
