"""Bring your own circuit (issue 10): ``circuit=`` in EstimatorQNN's vocabulary, everywhere.

QuantumLayer, make_executor and every quantum SB3 policy take ``circuit=`` (a QuantumCircuit),
``input_params=``, ``weight_params=`` and ``observables=``; policies also a callable of the
input width. A saved model carries the circuit as QPY. Errors come at construction: too-wide
observations without ``encoder=``, bad circuit arguments. NumPy integers are ints.

The zz_feature_map + real_amplitudes tests need the statevector executor to compile
non-affine parameter expressions; they are skipped (with the executor's own message) only
while it refuses that circuit.
"""

from __future__ import annotations

import base64
import io
import json
import pickle
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import cloudpickle
import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from qiskit.circuit import Parameter, ParameterVector, QuantumCircuit
from qiskit.circuit.library import real_amplitudes, zz_feature_map
from qiskit.primitives import StatevectorEstimator
from qiskit.quantum_info import SparsePauliOp
from qiskit_machine_learning.neural_networks import EstimatorQNN
from stable_baselines3 import DQN, PPO, SAC, TD3
from stable_baselines3.common.torch_layers import CombinedExtractor

from qdrl_agents import (
    CircuitSpec,
    ClassicalToQuantum,
    QuantumActorCriticPolicy,
    QuantumDQNPolicy,
    QuantumLayer,
    QuantumNetConfig,
    QuantumSACPolicy,
    QuantumTD3Policy,
    gradient_variance,
    make_executor,
)
from qdrl_agents.circuits import UserCircuit, build_circuit, circuit_from_qiskit

ROOT = Path(__file__).resolve().parents[2]
CARTPOLE_OBSERVABLES = ["IIZZ", "ZZII"]  # one parity per CartPole action: direct logits


# ---------------------------------------------------------------------------------------------
# Circuits: one the statevector executor compiles today, and the EstimatorQNN classic.
# ---------------------------------------------------------------------------------------------


def ry_real_amplitudes(n_features: int, reps: int = 1):
    """RY angle encoding + real_amplitudes (decomposed): plain Parameters, affine angles."""
    x = ParameterVector("x", n_features)
    qc = QuantumCircuit(n_features)
    for i in range(n_features):
        qc.ry(x[i], i)
    ansatz = real_amplitudes(n_features, reps=reps).decompose()
    qc.compose(ansatz, inplace=True)
    return qc, list(x), list(ansatz.parameters)


def zz_real_amplitudes(n_features: int, reps: int = 1):
    """qiskit-machine-learning's recipe: zz_feature_map composed with real_amplitudes."""
    fmap, ansatz = zz_feature_map(n_features), real_amplitudes(n_features, reps=reps)
    return fmap.compose(ansatz), list(fmap.parameters), list(ansatz.parameters)


def hand_built(n_features: int):
    """A user-built ry/rz/cx circuit with plain Parameters (and one weight shared by 2 gates)."""
    x = [Parameter(f"in{i}") for i in range(n_features)]
    w = [Parameter(f"w{j}") for j in range(2 * n_features)]
    qc = QuantumCircuit(n_features)
    for i in range(n_features):
        qc.ry(x[i], i)
        qc.rz(w[i], i)
    for i in range(n_features - 1):
        qc.cx(i, i + 1)
    for i in range(n_features):
        qc.ry(w[n_features + i], i)
    qc.rz(w[0], 0)
    return qc, x, w


CIRCUITS = [
    pytest.param(ry_real_amplitudes, id="ry-real-amplitudes"),
    pytest.param(hand_built, id="hand-built"),
    pytest.param(zz_real_amplitudes, id="zz-real-amplitudes"),
]


class SpaceEnv(gym.Env):
    """A small env with the given spaces."""

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
        return self.observation_space.sample(), 0.0, False, self._t >= 10, {}


def _box(n: int) -> spaces.Box:
    return spaces.Box(-1.0, 1.0, (n,), dtype=np.float32)


