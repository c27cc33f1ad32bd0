"""Quantum policies for stable-baselines3 (docs/design.md §5).

* `QuantumActorCriticPolicy`: PPO and A2C (Box, Discrete, MultiDiscrete, MultiBinary actions).
* `QuantumDQNPolicy`: DQN (Discrete actions).
* `QuantumTD3Policy`: TD3 and DDPG (Box actions).
* `QuantumSACPolicy`: SAC (Box actions).

All take the quantum options of `QuantumNetConfig` through ``policy_kwargs`` (``n_qubits``,
``n_layers``, ``entanglement``, ``rotation``, ``executor``, ``encoder``, ...: the fields of
`qdrl_agents.circuits.CircuitSpec` and `qdrl_agents.layers.LayerOptions`, each declared once,
there, with the policy defaults that differ in `POLICY_DEFAULTS`) or a user's own
circuit (``circuit=``, ``input_params=``, ``weight_params=``, ``observables=``, as
``EstimatorQNN`` takes them, or ``circuit=`` a callable of the input width), separate initial
learning rates per parameter group (``lr_input_scaling``, ``lr_weights``,
``lr_output_scaling``, ``lr_classical``) whose ratios survive SB3's schedule, and expose
``policy.circuit`` and ``policy.parameter_counts()``.
"""

from qdrl_agents.policies._common import (
    OPTION_TYPES,
    POLICY_DEFAULTS,
    PolicyDefault,
    QuantumNetConfig,
    make_grouped_optimizer,
    parity_partition,
)
from qdrl_agents.policies.actor_critic import (
    ActorCriticExtractor,
    QuantumActorCriticExtractor,
    QuantumActorCriticPolicy,
)
from qdrl_agents.policies.continuous import QuantumContinuousCritic
from qdrl_agents.policies.dqn import QuantumDQNPolicy, QuantumQNetwork
from qdrl_agents.policies.sac import QuantumSACActor, QuantumSACPolicy
from qdrl_agents.policies.td3 import QuantumTD3Actor, QuantumTD3Policy

__all__ = [
    "OPTION_TYPES",
    "POLICY_DEFAULTS",
    "ActorCriticExtractor",
    "PolicyDefault",
    "QuantumActorCriticExtractor",
    "QuantumActorCriticPolicy",
    "QuantumContinuousCritic",
    "QuantumDQNPolicy",
    "QuantumNetConfig",
    "QuantumQNetwork",
    "QuantumSACActor",
    "QuantumSACPolicy",
    "QuantumTD3Actor",
    "QuantumTD3Policy",
    "make_grouped_optimizer",
    "parity_partition",
]
