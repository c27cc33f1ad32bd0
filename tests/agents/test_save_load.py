"""Save / load of the quantum policies through SB3: a fresh process gives identical actions."""

from __future__ import annotations

import dataclasses
import inspect
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import A2C, DDPG, DQN, PPO, SAC, TD3
from stable_baselines3.common.policies import ContinuousCritic
from stable_baselines3.common.utils import update_learning_rate

from qdrl_agents import (
    QuantumActorCriticPolicy,
    QuantumDQNPolicy,
    QuantumSACPolicy,
    QuantumTD3Policy,
)
from qdrl_agents.policies import QuantumNetConfig, QuantumSACActor

CASES = {
    "ppo": (
        PPO,
        QuantumActorCriticPolicy,
        "CartPole-v1",
        {"n_qubits": 4, "n_layers": 2, "critic": "quantum", "lr_weights": 1e-2},
    ),
    "a2c": (A2C, QuantumActorCriticPolicy, "Pendulum-v1", {"n_layers": 1, "encoder": "linear"}),
    "dqn": (DQN, QuantumDQNPolicy, "CartPole-v1", {"n_qubits": 4, "n_layers": 2}),
    "td3": (TD3, QuantumTD3Policy, "Pendulum-v1", {"n_layers": 1, "critic": "quantum"}),
    "ddpg": (DDPG, QuantumTD3Policy, "Pendulum-v1", {"n_layers": 1, "output_head": "linear"}),
    "sac": (
        SAC,
        QuantumSACPolicy,
        "MountainCarContinuous-v0",
        {"n_layers": 1, "rotation": "u3", "entanglement": "linear", "critic": "quantum"},
    ),
}


def _make(name: str):
    algo, policy, env, kwargs = CASES[name]
    extra = {"learning_starts": 10, "batch_size": 8} if algo in (DQN, TD3, DDPG, SAC) else {}
    if algo is PPO:
        extra = {"n_steps": 32, "batch_size": 16, "n_epochs": 1}
    if algo is A2C:
        extra = {"n_steps": 8}
    return algo(policy, env, policy_kwargs=kwargs, seed=0, device="cpu", **extra)


def _observations(env_id: str) -> np.ndarray:
    space = gym.make(env_id).observation_space
    space.seed(123)
    return np.stack([space.sample() for _ in range(8)])


def _raw_outputs(model, obs: np.ndarray) -> list:
    """Logits / means / Q-values / actor outputs, as the subprocess computes them."""
    with torch.no_grad():
        t = torch.as_tensor(obs, device=model.policy.device)
        if hasattr(model.policy, "q_net"):
            return model.policy.q_net(t).double().tolist()
        if hasattr(model.policy, "mlp_extractor"):
            dist = model.policy.get_distribution(t).distribution
            return getattr(dist, "logits", getattr(dist, "mean", None)).double().tolist()
        return model.policy._predict(t, deterministic=True).double().tolist()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, object]]:
    out = {}
    root = tmp_path_factory.mktemp("models")
    for name in CASES:
        model = _make(name)
        model.learn(total_timesteps=64)
        path = root / f"{name}.zip"
        model.save(path)
        out[name] = (path, model)
    return out