# ---------------------------------------------------------------------------------------------
# QuantumLayer and make_executor with a user's circuit.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("make", CIRCUITS)
def test_layer_with_user_circuit_matches_qiskit_executor(make) -> None:
    qc, inputs, weights = make(3)
    kwargs: dict[str, Any] = {
        "circuit": qc,
        "input_params": inputs,
        "weight_params": weights,
        "observables": ["ZZI", "IZZ", "XII"],
        "output_bias": True,
    }
    fast = QuantumLayer(**kwargs).double()
    slow = QuantumLayer(**kwargs, executor="qiskit").double()
    torch.manual_seed(1)
    with torch.no_grad():
        fast.input_scaling.uniform_(0.5, 2.0)
        fast.output_scaling.uniform_(0.5, 2.0)
        fast.output_bias.uniform_(-1.0, 1.0)
    slow.load_state_dict(fast.state_dict())
    assert fast.input_scaling.shape == (1, 3)  # one lambda per input parameter
    assert fast.spec is None and fast.circuit is qc
    assert fast.parameter_counts() == {"quantum": len(weights), "classical": 3 + 3 + 3}
    x = torch.tensor([[0.3, -1.2, 2.0], [1.5, 0.1, -0.4]], dtype=torch.float64)
    outs, grads = [], []
    for layer in (fast, slow):
        out = layer(x)
        (g,) = torch.autograd.grad(out.sum(), layer.weights)
        outs.append(out.detach())
        grads.append(g)
    torch.testing.assert_close(outs[0], outs[1], atol=1e-8, rtol=0)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-8, rtol=0)


def test_layer_without_scaling_is_estimator_qnn() -> None:
    qc, inputs, weights = hand_built(3)
    observables = [SparsePauliOp("ZIZ"), SparsePauliOp.from_list([("XXI", 0.5), ("IIZ", 0.5)])]
    layer = QuantumLayer(
        circuit=qc,
        input_params=inputs,
        weight_params=weights,
        observables=observables,
        squash="none",
        input_scaling=False,
        output_scaling=False,
    ).double()
    qnn = EstimatorQNN(
        circuit=qc,
        estimator=StatevectorEstimator(),
        observables=observables,
        input_params=inputs,
        weight_params=weights,
        default_precision=0.0,
    )
    x = np.array([[0.4, -0.9, 1.3], [0.0, 2.2, -1.1]])
    expected = qnn.forward(x, layer.weights.detach().numpy())
    np.testing.assert_allclose(layer(torch.as_tensor(x)).detach().numpy(), expected, atol=1e-10)


def test_layer_input_scaling_multiplies_each_input_parameter() -> None:
    qc, inputs, weights = hand_built(2)
    layer = QuantumLayer(circuit=qc, input_params=inputs, weight_params=weights, squash="none")
    reference = QuantumLayer(
        circuit=qc, input_params=inputs, weight_params=weights, squash="none", input_scaling=False
    )
    reference.load_state_dict(
        {k: v for k, v in layer.state_dict().items() if k != "input_scaling"}, strict=False
    )
    with torch.no_grad():
        layer.input_scaling.copy_(torch.tensor([[2.0, -0.5]]))
    x = torch.tensor([[0.3, 0.8]])
    torch.testing.assert_close(layer(x), reference(x * torch.tensor([2.0, -0.5])))


def test_make_executor_takes_estimator_qnn_vocabulary() -> None:
    qc, inputs, weights = hand_built(2)
    built = circuit_from_qiskit(qc, inputs, weights, ["ZI", "IZ"])
    x = torch.tensor([[0.2, -0.7]], dtype=torch.float64)
    w = torch.linspace(0.1, 1.3, len(weights), dtype=torch.float64)
    for name in ("statevector", "qiskit"):
        a = make_executor(
            name, circuit=qc, input_params=inputs, weight_params=weights, observables=["ZI", "IZ"]
        )
        b = make_executor(name, built)
        torch.testing.assert_close(a(x, w), b(x, w), atol=1e-10, rtol=0)
        assert a.built.spec is None
    spec_executor = make_executor("statevector", CircuitSpec(n_qubits=2))  # a spec is built
    assert spec_executor.built.spec == CircuitSpec(n_qubits=2)


