import pytest
import torch
from torchrl.modules import PopArtValueNorm

from mappo_torchrl.envs import make_env
from mappo_torchrl.models import make_actor, make_critic


def _n_param_sets(module) -> int:
    """How many agents' worth of parameters the module's MLP holds (1 if shared)."""
    mlp = next(m for m in module.modules() if hasattr(m, "share_params"))
    weight = mlp.params.get(("0", "weight"))
    return 1 if mlp.share_params else weight.shape[0]


def test_actor_writes_bounded_actions_and_log_probs(nav_env):
    actor = make_actor(nav_env, "agents", num_cells=16)
    with torch.no_grad():
        td = actor(nav_env.reset())
    action = td["agents", "action"]
    assert action.shape == (4, 3, 2)
    assert td["agents", "action_log_prob"].shape == (4, 3)
    assert action.abs().max() <= 1.0


def test_shared_actor_has_one_parameter_set(nav_env):
    shared = make_actor(nav_env, "agents", num_cells=16, share_params=True)
    separate = make_actor(nav_env, "agents", num_cells=16, share_params=False)
    assert _n_param_sets(shared) == 1
    assert _n_param_sets(separate) == 3
    n_shared = sum(p.numel() for p in shared.parameters())
    n_separate = sum(p.numel() for p in separate.parameters())
    assert n_separate == 3 * n_shared


def test_shared_actor_maps_equal_observations_to_equal_outputs(nav_env):
    actor = make_actor(nav_env, "agents", num_cells=16, share_params=True)
    td = nav_env.reset()
    td["agents", "observation"] = td["agents", "observation"][:, :1].expand(-1, 3, -1).clone()
    out = actor.module[0](td)
    loc = out["agents", "loc"]
    assert torch.allclose(loc[:, 0], loc[:, 1]) and torch.allclose(loc[:, 0], loc[:, 2])


def test_discrete_actor_samples_valid_actions():
    env = make_env("navigation", num_envs=4, continuous_actions=False)
    actor = make_actor(env, "agents", num_cells=16)
    with torch.no_grad():
        action = actor(env.reset())["agents", "action"]
    assert action.dtype == torch.int64
    assert action.shape == (4, 3)
    assert 0 <= action.min() and action.max() < 9


@pytest.mark.parametrize("centralized", [True, False])
def test_critic_sees_other_agents_only_when_centralised(nav_env, centralized):
    critic = make_critic(nav_env, "agents", centralized=centralized, num_cells=16)
    td = nav_env.reset()
    before = critic(td.clone())["agents", "state_value"]
    td["agents", "observation"][:, 1] += 1.0  # change agent 1's observation only
    after = critic(td)["agents", "state_value"]
    agent0_changed = not torch.allclose(before[:, 0], after[:, 0])
    assert agent0_changed == centralized
    assert not torch.allclose(before[:, 1], after[:, 1])


def test_critic_output_shape_and_parameter_sharing(nav_env):
    shared = make_critic(nav_env, "agents", num_cells=16)
    separate = make_critic(nav_env, "agents", num_cells=16, share_params=False)
    assert shared(nav_env.reset())["agents", "state_value"].shape == (4, 3, 1)
    assert _n_param_sets(shared) == 1
    assert _n_param_sets(separate) == 3


def test_critic_with_value_norm_denormalises_its_prediction(nav_env):
    value_norm = PopArtValueNorm(shape=1)
    for _ in range(50):
        value_norm.update(torch.randn(256, 1) * 4.0 + 10.0)
    critic = make_critic(nav_env, "agents", num_cells=16, value_norm=value_norm)
    td = critic(nav_env.reset())
    normalized = td["agents", "state_value_normalized"]
    assert torch.allclose(td["agents", "state_value"], value_norm.denormalize(normalized))
    assert td["agents", "state_value"].mean() > 5.0


def test_state_critic_needs_a_state_entry(nav_env):
    with pytest.raises(ValueError, match="the env has no root 'state' entry"):
        make_critic(nav_env, "agents", critic_input="state")


def test_feature_norm_and_orthogonal_init(nav_env):
    actor = make_actor(nav_env, "agents", num_cells=16, feature_norm=True, orthogonal_init=True)
    mlp = actor.module[0].module[0]
    head = mlp.params.get(("1", "4", "weight")).detach()  # LayerNorm first, then the MLP
    assert torch.linalg.matrix_norm(head, ord=2) == pytest.approx(0.01, rel=1e-3)
    hidden = mlp.params.get(("1", "2", "weight")).detach()
    gain = torch.nn.init.calculate_gain("tanh")
    assert torch.allclose(hidden @ hidden.T, gain**2 * torch.eye(16), atol=1e-4)


def test_cpu_tanh_through_sigmoid_matches_torch_tanh_and_its_gradient():
    from mappo_torchrl.models.mlp import Tanh

    x = torch.linspace(-12, 12, 20_001, dtype=torch.float32, requires_grad=True)
    ours = Tanh()(x)
    torch.testing.assert_close(ours, torch.tanh(x), atol=3e-7, rtol=0)
    (grad,) = torch.autograd.grad(ours.sum(), x)
    torch.testing.assert_close(grad, 1 - torch.tanh(x.detach()) ** 2, atol=1e-6, rtol=0)


