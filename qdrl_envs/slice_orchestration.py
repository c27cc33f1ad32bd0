"""``qdrl/SliceOrchestration-v0``: distributed slice orchestrators that coordinate (Sec. VII-B).

A PettingZoo ``ParallelEnv`` for the paper's Sec. VII-B (iii), "multi-agent coordination for
network slicing": one orchestrator agent per cell, each slicing its cell's resource blocks
between the semantic, eMBB and URLLC slices of ``qdrl/SemanticSlicing-v1``
(:mod:`qdrl_envs.semantic_slicing`, Sec. V-B2 / V-E), the cells coupled by inter-cell
interference on the RBs they share. Every cell *is* a :class:`SemanticSlicingCore` row (its
arrivals, fading, queues, semantic similarity and SLA accounting, run by that core's kernels);
this module adds the coupling only. Written once:

* :func:`coupling_matrix`, :func:`neighbour_slots` — who interferes with whom (topologies);
* :func:`slice_bands`, :func:`active_rbs`, :func:`intercell_interference` — the pure
  interference model (public, so anyone can check it);
* :class:`SliceOrchestrationCore` — the coupled cells on ``N`` instances (one
  :class:`~qdrl_envs.semantic_slicing.SemanticSlicingCore` per cell, ``N`` rows each);
* :class:`SliceOrchestrationEnv` — the ParallelEnv (its docstring is the manual), on one
  instance.

``parallel_env(**kwargs)`` and ``env(**kwargs)`` (the AEC form) are PettingZoo's usual entry
points; ``qdrl_envs.make_parallel("qdrl/SliceOrchestration-v0", **kwargs)`` goes through the
registry (:mod:`qdrl_envs.marl`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces
from numpy.typing import ArrayLike, NDArray

from qdrl_envs import radio
from qdrl_envs._parallel import CoreParallelEnv
from qdrl_envs.config import check_bool, check_choice, check_int, check_real
from qdrl_envs.core import StepResult, agg_figure, figure_rgb
from qdrl_envs.semantic_slicing import (
    SLICE_NAMES,
    SemanticSlicingConfig,
    SemanticSlicingCore,
    all_splits,
    shares_to_rbs,
)

__all__ = [
    "CELL_OBS_DIM",
    "NEIGHBOUR_OBS_DIM",
    "REWARD_MODES",
    "TOPOLOGIES",
    "SliceOrchestrationConfig",
    "SliceOrchestrationCore",
    "SliceOrchestrationEnv",
    "active_rbs",
    "cell_generators",
    "coupling_matrix",
    "env",
    "intercell_interference",
    "neighbour_slots",
    "parallel_env",
    "slice_bands",
]

TOPOLOGIES: tuple[str, ...] = ("ring", "line", "full")
"""Values of :attr:`SliceOrchestrationConfig.topology`."""

REWARD_MODES: tuple[str, ...] = ("individual", "team")
"""Values of :attr:`SliceOrchestrationConfig.reward_mode`."""

CELL_OBS_DIM = 15
"""Length of one cell's ``SemanticSlicing-v1`` observation (the head of every observation)."""

NEIGHBOUR_OBS_DIM = 6
"""Entries per neighbour slot of an observation (its demand, then its last split)."""

_LOAD_FIELDS = ("critical_msg_rate", "routine_msg_rate", "embb_load_bps", "urllc_load_bps")
_CELL_FIELDS = tuple(f.name for f in fields(SemanticSlicingConfig))


# --------------------------------------------------------------------------------------------
# Topology
# --------------------------------------------------------------------------------------------


def neighbour_slots(n_cells: int, topology: str) -> tuple[tuple[int, ...], ...]:
    """The neighbours of each cell, one per observation slot (``-1``: an empty slot).

    * ``"ring"``: cells on a circle; slot 0 is cell ``i - 1``, slot 1 cell ``i + 1`` (mod
      ``n``). Two cells have one slot (each other), one cell none.
    * ``"line"``: cells along a road; slot 0 is cell ``i - 1``, slot 1 cell ``i + 1``, ``-1``
      past either end (so two slots whenever ``n >= 2``).
    * ``"full"``: every cell neighbours every other; slot ``k`` is cell ``i + k + 1`` (mod
      ``n``), ``n - 1`` slots.

    Raises:
        ValueError: On ``n_cells < 1`` or an unknown topology.
    """
    check_int("n_cells", n_cells, low=1)
    check_choice("topology", topology, TOPOLOGIES)
    n = int(n_cells)
    if topology == "full":
        return tuple(tuple((i + k + 1) % n for k in range(n - 1)) for i in range(n))
    if n == 1:
        return ((),)
    if topology == "ring":
        if n == 2:
            return ((1,), (0,))
        return tuple(((i - 1) % n, (i + 1) % n) for i in range(n))
    return tuple((i - 1 if i > 0 else -1, i + 1 if i < n - 1 else -1) for i in range(n))


def coupling_matrix(n_cells: int, topology: str, coupling: float) -> NDArray[np.float64]:
    """``kappa[i, j]``: the interference-to-noise ratio cell ``j`` causes at cell ``i``'s users.

    ``coupling`` (linear) for every neighbour (:func:`neighbour_slots`), 0 elsewhere and on the
    diagonal; a neighbour is counted once however many slots name it.

    Raises:
        ValueError: On a bad ``n_cells`` / ``topology`` or a negative or non-finite coupling.
    """
    check_real("coupling", coupling, 0.0)
    kappa = np.zeros((n_cells, n_cells))
    for i, slots in enumerate(neighbour_slots(n_cells, topology)):
        for j in slots:
            if j >= 0:
                kappa[i, j] = float(coupling)
    return kappa


# --------------------------------------------------------------------------------------------
# The interference model
# --------------------------------------------------------------------------------------------