def test_gradient_variance_of_a_user_circuit() -> None:
    qc, inputs, weights = hand_built(2)
    built = circuit_from_qiskit(qc, inputs, weights, ["ZZ"])
    exact = gradient_variance(built, n_samples=np.int64(3), cost="readout", seed=np.int64(3))
    shifted = gradient_variance(built, n_samples=3, cost="readout", seed=3, executor="qiskit")
    np.testing.assert_allclose(exact.gradients, shifted.gradients, atol=1e-10)
    assert exact.spec is None and exact.n_qubits == 2 and exact.n_layers is None


def test_layers_refuse_numpy_arrays() -> None:
    layer = QuantumLayer(CircuitSpec(n_qubits=2))
    with pytest.raises(TypeError, match=r"QuantumLayer expects a torch\.Tensor.*numpy.*as_tensor"):
        layer(np.zeros((1, 2), dtype=np.float32))
    hybrid = ClassicalToQuantum(layer, 5)
    with pytest.raises(TypeError, match=r"ClassicalToQuantum expects a torch\.Tensor.*numpy"):
        hybrid(np.zeros((1, 5), dtype=np.float32))


# ---------------------------------------------------------------------------------------------
# Bad circuit= arguments: clear errors at construction.
# ---------------------------------------------------------------------------------------------


def _bad_cases() -> list:
    qc, inputs, weights = hand_built(2)
    stranger = Parameter("stranger")
    return [
        pytest.param({"circuit": "ry(x) q0"}, TypeError, "QuantumCircuit", id="wrong-type"),
        pytest.param(
            {"circuit": CircuitSpec(n_qubits=2)}, TypeError, "QuantumCircuit", id="spec-as-circuit"
        ),
        pytest.param(
            {"circuit": qc, "input_params": [*inputs, stranger], "weight_params": weights},
            ValueError,
            "stranger is not a parameter of the circuit",
            id="unknown-parameter",
        ),
        pytest.param(
            {"circuit": qc, "input_params": [*inputs, 1.5]},
            TypeError,
            r"input_params\[2\]=1.5 is not a qiskit Parameter",
            id="not-a-parameter",
        ),
        pytest.param(
            {"circuit": qc, "input_params": inputs, "observables": ["ZZZ"]},
            ValueError,
            r"observables\[0\] acts on 3 qubits, the circuit has 2",
            id="observable-width",
        ),
        pytest.param(
            {"circuit": qc, "input_params": inputs, "observables": ["ZQ"]},
            ValueError,
            "not a Pauli string",
            id="observable-label",
        ),
        pytest.param(
            {"circuit": qc, "input_params": inputs, "weight_params": weights[:1]},
            ValueError,
            "neither in input_params nor in weight_params",
            id="unassigned-parameter",
        ),
        pytest.param(
            {"input_params": inputs}, ValueError, "without circuit=", id="params-without-circuit"
        ),
    ]