def test_per_agent_networks_with_the_cpu_tanh_run_under_vmap():
    from mappo_torchrl.models import make_mlp

    mlp = make_mlp(
        n_agent_inputs=4, n_agent_outputs=2, n_agents=3, centralized=False,
        share_params=False, num_cells=8, depth=2, activation="tanh",
        feature_norm=False, orthogonal_init=True, head_gain=1.0, precision="float32",
    )  # fmt: skip
    x = torch.randn(5, 3, 4)
    out = mlp(x)
    out.sum().backward()
    with torch.no_grad():  # agent 1's output from its own parameters, by hand
        net = [
            p[1]
            for p in (mlp.params.get((str(i), k)) for i in (0, 2, 4) for k in ("weight", "bias"))
        ]
        h = torch.tanh(x[:, 1] @ net[0].T + net[1])
        h = torch.tanh(h @ net[2].T + net[3])
        torch.testing.assert_close(out[:, 1], h @ net[4].T + net[5], atol=1e-6, rtol=0)


def _mlp(precision: str, *, share_params: bool = True, feature_norm: bool = False):
    from mappo_torchrl.models import make_mlp

    torch.manual_seed(0)
    return make_mlp(
        n_agent_inputs=4, n_agent_outputs=2, n_agents=3, centralized=False,
        share_params=share_params, num_cells=16, depth=2, activation="tanh",
        feature_norm=feature_norm, orthogonal_init=True, head_gain=1.0, precision=precision,
    )  # fmt: skip


@pytest.mark.parametrize("share_params", [True, False])
def test_bfloat16_runs_the_hidden_layers_in_bfloat16_and_the_output_layer_in_float32(share_params):
    fp32 = _mlp("float32", share_params=share_params)
    bf16 = _mlp("bfloat16", share_params=share_params)
    # The same parameters under the same names: checkpoints load either way.
    assert set(bf16.params.flatten_keys().keys()) == set(fp32.params.flatten_keys().keys())
    bf16.params.update_(fp32.params)
    x = torch.randn(5, 3, 4)
    out = bf16(x)
    assert out.dtype == torch.float32
    with torch.no_grad():  # by hand: bfloat16 matrix products and tanh, a float32 head
        w = [fp32.params.get((str(i), k)) for i in (0, 2, 4) for k in ("weight", "bias")]
        w = [t if share_params else t[1] for t in w]
        xa = x if share_params else x[:, 1]
        h = torch.tanh(xa.bfloat16() @ w[0].T.bfloat16() + w[1].bfloat16())
        h = torch.tanh(h @ w[2].T.bfloat16() + w[3].bfloat16())
        by_hand = h.float() @ w[4].T + w[5]
    got = out if share_params else out[:, 1]
    # Within bfloat16's rounding of the hidden layers (tanh's formula differs by ~1 ulp)...
    torch.testing.assert_close(got, by_hand, atol=2e-2, rtol=0)
    # ...and nowhere near float32 resolution, which shows the hidden layers are bfloat16.
    assert (out - fp32(x)).abs().max() > 1e-5
    out.sum().backward()
    grads = [p.grad for p in bf16.parameters()]
    assert grads and all(g is not None and g.dtype == torch.float32 for g in grads)


def test_bfloat16_output_layer_keeps_float32_resolution_for_large_values():
    mlp = _mlp("bfloat16")
    head_bias = mlp.params.get(("4", "bias"))
    head_bias.data.fill_(1000.0)  # a value of a thousand: bfloat16's step there is 8
    out = mlp(torch.randn(64, 3, 4)).detach()
    steps = out - 1000.0
    # float32 resolves differences of well under 1; bfloat16 would round all to 0 or +-8.
    assert steps.abs().max() > 0 and not torch.all(steps.remainder(8.0) == 0)


def test_bfloat16_with_feature_norm_has_the_float32_layout():
    fp32, bf16 = _mlp("float32", feature_norm=True), _mlp("bfloat16", feature_norm=True)
    assert set(bf16.params.flatten_keys().keys()) == set(fp32.params.flatten_keys().keys())
    bf16.params.update_(fp32.params)
    x = torch.randn(5, 3, 4)
    torch.testing.assert_close(bf16(x), fp32(x), atol=3e-2, rtol=0)


def test_auto_precision_is_bfloat16_only_on_a_cpu_with_bfloat16_instructions(monkeypatch):
    from mappo_torchrl.models import mlp as mlp_module

    monkeypatch.setattr(mlp_module, "cpu_has_bfloat16", lambda: True)
    assert mlp_module.resolve_precision("auto", "cpu") == "bfloat16"
    assert mlp_module.resolve_precision("auto", None) == "bfloat16"
    assert mlp_module.resolve_precision("auto", "cuda") == "float32"
    assert mlp_module.resolve_precision("float32", "cpu") == "float32"
    monkeypatch.setattr(mlp_module, "cpu_has_bfloat16", lambda: False)
    assert mlp_module.resolve_precision("auto", "cpu") == "float32"
    assert mlp_module.resolve_precision("bfloat16", "cpu") == "bfloat16"
    allowed = r"^precision='half': must be one of auto, float32, bfloat16$"
    with pytest.raises(ValueError, match=allowed):
        mlp_module.resolve_precision("half", "cpu")


def test_actor_and_critic_take_the_precision(nav_env):
    from mappo_torchrl.models.mlp import AgentMLP

    for module in (
        make_actor(nav_env, "agents", num_cells=16, precision="bfloat16"),
        make_critic(nav_env, "agents", num_cells=16, precision="bfloat16"),
    ):
        (mlp,) = [m for m in module.modules() if isinstance(m, AgentMLP)]
        assert mlp.precision == "bfloat16"
