"""Quantum RL agents: Qiskit circuits, fast executors, torch layers and SB3 policies.

Engine (knows nothing of torch modules): `CircuitSpec` -> `build_circuit` -> a Qiskit circuit,
or a user's own circuit in ``EstimatorQNN``'s vocabulary (`circuit_from_qiskit`, `UserCircuit`,
and ``circuit=``, ``input_params=``, ``weight_params=``, ``observables=`` on the layers,
executors and policies); `make_executor` evaluates it (``"statevector"``: exact torch
simulation with autograd; ``"qiskit"``: EstimatorQNN over any V2 estimator). Adapter:
`QuantumLayer` (its options: `LayerOptions`) and the hybrid compositions
(`ClassicalToQuantum`, `QuantumToClassical`, `ParallelHybrid`); `swap_executor` evaluates a
trained module's circuits on another executor (shots, noise models) for the length of a
``with`` block. SB3 policies:
`QuantumActorCriticPolicy` (PPO, A2C), `QuantumDQNPolicy` (DQN), `QuantumTD3Policy` (TD3,
DDPG), `QuantumSACPolicy` (SAC). Training beyond SB3's optimisers (paper Sec. III-E): `Rotosolve`
(closed-form per-weight minimisation) and `SPSA` (closure-driven ``torch.optim`` optimisers);
parameter-shift gradients come from the ``"qiskit"`` executor. Trainability (Sec. III-D2):
`gradient_variance` estimates Var[dC/dtheta] over random weights, `gradient_variance_sweep`
and `variance_decay_rate` trace the barren-plateau curve over qubits and depth.

Example:
    >>> from stable_baselines3 import PPO
    >>> from qdrl_agents import QuantumActorCriticPolicy
    >>> model = PPO(QuantumActorCriticPolicy, "CartPole-v1",
    ...             policy_kwargs=dict(n_qubits=4, n_layers=5))  # doctest: +SKIP
    >>> model.policy.circuit.draw()  # doctest: +SKIP
"""

from qdrl_agents.analysis import (
    GradientVariance,
    gradient_variance,
    gradient_variance_sweep,
    variance_decay_rate,
)
from qdrl_agents.circuits import (
    BuiltCircuit,
    CircuitSpec,
    UserCircuit,
    build_circuit,
    circuit_from_qiskit,
)
from qdrl_agents.executors import Executor, make_executor
from qdrl_agents.layers import (
    ClassicalToQuantum,
    LayerOptions,
    ParallelHybrid,
    QuantumLayer,
    QuantumToClassical,
    make_encoder,
    parameter_counts,
    swap_executor,
)
from qdrl_agents.optim import SPSA, Rotosolve
from qdrl_agents.policies import (
    QuantumActorCriticPolicy,
    QuantumDQNPolicy,
    QuantumNetConfig,
    QuantumSACPolicy,
    QuantumTD3Policy,
)
from qdrl_agents.vec_env import VectorEnvAdapter

__all__ = [
    "SPSA",
    "BuiltCircuit",
    "CircuitSpec",
    "ClassicalToQuantum",
    "Executor",
    "GradientVariance",
    "LayerOptions",
    "ParallelHybrid",
    "QuantumActorCriticPolicy",
    "QuantumDQNPolicy",
    "QuantumLayer",
    "QuantumNetConfig",
    "QuantumSACPolicy",
    "QuantumTD3Policy",
    "QuantumToClassical",
    "Rotosolve",
    "UserCircuit",
    "VectorEnvAdapter",
    "build_circuit",
    "circuit_from_qiskit",
    "gradient_variance",
    "gradient_variance_sweep",
    "make_encoder",
    "make_executor",
    "parameter_counts",
    "swap_executor",
    "variance_decay_rate",
]
