"""Baselines of ``qdrl/SliceOrchestration-v0`` (multi-agent; see :mod:`qdrl_envs.marl`).

==================  ========================================================================
Name                Joint policy
==================  ========================================================================
random              uniform actions in every agent's space
equal-split         every cell splits its RBs equally
proportional        every cell: shares proportional to the RBs each slice needs this slot
semantic-priority   every cell: semantic first (critical, routine), URLLC next, eMBB the rest
slot-oracle         every cell plays its interference-free best split of the slot (true
                    state, uncoordinated: each cell ignores what the others cause)
coordinated-oracle  coordinate ascent of the slot's team reward over the cells' splits, on
                    the true state with the interference, from the slot-oracle and the
                    semantic-priority joint actions (centralised, coordinated)
==================  ========================================================================

The per-cell baselines are ``SemanticSlicing-v1``'s
(:mod:`qdrl_envs.baselines.semantic_slicing`), each acting on its cell's part of the
observation (the first 15 entries, that env's observation) with that cell's config. Each
answers ``predict(observations) -> (actions, state)`` on agent dicts, and
``act(agent, observation)`` for one agent (the AEC loop). ``env.unwrapped.core.slot_bound()``
(:meth:`qdrl_envs.slice_orchestration.SliceOrchestrationCore.slot_bound`) bounds what any
joint action can score in a slot.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from qdrl_envs.baselines.base import BaselinePolicy, coordinate_ascent
from qdrl_envs.baselines.semantic_slicing import (
    EqualSplitPolicy,
    ProportionalPolicy,
    SemanticPriorityPolicy,
    SlotOraclePolicy,
)
from qdrl_envs.config import check_int
from qdrl_envs.marl import MultiAgentBaseline, MultiAgentRandomPolicy
from qdrl_envs.semantic_slicing import SemanticSlicingConfig, SemanticSlicingCore
from qdrl_envs.slice_orchestration import (
    CELL_OBS_DIM,
    SliceOrchestrationCore,
    SliceOrchestrationEnv,
)

__all__ = [
    "BASELINES",
    "CoordinatedOraclePolicy",
    "PerCellEqualSplitPolicy",
    "PerCellPolicy",
    "PerCellProportionalPolicy",
    "PerCellSemanticPriorityPolicy",
    "PerCellSlotOraclePolicy",
]


def _env_of(env: Any) -> SliceOrchestrationEnv:
    par = getattr(env, "unwrapped", env)
    if not isinstance(par, SliceOrchestrationEnv):
        raise ValueError(f"expected a qdrl/SliceOrchestration-v0 environment (parallel or AEC), "
                         f"got {env!r}")
    return par


class _CellView:
    """What a ``SemanticSlicing-v1`` baseline reads of its env, for one cell of this one."""

    def __init__(self, config: SemanticSlicingConfig, core: SemanticSlicingCore) -> None:
        self.config = config
        self.core = core
        self.observation_space = spaces.Box(0.0, 1.0, (CELL_OBS_DIM,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (3,), dtype=np.float32)

    @property
    def unwrapped(self) -> _CellView:
        return self


class PerCellPolicy(MultiAgentBaseline):
    """A ``SemanticSlicing-v1`` baseline in every cell, on the cell's own observation.

    Subclasses set :attr:`single_cls`. The policy of cell ``i`` sees the first 15 entries of
    the agent's observation (exactly that env's observation of the cell) and the cell's
    config and core (``env.unwrapped.core.cells[i]``; only oracles read it).
    """

    single_cls: type[BaselinePolicy]

    def __init__(self, env: Any, *, seed: int | None = None) -> None:
        par = _env_of(env)
        super().__init__(env, seed=seed)
        self.par = par
        seeds = self.rng.integers(2**31, size=len(self.possible_agents))
        self.policies: dict[str, BaselinePolicy] = {
            a: self.single_cls(_CellView(par.core.cell_configs[i], par.core.cells[i]),  # type: ignore[arg-type]
                               seed=int(seeds[i]))
            for i, a in enumerate(self.possible_agents)}

    def act(self, agent: str, observation: Any) -> np.ndarray:
        """The cell policy's action for the cell's part of ``observation``."""
        if agent not in self.policies:
            raise ValueError(f"unknown agent {agent!r}; the agents are {self.possible_agents}")
        obs = np.asarray(observation)[:CELL_OBS_DIM]
        return np.asarray(self.policies[agent].predict(obs)[0], dtype=np.float32)


class PerCellEqualSplitPolicy(PerCellPolicy):
    """Every cell splits its RBs equally (``SemanticSlicing-v1``'s ``equal-split``)."""

    single_cls = EqualSplitPolicy


class PerCellProportionalPolicy(PerCellPolicy):
    """Every cell: shares proportional to its slices' needs (``proportional``)."""

    single_cls = ProportionalPolicy


class PerCellSemanticPriorityPolicy(PerCellPolicy):
    """Every cell: semantic first, URLLC next, eMBB the rest (``semantic-priority``)."""

    single_cls = SemanticPriorityPolicy


class PerCellSlotOraclePolicy(PerCellPolicy):
    """Every cell plays its interference-free best split (``SemanticSlicing-v1``'s oracle).

    Each cell's :class:`~qdrl_envs.baselines.semantic_slicing.SlotOraclePolicy` searches every
    split of its RBs on its true state as if it had no neighbours: the best a cell can do
    alone, blind to the interference it suffers and causes.
    """

    needs_state = True
    single_cls = SlotOraclePolicy


class CoordinatedOraclePolicy(MultiAgentBaseline):
    """Coordinate ascent of the slot's team reward over the cells' splits (true state).

    Reads the true state of every cell. Each cell's candidates are the splits of the ``B`` RBs
    whose counts are multiples of ``rb_step`` (every split by default). From each start (the
    slot-oracle and the semantic-priority joint actions), one cell at a time is moved to its
    best candidate with the others fixed, scored by
    :meth:`SliceOrchestrationCore.evaluate` (the env's own step: interference, SINRs and every
    cell's reward, on the float32 actions the agents would send), sweeping over the cells
    until a sweep improves nothing (at most ``max_sweeps``); the best joint action found is
    played. Its team reward is never below either start's. A numerical maximiser of one
    slot, not a certificate of optimality (:meth:`SliceOrchestrationCore.slot_bound` is an
    upper bound), and myopic like ``SemanticSlicing-v1``'s slot oracle. The objective is the
    team reward whatever ``reward_mode``.

    Args:
        env: A ``qdrl/SliceOrchestration-v0`` environment (parallel or AEC form).
        seed: Unused (deterministic).
        rb_step: Granularity of the candidate RB counts, in [1, B].
        max_sweeps: Largest number of sweeps over the cells, >= 1.

    Raises:
        ValueError: On another env or an argument out of range.
    """

    needs_state = True

    def __init__(self, env: Any, *, seed: int | None = None, rb_step: int = 1,
                 max_sweeps: int = 4) -> None:
        self.par = _env_of(env)
        super().__init__(env, seed=seed)
        self.core: SliceOrchestrationCore = self.par.core
        check_int("rb_step", rb_step, low=1, high=self.core.n_rbs)
        check_int("max_sweeps", max_sweeps, low=1)
        self.max_sweeps = max_sweeps
        self.candidates = self.core.all_splits(rb_step)
        """Candidate actions of one cell ``(K, 3)``."""
        self._starts = [PerCellSlotOraclePolicy(env), PerCellSemanticPriorityPolicy(env)]
        self._cache: tuple[bytes, np.ndarray, float] | None = None

    def _key(self) -> bytes:
        parts = []
        for cell in self.core.cells:
            parts += [cell.queues.storage[0].tobytes(), cell.pending[0].tobytes(),
                      cell.snr_db[0].tobytes()]
        return b"".join(parts)

    def solve(self) -> tuple[np.ndarray, float]:
        """The best joint action found ``(n, 3)`` for the current slot and its team reward."""
        key = self._key()
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1].copy(), self._cache[2]
        obs = self.core.observe()[0]
        agents = self.par.possible_agents
        starts = (np.stack([policy.act(a, obs[i]) for i, a in enumerate(agents)]
                           ).astype(np.float64) for policy in self._starts)
        best, best_v = coordinate_ascent(lambda x: self.core.evaluate(x)["team_reward"],
                                         starts, [self.candidates] * self.core.n_cells,
                                         self.max_sweeps)
        self._cache = (key, best.copy(), best_v)
        return best, best_v

    def act(self, agent: str, observation: Any) -> np.ndarray:
        """``agent``'s part of :meth:`solve`'s joint action."""
        if agent not in self.possible_agents:
            raise ValueError(f"unknown agent {agent!r}; the agents are {self.possible_agents}")
        joint, _ = self.solve()
        return joint[self.possible_agents.index(agent)].astype(np.float32)


BASELINES: dict[str, type[MultiAgentBaseline]] = {
    "random": MultiAgentRandomPolicy,
    "equal-split": PerCellEqualSplitPolicy,
    "proportional": PerCellProportionalPolicy,
    "semantic-priority": PerCellSemanticPriorityPolicy,
    "slot-oracle": PerCellSlotOraclePolicy,
    "coordinated-oracle": CoordinatedOraclePolicy,
}
"""Baselines of ``qdrl/SliceOrchestration-v0`` by name."""
