"""The multi-agent (PettingZoo) environments of qdrl_envs: a small registry and baseline base.

Gymnasium's registry holds single-agent envs only, so the PettingZoo ``ParallelEnv`` s live in
this one instead, under the same ``qdrl/<Name>-v<k>`` ids::

    import qdrl_envs

    par = qdrl_envs.make_parallel("qdrl/SecrecyJamming-v0", n_aps=4)  # a ParallelEnv
    aec = qdrl_envs.make_aec("qdrl/SecrecyJamming-v0")                 # its AEC form
    policy = qdrl_envs.marl.make_baseline("full-power-jam", par)
    actions, _ = policy.predict(observations)                          # dict -> dict

Each module also exposes PettingZoo's usual ``parallel_env(**kwargs)`` and ``env(**kwargs)``.
Keyword arguments go to the env's config dataclass (unknown or invalid ones raise
``ValueError``). Nothing here imports PettingZoo until an env is made.

Every env is a :class:`qdrl_envs._parallel.CoreParallelEnv`: the ``ParallelEnv`` scaffolding
(agents, spaces, seeding, action checks, episode end, rendering) written once around the env's
batched core, whose rows are the env's batched form (``env.core_cls(env.config, n)`` seeded
with ``env.instance_rngs(seed)``).
"""

from __future__ import annotations

import abc
import copy
import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "MARL_ENV_IDS",
    "MarlEntry",
    "MultiAgentBaseline",
    "MultiAgentRandomPolicy",
    "baseline_names",
    "check_action_dict",
    "make_aec",
    "make_baseline",
    "make_parallel",
    "marl_entry",
]


@dataclass(frozen=True)
class MarlEntry:
    """One multi-agent environment: id, entry points and its baselines.

    Attributes:
        id: ``qdrl/<Name>-v<k>``.
        name: The env's ``metadata["name"]`` (PettingZoo's ``<name>_v<k>``).
        parallel_entry_point: ``"module:function"`` returning the ``ParallelEnv``.
        aec_entry_point: ``"module:function"`` returning the AEC form.
        baselines: Module holding ``BASELINES`` (name -> :class:`MultiAgentBaseline` class).
        max_cycles: Default episode length (steps; a config field of the env).
    """

    id: str
    name: str
    parallel_entry_point: str
    aec_entry_point: str
    baselines: str
    max_cycles: int


_ENTRIES: tuple[MarlEntry, ...] = (
    MarlEntry("qdrl/SecrecyJamming-v0", "secrecy_jamming_v0",
              "qdrl_envs.secrecy_jamming:parallel_env", "qdrl_envs.secrecy_jamming:env",
              "qdrl_envs.baselines.secrecy_jamming", 100),
    MarlEntry("qdrl/SliceOrchestration-v0", "slice_orchestration_v0",
              "qdrl_envs.slice_orchestration:parallel_env", "qdrl_envs.slice_orchestration:env",
              "qdrl_envs.baselines.slice_orchestration", 200),
)

MARL_ENV_IDS: tuple[str, ...] = tuple(e.id for e in _ENTRIES)
"""Every multi-agent environment id."""


def marl_entry(env_or_id: Any) -> MarlEntry:
    """The registry entry of an id, or of an env made from it (parallel or AEC, wrapped or not).

    Raises:
        ValueError: If it is not a qdrl multi-agent environment (the message lists the ids).
    """
    if isinstance(env_or_id, str):
        found = [e for e in _ENTRIES if e.id == env_or_id]
    else:
        name = getattr(getattr(env_or_id, "unwrapped", env_or_id), "metadata", {}).get("name")
        found = [e for e in _ENTRIES if e.name == name]
    if not found:
        raise ValueError(f"unknown multi-agent environment {env_or_id!r}; the ids are "
                         f"{list(MARL_ENV_IDS)}")
    return found[0]


def _load(entry_point: str) -> Any:
    module, attr = entry_point.split(":")
    return getattr(importlib.import_module(module), attr)


def make_parallel(env_id: str, **kwargs: Any) -> Any:
    """Make the PettingZoo ``ParallelEnv`` registered as ``env_id``.

    Args:
        env_id: One of :data:`MARL_ENV_IDS`.
        **kwargs: ``render_mode``, ``config`` and config fields.

    Raises:
        ValueError: On an unknown id or invalid config.
    """
    return _load(marl_entry(env_id).parallel_entry_point)(**kwargs)


