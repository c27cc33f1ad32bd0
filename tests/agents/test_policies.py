"""Quantum SB3 policies: each trains with its algorithms, separate lrs survive the schedule,
and spaces the policy cannot take fail at construction."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3 import A2C, DDPG, DQN, PPO, SAC, TD3
from stable_baselines3.common.torch_layers import NatureCNN
from stable_baselines3.common.utils import update_learning_rate

from qdrl_agents import (
    QuantumActorCriticPolicy,
    QuantumDQNPolicy,
    QuantumSACPolicy,
    QuantumTD3Policy,
)
from qdrl_agents.layers import QuantumLayer
from qdrl_agents.policies import ActorCriticExtractor

TINY = {"n_qubits": 3, "n_layers": 1}


class SpaceEnv(gym.Env):
    """A small env with the given spaces: reward 1 when the first action entry is 0."""

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space) -> None:
        self.observation_space = observation_space
        self.action_space = action_space
        self._t = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._t = 0
        return self.observation_space.sample(), {}

    def step(self, action):
        self._t += 1
        first = np.asarray(action).reshape(-1)[0]
        reward = float(first == 0)
        return self.observation_space.sample(), reward, False, self._t >= 20, {}


def _box(n: int) -> spaces.Box:
    return spaces.Box(-1.0, 1.0, (n,), dtype=np.float32)


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _quantum_params(policy: torch.nn.Module) -> dict[str, torch.Tensor]:
    out = {}
    for name, module in policy.named_modules():
        if isinstance(module, QuantumLayer):
            for pname, p in module.named_parameters():
                out[f"{name}.{pname}"] = p.detach().clone()
    return out


def _assert_quantum_params_changed(before: dict, policy: torch.nn.Module, skip: str = "") -> None:
    after = _quantum_params(policy)
    assert before.keys() == after.keys() and before
    for name in before:
        if skip and skip in name:
            continue
        assert not torch.equal(before[name], after[name]), f"{name} did not change"


# ---------------------------------------------------------------------------------------------
# Training smoke tests: parameters change.
# ---------------------------------------------------------------------------------------------

AC_CASES = [
    pytest.param(PPO, "CartPole-v1", {"n_qubits": 4, "n_layers": 1}, id="ppo-cartpole-direct"),
    pytest.param(
        PPO,
        "CartPole-v1",
        {"n_qubits": 4, "n_layers": 1, "critic": "quantum", "output_head": "linear"},
        id="ppo-cartpole-quantum-critic-linear",
    ),
    pytest.param(A2C, "Pendulum-v1", TINY, id="a2c-pendulum"),
    pytest.param(
        PPO,
        "Pendulum-v1",
        {
            **TINY,
            "_algo": {"use_sde": True},
            "share_features_extractor": False,
            "critic": "quantum",
        },
        id="ppo-pendulum-gsde-unshared",
    ),
    pytest.param(
        PPO,
        SpaceEnv(_box(5), spaces.MultiDiscrete([2, 3])),
        {"n_qubits": 3, "n_layers": 1, "encoder": "linear"},
        id="ppo-multidiscrete-encoder",
    ),
    pytest.param(A2C, SpaceEnv(_box(2), spaces.MultiBinary(2)), TINY, id="a2c-multibinary"),
]


@pytest.mark.parametrize(("algo", "env", "kwargs"), AC_CASES)
def test_actor_critic_trains(algo: type, env: Any, kwargs: dict) -> None:
    n_steps = 64
    kwargs = dict(kwargs)
    extra = {"batch_size": 32, "n_epochs": 2} if algo is PPO else {}
    extra.update(kwargs.pop("_algo", {}))
    model = algo(
        QuantumActorCriticPolicy,
        env,
        n_steps=n_steps,
        policy_kwargs=kwargs,
        seed=0,
        device="cpu",
        **extra,
    )
    before = _quantum_params(model.policy)
    model.learn(total_timesteps=4 * n_steps)
    _assert_quantum_params_changed(before, model.policy)
    assert isinstance(model.policy.mlp_extractor, ActorCriticExtractor)
    obs = model.env.observation_space.sample()
    action, _ = model.predict(obs, deterministic=True)
    assert model.action_space.contains(np.asarray(action, dtype=model.action_space.dtype))


def test_direct_head_reads_logits_from_the_circuit() -> None:
    model = PPO(
        QuantumActorCriticPolicy, "CartPole-v1", policy_kwargs={"n_qubits": 4}, device="cpu"
    )
    policy = model.policy
    assert isinstance(policy.action_net, torch.nn.Identity)
    assert policy.mlp_extractor.latent_dim_pi == 2
    assert policy.mlp_extractor.actor.spec.parity_groups == ((0, 1), (2, 3))
    obs = torch.as_tensor(model.env.observation_space.sample()[None])
    logits = policy.get_distribution(obs).distribution.logits
    expected = torch.log_softmax(policy.mlp_extractor.actor(obs), dim=-1)
    torch.testing.assert_close(logits, expected)


def test_linear_head_when_more_actions_than_qubits() -> None:
    env = SpaceEnv(_box(2), spaces.Discrete(5))
    model = PPO(QuantumActorCriticPolicy, env, policy_kwargs={"n_qubits": 2}, device="cpu")
    assert isinstance(model.policy.action_net, torch.nn.Linear)
    assert model.policy.action_net.in_features == 2
    with pytest.raises(ValueError, match="output_head='direct'"):
        PPO(
            QuantumActorCriticPolicy,
            env,
            policy_kwargs={"n_qubits": 2, "output_head": "direct"},
            device="cpu",
        )


def test_dqn_trains() -> None:
    model = DQN(
        QuantumDQNPolicy,
        "CartPole-v1",
        learning_starts=32,
        batch_size=16,
        train_freq=4,
        target_update_interval=50,
        policy_kwargs={"n_qubits": 4, "n_layers": 1},
        seed=0,
        device="cpu",
    )
    before = _quantum_params(model.policy.q_net)
    model.learn(total_timesteps=300)
    _assert_quantum_params_changed(before, model.policy.q_net)
    q = model.policy.q_net.q_net
    assert q.output_bias is not None and q.out_features == 2  # direct: Q = scaled parity + bias
    # the target network was synced at least once and is a separate module
    assert model.policy.q_net_target.q_net is not q


def test_dqn_linear_head() -> None:
    model = DQN(
        QuantumDQNPolicy,
        "CartPole-v1",
        policy_kwargs={"n_qubits": 4, "n_layers": 1, "output_head": "linear"},
        device="cpu",
    )
    q = model.policy.q_net.q_net
    assert q.out_features == 2 and q.head[0].in_features == 4


OFF_POLICY_CASES = [
    pytest.param(TD3, QuantumTD3Policy, "Pendulum-v1", {}, id="td3-mlp-critic"),
    pytest.param(TD3, QuantumTD3Policy, "Pendulum-v1", {"critic": "quantum"}, id="td3-q-critic"),
    pytest.param(DDPG, QuantumTD3Policy, "Pendulum-v1", {}, id="ddpg"),
    pytest.param(SAC, QuantumSACPolicy, "MountainCarContinuous-v0", {}, id="sac-mlp-critic"),
    pytest.param(SAC, QuantumSACPolicy, "Pendulum-v1", {"critic": "quantum"}, id="sac-q-critic"),
]


@pytest.mark.parametrize(("algo", "policy", "env", "kwargs"), OFF_POLICY_CASES)
def test_off_policy_trains(algo: type, policy: type, env: str, kwargs: dict) -> None:
    model = algo(
        policy,
        env,
        learning_starts=50,
        batch_size=16,
        train_freq=4,
        policy_kwargs={"n_layers": 1, "net_arch": [16], **kwargs},
        seed=0,
        device="cpu",
    )
    actor_before = _quantum_params(model.policy.actor)
    critic_before = _snapshot(model.policy.critic)
    model.learn(total_timesteps=250)
    _assert_quantum_params_changed(actor_before, model.policy.actor)
    changed = [
        not torch.equal(v, model.policy.critic.state_dict()[k]) for k, v in critic_before.items()
    ]
    assert any(changed)
    if kwargs.get("critic") == "quantum":
        assert any(isinstance(m, QuantumLayer) for m in model.policy.critic.modules())
        assert _quantum_params(model.policy.critic)
    if algo is DDPG:
        assert model.policy.critic.n_critics == 1


# ---------------------------------------------------------------------------------------------
# Separate learning rates through SB3's schedule.
# ---------------------------------------------------------------------------------------------


def _group_lrs(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    return {g["name"]: g["lr"] for g in optimizer.param_groups}


def test_group_learning_rates_survive_the_schedule() -> None:
    base = 1e-3
    model = PPO(
        QuantumActorCriticPolicy,
        "CartPole-v1",
        learning_rate=lambda progress: base * (0.25 + 0.75 * progress),  # decays to base/4
        n_steps=32,
        batch_size=32,
        n_epochs=1,
        policy_kwargs={
            "n_qubits": 4,
            "n_layers": 1,
            "lr_input_scaling": 1e-2,
            "lr_weights": 2e-2,
            "lr_output_scaling": 1e-1,
        },
        device="cpu",
    )
    assert _group_lrs(model.policy.optimizer) == pytest.approx(
        {"input_scaling": 1e-2, "weights": 2e-2, "output_scaling": 1e-1, "classical": base}
    )
    model.learn(total_timesteps=64)
    lrs = _group_lrs(model.policy.optimizer)
    scheduled = lrs["classical"]
    assert scheduled == pytest.approx(base / 4)  # the schedule ran to its end
    assert lrs["input_scaling"] / scheduled == pytest.approx(10.0)
    assert lrs["weights"] / scheduled == pytest.approx(20.0)
    assert lrs["output_scaling"] / scheduled == pytest.approx(100.0)
    # the multipliers survive an optimizer state round trip
    state = model.policy.optimizer.state_dict()
    fresh = PPO(
        QuantumActorCriticPolicy,
        "CartPole-v1",
        policy_kwargs={"n_qubits": 4, "n_layers": 1},
        device="cpu",
    ).policy.optimizer
    fresh.load_state_dict(state)
    update_learning_rate(fresh, 1.0)
    assert _group_lrs(fresh) == pytest.approx(
        {"input_scaling": 10.0, "weights": 20.0, "output_scaling": 100.0, "classical": 1.0}
    )


def test_group_learning_rates_off_policy() -> None:
    model = SAC(
        QuantumSACPolicy,
        "Pendulum-v1",
        learning_rate=1e-3,
        policy_kwargs={"n_layers": 1, "lr_weights": 5e-3, "critic": "quantum"},
        device="cpu",
    )
    for opt in (model.actor.optimizer, model.critic.optimizer):
        update_learning_rate(opt, 2e-4)
        lrs = _group_lrs(opt)
        assert lrs["weights"] == pytest.approx(1e-3)
        assert lrs["classical"] == pytest.approx(2e-4)
    dqn = DQN(
        QuantumDQNPolicy,
        "CartPole-v1",
        learning_rate=1e-3,
        device="cpu",
        policy_kwargs={"n_layers": 1, "lr_output_scaling": 1e-1},
    )
    assert _group_lrs(dqn.policy.optimizer)["output_scaling"] == pytest.approx(1e-1)


def test_every_trainable_parameter_is_optimised_once() -> None:
    model = PPO(
        QuantumActorCriticPolicy,
        "CartPole-v1",
        device="cpu",
        policy_kwargs={"n_qubits": 4, "n_layers": 1, "critic": "quantum"},
    )
    in_opt = [id(p) for g in model.policy.optimizer.param_groups for p in g["params"]]
    assert len(in_opt) == len(set(in_opt))
    assert set(in_opt) == {id(p) for p in model.policy.parameters() if p.requires_grad}


def test_circuit_and_parameter_counts() -> None:
    model = PPO(
        QuantumActorCriticPolicy,
        "CartPole-v1",
        device="cpu",
        policy_kwargs={"n_qubits": 4, "n_layers": 2, "critic_net_arch": [8]},
    )
    policy = model.policy
    assert policy.circuit.num_qubits == 4
    counts = policy.parameter_counts()
    n_weights = 4 * 2 * 3  # ryrz: 2 angles per qubit, 2 layers + final rotation block
    assert counts["quantum"] == n_weights
    # lambda (2x4) + output scaling (2) + MLP critic (4*8+8) + value_net (8+1)
    assert counts["classical"] == 8 + 2 + 40 + 9
    td3 = TD3(QuantumTD3Policy, "Pendulum-v1", device="cpu", policy_kwargs={"n_layers": 1})
    assert td3.policy.circuit.num_qubits == 3
    assert td3.policy.parameter_counts()["quantum"] == 3 * 2 * 2


# ---------------------------------------------------------------------------------------------
# Spaces and options the policies cannot take fail at construction.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("algo", "policy", "env", "kwargs", "error", "match"),
    [
        pytest.param(
            PPO,
            QuantumActorCriticPolicy,
            SpaceEnv(spaces.Dict({"a": _box(2)}), spaces.Discrete(2)),
            {},
            ValueError,
            "flat observation spaces.*Dict",
            id="dict-obs",
        ),
        pytest.param(
            PPO,
            QuantumActorCriticPolicy,
            SpaceEnv(spaces.Box(0, 255, (36, 36, 3), dtype=np.uint8), spaces.Discrete(2)),
            {},
            ValueError,
            "image observations",
            id="image-without-extractor",
        ),
        pytest.param(
            PPO,
            QuantumActorCriticPolicy,
            SpaceEnv(spaces.Box(0, 255, (36, 36, 3), dtype=np.uint8), spaces.Discrete(2)),
            {"features_extractor_class": NatureCNN, "n_qubits": 3},
            ValueError,
            "512 input features but n_qubits=3 and no encoder",
            id="cnn-no-encoder",
        ),
        pytest.param(
            PPO,
            QuantumActorCriticPolicy,
            SpaceEnv(_box(6), spaces.Discrete(2)),
            {"n_qubits": 3},
            ValueError,
            "6 input features but n_qubits=3 and no encoder",
            id="too-wide",
        ),
        pytest.param(
            PPO,
            QuantumActorCriticPolicy,
            "CartPole-v1",
            {"n_qubit": 4},
            TypeError,
            "unexpected keyword.*n_qubit",
            id="typo",
        ),
        pytest.param(
            PPO,
            QuantumActorCriticPolicy,
            "CartPole-v1",
            {"entanglement": "ring"},
            ValueError,
            "entanglement",
            id="bad-entanglement",
        ),
        pytest.param(
            PPO,
            QuantumActorCriticPolicy,
            "CartPole-v1",
            {"critic": "cnn"},
            ValueError,
            "critic",
            id="bad-critic",
        ),
        pytest.param(
            PPO,
            QuantumActorCriticPolicy,
            "CartPole-v1",
            {"lr_weights": -1.0},
            ValueError,
            "lr_weights",
            id="bad-lr",
        ),
        pytest.param(
            PPO,
            QuantumActorCriticPolicy,
            "CartPole-v1",
            {"n_qubits": 0},
            ValueError,
            "n_qubits",
            id="zero-qubits",
        ),
        pytest.param(
            PPO,
            QuantumActorCriticPolicy,
            "CartPole-v1",
            {"encoder": "conv"},
            ValueError,
            "encoder",
            id="bad-encoder",
        ),
        pytest.param(
            SAC,
            QuantumSACPolicy,
            "Pendulum-v1",
            {"critic": "transformer"},
            ValueError,
            "critic",
            id="sac-bad-critic",
        ),
    ],
)
def test_bad_input_raises_at_construction(
    algo: type, policy: type, env: Any, kwargs: dict, error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        algo(policy, env, policy_kwargs=kwargs, device="cpu")


def test_policies_reject_wrong_action_spaces() -> None:
    # constructed directly: the algorithms assert on the action space before the policy exists
    with pytest.raises(ValueError, match="Discrete actions"):
        QuantumDQNPolicy(_box(2), _box(1), lambda _: 1e-3)
    for policy in (QuantumTD3Policy, QuantumSACPolicy):
        with pytest.raises(ValueError, match="Box actions"):
            policy(_box(2), spaces.Discrete(2), lambda _: 1e-3)
    with pytest.raises(ValueError, match="Box, Discrete, MultiDiscrete or MultiBinary"):
        QuantumActorCriticPolicy(_box(2), spaces.Tuple([spaces.Discrete(2)]), lambda _: 1e-3)


def test_encoder_makes_wide_observations_fit() -> None:
    env = SpaceEnv(_box(6), spaces.Discrete(2))
    model = PPO(
        QuantumActorCriticPolicy, env, device="cpu", policy_kwargs={"n_qubits": 3, "encoder": [8]}
    )
    actor = model.policy.mlp_extractor.actor
    assert actor.in_features == 6 and actor.quantum.spec.n_qubits == 3


def test_qiskit_executor_trains_through_sb3() -> None:
    """``executor="qiskit"`` (EstimatorQNN, parameter shift) goes through the same policy."""
    env = SpaceEnv(_box(2), spaces.Discrete(2))
    model = PPO(
        QuantumActorCriticPolicy,
        env,
        n_steps=16,
        batch_size=16,
        n_epochs=1,
        policy_kwargs={"n_qubits": 2, "n_layers": 1, "executor": "qiskit"},
        seed=0,
        device="cpu",
    )
    assert type(model.policy.mlp_extractor.actor.executor).__name__ == "QiskitExecutor"
    before = _quantum_params(model.policy)
    model.learn(total_timesteps=16)
    _assert_quantum_params_changed(before, model.policy)
