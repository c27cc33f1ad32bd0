"""The names of the registry's learning agents: family, SB3 algorithm, action space needed.

Pure data, importing nothing heavy: :mod:`qdrl_bench.hyperparams` (which file an agent reads),
:mod:`qdrl_bench.report` (agent or baseline) and :mod:`qdrl_bench.registry` (which builds the
agents) all look names up here. See :mod:`qdrl_bench.registry` for what each family is.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ALGOS",
    "CTDE_ALGOS",
    "HYBRID_QUBITS",
    "ON_POLICY",
    "AgentEntry",
    "agent_entries",
    "get_agent",
    "is_baseline",
]

HYBRID_QUBITS = 4
"""Qubits the hybrid agents' classical encoder feeds."""

ALGOS: dict[str, tuple[str, str, str]] = {
    # name: (SB3 class, qdrl_agents policy class, action need)
    "ppo": ("PPO", "QuantumActorCriticPolicy", "any"),
    "a2c": ("A2C", "QuantumActorCriticPolicy", "any"),
    "dqn": ("DQN", "QuantumDQNPolicy", "discrete"),
    "td3": ("TD3", "QuantumTD3Policy", "box"),
    "ddpg": ("DDPG", "QuantumTD3Policy", "box"),
    "sac": ("SAC", "QuantumSACPolicy", "box"),
}
ON_POLICY = ("ppo", "a2c")
"""The on-policy algorithms of :data:`ALGOS` (the others keep a replay buffer)."""

CTDE_ALGOS: dict[str, str] = {
    "mappo": "MAPPO: quantum actors, one centralised quantum critic per role on the global state",
    "ippo": "IPPO: quantum actors, each agent's quantum critic on its own observation",
}
"""The multi-agent algorithms of :mod:`qdrl_bench.marl_ctde` (TorchRL; multi-agent envs only)."""


@dataclass(frozen=True)
class AgentEntry:
    """A learning agent of the registry.

    Attributes:
        name: Registry name.
        family: ``quantum``, ``hybrid``, ``classical`` or ``small``.
        algo: Lower-case SB3 algorithm (``ppo``, ...).
        action_need: ``any``, ``discrete`` or ``box``.
        description: One line for ``qdrl-bench list``.
        engine: ``"sb3"`` (a stable-baselines3 algorithm: any single-agent env, and the
            multi-agent envs parameter-shared, :mod:`qdrl_bench.marl_train`) or ``"torchrl"``
            (MAPPO / IPPO of :mod:`qdrl_bench.marl_ctde`: the multi-agent envs only).
    """

    name: str
    family: str
    algo: str
    action_need: str
    description: str
    engine: str = "sb3"


def _entries() -> dict[str, AgentEntry]:
    out: dict[str, AgentEntry] = {}
    for algo, (cls, qcls, need) in ALGOS.items():
        out[f"q-{algo}"] = AgentEntry(f"q-{algo}", "quantum", algo, need,
                                      f"{cls} + {qcls}, one qubit per observation feature")
        out[f"q-{algo}-hybrid"] = AgentEntry(
            f"q-{algo}-hybrid", "hybrid", algo, need,
            f"{cls} + {qcls}, linear encoder -> {HYBRID_QUBITS} qubits")
        out[algo] = AgentEntry(algo, "classical", algo, need, f"{cls} + MlpPolicy (SB3 sizes)")
        out[f"{algo}-small"] = AgentEntry(
            f"{algo}-small", "small", algo, need,
            f"{cls} + MLP with the parameter count of q-{algo} on the env")
    for algo, what in CTDE_ALGOS.items():
        out[f"q-{algo}"] = AgentEntry(f"q-{algo}", "quantum", algo, "box", what,
                                      engine="torchrl")
        out[f"{algo}-small"] = AgentEntry(
            f"{algo}-small", "small", algo, "box",
            f"{algo.upper()} with one-hidden-layer MLPs of q-{algo}'s parameter counts",
            engine="torchrl")
    return out


_AGENTS = _entries()


def agent_entries() -> dict[str, AgentEntry]:
    """Return every learning agent of the registry, name -> entry."""
    return dict(_AGENTS)


def get_agent(name: str) -> AgentEntry:
    """Return the learning agent ``name``.

    Raises:
        ValueError: If there is none (the message lists the names).
    """
    if name not in _AGENTS:
        raise ValueError(f"unknown agent {name!r}; learning agents: {sorted(_AGENTS)}; "
                         "baselines: see `qdrl-bench list`")
    return _AGENTS[name]


def is_baseline(name: str) -> bool:
    """Whether ``name`` is not a learning agent (so it must be a baseline)."""
    return name not in _AGENTS