def test_loaded_models_act_identically_in_a_fresh_process(trained: dict) -> None:
    paths = {name: str(path) for name, (path, _) in trained.items()}
    algos = {name: CASES[name][0].__name__ for name in CASES}
    envs = {name: CASES[name][2] for name in CASES}
    script = textwrap.dedent(
        """
        import json, sys
        import gymnasium as gym
        import numpy as np
        import stable_baselines3 as sb3
        import torch

        def _outputs(model, obs):
            with torch.no_grad():
                t = torch.as_tensor(obs)
                if hasattr(model.policy, "q_net"):
                    return model.policy.q_net(t).double().tolist()
                if hasattr(model.policy, "mlp_extractor"):
                    dist = model.policy.get_distribution(t).distribution
                    return getattr(dist, "logits", getattr(dist, "mean", None)).double().tolist()
                return model.policy._predict(t, deterministic=True).double().tolist()

        paths, algos, envs = json.loads(sys.argv[1])
        out = {}
        for name, path in paths.items():
            model = getattr(sb3, algos[name]).load(path, device="cpu")
            space = gym.make(envs[name]).observation_space
            space.seed(123)
            obs = np.stack([space.sample() for _ in range(8)])
            actions, _ = model.predict(obs, deterministic=True)
            out[name] = {
                "actions": np.asarray(actions, dtype=np.float64).tolist(),
                "outputs": _outputs(model, obs),
            }
        json.dump(out, sys.stdout)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, json.dumps([paths, algos, envs])],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded = json.loads(proc.stdout)
    for name, (_, model) in trained.items():
        obs = _observations(CASES[name][2])
        expected, _ = model.predict(obs, deterministic=True)
        np.testing.assert_array_equal(
            np.asarray(loaded[name]["actions"]), np.asarray(expected, dtype=np.float64), name
        )
        np.testing.assert_array_equal(
            np.asarray(loaded[name]["outputs"]), np.asarray(_raw_outputs(model, obs)), name
        )


@pytest.mark.parametrize("name", list(CASES))
def test_state_dict_keys_round_trip(trained: dict, name: str) -> None:
    path, model = trained[name]
    algo = CASES[name][0]
    policy = model.policy
    state = policy.state_dict()
    expected_keys = {n for n, _ in policy.named_parameters(remove_duplicate=False)} | {
        n for n, _ in policy.named_buffers(remove_duplicate=False)
    }
    assert set(state) == expected_keys
    assert not any("executor" in k for k in state)
    # Every trainable parameter is stored under at least one key, and a key never points at a
    # parameter that belongs to another network.
    ids = {id(p) for p in policy.parameters()}
    assert ids <= {id(v) for v in policy.state_dict(keep_vars=True).values()}
    loaded = algo.load(path, device="cpu")
    new_state = loaded.policy.state_dict()
    assert list(new_state) == list(state)
    for key in state:
        torch.testing.assert_close(new_state[key], state[key], rtol=0, atol=0, msg=key)


@pytest.mark.parametrize("name", ["ppo", "dqn", "td3", "sac"])
def test_policy_save_load_uses_constructor_parameters(
    trained: dict, name: str, tmp_path: Path
) -> None:
    _, model = trained[name]
    policy = model.policy
    policy.save(tmp_path / "policy.pt")
    restored = type(policy).load(tmp_path / "policy.pt", device="cpu")
    assert restored.quantum_config == policy.quantum_config
    assert restored.group_lrs == policy.group_lrs
    obs = _observations(CASES[name][2])
    a, _ = policy.predict(obs, deterministic=True)
    b, _ = restored.predict(obs, deterministic=True)
    np.testing.assert_array_equal(a, b)
    assert restored.parameter_counts() == policy.parameter_counts()


def test_learning_rate_multipliers_survive_algo_load(trained: dict) -> None:
    path, _ = trained["ppo"]
    loaded = PPO.load(path, device="cpu")
    update_learning_rate(loaded.policy.optimizer, 1e-3)
    lrs = {g["name"]: g["lr"] for g in loaded.policy.optimizer.param_groups}
    assert lrs["classical"] == pytest.approx(1e-3)
    assert lrs["weights"] == pytest.approx(1e-3 * 1e-2 / 3e-4)  # PPO's default lr is 3e-4


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ["ppo", "sac"])
def test_trained_on_cuda_loads_on_cpu(name: str, tmp_path: Path) -> None:
    algo, policy, env, kwargs = CASES[name]
    extra = {"learning_starts": 10, "batch_size": 8} if algo is SAC else {"n_steps": 64}
    model = algo(policy, env, policy_kwargs=kwargs, seed=0, device="cuda", **extra)
    before = {k: v.detach().cpu().clone() for k, v in model.policy.state_dict().items()}
    model.learn(total_timesteps=128)
    assert next(model.policy.parameters()).is_cuda
    after = model.policy.state_dict()
    assert any(not torch.equal(before[k], after[k].cpu()) for k in before)
    model.save(tmp_path / "model.zip")
    loaded = algo.load(tmp_path / "model.zip", device="cpu")
    obs = _observations(env)
    np.testing.assert_allclose(
        np.asarray(_raw_outputs(loaded, obs)), np.asarray(_raw_outputs(model, obs)), atol=1e-4
    )


# ---------------------------------------------------------------------------------------------
# Every quantum policy and module rebuilds from `_get_constructor_parameters` (what SB3's
# `BaseModel.save` stores and `BaseModel.load` calls the constructor with).
# ---------------------------------------------------------------------------------------------

# Non-default circuits, so that a module rebuilt with a default config would differ.
REBUILD_CASES = {
    "ppo": (
        PPO,
        QuantumActorCriticPolicy,
        "CartPole-v1",
        {"n_qubits": 4, "n_layers": 1, "entanglement": "linear", "critic": "quantum"},
    ),
    "dqn": (
        DQN,
        QuantumDQNPolicy,
        "CartPole-v1",
        {"n_qubits": 4, "n_layers": 1, "rotation": "u3", "output_head": "linear"},
    ),
    "td3": (
        TD3,
        QuantumTD3Policy,
        "Pendulum-v1",
        {"n_layers": 1, "entanglement": "linear", "critic": "quantum", "critic_n_qubits": 6},
    ),
    "sac": (
        SAC,
        QuantumSACPolicy,
        "Pendulum-v1",
        {"n_layers": 1, "rotation": "u3", "critic": "quantum", "critic_n_qubits": 5},
    ),
}
# (case, attribute of the policy; "" for the policy itself)
REBUILT_MODULES = [
    ("ppo", ""),
    ("dqn", ""),
    ("dqn", "q_net"),
    ("td3", ""),
    ("td3", "actor"),
    ("td3", "critic"),
    ("sac", ""),
    ("sac", "actor"),
    ("sac", "critic"),
]
REBUILT_IDS = [f"{case}-{attr or 'policy'}" for case, attr in REBUILT_MODULES]


def _make_rebuild_case(case: str):
    algo, policy, env, kwargs = REBUILD_CASES[case]
    extra = {"n_steps": 16} if algo is PPO else {"learning_starts": 8}
    return algo(policy, env, policy_kwargs=kwargs, seed=0, device="cpu", batch_size=8, **extra)


@pytest.fixture(scope="module")
def built() -> dict[str, object]:
    return {case: _make_rebuild_case(case) for case in REBUILD_CASES}


def _module(built: dict, case: str, attr: str) -> torch.nn.Module:
    policy = built[case].policy
    return getattr(policy, attr) if attr else policy


def _inputs(env_id: str) -> tuple[torch.Tensor, torch.Tensor]:
    env = gym.make(env_id)
    env.observation_space.seed(7)
    env.action_space.seed(7)
    obs = np.stack([env.observation_space.sample() for _ in range(6)])
    actions = np.stack([np.atleast_1d(env.action_space.sample()) for _ in range(6)])
    return torch.as_tensor(obs), torch.as_tensor(actions, dtype=torch.float32)


def _module_outputs(module: torch.nn.Module, obs: torch.Tensor, actions: torch.Tensor):
    """Everything the module computes: logits and values, Q-values, actions."""
    with torch.no_grad():
        if isinstance(module, ContinuousCritic):
            return torch.cat(module(obs, actions), dim=1)
        if isinstance(module, QuantumActorCriticPolicy):
            logits = module.get_distribution(obs).distribution.logits
            return torch.cat([logits, module.predict_values(obs)], dim=1)
        if isinstance(module, QuantumDQNPolicy):
            return module.q_net(obs)
        if isinstance(module, QuantumTD3Policy | QuantumSACPolicy):
            acts = module._predict(obs, deterministic=True)
            return torch.cat([acts, *module.critic(obs, acts)], dim=1)
        if isinstance(module, QuantumSACActor):
            return module(obs, deterministic=True)
        return module(obs)  # TD3 actor (mu), DQN Q-network (Q-values)


@pytest.mark.parametrize(("case", "attr"), REBUILT_MODULES, ids=REBUILT_IDS)
def test_constructor_parameters_cover_the_signature(built: dict, case: str, attr: str) -> None:
    module = _module(built, case, attr)
    data = module._get_constructor_parameters()
    params = list(inspect.signature(type(module).__init__).parameters.values())[1:]
    named = {p.name for p in params if p.kind is not inspect.Parameter.VAR_KEYWORD}
    assert named <= set(data), f"not saved: {sorted(named - set(data))}"
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):  # **quantum_kwargs
        fields = [f.name for f in dataclasses.fields(QuantumNetConfig)]
        assert QuantumNetConfig(**{k: data[k] for k in fields}) == module.quantum_config
    else:
        assert data["quantum_config"] == module.quantum_config


@pytest.mark.parametrize(("case", "attr"), REBUILT_MODULES, ids=REBUILT_IDS)
def test_rebuilt_from_constructor_parameters_is_the_same_module(
    built: dict, case: str, attr: str, tmp_path: Path
) -> None:
    module = _module(built, case, attr)
    module.save(tmp_path / "module.pt")
    rebuilt = {
        "direct": type(module)(**module._get_constructor_parameters()),
        "BaseModel.load": type(module).load(tmp_path / "module.pt", device="cpu"),
    }
    obs, actions = _inputs(REBUILD_CASES[case][2])
    expected = _module_outputs(module, obs, actions)
    for how, clone in rebuilt.items():
        assert clone.quantum_config == module.quantum_config, how
        clone.load_state_dict(module.state_dict())  # strict: same names and shapes
        torch.testing.assert_close(
            _module_outputs(clone, obs, actions), expected, rtol=0, atol=0, msg=how
        )


@pytest.mark.parametrize("case", ["td3", "sac"])
def test_off_policy_round_trip_keeps_the_quantum_critic(case: str, tmp_path: Path) -> None:
    algo, _, env, kwargs = REBUILD_CASES[case]
    model = _make_rebuild_case(case)
    model.learn(total_timesteps=16)
    model.save(tmp_path / "model.zip")
    loaded = algo.load(tmp_path / "model.zip", device="cpu")
    assert loaded.policy.quantum_config == model.policy.quantum_config
    for name in ("actor", "critic", "critic_target"):
        got = getattr(loaded.policy, name).quantum_config
        assert got == getattr(model.policy, name).quantum_config, name
    assert loaded.policy.critic.quantum_config.n_qubits == kwargs["critic_n_qubits"]
    obs, actions = _inputs(env)
    a, _ = model.predict(obs.numpy(), deterministic=True)
    b, _ = loaded.predict(obs.numpy(), deterministic=True)
    np.testing.assert_array_equal(a, b)
    torch.testing.assert_close(
        _module_outputs(loaded.policy, obs, actions),
        _module_outputs(model.policy, obs, actions),
        rtol=0,
        atol=0,
    )
