"""Baselines of ``qdrl/SecrecyJamming-v0`` (multi-agent; see :mod:`qdrl_envs.marl`).

==============  ============================================================================
Name            Joint policy
==============  ============================================================================
random          uniform actions in every agent's space
full-power      every transmitter at ``P_max``, every jammer silent (``"choose"`` agents
                transmit): the security-unaware network, jamming unused
full-power-jam  every transmitter at ``P_max`` and every fixed jammer at ``P_max``, its
                beams split equally over its targets (``"choose"`` agents transmit)
oracle          maximises the instantaneous secrecy sum for the true channels by
                coordinate ascent over each AP's role, power and beam (from both
                full-power baselines); agents can be scored as a fraction of it
==============  ============================================================================

Each answers ``predict(observations) -> (actions, state)`` on agent dicts, and
``act(agent, observation)`` for one agent (the AEC loop).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from qdrl_envs.baselines.base import coordinate_ascent
from qdrl_envs.config import check_int
from qdrl_envs.marl import MultiAgentBaseline, MultiAgentRandomPolicy
from qdrl_envs.secrecy_jamming import SecrecyJammingCore, SecrecyJammingEnv

__all__ = ["BASELINES", "FullPowerJamPolicy", "FullPowerPolicy", "SecrecyJammingOraclePolicy"]


def _env_of(env: Any) -> SecrecyJammingEnv:
    par = getattr(env, "unwrapped", env)
    if not isinstance(par, SecrecyJammingEnv):
        raise ValueError(f"expected a qdrl/SecrecyJamming-v0 environment (parallel or AEC), "
                         f"got {env!r}")
    return par


class FullPowerPolicy(MultiAgentBaseline):
    """Transmitters at full power, jammers silent; ``"choose"`` agents transmit."""

    def __init__(self, env: Any, *, seed: int | None = None) -> None:
        super().__init__(env, seed=seed)
        par = _env_of(env)
        self._actions = {a: par.agent_action(a, jam=par.roles[a] == "jam",
                                             power=-1.0 if par.roles[a] == "jam" else 1.0)
                         for a in par.possible_agents}

    def act(self, agent: str, observation: Any) -> np.ndarray:
        """The fixed action of ``agent``."""
        return self._actions[agent].copy()


class FullPowerJamPolicy(MultiAgentBaseline):
    """Transmitters and fixed jammers at full power (equal beams); ``"choose"`` transmit."""

    def __init__(self, env: Any, *, seed: int | None = None) -> None:
        super().__init__(env, seed=seed)
        par = _env_of(env)
        self._actions = {a: par.agent_action(a, jam=par.roles[a] == "jam", power=1.0)
                         for a in par.possible_agents}

    def act(self, agent: str, observation: Any) -> np.ndarray:
        """The fixed action of ``agent``."""
        return self._actions[agent].copy()


class SecrecyJammingOraclePolicy(MultiAgentBaseline):
    """Maximise the instantaneous secrecy sum for the true channels (an upper baseline).

    Reads the channels the next actions act on from ``env.unwrapped.core``. Each AP's
    candidates are its allowed roles with ``levels`` power actions evenly spaced in
    ``[-1, 1]`` (1 dB apart on the default 40 dB scale with 41 levels) and, when it jams, a
    beam at each of its targets alone or split equally over them. From each of the two
    full-power baselines, coordinate ascent replaces one AP's action by its best candidate
    with the others fixed, sweeping over the APs until a sweep improves nothing (at most
    ``max_sweeps``). Candidates are scored by :meth:`SecrecyJammingCore.evaluate` on the
    float32 actions the agents would send, so the value is the env's secrecy sum, and never
    below either full-power baseline. A numerical maximiser of a non-convex problem, not a
    certificate of optimality. The objective is the secrecy sum whatever ``reward_mode``.

    Args:
        env: A ``qdrl/SecrecyJamming-v0`` environment (parallel or AEC form).
        seed: Unused (deterministic).
        levels: Power actions per AP, >= 2.
        max_sweeps: Largest number of sweeps over the APs, >= 1.

    Raises:
        ValueError: On another env or an argument out of range.
    """

    needs_state = True

    def __init__(self, env: Any, *, seed: int | None = None, levels: int = 41,
                 max_sweeps: int = 8) -> None:
        super().__init__(env, seed=seed)
        check_int("levels", levels, low=2)
        check_int("max_sweeps", max_sweeps, low=1)
        self.par = _env_of(env)
        self.core: SecrecyJammingCore = self.par.core
        self.max_sweeps = max_sweeps
        m = self.core.n_aps
        grid = np.linspace(-1.0, 1.0, levels).astype(np.float32).astype(np.float64)
        self._candidates = []  # per AP: joint-action rows (K, 2 + M)
        for j, role in enumerate(self.core.roles):
            rows = []
            if role != "jam":
                for a in grid:
                    rows.append(np.concatenate(([0.0, a], np.ones(m))))
            if role != "tx":
                targets = np.flatnonzero(self.core.targets[j])
                beams = [np.ones(m)]
                if targets.size >= 2:
                    for e in targets:
                        w = -np.ones(m)
                        w[e] = 1.0
                        beams.append(w)
                for a in grid:
                    for w in beams:
                        rows.append(np.concatenate(([1.0, a], w)))
            self._candidates.append(np.array(rows))
        starts = []
        for jam_power in (-1.0, 1.0):
            start = np.ones((m, 2 + m))
            start[:, 0] = [1.0 if r == "jam" else 0.0 for r in self.core.roles]
            start[:, 1] = [jam_power if r == "jam" else 1.0 for r in self.core.roles]
            starts.append(start)
        self._starts = starts
        self._cache: tuple[bytes, np.ndarray, float] | None = None

    def _value(self, joint: np.ndarray) -> np.ndarray:
        return self.core.evaluate(joint)["secrecy_rate"]

    def solve(self) -> tuple[np.ndarray, float]:
        """The best joint action found ``(M, 2 + M)`` for the current channels and its sum."""
        key = self.core.gains.tobytes()
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1].copy(), self._cache[2]
        best, best_v = coordinate_ascent(self._value, self._starts, self._candidates,
                                         self.max_sweeps)
        self._cache = (key, best.copy(), best_v)
        return best, best_v

    def act(self, agent: str, observation: Any) -> np.ndarray:
        """``agent``'s part of :meth:`solve`'s joint action."""
        joint, _ = self.solve()
        j = self.par.possible_agents.index(agent)
        row = joint[j]
        return self.par.agent_action(agent, jam=bool(row[0] > 0.5), power=float(row[1]),
                                     weights=row[2:])


BASELINES: dict[str, type[MultiAgentBaseline]] = {
    "random": MultiAgentRandomPolicy,
    "full-power": FullPowerPolicy,
    "full-power-jam": FullPowerJamPolicy,
    "oracle": SecrecyJammingOraclePolicy,
}
"""Baselines of ``qdrl/SecrecyJamming-v0`` by name."""