def slice_bands(rbs: ArrayLike) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Where each slice's RBs lie in the band: ``(start, end)``, RBs ``start <= b < end``.

    Every cell lays its slices out in the same order from the bottom of the band (the common
    frequency plan of the env): semantic on RBs ``[0, n_0)``, eMBB on ``[n_0, n_0 + n_1)``,
    URLLC on the rest.

    Args:
        rbs: RB counts per slice, ``(..., 3)`` (non-negative integers).

    Returns:
        ``start`` and ``end``, both ``(..., 3)`` int64.
    """
    n = np.asarray(rbs, dtype=np.int64)
    end = np.cumsum(n, axis=-1)
    return end - n, end


def active_rbs(rbs: ArrayLike, units: ArrayLike, units_per_rb: ArrayLike) -> NDArray[np.int64]:
    """RBs each slice transmits on: ``min(n_s, ceil(units_s / units_per_rb_s))``.

    A cell loads as many of a slice's RBs as the slice's backlog and arrivals need at this
    slot's interference-free per-RB capacity (what its scheduler plans with before it learns
    the interference); the rest of the slice's RBs stay idle and interfere with nobody.

    Args:
        rbs: RBs per slice ``(..., 3)``.
        units: Units waiting per slice (backlog and this slot's arrivals; words, bits, bits),
            ``(..., 3)``.
        units_per_rb: What one RB carries this slot, ``(..., 3)`` (same units).

    Returns:
        Active RBs per slice, ``(..., 3)`` int64, each in ``[0, n_s]``.
    """
    n = np.asarray(rbs, dtype=np.int64)
    u = np.asarray(units, dtype=np.float64)
    cap = np.asarray(units_per_rb, dtype=np.float64)
    need = np.where(u > 0.0, np.inf, 0.0)
    np.divide(u, cap, out=need, where=cap > 0.0)
    return np.minimum(n, np.ceil(need)).astype(np.int64)


def intercell_interference(rbs: ArrayLike, active: ArrayLike,
                           kappa: ArrayLike) -> NDArray[np.float64]:
    """Mean interference-to-noise ratio on each slice of each cell, ``(..., n, 3)``.

    Cell ``j`` transmits on ``a_jr`` of the ``n_jr`` RBs of its slice ``r`` (:func:`active_rbs`),
    spread uniformly over that slice's band ``B_jr`` (:func:`slice_bands`; the active RBs of a
    slice move around its band from slot to slot). An RB of cell ``i`` that cell ``j`` transmits
    on receives ``kappa[i, j]`` times the noise power of interference, so slice ``s`` of cell
    ``i`` sees, averaged over its ``n_is`` RBs::

        I_is = sum_j kappa[i, j] * phi_ijs,
        phi_ijs = sum_r |B_is & B_jr| * (a_jr / n_jr) / n_is

    ``phi_ijs`` in ``[0, 1]`` is the fraction of cell ``i``'s slice-``s`` RBs on which cell
    ``j`` transmits (in expectation): it grows with the RBs ``j`` loads on the same part of the
    band. Cells that split the band alike collide slice on slice (``phi_ijs = a_js / n_js``);
    idle RBs (a slice given more than it needs) interfere with nobody. An empty slice
    (``n_is = 0``) has ``I_is = 0``.

    Args:
        rbs: RB counts ``(..., n, 3)`` per cell and slice.
        active: Active RBs ``(..., n, 3)`` (``0 <= active <= rbs``).
        kappa: Coupling ``(n, n)`` (:func:`coupling_matrix`; diagonal ignored).

    Returns:
        ``I`` ``(..., n, 3)``, linear, ``>= 0``; exactly 0 wherever no neighbour with
        ``kappa > 0`` transmits on the slice's RBs.

    Raises:
        ValueError: On shapes that do not fit or ``active`` outside ``[0, rbs]``.
    """
    n = np.asarray(rbs, dtype=np.int64)
    a = np.asarray(active, dtype=np.int64)
    k = np.asarray(kappa, dtype=np.float64)
    if n.ndim < 2 or n.shape[-1] != 3 or a.shape != n.shape:
        raise ValueError(f"rbs and active must have the same shape (..., n, 3), got {n.shape} "
                         f"and {a.shape}")
    cells = n.shape[-2]
    if k.shape != (cells, cells):
        raise ValueError(f"kappa must have shape ({cells}, {cells}), got {k.shape}")
    if (a < 0).any() or (a > n).any():
        raise ValueError("active must lie in [0, rbs]")
    start, end = slice_bands(n)
    # Overlap |B_is & B_jr| of cell i's slice s with cell j's slice r: (..., i, s, j, r).
    lo = np.maximum(start[..., :, :, None, None], start[..., None, None, :, :])
    hi = np.minimum(end[..., :, :, None, None], end[..., None, None, :, :])
    overlap = np.maximum(hi - lo, 0).astype(np.float64)
    density = np.zeros(a.shape)
    np.divide(a, n, out=density, where=n > 0)  # a_jr / n_jr
    k = k * (1.0 - np.eye(cells))
    hit = overlap * (k[:, None, :, None] * density[..., None, None, :, :])  # (..., i, s, j, r)
    total = hit.sum(axis=(-1, -2))
    out = np.zeros(total.shape)
    np.divide(total, n, out=out, where=n > 0)
    return out


def cell_generators(seed: int, n_cells: int) -> list[np.random.Generator]:
    """The generators of the cells after ``reset(seed=seed)``: independent child streams.

    Cell ``i`` draws from ``Generator(PCG64(SeedSequence(seed).spawn(n_cells)[i]))``; the same
    generator driving a single ``SemanticSlicing-v1`` env (``env.np_random = ...`` before an
    unseeded ``reset()``) reproduces that cell with ``coupling = 0``, draw for draw.
    """
    return [np.random.Generator(np.random.PCG64(child))
            for child in np.random.SeedSequence(seed).spawn(n_cells)]


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SliceOrchestrationConfig(SemanticSlicingConfig):
    """Configuration of ``qdrl/SliceOrchestration-v0`` (see the env manual for the model).

    Every field of :class:`~qdrl_envs.semantic_slicing.SemanticSlicingConfig` (RBs, slot, the
    semantic, eMBB and URLLC traffic, channels, SLAs and reward weights) means what it means
    there, for every cell, with the same defaults. The new fields:

    Attributes:
        n_cells: Cells, one orchestrator agent each, in [1, 64].
        topology: Who interferes with whom: ``"ring"`` (cells on a circle, each with its two
            neighbours), ``"line"`` (along a road) or ``"full"`` (everybody with everybody).
        coupling: Interference-to-noise ratio (linear, in [0, 1e4]) that a neighbour
            transmitting on every RB of a slice causes there: the mean SINR of a fully hit
            slice is its SNR ``/ (1 + coupling)`` per such neighbour. 0 decouples the cells,
            each then exactly a ``SemanticSlicing-v1`` cell. The default 1 (0 dB: a fully
            loaded neighbour halves the SINR) is a moderate figure for a reuse-1 layout.
        cell_load_scales: Per cell, a factor on all its arrival rates (critical and routine
            messages, eMBB and URLLC loads), each in [0, 100]; ``None``: every cell 1.
        neighbour_obs: Whether each agent also observes its neighbours' demands and last
            splits (see the manual); ``False`` leaves its own cell only.
        reward_mode: ``"individual"`` (each orchestrator gets its cell's SLA reward) or
            ``"team"`` (every one gets the mean over the cells).
        max_cycles: Steps per episode; every agent is truncated after this many, in
            [1, 10_000_000].
    """

    n_cells: int = 3
    topology: str = "ring"
    coupling: float = 1.0
    cell_load_scales: tuple[float, ...] | None = None
    neighbour_obs: bool = True
    reward_mode: str = "individual"
    max_cycles: int = 200

    def validate(self) -> None:
        """Check every field (and every cell's resulting ``SemanticSlicingConfig``).

        Raises:
            ValueError: Naming the field, its value and the allowed range.
        """
        super().validate()
        check_int("n_cells", self.n_cells, low=1, high=64)
        check_choice("topology", self.topology, TOPOLOGIES)
        check_real("coupling", self.coupling, 0.0, 1e4)
        if self.cell_load_scales is not None:
            if not isinstance(self.cell_load_scales, tuple):
                raise ValueError(f"cell_load_scales must be None or a tuple of n_cells numbers,"
                                 f" got {self.cell_load_scales!r}")
            if len(self.cell_load_scales) != self.n_cells:
                raise ValueError(f"cell_load_scales must have one entry per cell (n_cells="
                                 f"{self.n_cells}), got {len(self.cell_load_scales)}: "
                                 f"{self.cell_load_scales!r}")
            for i, scale in enumerate(self.cell_load_scales):
                check_real(f"cell_load_scales[{i}]", scale, 0.0, 100.0)
                try:
                    self.cell_config(i)
                except ValueError as exc:
                    raise ValueError(f"cell_load_scales[{i}]={scale!r} makes cell {i} "
                                     f"invalid: {exc}") from None
        check_bool("neighbour_obs", self.neighbour_obs)
        check_choice("reward_mode", self.reward_mode, REWARD_MODES)
        check_int("max_cycles", self.max_cycles, low=1, high=10_000_000)

    @property
    def load_scales(self) -> tuple[float, ...]:
        """``cell_load_scales`` with its ``None`` default resolved (all 1)."""
        if self.cell_load_scales is None:
            return (1.0,) * self.n_cells
        return tuple(float(s) for s in self.cell_load_scales)

    def cell_config(self, i: int) -> SemanticSlicingConfig:
        """The ``SemanticSlicing-v1`` config of cell ``i``: the shared fields, its loads scaled.

        Raises:
            ValueError: On a cell index out of range (or a scaled load out of range).
        """
        check_int("cell", i, low=0, high=self.n_cells - 1)
        values = {name: getattr(self, name) for name in _CELL_FIELDS}
        scale = 1.0 if self.cell_load_scales is None else float(self.cell_load_scales[i])
        if scale != 1.0:
            for name in _LOAD_FIELDS:
                values[name] = values[name] * scale
        return SemanticSlicingConfig(**values)


# --------------------------------------------------------------------------------------------
# The batched core
# --------------------------------------------------------------------------------------------


def _slice_units(core: SemanticSlicingCore) -> NDArray[np.float64]:
    """Units waiting per slice ``(N, 3)``: backlog plus the coming slot's arrivals."""
    q = core.queues.backlog + core.pending
    return np.stack([q[:, 0] + q[:, 1], q[:, 2], q[:, 3]], axis=-1)


def _unbatch(info: Mapping[str, Any], m: int, i: int) -> dict[str, Any]:
    """Instance ``m``, cell ``i`` of an info of ``(N, n, ...)`` arrays, as the single env's."""
    out: dict[str, Any] = {}
    for key, value in info.items():
        if isinstance(value, Mapping):
            out[key] = _unbatch(value, m, i)
        else:
            item = value[m, i]
            out[key] = item.item() if np.ndim(item) == 0 else item
    return out


class SliceOrchestrationCore:
    """``n_cells`` coupled slicing cells on ``num_envs`` instances (see the env manual).

    Cell ``i`` of every instance is row ``m`` of ``cells[i]``, a
    :class:`~qdrl_envs.semantic_slicing.SemanticSlicingCore` with that cell's config
    (:meth:`SliceOrchestrationConfig.cell_config`): its queues, arrivals, fading, semantic
    similarity and SLA accounting are that core's, unchanged. A step computes the RBs each cell
    loads (:func:`active_rbs`) and the interference they cause
    (:func:`intercell_interference`), lowers each hit slice's SNR for this slot to its SINR
    (the semantic slice's similarity ``xi`` and the eMBB / URLLC per-RB capacities follow, by
    the cell core's own :meth:`~SemanticSlicingCore.similarity` and
    :meth:`~SemanticSlicingCore.units_per_rb`), and then steps every cell core. The
    interference draws no random numbers, and a slice nobody hits is left untouched, so with
    ``coupling = 0`` every cell is exactly its ``SemanticSlicing-v1`` core.

    Randomness: one generator per instance and cell (``rngs[m][i]``), consumed by that cell's
    core alone.

    Public state: ``cells``; ``loss`` ``(N, n, 3)``, the last slot's SINR loss per slice,
    ``I / (1 + I)`` (0 after a reset); ``last_info``. Constants: ``n_cells`` (= ``n_agents``),
    ``kappa`` ``(n, n)``, ``neighbours`` (:func:`neighbour_slots`), ``cell_configs``.
    """

    def __init__(self, config: SliceOrchestrationConfig, num_envs: int) -> None:
        check_int("num_envs", num_envs, low=1)
        self.config = config
        self.num_envs = int(num_envs)
        self.n_cells = self.n_agents = n = config.n_cells
        self.n_rbs = config.n_rbs
        self.cell_configs = tuple(config.cell_config(i) for i in range(n))
        self.cells = [SemanticSlicingCore(c, self.num_envs) for c in self.cell_configs]
        self.kappa = coupling_matrix(n, config.topology, config.coupling)
        self.kappa.flags.writeable = False
        self.neighbours = neighbour_slots(n, config.topology)
        self.n_slots = max((len(s) for s in self.neighbours), default=0)
        self.team = config.reward_mode == "team"
        self.obs_dim = CELL_OBS_DIM + 3 + (NEIGHBOUR_OBS_DIM * self.n_slots
                                           if config.neighbour_obs else 0)
        self.state_dim = n * (CELL_OBS_DIM + 3)
        # What observe() reads of the neighbours: the summary row of each slot's cell (row n,
        # all 0, for an empty slot), and each cell's demand scale, all its RBs at the mean SNR.
        self._slot_table: NDArray[np.int64] | None = None
        if config.neighbour_obs and self.n_slots:
            self._slot_table = np.array([[j if j >= 0 else n for j in s]
                                         + [n] * (self.n_slots - len(s))
                                         for s in self.neighbours])
        self._demand_scale = (np.stack([c.mean_units_per_rb[[0, 2, 3]] for c in self.cells])
                              * self.n_rbs)
        self.loss = np.zeros((self.num_envs, n, 3))
        self.last_info: dict[str, Any] | None = None

    # -- the coupling --------------------------------------------------------------------------

    def rbs_of(self, actions: ArrayLike) -> NDArray[np.int64]:
        """The RB counts ``(..., n, 3)`` the actions ``(..., n, 3)`` in ``[-1, 1]`` give.

        ``shares_to_rbs((a + 1) / 2, B)``: what each cell core's step hands out.
        """
        a = np.asarray(actions, dtype=np.float64)
        return shares_to_rbs(0.5 * (a + 1.0), self.n_rbs)

    def demand(self, row: int | None = None) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Units waiting per slice and what one RB carries of them this slot (no interference).

        Returns:
            ``(units, units_per_rb)``, each ``(N, n, 3)`` (``(n, 3)`` for one ``row``): words,
            bits, bits.
        """
        units = np.stack([_slice_units(c) for c in self.cells], axis=1)
        per_rb = np.stack([c.rb_capacity for c in self.cells], axis=1)
        if row is None:
            return units, per_rb
        return units[row], per_rb[row]

    def interference(self, actions: ArrayLike, row: int | None = None
                     ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
        """RBs, active RBs and interference ``I`` that joint actions would give (no changes).

        Args:
            actions: ``(N, n, 3)``; with ``row``, candidates ``(..., n, 3)`` for that instance.
            row: An instance, or ``None`` for all.

        Returns:
            ``(rbs, active, I)``, each with the actions' shape.
        """
        rbs = self.rbs_of(actions)
        units, per_rb = self.demand(row)
        active = active_rbs(rbs, units, per_rb)
        return rbs, active, intercell_interference(rbs, active, self.kappa)

    @staticmethod
    def _apply(core: SemanticSlicingCore, interference: NDArray[np.float64]) -> None:
        """Lower the coming slot's SNRs of ``core`` (``(N, 3)`` rows) to their SINRs, in place.

        Only the hit slices change: ``snr_db`` becomes the SINR, ``xi`` (semantic) and the
        eMBB / URLLC entries of ``rb_capacity`` follow from it.
        """
        hit = interference > 0.0
        if not hit.any():
            return
        sinr_db = core.snr_db - radio.linear_to_db(1.0 + interference)
        core.snr_db[hit] = sinr_db[hit]
        sem = hit[:, 0]
        if sem.any():
            core.xi[sem] = core.similarity(sinr_db[sem, 0])
        per_rb = core.units_per_rb(sinr_db)
        rate = hit.copy()
        rate[:, 0] = False  # a semantic RB carries words_per_rb whatever the SINR
        core.rb_capacity[rate] = per_rb[rate]

    # -- episode -------------------------------------------------------------------------------

    def reset(self, rngs: Sequence[Sequence[np.random.Generator]], idx: ArrayLike,
              options: Mapping[str, Any] | None = None) -> None:
        """Start new episodes for instances ``idx`` (``rngs[j][i]``: instance ``idx[j]``, cell i).

        Every cell core resets those rows: empty queues, the first arrivals and channels drawn,
        the last split equal; the last loss is 0. There are no reset options.

        Raises:
            ValueError: On any ``options`` (``None`` or empty only).
        """
        if options:
            raise ValueError(f"SliceOrchestrationCore.reset takes no options, got "
                             f"{sorted(str(k) for k in options)}")
        rows = np.asarray(idx, dtype=np.int64)
        for i, core in enumerate(self.cells):
            core.reset([g[i] for g in rngs], rows)
        self.loss[rows] = 0.0
        if len(rows) == self.num_envs:
            self.last_info = None

    def step(self, actions: ArrayLike, rngs: Sequence[Sequence[np.random.Generator]]
             ) -> StepResult:
        """Apply joint actions ``(N, n, 3)`` (checked, float64) for one slot.

        Returns:
            ``reward`` is the team reward ``(N,)`` (the mean of the cells' rewards); the cells'
            rewards are ``info["rewards"]`` ``(N, n)``. ``info`` holds every key of the cell
            cores' step info, stacked ``(N, n, ...)`` (``rbs``, ``throughput``, ...,
            ``reward_terms``), and ``snr_db`` (before interference), ``sinr_db``,
            ``interference`` (``I``, linear), ``active_rbs`` (all ``(N, n, 3)``), ``rewards``
            and ``team_reward``.
        """
        a = np.asarray(actions, dtype=np.float64)
        _, active, interference = self.interference(a)
        snr_db = np.stack([c.snr_db for c in self.cells], axis=1)
        cell_infos, rewards = [], []
        for i, core in enumerate(self.cells):
            self._apply(core, interference[:, i])
            sinr_i = core.snr_db.copy()
            result = core.step(a[:, i], [g[i] for g in rngs])
            result.info["sinr_db"] = sinr_i
            cell_infos.append(result.info)
            rewards.append(result.reward)
        info = _stack_infos(cell_infos)
        reward = np.stack(rewards, axis=1)
        team = reward.mean(axis=1)
        info.update({"snr_db": snr_db, "interference": interference, "active_rbs": active,
                     "rewards": reward, "team_reward": team})
        self.loss = interference / (1.0 + interference)
        self.last_info = info
        return StepResult(team, np.zeros(self.num_envs, dtype=bool), info)

    def evaluate(self, actions: ArrayLike, row: int = 0) -> dict[str, NDArray[np.float64]]:
        """What candidate joint actions would score on instance ``row`` this slot, no changes.

        Plays each cell core's own slot (:meth:`SemanticSlicingCore.trial`) on ``K`` copies of
        the cell's state with each candidate's interference applied, so the figures are
        exactly what :meth:`step` would report.

        Args:
            actions: Candidates ``(K, n, 3)`` in ``[-1, 1]`` (unchecked).
            row: The instance.

        Returns:
            ``rewards`` ``(K, n)``, ``team_reward`` ``(K,)``, ``interference`` ``(K, n, 3)``.
        """
        a = np.ascontiguousarray(actions, dtype=np.float64)
        k = a.shape[0]
        _, _, interference = self.interference(a, row)
        rewards = np.empty((k, self.n_cells))
        for i, cell in enumerate(self.cells):
            scratch = cell.scratch(k)
            scratch.copy_instance(cell, row)
            self._apply(scratch, interference[:, i])
            rewards[:, i] = scratch.trial(np.ascontiguousarray(a[:, i]))["reward"]
        return {"rewards": rewards, "team_reward": rewards.mean(axis=1),
                "interference": interference}

    def slot_bound(self, row: int = 0) -> float:
        """An upper bound on this slot's team reward: every cell at its interference-free best.

        Interference only lowers a slice's SINR, hence its similarity and capacity, and a
        cell's one-slot reward never rises when they fall; so no joint action scores more
        than the mean over the cells of each cell's best split with no interference (every
        split of the ``B`` RBs tried by :meth:`SemanticSlicingCore.slot_outcomes`). A bound
        on the slot, not on the episode (later queues depend on the play).
        """
        splits = self.all_splits()
        best = [float(c.slot_outcomes(row, splits)["reward"].max()) for c in self.cells]
        return float(np.mean(best))

    def all_splits(self, rb_step: int = 1) -> NDArray[np.float64]:
        """Every split of the ``B`` RBs as an action ``(K, 3)`` (float32 values, float64).

        With ``rb_step``, only the splits whose semantic and eMBB counts are multiples of it
        (:func:`qdrl_envs.semantic_slicing.all_splits`).
        """
        return all_splits(self.n_rbs, rb_step)[1].astype(np.float64)

    # -- observations --------------------------------------------------------------------------

    def observe(self) -> NDArray[np.float32]:
        """Every agent's observation ``(N, n, obs_dim)`` float32 in ``[0, 1]`` (a new array)."""
        parts = self._own_parts()
        if self._slot_table is not None:
            units = np.stack([_slice_units(c) for c in self.cells], axis=1)
            demand = np.clip(units / self._demand_scale, 0.0, 1.0)  # (N, n, 3)
            split = np.stack([c.rbs for c in self.cells], axis=1) / self.n_rbs
            summary = np.concatenate([demand, split], axis=-1)  # (N, n, 6)
            padded = np.concatenate([summary, np.zeros((self.num_envs, 1, 6))], axis=1)
            parts.append(padded[:, self._slot_table].reshape(self.num_envs, self.n_cells, -1)
                         .astype(np.float32))
        return np.concatenate(parts, axis=-1)

    def _own_parts(self) -> list[NDArray[np.float32]]:
        """Each cell's own entries ``(N, n, 15)`` and ``(N, n, 3)`` (the head of its obs)."""
        return [np.stack([c.observe() for c in self.cells], axis=1),
                self.loss.astype(np.float32)]

    def state(self) -> NDArray[np.float32]:
        """The global state ``(N, n * 18)``: each cell's own 18 entries, cell after cell."""
        own = np.concatenate(self._own_parts(), axis=-1)
        return own.reshape(self.num_envs, -1)

    def render_ansi(self, row: int = 0) -> str:
        """Instance ``row`` as text (``render_mode="ansi"`` in the env manual)."""
        return _render_ansi(self, row)

    def render_rgb_array(self, row: int = 0) -> np.ndarray:
        """Instance ``row`` as an RGB picture (``render_mode="rgb_array"`` in the env manual)."""
        return _render_rgb_array(self, row)


def _stack_infos(infos: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in infos[0].items():
        if isinstance(value, Mapping):
            out[key] = _stack_infos([info[key] for info in infos])
        else:
            out[key] = np.stack([np.asarray(info[key]) for info in infos], axis=1)
    return out


# --------------------------------------------------------------------------------------------
# The environment
# --------------------------------------------------------------------------------------------


class SliceOrchestrationEnv(CoreParallelEnv[SliceOrchestrationConfig]):
    r"""Distributed slice orchestrators share a band across interfering cells (Sec. VII-B).

    ## Description

    The multi-agent twin of ``qdrl/SemanticSlicing-v1`` for the paper's Sec. VII-B (iii):
    "Q-DRL agents can continuously adapt slices to meet SLAs", with "multi-agent coordination
    protocols ... among distributed network orchestrators, optimizing the system globally".
    ``n_cells`` cells (``cell_0 .. cell_{n-1}``, one orchestrator agent each) each slice their
    ``B`` resource blocks every slot between the three slices of ``SemanticSlicing-v1``
    (semantic text users of a DeepSC-style transceiver with critical and routine messages,
    eMBB, URLLC; Sec. V-B2, V-E): the same Poisson arrivals, Rayleigh block fading, FIFO
    queues with deadlines, semantic similarity ``xi(SINR)`` and SLA accounting, computed by
    that env's own core (each cell is a :class:`~qdrl_envs.semantic_slicing.SemanticSlicingCore`
    row). Read that manual for the cell model; this one adds the coupling.

    **Inter-cell interference.** The cells reuse the same band (reuse 1) and lay their slices
    out alike: semantic on RBs ``[0, n_0)``, eMBB on the next ``n_1``, URLLC on the last
    ``n_2`` (:func:`slice_bands`). A cell transmits only on the RBs its slices need this slot,
    ``a_s = min(n_s, ceil(units_s / units_per_rb_s))`` at its interference-free rates
    (:func:`active_rbs`; the rest of a slice's RBs stay idle), spread over the slice's band.
    Each active RB of neighbour ``j`` raises the interference on the same RB of cell ``i`` by
    ``kappa = coupling`` times the noise (``topology`` says who neighbours whom:
    :func:`coupling_matrix`). Slice ``s`` of cell ``i`` sees one effective SINR per slot, its
    SNR over the mean interference on its RBs (:func:`intercell_interference`)::

        phi_ijs  = sum_r |B_is & B_jr| (a_jr / n_jr) / n_is     (share of i's slice-s RBs
                                                                  that j transmits on)
        I_is     = sum_j kappa_ij phi_ijs
        SINR_is  = SNR_is / (1 + I_is)

    where ``SNR_is`` is the cell's own ``SemanticSlicing-v1`` channel (mean SNR times an
    ``Exp(1)`` fading power, redrawn every slot) and ``B_is`` the RBs of slice ``s``. The SINR
    replaces the SNR for the slot: the semantic slice's similarity ``xi(SINR)`` (so its words
    can miss ``min_similarity``) and the eMBB / URLLC capacities ``log2(1 + SINR)`` per RB
    symbol. So the RBs a neighbour loads on the part of the band where this cell's semantic
    slice sits lower that slice's similarity; cells that split alike collide slice on slice
    (``phi = a_js / n_js``), and a cell that gives a slice more RBs than it needs leaves idle
    RBs that spare its neighbours. Interference draws no random numbers: with ``coupling = 0``
    (or a slice nobody hits) every cell is exactly a ``SemanticSlicing-v1`` cell.

    ## Action Spaces (every agent)

    ``Box(-1, 1, (3,), float32)``, exactly ``SemanticSlicing-v1``'s: shares ``(a + 1) / 2`` of
    (semantic, eMBB, URLLC), turned into RB counts summing to ``B`` by
    :func:`~qdrl_envs.semantic_slicing.shares_to_rbs`. Actions are checked, not repaired: a
    NaN/inf, misshaped or out-of-range action, a missing live agent or an unknown agent
    raises ``ValueError`` naming the agent.

    ## Observation Spaces (every agent)

    ``Box(0, 1, (18 + 6 D,), float32)`` (``18`` with ``neighbour_obs=False``), local to the
    agent's cell:

    | Index       | Entry                                                                  |
    |-------------|------------------------------------------------------------------------|
    | 0-14        | its cell's ``SemanticSlicing-v1`` observation (queues, head ages, SNRs |
    |             | and ``xi`` of the coming slot before interference, last split)         |
    | 15-17       | the SINR loss its slices suffered in the last slot, ``I / (1 + I)``    |
    |             | (``1 - SINR / SNR``; 0 after a reset)                                  |
    | 18+6k ..    | neighbour slot ``k``: that cell's demand per slice (RBs needed at the  |
    |   +2        | mean SNR / ``B``, clipped to 1: what it would announce, as an X2 load  |
    |             | report)                                                                |
    | 18+6k+3 ..  | that cell's last split / ``B`` (all 0: no neighbour in the slot)       |
    |   +5        |                                                                        |

    ``D`` is the number of neighbour slots (:func:`neighbour_slots`: 2 on a ring of 3 or more
    and on a line of 2 or more, where the ends have an empty slot, ``n - 1`` for ``"full"``).
    ``state()`` (``state_space``, ``Box(0, 1, (18 n,))``) is every cell's first 18 entries,
    cell after cell, for centralised critics.

    ## Rewards

    Cell ``i``'s reward is its ``SemanticSlicing-v1`` reward on this slot's SINRs,
    ``sum_s w_s sat_s - violation_penalty sum_s w_s v_s`` (SLA satisfaction minus scaled
    violations). The global SLA objective is the **team reward**, the mean over the cells.
    ``reward_mode="individual"`` (default): each agent gets its cell's reward;
    ``reward_mode="team"``: each gets the team reward.

    ``infos[agent]``: every entry of ``SemanticSlicing-v1``'s step info for its cell
    (``rbs``, ``throughput``, ``delay_s``, ``semantic_similarity`` (on the SINR),
    ``sla_violations``, ``critical_violations``, ``sla_satisfaction``, ``served``,
    ``expired``, ``reward_terms``), and ``snr_db`` (3, before interference), ``sinr_db``
    (3), ``interference`` (3, ``I`` linear), ``active_rbs`` (3), ``cell_reward`` and
    ``team_reward``. The arrays of all cells are ``env.core.last_info``.

    ## Starting State

    Every cell as ``SemanticSlicing-v1``: empty queues, the first slot's arrivals and SNRs
    drawn, the last split equal; no interference yet. ``reset(seed=s)`` gives cell ``i`` the
    generator :func:`cell_generators` ``(s, n)[i]``, an independent child stream of ``s``
    (not ``s + i``: then cell 1 of seed 0 would be cell 0 of seed 1, and runs with
    consecutive seeds would share traffic). Driving a single ``SemanticSlicing-v1`` env with
    that generator reproduces cell ``i`` at ``coupling = 0`` exactly. This env takes no reset
    options (unknown keys are ignored with a warning; PettingZoo's API test passes one).

    ## Episode End

    No terminal state; every agent is truncated after ``max_cycles`` (200) steps, and
    ``agents`` is then empty until ``reset``.

    ## Arguments

    ``parallel_env(**fields)``, ``env(**fields)`` (AEC) or
    ``qdrl_envs.make_parallel("qdrl/SliceOrchestration-v0", **fields)``, with the fields of
    :class:`SliceOrchestrationConfig`: every ``SemanticSlicing-v1`` field with its default
    (``n_rbs`` 50, ``slot_s`` 0.01, loads, SNRs, SLAs, weights, ...), shared by all cells, and:

    | Field                | Default      | Unit / range                                    |
    |----------------------|--------------|-------------------------------------------------|
    | ``n_cells``          | 3            | cells = agents, [1, 64]                         |
    | ``topology``         | "ring"       | "ring", "line" or "full"                        |
    | ``coupling``         | 1.0          | INR of a neighbour on a fully hit RB, linear,   |
    |                      |              | [0, 1e4] (0: independent cells)                 |
    | ``cell_load_scales`` | None         | per cell, factor on its arrival rates, [0, 100] |
    | ``neighbour_obs``    | True         | observe the neighbours' demands and splits      |
    | ``reward_mode``      | "individual" | "individual" or "team"                          |
    | ``max_cycles``       | 200          | steps per episode                               |

    ``render_mode``: ``"ansi"`` (each cell's table and its interference) or ``"rgb_array"``
    (the band of every cell: slices, active RBs, interference).

    ## Baselines

    ``qdrl_envs.marl.make_baseline(name, env)`` with ``name`` in ``random``,
    ``equal-split``, ``proportional``, ``semantic-priority`` (``SemanticSlicing-v1``'s
    heuristics, each cell on its own observation), ``slot-oracle`` (each cell's
    interference-free best split, uncoordinated) and ``coordinated-oracle`` (coordinate
    ascent of the team reward over the cells' splits on the true state, interference
    included); ``SliceOrchestrationCore.slot_bound`` bounds the slot's team reward. See
    :mod:`qdrl_envs.baselines.slice_orchestration`.

    Team returns at the defaults (3 cells on a ring, coupling 1; seeds 0 and 1, 200 slots, so
    at most 200): random 80.6, equal-split 92.7, proportional 64.0, semantic-priority 86.4,
    slot-oracle 100.1, coordinated-oracle 128.8; decoupled (``coupling=0``) the same cells
    score 184.2 with semantic-priority and 197.9 with the slot oracle. Cells that size each
    slice to its need load every RB of it, and as all cells lay the semantic slice at the
    bottom of the band their semantic RBs collide at full density; an equal split dilutes
    the load (idle RBs), coordination places it. At ``cell_load_scales=(0.6,) * 3``:
    random 143.1, equal-split 148.2, proportional 146.1, semantic-priority 115.5,
    slot-oracle 133.6, coordinated-oracle 166.7.

    ## Version History

    * v0: first version.
    """

    metadata: ClassVar[dict[str, Any]] = {"name": "slice_orchestration_v0",
                                          **CoreParallelEnv.metadata}
    config_cls = SliceOrchestrationConfig
    core_cls = SliceOrchestrationCore
    agent_prefix = "cell"
    config: SliceOrchestrationConfig
    core: SliceOrchestrationCore
    observation_spaces: dict[str, spaces.Box]
    action_spaces: dict[str, spaces.Box]

    # -- spaces ------------------------------------------------------------------------------

    def _make_spaces(self) -> tuple[dict[str, spaces.Box], dict[str, spaces.Box], spaces.Box]:
        observation_spaces = {a: spaces.Box(0.0, 1.0, (self.core.obs_dim,), dtype=np.float32)
                              for a in self.possible_agents}
        action_spaces = {a: spaces.Box(-1.0, 1.0, (3,), dtype=np.float32)
                         for a in self.possible_agents}
        return (observation_spaces, action_spaces,
                spaces.Box(0.0, 1.0, (self.core.state_dim,), dtype=np.float32))

    def neighbours(self, agent: str) -> tuple[str | None, ...]:
        """The agents in ``agent``'s neighbour slots, in observation order (``None``: empty)."""
        slots = self.core.neighbours[self._agent(agent)]
        names = tuple(self.possible_agents[j] if j >= 0 else None for j in slots)
        return names + (None,) * (self.core.n_slots - len(names))

    def cell_config(self, agent: str) -> SemanticSlicingConfig:
        """The ``SemanticSlicing-v1`` config of ``agent``'s cell."""
        return self.core.cell_configs[self._agent(agent)]

    @property
    def cell_rngs(self) -> tuple[np.random.Generator, ...]:
        """The cells' generators (seeded by ``reset(seed=...)``; :func:`cell_generators`)."""
        if self._instance_rngs is None:
            self._reseed(None)
        return tuple(self._instance_rngs)

    def _instance_rng(self, rng: np.random.Generator, seed: int) -> list[np.random.Generator]:
        return cell_generators(seed, self.config.n_cells)

    # -- episode -----------------------------------------------------------------------------

    def joint_action(self, actions: Mapping[str, Any]) -> np.ndarray:
        """Check the agents' actions and stack them as the core's joint action ``(n, 3)``.

        Raises:
            ValueError: If a live agent has no action, an agent is unknown or not live, or an
                action is misshaped, NaN/inf or outside its space (naming the agent).
        """
        joint = np.empty((self.config.n_cells, 3))
        for agent, act in self._checked_actions(actions).items():
            joint[self._index[agent]] = act
        return joint

    def _rewards_and_infos(self, info: Mapping[str, Any]
                           ) -> tuple[dict[str, float], dict[str, dict[str, Any]]]:
        team = float(info["team_reward"][0])
        rewards, infos = {}, {}
        cell_info = {k: v for k, v in info.items() if k not in ("rewards", "team_reward")}
        for agent in self.agents:
            i = self._index[agent]
            own = float(info["rewards"][0, i])
            rewards[agent] = team if self.core.team else own
            infos[agent] = _unbatch(cell_info, 0, i)
            infos[agent]["cell_reward"] = own
            infos[agent]["team_reward"] = team
        return rewards, infos

    def _observations(self) -> dict[str, np.ndarray]:
        obs = self.core.observe()[0]
        return {a: obs[self._index[a]] for a in self.agents}

    def state(self) -> np.ndarray:
        """The global state (``state_space``): every cell's own 18 entries, a fresh array."""
        return self.core.state()[0]


def parallel_env(**kwargs: Any) -> SliceOrchestrationEnv:
    """The ParallelEnv (keyword arguments: ``render_mode``, ``config`` and config fields)."""
    return SliceOrchestrationEnv(**kwargs)


env = SliceOrchestrationEnv.aec_env
"""The AEC form, ``pettingzoo.utils.parallel_to_aec(parallel_env(**kwargs))``."""


# --------------------------------------------------------------------------------------------
# Rendering (one instance of a core)
# --------------------------------------------------------------------------------------------


def _render_ansi(core: SliceOrchestrationCore, row: int) -> str:
    c = core.config
    lines = [f"SliceOrchestration  {c.n_cells} cells ({c.topology})  coupling {c.coupling:g} "
             f"({radio.linear_to_db(c.coupling) if c.coupling > 0 else -np.inf:.1f} dB)  "
             f"B={c.n_rbs} RBs"]
    info = core.last_info
    if info is not None:
        lines.append(f"last slot: team reward {info['team_reward'][row]:.3f}")
    for i, cell in enumerate(core.cells):
        nb = [j for j in core.neighbours[i] if j >= 0]
        lines.append(f"--- cell_{i} (neighbours {nb}, load x{c.load_scales[i]:g})")
        lines.extend(cell.render_ansi(row).rstrip("\n").splitlines())
        if info is not None:
            lines.append(
                f" last slot: reward {info['rewards'][row, i]:.3f}  active RBs "
                + " ".join(f"{n}={int(a)}/{int(r)}" for n, a, r in
                           zip(SLICE_NAMES, info["active_rbs"][row, i], info["rbs"][row, i],
                               strict=True))
                + "  SINR loss dB "
                + " ".join(f"{float(radio.linear_to_db(1.0 + x)):.1f}"
                           for x in info["interference"][row, i]))
    return "\n".join(lines) + "\n"


def _render_rgb_array(core: SliceOrchestrationCore, row: int) -> np.ndarray:
    n, b = core.n_cells, core.n_rbs
    info = core.last_info
    fig = agg_figure(7, 1.0 + 0.6 * n)
    ax = fig.add_subplot(1, 1, 1)
    colours = ["tab:red", "tab:blue", "tab:green"]
    for i, cell in enumerate(core.cells):
        rbs = (info["rbs"][row, i] if info is not None else cell.rbs[row]).astype(int)
        active = info["active_rbs"][row, i] if info is not None else rbs
        start, _ = slice_bands(rbs)
        for s in range(3):
            ax.barh([i], [rbs[s]], left=start[s], color=colours[s], alpha=0.3,
                    edgecolor="k", height=0.8)
            ax.barh([i], [active[s]], left=start[s], color=colours[s], height=0.5)
            if info is not None and rbs[s] > 0:
                loss = float(radio.linear_to_db(1.0 + info["interference"][row, i, s]))
                ax.text(start[s] + rbs[s] / 2, i + 0.32, f"-{loss:.1f} dB", fontsize=6,
                        ha="center")
    ax.set_xlim(0, b)
    ax.set_ylim(-0.6, n - 0.4)
    ax.set_yticks(range(n), [f"cell_{i}" for i in range(n)], fontsize=7)
    ax.set_xlabel("resource block (pale: slice band; dark: how many RBs it loads, spread over "
                  "the band in the model; red semantic, blue eMBB, green URLLC)", fontsize=7)
    title = f"Slice orchestration, {n} cells, coupling {core.config.coupling:g}"
    if info is not None:
        title += f": team reward {info['team_reward'][row]:.3f}"
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return figure_rgb(fig)
