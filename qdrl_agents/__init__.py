"""Quantum RL agents: Qiskit circuits, fast executors, torch layers and SB3 policies.

Engine (knows nothing of torch modules): `CircuitSpec` -> `build_circuit` -> a Qiskit circuit;
`make_executor` evaluates it (``"statevector"``: exact torch simulation with autograd;
``"qiskit"``: EstimatorQNN over any V2 estimator). Adapter: `QuantumLayer` and the hybrid
compositions (`ClassicalToQuantum`, `QuantumToClassical`, `ParallelHybrid`). SB3 policies:
`QuantumActorCriticPolicy` (PPO, A2C), `QuantumDQNPolicy` (DQN), `QuantumTD3Policy` (TD3,
DDPG), `QuantumSACPolicy` (SAC).

Example:
    >>> from stable_baselines3 import PPO
    >>> from qdrl_agents import QuantumActorCriticPolicy
    >>> model = PPO(QuantumActorCriticPolicy, "CartPole-v1",
    ...             policy_kwargs=dict(n_qubits=4, n_layers=5))  # doctest: +SKIP
    >>> model.policy.circuit.draw()  # doctest: +SKIP
"""

from qdrl_agents.circuits import BuiltCircuit, CircuitSpec, build_circuit
from qdrl_agents.executors import Executor, make_executor
from qdrl_agents.layers import (
    ClassicalToQuantum,
    ParallelHybrid,
    QuantumLayer,
    QuantumToClassical,
    make_encoder,
    parameter_counts,
)
from qdrl_agents.policies import (
    QuantumActorCriticPolicy,
    QuantumDQNPolicy,
    QuantumNetConfig,
    QuantumSACPolicy,
    QuantumTD3Policy,
)

__all__ = [
    "BuiltCircuit",
    "CircuitSpec",
    "ClassicalToQuantum",
    "Executor",
    "ParallelHybrid",
    "QuantumActorCriticPolicy",
    "QuantumDQNPolicy",
    "QuantumLayer",
    "QuantumNetConfig",
    "QuantumSACPolicy",
    "QuantumTD3Policy",
    "QuantumToClassical",
    "build_circuit",
    "make_encoder",
    "make_executor",
    "parameter_counts",
]