@pytest.mark.parametrize(("kwargs", "error", "match"), _bad_cases())
def test_bad_circuit_arguments_layer(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        QuantumLayer(**kwargs)


@pytest.mark.parametrize(("kwargs", "error", "match"), _bad_cases())
def test_bad_circuit_arguments_policy(kwargs: dict, error: type, match: str) -> None:
    if set(kwargs) == {"input_params"}:
        match = "need circuit="
    with pytest.raises(error, match=match):
        PPO(QuantumActorCriticPolicy, "CartPole-v1", policy_kwargs=kwargs, device="cpu")


def test_bad_circuit_arguments_make_executor() -> None:
    qc, inputs, _ = hand_built(2)
    with pytest.raises(ValueError, match="needs a circuit"):
        make_executor("statevector")
    with pytest.raises(ValueError, match="observables"):
        make_executor("qiskit", circuit=qc, input_params=inputs, observables="ZZZ")
    with pytest.raises(ValueError, match="either built= or circuit="):
        make_executor("qiskit", build_circuit(CircuitSpec(n_qubits=2)), circuit=qc)
    with pytest.raises(TypeError, match="only a policy"):
        make_executor("qiskit", circuit=hand_built)


def test_bad_circuit_options_in_policies() -> None:
    env = SpaceEnv(_box(3), spaces.Discrete(2))
    qc, inputs, _ = ry_real_amplitudes(3)
    with pytest.raises(ValueError, match=r"n_layers=3.* shape the built-in circuit"):
        PPO(
            QuantumActorCriticPolicy,
            env,
            policy_kwargs={"circuit": qc, "input_params": inputs, "n_layers": 3},
            device="cpu",
        )
    with pytest.raises(ValueError, match="return them from it"):
        QuantumNetConfig(circuit=ry_real_amplitudes, input_params=inputs)
    with pytest.raises(TypeError, match=r"circuit factory .* returned QuantumCircuit"):
        PPO(
            QuantumActorCriticPolicy,
            env,
            policy_kwargs={"circuit": lambda n: ry_real_amplitudes(n)[0]},
            device="cpu",
        )
    with pytest.raises(ValueError, match=r"output_head='direct'.*2 outputs.*3 observables"):
        PPO(
            QuantumActorCriticPolicy,
            env,
            policy_kwargs={
                "circuit": qc,
                "input_params": inputs,
                "observables": ["ZII", "IZI", "IIZ"],
                "output_head": "direct",
            },
            device="cpu",
        )
    with pytest.raises(ValueError, match="critic_n_qubits=4 sizes the built-in critic"):
        TD3(
            QuantumTD3Policy,
            "Pendulum-v1",
            policy_kwargs={
                "circuit": ry_real_amplitudes,
                "critic": "quantum",
                "critic_n_qubits": 4,
            },
            device="cpu",
        )


# ---------------------------------------------------------------------------------------------
# Observation spaces: every one the policies take builds; too wide is refused naming encoder=.
# ---------------------------------------------------------------------------------------------

OBSERVATION_SPACES = {
    "box": (_box(3), {}),
    "discrete": (spaces.Discrete(4), {}),
    "multidiscrete": (spaces.MultiDiscrete([2, 3]), {}),  # sum(nvec) is a NumPy integer
    "multibinary": (spaces.MultiBinary(3), {}),
    "dict": (
        spaces.Dict({"pos": _box(3), "mode": spaces.Discrete(3)}),
        {"features_extractor_class": CombinedExtractor, "n_qubits": 3, "encoder": "linear"},
    ),
}
POLICIES = {
    "ppo": (PPO, QuantumActorCriticPolicy, spaces.Discrete(2), {"critic": "quantum"}),
    "dqn": (DQN, QuantumDQNPolicy, spaces.Discrete(2), {}),
    "td3": (TD3, QuantumTD3Policy, _box(1), {"critic": "quantum"}),
    "sac": (SAC, QuantumSACPolicy, _box(1), {"critic": "quantum"}),
}


def _algo_kwargs(algo: type) -> dict:
    if algo is PPO:
        return {"n_steps": 16, "batch_size": 16}
    return {"learning_starts": 8, "batch_size": 8, "buffer_size": 100}


@pytest.mark.parametrize("policy_name", list(POLICIES))
@pytest.mark.parametrize("space_name", list(OBSERVATION_SPACES))
def test_every_observation_space_builds(space_name: str, policy_name: str) -> None:
    obs_space, space_kwargs = OBSERVATION_SPACES[space_name]
    algo, policy, action_space, policy_kwargs = POLICIES[policy_name]
    model = algo(
        policy,
        SpaceEnv(obs_space, action_space),
        policy_kwargs={"n_layers": 1, **policy_kwargs, **space_kwargs},
        device="cpu",
        **_algo_kwargs(algo),
    )
    obs = obs_space.sample()
    action, _ = model.predict(obs, deterministic=True)
    assert action_space.contains(np.asarray(action, dtype=action_space.dtype))
    assert model.policy.parameter_counts()["quantum"] > 0


@pytest.mark.parametrize("policy_name", list(POLICIES))
def test_every_policy_takes_a_user_circuit(policy_name: str) -> None:
    """A callable circuit gets each network's width (TD3/SAC critics: features + action)."""
    algo, policy, action_space, policy_kwargs = POLICIES[policy_name]
    source = UserCircuit(ry_real_amplitudes)
    model = algo(
        policy,
        SpaceEnv(_box(3), action_space),
        policy_kwargs={**policy_kwargs, "circuit": source},
        device="cpu",
        **_algo_kwargs(algo),
    )
    built3 = source.build(3)
    assert model.policy.circuit is built3.circuit
    expected_widths = [3, 4] if policy_name in ("td3", "sac") else [3]
    assert sorted(source.circuits) == expected_widths
    model.learn(total_timesteps=24)
    action, _ = model.predict(np.zeros(3, dtype=np.float32), deterministic=True)
    assert action_space.contains(np.asarray(action, dtype=action_space.dtype))


def test_policy_circuit_and_parameter_counts_report_the_user_circuit() -> None:
    qc, inputs, weights = ry_real_amplitudes(4, reps=2)
    model = PPO(
        QuantumActorCriticPolicy,
        "CartPole-v1",
        policy_kwargs={
            "circuit": qc,
            "input_params": inputs,
            "weight_params": weights,
            "observables": CARTPOLE_OBSERVABLES,
            "critic_net_arch": [8],
        },
        device="cpu",
    )
    policy = model.policy
    assert policy.circuit is qc
    assert isinstance(policy.action_net, torch.nn.Identity)  # 2 observables = 2 logits
    counts = policy.parameter_counts()
    assert counts["quantum"] == len(weights) == 12
    # lambda (1x4) + output scaling (2) + MLP critic (4*8+8) + value_net (8+1)
    assert counts["classical"] == 4 + 2 + 40 + 9
    linear = PPO(
        QuantumActorCriticPolicy,
        "CartPole-v1",
        policy_kwargs={"circuit": qc, "input_params": inputs},  # one Z...Z observable
        device="cpu",
    )
    assert isinstance(linear.policy.action_net, torch.nn.Linear)
    assert linear.policy.action_net.in_features == 1


@pytest.mark.parametrize("policy_name", list(POLICIES))
@pytest.mark.parametrize(
    ("space", "width"),
    [
        pytest.param(_box(64), 64, id="box64"),
        pytest.param(_box(34), 34, id="box34"),
        pytest.param(spaces.Discrete(500), 500, id="onehot500"),
    ],
)
def test_too_wide_observation_refused_naming_encoder(
    space: spaces.Space, width: int, policy_name: str
) -> None:
    algo, policy, action_space, _ = POLICIES[policy_name]
    env = SpaceEnv(space, action_space)
    with pytest.raises(ValueError, match=rf"{width} input features.*encoder="):
        algo(policy, env, device="cpu", **_algo_kwargs(algo))
    with pytest.raises(ValueError, match=rf"{width} input features.*encoder="):
        algo(policy, env, policy_kwargs={"n_qubits": 4}, device="cpu", **_algo_kwargs(algo))
    # with an encoder the same space builds
    algo(
        policy,
        env,
        policy_kwargs={"n_qubits": 3, "n_layers": 1, "encoder": "linear"},
        device="cpu",
        **_algo_kwargs(algo),
    )


def test_user_circuit_of_another_width_refused_naming_encoder() -> None:
    qc, inputs, weights = ry_real_amplitudes(3)
    kwargs = {"circuit": qc, "input_params": inputs, "weight_params": weights}
    for obs in (_box(5), _box(2)):
        env = SpaceEnv(obs, spaces.Discrete(2))
        with pytest.raises(ValueError, match=r"features but the circuit has 3 input.*encoder="):
            PPO(QuantumActorCriticPolicy, env, policy_kwargs=kwargs, device="cpu")
    model = PPO(
        QuantumActorCriticPolicy,
        SpaceEnv(_box(5), spaces.Discrete(2)),
        policy_kwargs={**kwargs, "encoder": [8]},
        device="cpu",
    )
    assert model.policy.mlp_extractor.actor.in_features == 5
    assert model.policy.circuit is qc


def test_numpy_integers_are_ints() -> None:
    spec = CircuitSpec(
        n_qubits=np.int64(4),
        n_layers=np.int32(2),
        n_inputs=np.uint8(3),
        readout="parity",
        parity_groups=((np.int64(0), 1), (2, np.int16(3))),
    )
    assert spec == CircuitSpec(
        n_qubits=4, n_layers=2, n_inputs=3, readout="parity", parity_groups=((0, 1), (2, 3))
    )
    assert type(spec.n_qubits) is int and type(spec.parity_groups[0][0]) is int
    assert hash(spec) == hash(
        CircuitSpec(
            n_qubits=4, n_layers=2, n_inputs=3, readout="parity", parity_groups=((0, 1), (2, 3))
        )
    )
    for bad in (True, np.bool_(True), 2.0):
        with pytest.raises(ValueError, match="n_qubits"):
            CircuitSpec(n_qubits=bad)
    cfg = QuantumNetConfig(n_qubits=np.int64(3), n_layers=np.int64(1))
    assert type(cfg.n_qubits) is int and cfg == QuantumNetConfig(n_qubits=3, n_layers=1)
    model = TD3(
        QuantumTD3Policy,
        "Pendulum-v1",
        policy_kwargs={
            "n_qubits": np.int64(3),
            "n_layers": np.int64(1),
            "critic": "quantum",
            "critic_n_qubits": np.int64(4),
        },
        device="cpu",
    )
    assert model.policy.critic_n_qubits == 4 and type(model.policy.critic_n_qubits) is int


# ---------------------------------------------------------------------------------------------
# Save / load: the circuit travels as QPY and comes back identical in a fresh process.
# ---------------------------------------------------------------------------------------------


def test_user_circuit_pickles_as_qpy() -> None:
    qc, inputs, weights = hand_built(3)
    fixed = UserCircuit(qc, inputs, weights, ["ZZI", SparsePauliOp.from_list([("XIX", 0.5)])])
    factory = UserCircuit(ry_real_amplitudes)
    factory.build(3)
    factory.build(np.int64(2))
    for source in (fixed, factory):
        data = cloudpickle.dumps(source)
        assert b"_restore_user_circuit" in data
        assert b"qiskit.circuit" not in data  # no qiskit object is pickled, only QPY bytes
        assert b"ry_real_amplitudes" not in data  # nor the code that made it
        restored = pickle.loads(data)
        assert restored == source
    restored = pickle.loads(pickle.dumps(fixed))
    assert [p.name for p in restored.built.inputs] == ["in0", "in1", "in2"]
    assert restored.built.circuit == qc
    loaded_factory = pickle.loads(pickle.dumps(factory))
    assert sorted(loaded_factory.circuits) == [2, 3]
    with pytest.raises(ValueError, match=r"loaded from a save.*widths \[2, 3\] only, not 5"):
        loaded_factory.build(5)


def _cartpole_model(form: str, make) -> PPO:
    if form == "factory":
        circuit: dict[str, Any] = {
            "circuit": UserCircuit(lambda n: (*make(n), CARTPOLE_OBSERVABLES))
        }
    else:
        qc, inputs, weights = make(4)
        circuit = {
            "circuit": qc,
            "input_params": inputs,
            "weight_params": weights,
            "observables": CARTPOLE_OBSERVABLES,
        }
        if form == "wrapped":
            circuit = {"circuit": UserCircuit(**circuit)}
    return PPO(
        QuantumActorCriticPolicy,
        "CartPole-v1",
        n_steps=64,
        batch_size=32,
        n_epochs=2,
        learning_rate=1e-2,
        policy_kwargs={**circuit, "critic_net_arch": [16]},
        seed=0,
        device="cpu",
    )


def _cartpole_observations() -> np.ndarray:
    space = gym.make("CartPole-v1").observation_space
    space.seed(5)
    return np.stack([space.sample() for _ in range(16)])


_FRESH_PROCESS = textwrap.dedent(
    """
    import json, sys
    import gymnasium as gym
    import numpy as np
    import torch
    from stable_baselines3 import PPO

    out = {}
    for name, path in json.loads(sys.argv[1]).items():
        model = PPO.load(path, device="cpu")
        space = gym.make("CartPole-v1").observation_space
        space.seed(5)
        obs = np.stack([space.sample() for _ in range(16)])
        actions, _ = model.predict(obs, deterministic=True)
        with torch.no_grad():
            logits = model.policy.get_distribution(torch.as_tensor(obs)).distribution.logits
        out[name] = {
            "actions": np.asarray(actions).tolist(),
            "logits": logits.double().tolist(),
            "circuit_kind": type(model.policy_kwargs["circuit"]).__name__,
            "n_qubits": model.policy.circuit.num_qubits,
            "counts": model.policy.parameter_counts(),
        }
    json.dump(out, sys.stdout)
    """
)


def _train_save_and_reload(cases: dict[str, PPO], tmp_path: Path) -> dict:
    paths = {}
    for name, model in cases.items():
        before = model.policy.mlp_extractor.actor.weights.detach().clone()
        model.learn(total_timesteps=256)
        assert not torch.equal(before, model.policy.mlp_extractor.actor.weights), name
        paths[name] = str(tmp_path / f"{name}.zip")
        model.save(paths[name])
    proc = subprocess.run(
        [sys.executable, "-c", _FRESH_PROCESS, json.dumps(paths)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded = json.loads(proc.stdout)
    obs = _cartpole_observations()
    for name, model in cases.items():
        expected, _ = model.predict(obs, deterministic=True)
        np.testing.assert_array_equal(np.asarray(loaded[name]["actions"]), expected, name)
        with torch.no_grad():
            logits = model.policy.get_distribution(torch.as_tensor(obs)).distribution.logits
        np.testing.assert_array_equal(np.asarray(loaded[name]["logits"]), logits.double(), name)
        assert loaded[name]["counts"] == model.policy.parameter_counts()
        assert loaded[name]["n_qubits"] == 4
    return loaded


def _saved_policy_kwargs(path: str) -> bytes:
    """The cloudpickle bytes SB3 wrote for ``policy_kwargs`` in a saved model."""
    with zipfile.ZipFile(path) as archive:
        data = json.loads(archive.read("data"))
    return base64.b64decode(data["policy_kwargs"][":serialized:"])


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(ry_real_amplitudes, id="ry-real-amplitudes"),
        pytest.param(zz_real_amplitudes, id="zz-real-amplitudes"),
    ],
)
def test_ppo_user_circuit_learns_saves_and_reloads_in_a_fresh_process(make, tmp_path: Path) -> None:
    cases = {form: _cartpole_model(form, make) for form in ("wrapped", "factory", "raw")}
    loaded = _train_save_and_reload(cases, tmp_path)
    assert loaded["wrapped"]["circuit_kind"] == "UserCircuit"
    assert loaded["factory"]["circuit_kind"] == "UserCircuit"
    for form in ("wrapped", "factory"):
        # A UserCircuit in policy_kwargs is stored as QPY bytes: no qiskit object, no code.
        stored = _saved_policy_kwargs(str(tmp_path / f"{form}.zip"))
        assert b"_restore_user_circuit" in stored and b"qiskit.circuit" not in stored, form
    # A raw QuantumCircuit in policy_kwargs is stored as SB3 stores any keyword (cloudpickle),
    # and still round-trips; the policy itself holds it as a UserCircuit.
    assert loaded["raw"]["circuit_kind"] == "QuantumCircuit"
    assert isinstance(cases["raw"].policy.quantum_config.circuit, UserCircuit)


def test_policy_save_stores_the_user_circuit_as_qpy(tmp_path: Path) -> None:
    """``BaseModel.save`` (the policy alone) uses the constructor parameters: a UserCircuit."""
    model = _cartpole_model("raw", hand_built)
    policy = model.policy
    data = policy._get_constructor_parameters()
    assert isinstance(data["circuit"], UserCircuit) and data["input_params"] is None
    buffer = io.BytesIO()
    torch.save(data, buffer)
    assert b"qiskit.circuit" not in buffer.getvalue()
    policy.save(tmp_path / "policy.pt")
    restored = QuantumActorCriticPolicy.load(tmp_path / "policy.pt", device="cpu")
    assert restored.quantum_config == policy.quantum_config
    obs = _cartpole_observations()
    np.testing.assert_array_equal(
        restored.predict(obs, deterministic=True)[0], policy.predict(obs, deterministic=True)[0]
    )