def make_aec(env_id: str, **kwargs: Any) -> Any:
    """Make the AEC form (``pettingzoo.utils.parallel_to_aec``) of ``env_id``.

    Raises:
        ValueError: On an unknown id or invalid config.
    """
    return _load(marl_entry(env_id).aec_entry_point)(**kwargs)


def check_action_dict(actions: Any, live: list[str]) -> None:
    """Check that ``actions`` is a dict with one entry for each live agent and no other.

    What a ``ParallelEnv.step`` checks before it looks at the actions themselves (each then
    goes through :func:`qdrl_envs.validation.check_action`, its errors naming the agent).

    Raises:
        ValueError: If ``actions`` is not a mapping, a live agent has no action, or an agent
            that is unknown or not live has one.
    """
    if not isinstance(actions, Mapping):
        raise ValueError(f"actions must be a dict agent -> action, got "
                         f"{type(actions).__name__}")
    missing = [a for a in live if a not in actions]
    if missing:
        raise ValueError(f"no action for agent(s) {missing}: step() needs one action per "
                         f"live agent {live}")
    extra = [a for a in actions if a not in live]
    if extra:
        raise ValueError(f"action(s) for agent(s) {extra} that are not live; the live "
                         f"agents are {live}")


def _baseline_classes(env_or_id: Any) -> dict[str, type[MultiAgentBaseline]]:
    return dict(importlib.import_module(marl_entry(env_or_id).baselines).BASELINES)


def baseline_names(env_or_id: Any) -> list[str]:
    """The baselines of a multi-agent environment (``random`` always among them)."""
    return sorted(_baseline_classes(env_or_id))


def make_baseline(name: str, env: Any, **kwargs: Any) -> MultiAgentBaseline:
    """Build the baseline ``name`` for ``env`` (parallel or AEC form).

    Raises:
        ValueError: If ``name`` is not a baseline of that environment (the message lists them).
    """
    classes = _baseline_classes(env)
    if name not in classes:
        raise ValueError(f"unknown baseline {name!r} for {marl_entry(env).id}; choose from "
                         f"{sorted(classes)}")
    return classes[name](env, **kwargs)


class MultiAgentBaseline(abc.ABC):
    """A fixed joint policy with a stable-baselines3-like ``predict`` over agent dicts.

    ``predict`` maps a dict of observations (agent -> observation, PettingZoo's
    ``ParallelEnv`` form) to a dict of actions for the same agents; :meth:`act` answers for one
    agent (the AEC loop). Subclasses implement :meth:`act`, or :meth:`predict` where the agents'
    actions are chosen jointly.

    Args:
        env: The env the policy acts in (parallel or AEC form; ``env.unwrapped`` is the
            ``ParallelEnv``).
        seed: Seed of the policy's own random generator (stochastic baselines).
    """

    #: Whether the policy reads the environment's true (hidden) state, i.e. is an oracle.
    needs_state: bool = False

    def __init__(self, env: Any, *, seed: int | None = None) -> None:
        self.env = env
        self.unwrapped = env.unwrapped
        self.possible_agents = list(env.possible_agents)
        self.rng = np.random.default_rng(seed)

    @abc.abstractmethod
    def act(self, agent: str, observation: Any) -> Any:
        """The action of ``agent`` given its observation."""

    def predict(self, observations: Mapping[str, Any], state: Any = None,
                episode_start: Any = None, deterministic: bool = True
                ) -> tuple[dict[str, Any], Any]:
        """Return ``(actions, state)``: one action per agent in ``observations``.

        Raises:
            ValueError: If ``observations`` is not a dict of known agents.
        """
        if not isinstance(observations, Mapping):
            raise ValueError(f"{type(self).__name__}.predict takes a dict agent -> observation,"
                             f" got {type(observations).__name__}; for one agent call "
                             "act(agent, observation)")
        unknown = [a for a in observations if a not in self.possible_agents]
        if unknown:
            raise ValueError(f"unknown agent(s) {unknown}; the agents are "
                             f"{self.possible_agents}")
        return {a: self.act(a, o) for a, o in observations.items()}, state


class MultiAgentRandomPolicy(MultiAgentBaseline):
    """Uniformly random actions from each agent's action space (seeded by ``seed``)."""

    def __init__(self, env: Any, *, seed: int | None = None) -> None:
        super().__init__(env, seed=seed)
        self._spaces = {}
        for agent in self.possible_agents:
            space = copy.deepcopy(env.action_space(agent))
            space.seed(int(self.rng.integers(2**31)))
            self._spaces[agent] = space

    def act(self, agent: str, observation: Any) -> Any:
        """A uniform sample of ``agent``'s action space."""
        return self._spaces[agent].sample()
