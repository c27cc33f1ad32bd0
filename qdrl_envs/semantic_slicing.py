"""``qdrl/SemanticSlicing-v0``: resource-block slicing between semantic and conventional slices.

Paper Sec. V-B2 (network slicing for semantic services vs conventional data), V-E and
VII-B (iii) (slices adapted to SLAs). The physics is written once, on arrays with a leading
batch axis:

* :func:`shares_to_rbs` — slice shares to resource-block counts by largest remainder (public);
* :func:`semantic_similarity` — the DeepSC-style sentence-similarity surrogate (public);
* :class:`SemanticSlicingCore` — arrivals, channels, queues and SLA accounting on ``N``
  instances;
* :class:`SemanticSlicingEnv` (the single Gymnasium env, whose docstring is the manual) and
  :class:`SemanticSlicingVectorEnv` (its NumPy-batched twin) both drive that core.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces
from numpy.typing import ArrayLike, NDArray

from qdrl_envs import radio
from qdrl_envs.config import EnvConfig, check_int, check_real
from qdrl_envs.core import (
    BatchedCore,
    CoreEnv,
    CoreVectorEnv,
    StepResult,
    draw,
    rowwise_dot,
)
from qdrl_envs.traffic import FifoQueues, PoissonArrivals

__all__ = [
    "QUEUE_NAMES",
    "SLICE_NAMES",
    "SemanticSlicingConfig",
    "SemanticSlicingCore",
    "SemanticSlicingEnv",
    "SemanticSlicingVectorEnv",
    "semantic_similarity",
    "shares_to_rbs",
]

SLICE_NAMES: tuple[str, ...] = ("semantic", "embb", "urllc")
"""Slices, in action / info order."""

QUEUE_NAMES: tuple[str, ...] = ("semantic-critical", "semantic-routine", "embb", "urllc")
"""Queues, in observation order (semantic queues in words, the others in bits)."""

SNR_OBS_LOW_DB = -10.0
"""Slice SNR (dB) mapped to observation 0."""

SNR_OBS_HIGH_DB = 40.0
"""Slice SNR (dB) mapped to observation 1."""


# --------------------------------------------------------------------------------------------
# Public model functions
# --------------------------------------------------------------------------------------------


def shares_to_rbs(shares: ArrayLike, n_rbs: int) -> NDArray[np.int64]:
    """Turn slice shares into resource-block counts that sum to ``n_rbs`` (largest remainder).

    Shares are normalised to quotas ``q_s = n_rbs * x_s / sum(x)``; every slice gets
    ``floor(q_s)`` blocks and the blocks left over go one each to the largest fractional parts
    (ties to the lower slice index) — Hamilton's method. All-zero shares mean an equal split.

    Args:
        shares: Non-negative shares, shape ``(..., S)``.
        n_rbs: Resource blocks to hand out, ``>= 0``.

    Returns:
        Counts ``(..., S)`` (int64), each within one of its quota, summing to ``n_rbs``.

    Raises:
        ValueError: If a share is negative or not finite, ``shares`` has no slice axis, or
            ``n_rbs`` is negative.
    """
    x = np.asarray(shares, dtype=np.float64)
    if x.ndim == 0 or x.shape[-1] == 0:
        raise ValueError(f"shares must have a slice axis of length >= 1, got shape {x.shape}")
    if not np.all(np.isfinite(x)) or (x < 0).any():
        raise ValueError(f"shares must be finite and non-negative, got {x.tolist()}")
    if not isinstance(n_rbs, (int, np.integer)) or isinstance(n_rbs, bool) or n_rbs < 0:
        raise ValueError(f"n_rbs must be an integer >= 0, got {n_rbs!r}")
    return _largest_remainder(x, int(n_rbs))


def _largest_remainder(x: NDArray[np.float64], n_rbs: int) -> NDArray[np.int64]:
    """:func:`shares_to_rbs` without the input checks (validated actions only)."""
    x = x + (x.sum(axis=-1, keepdims=True) <= 0.0)  # all zeros -> equal shares
    quota = x / x.sum(axis=-1, keepdims=True) * n_rbs  # (divide first: subnormal shares)
    base = np.floor(quota)
    # Rank of each slice by fractional part, largest first, ties to the lower index.
    rank = np.argsort(np.argsort(base - quota, axis=-1, kind="stable"), axis=-1, kind="stable")
    return (base + (rank < (n_rbs - base.sum(axis=-1, keepdims=True)))).astype(np.int64)


def semantic_similarity(snr_db: ArrayLike, low: float, high: float, slope_per_db: float,
                        offset: float) -> NDArray[np.float64]:
    """Sentence similarity of DeepSC-style text transmission at ``snr_db`` (generalised logistic).

    ``xi(gamma) = low + (high - low) / (1 + exp(-(slope_per_db * gamma + offset)))``, ``gamma``
    the SNR in dB: a generalised-logistic form of the kind Yan et al. fit to DeepSC's similarity
    curves ("Resource allocation for text semantic communications", IEEE WCL 2022), for a fixed
    number ``k`` of symbols per word. Smooth, increasing, within ``[low, high]``.

    Args:
        snr_db: SNR in dB (any shape).
        low: Similarity floor at very low SNR.
        high: Similarity ceiling at high SNR.
        slope_per_db: Steepness (1/dB).
        offset: Shift (dimensionless).

    Returns:
        Similarity, same shape as ``snr_db``.
    """
    # 1 / (1 + e^-z) = (1 + tanh(z / 2)) / 2, which saturates without overflow.
    half = 0.5 * (high - low)
    t = np.tanh((0.5 * slope_per_db) * np.asarray(snr_db, dtype=np.float64) + 0.5 * offset)
    return (low + half) + half * t


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SemanticSlicingConfig(EnvConfig):
    """Configuration of ``qdrl/SemanticSlicing-v0`` (see :class:`SemanticSlicingEnv`).

    Attributes:
        n_rbs: Resource blocks per slot ``B``, in [1, 1000].
        rb_bandwidth_hz: Bandwidth of one resource block (Hz).
        slot_s: Slot (slicing interval) duration (s).
        symbols_per_word: Semantic symbols per word ``k`` (DeepSC-style encoder).
        words_per_message: Words per semantic message (sentence).
        critical_msg_rate: Mean critical semantic messages per slot (Poisson).
        routine_msg_rate: Mean routine semantic messages per slot (Poisson).
        critical_weight: Importance of a critical word relative to a routine one (>= 1).
        sim_low: Similarity floor of the surrogate ``xi`` (very low SNR).
        sim_high: Similarity ceiling of ``xi`` (high SNR).
        sim_slope_per_db: Steepness of ``xi`` (1/dB).
        sim_offset: Shift of ``xi``.
        min_similarity: Semantic SLA: similarity at least this.
        semantic_delay_budget_s: Semantic SLA: delay at most this (s).
        embb_load_bps: Mean eMBB offered load (bit/s).
        embb_packet_bits: eMBB packet size (bit).
        embb_delay_budget_s: eMBB SLA delay (s): backlog older than this is lost.
        urllc_load_bps: Mean URLLC offered load (bit/s).
        urllc_packet_bits: URLLC packet size (bit).
        urllc_delay_budget_s: URLLC SLA delay (s).
        semantic_snr_db: Mean SNR of the semantic slice's users (dB).
        embb_snr_db: Mean SNR of the eMBB slice (dB).
        urllc_snr_db: Mean SNR of the URLLC slice (dB).
        semantic_weight: Weight of the semantic slice in the reward.
        embb_weight: Weight of the eMBB slice.
        urllc_weight: Weight of the URLLC slice.
        violation_penalty: Weight of the violation term.
    """

    n_rbs: int = 50
    rb_bandwidth_hz: float = 180e3
    slot_s: float = 0.01
    symbols_per_word: float = 8.0
    words_per_message: float = 20.0
    critical_msg_rate: float = 20.0
    routine_msg_rate: float = 100.0
    critical_weight: float = 5.0
    sim_low: float = 0.25
    sim_high: float = 0.92
    sim_slope_per_db: float = 0.45
    sim_offset: float = -0.3
    min_similarity: float = 0.6
    semantic_delay_budget_s: float = 0.13
    embb_load_bps: float = 20e6
    embb_packet_bits: float = 12000.0
    embb_delay_budget_s: float = 0.2
    urllc_load_bps: float = 4e6
    urllc_packet_bits: float = 800.0
    urllc_delay_budget_s: float = 0.01
    semantic_snr_db: float = 10.0
    embb_snr_db: float = 15.0
    urllc_snr_db: float = 10.0
    semantic_weight: float = 1.0
    embb_weight: float = 1.0
    urllc_weight: float = 1.0
    violation_penalty: float = 1.0

    def validate(self) -> None:
        """Check every field.

        Raises:
            ValueError: Naming the field, its value and the allowed range.
        """
        check_int("n_rbs", self.n_rbs, low=1, high=1000)
        check_real("rb_bandwidth_hz", self.rb_bandwidth_hz, 1.0, 1e9)
        check_real("slot_s", self.slot_s, 1e-5, 10.0)
        check_real("symbols_per_word", self.symbols_per_word, 0.1, 1000.0)
        check_real("words_per_message", self.words_per_message, 1.0, 1e4)
        check_real("critical_msg_rate", self.critical_msg_rate, 0.0, 1e4)
        check_real("routine_msg_rate", self.routine_msg_rate, 0.0, 1e4)
        check_real("critical_weight", self.critical_weight, 1.0, 1e3)
        check_real("sim_low", self.sim_low, 0.0, 1.0)
        check_real("sim_high", self.sim_high, 0.0, 1.0)
        if self.sim_high < self.sim_low:
            raise ValueError(f"sim_high must be >= sim_low={self.sim_low}, got {self.sim_high}")
        check_real("sim_slope_per_db", self.sim_slope_per_db, 0.0, 10.0, low_inclusive=False)
        check_real("sim_offset", self.sim_offset, -100.0, 100.0)
        check_real("min_similarity", self.min_similarity, 0.0, 1.0)
        for name in ("semantic_delay_budget_s", "embb_delay_budget_s", "urllc_delay_budget_s"):
            value = getattr(self, name)
            check_real(name, value, 0.0, 100.0)
            if value < self.slot_s or value / self.slot_s > 1000.0:
                raise ValueError(f"{name} must be between slot_s={self.slot_s} and 1000 slots, "
                                 f"got {value}")
        check_real("embb_load_bps", self.embb_load_bps, 0.0, 1e12)
        check_real("embb_packet_bits", self.embb_packet_bits, 1.0, 1e9)
        check_real("urllc_load_bps", self.urllc_load_bps, 0.0, 1e12)
        check_real("urllc_packet_bits", self.urllc_packet_bits, 1.0, 1e9)
        for name in ("embb", "urllc"):
            rate = (getattr(self, f"{name}_load_bps") * self.slot_s
                    / getattr(self, f"{name}_packet_bits"))
            if rate > 1e4:
                raise ValueError(f"{name}_load_bps gives {rate:g} packets per slot; at most 1e4 "
                                 f"(raise {name}_packet_bits)")
        check_real("semantic_snr_db", self.semantic_snr_db, -50.0, 80.0)
        check_real("embb_snr_db", self.embb_snr_db, -50.0, 80.0)
        check_real("urllc_snr_db", self.urllc_snr_db, -50.0, 80.0)
        check_real("semantic_weight", self.semantic_weight, 0.0, 1e3)
        check_real("embb_weight", self.embb_weight, 0.0, 1e3)
        check_real("urllc_weight", self.urllc_weight, 0.0, 1e3)
        if self.semantic_weight + self.embb_weight + self.urllc_weight <= 0.0:
            raise ValueError("semantic_weight, embb_weight and urllc_weight must not all be 0")
        check_real("violation_penalty", self.violation_penalty, 0.0, 1e3)

    def deadline_slots(self) -> tuple[int, int, int, int]:
        """Delay budgets of the four queues in whole slots (critical, routine, eMBB, URLLC)."""
        def slots(budget: float) -> int:
            return max(1, math.floor(budget / self.slot_s + 1e-9))
        sem = slots(self.semantic_delay_budget_s)
        return sem, sem, slots(self.embb_delay_budget_s), slots(self.urllc_delay_budget_s)


# --------------------------------------------------------------------------------------------
# The batched core
# --------------------------------------------------------------------------------------------


class SemanticSlicingCore(BatchedCore[SemanticSlicingConfig]):
    """The slicing model on ``num_envs`` instances (see :class:`SemanticSlicingEnv`).

    Public state (leading axis ``N``): ``queues`` (:class:`qdrl_envs.traffic.FifoQueues` with the
    four queues of :data:`QUEUE_NAMES`); ``pending`` ``(N, 4)`` arrivals of the coming slot
    (words, words, bits, bits), already known to the agent; ``snr_db`` ``(N, 3)`` slice SNRs of
    the coming slot, ``xi`` ``(N,)`` its semantic similarity and ``rb_capacity`` ``(N, 3)`` what
    one RB carries in it (words, bits, bits); ``rbs`` ``(N, 3)`` the last split; ``last_info``.

    Constants: ``mean_units_per_rb`` ``(4,)`` — what one RB carries per slot at the slice's mean
    SNR (words for the semantic queues, bits otherwise); ``mean_arrivals`` ``(4,)`` per slot.

    Randomness per instance: one block ``random(7)`` at reset and every step (4 Poisson arrival
    counts, 3 Rayleigh fading powers), so the vector twin reproduces the single env exactly.
    """

    def __init__(self, config: SemanticSlicingConfig, num_envs: int) -> None:
        super().__init__(config, num_envs)
        c = config
        self.single_action_space = spaces.Box(0.0, 1.0, (3,), dtype=np.float32)
        self.single_observation_space = spaces.Box(0.0, 1.0, (15,), dtype=np.float32)
        self.deadlines = np.array(c.deadline_slots(), dtype=np.int64)
        self.queues = FifoQueues(num_envs, self.deadlines.tolist(), [np.inf] * 4)
        embb_pkts = c.embb_load_bps * c.slot_s / c.embb_packet_bits
        urllc_pkts = c.urllc_load_bps * c.slot_s / c.urllc_packet_bits
        self._arrivals = PoissonArrivals([c.critical_msg_rate, c.routine_msg_rate, embb_pkts,
                                          urllc_pkts])
        self._unit = np.array([c.words_per_message, c.words_per_message, c.embb_packet_bits,
                               c.urllc_packet_bits])
        self.mean_arrivals = self._arrivals.rates * self._unit
        self._mean_snr_lin = radio.db_to_linear([c.semantic_snr_db, c.embb_snr_db,
                                                 c.urllc_snr_db])
        self._rb_symbols = c.rb_bandwidth_hz * c.slot_s  # symbols (channel uses) per RB-slot
        self.words_per_rb = self._rb_symbols / c.symbols_per_word
        mean_bits = self._rb_symbols * radio.shannon_rate(self._mean_snr_lin[1:])
        self.mean_units_per_rb = np.array([self.words_per_rb, self.words_per_rb, *mean_bits])
        w_slice = np.array([c.semantic_weight, c.embb_weight, c.urllc_weight])
        self._w_slice_norm = w_slice / w_slice.sum()
        # Queue -> slice maps: plain sums, and importance-weighted (critical words x weight).
        self._q2s = np.array([[1.0, 0, 0], [1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
        self._q2s_w = self._q2s.copy()
        self._q2s_w[0, 0] = c.critical_weight
        stake_floor = np.maximum(self.mean_arrivals, 1.0)
        # Importance-weighted mean arrivals per slice.
        viol_norm = rowwise_dot(stake_floor, self._q2s_w)
        self._viol_coef = -c.violation_penalty * self._w_slice_norm / viol_norm
        # Slice capacity (words, bits, bits) -> queue capacity (critical, routine, eMBB, URLLC).
        self._s2q = self._q2s.T.copy()
        self._inv_demand = 1.0 / (self.mean_units_per_rb * c.n_rbs)
        self._inv_deadline = 1.0 / self.deadlines
        self._snr_scale = 1.0 / (SNR_OBS_HIGH_DB - SNR_OBS_LOW_DB)

        n = num_envs
        self.pending = np.zeros((n, 4))
        self.snr_db = np.zeros((n, 3))
        self.xi = np.zeros(n)
        self.rb_capacity = np.zeros((n, 3))
        self.rbs = np.zeros((n, 3), dtype=np.int64)
        self._obs = np.zeros((n, 15), dtype=np.float32)
        self.last_info: dict[str, Any] | None = None

    def similarity(self, snr_db: ArrayLike) -> NDArray[np.float64]:
        """The configured :func:`semantic_similarity` at ``snr_db``."""
        c = self.config
        return semantic_similarity(snr_db, c.sim_low, c.sim_high, c.sim_slope_per_db,
                                   c.sim_offset)

    def units_per_rb(self, snr_db: ArrayLike) -> NDArray[np.float64]:
        """Words (semantic) and bits (eMBB, URLLC) one RB carries per slot: ``(..., 3)``."""
        snr = np.asarray(snr_db, dtype=np.float64)
        bits = self._rb_symbols * radio.shannon_rate(radio.db_to_linear(snr[..., 1:]))
        return np.concatenate([np.full((*snr.shape[:-1], 1), self.words_per_rb), bits], axis=-1)

    def _draw(self, rngs: Sequence[np.random.Generator]) -> tuple[NDArray[np.float64], ...]:
        """One slot's arrivals, slice SNRs (dB), similarity and units per RB, per instance."""
        block = draw(rngs, lambda g: g.random(7))
        pending = self._arrivals.from_uniform(block[:, :4]) * self._unit
        snr_lin = self._mean_snr_lin * -np.log1p(-block[:, 4:])  # Rayleigh: Exp(1) power
        snr_db = radio.linear_to_db(snr_lin)
        xi = self.similarity(snr_db[:, 0])
        per_rb = self._rb_symbols * radio.shannon_rate(snr_lin)
        per_rb[:, 0] = self.words_per_rb
        return pending, snr_db, xi, per_rb

    def _refresh_obs(self) -> None:
        q = self.queues
        obs = np.concatenate([
            (q.backlog + self.pending) * self._inv_demand,
            q.head_age_slots * self._inv_deadline,
            (self.snr_db - SNR_OBS_LOW_DB) * self._snr_scale,
            self.xi[:, None],
            self.rbs * (1.0 / self.config.n_rbs),
        ], axis=1)
        self._obs = np.minimum(np.maximum(obs, 0.0), 1.0).astype(np.float32)

    def reset(self, rngs: Sequence[np.random.Generator], idx: np.ndarray,
              options: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
        """Empty the queues, draw the first arrivals and channels; the last split is equal.

        Raises:
            ValueError: If ``options`` is given (this env takes no reset options).
        """
        if options:
            raise ValueError(f"SemanticSlicing takes no reset options, got {sorted(options)}")
        pending, snr_db, xi, per_rb = self._draw(rngs)
        self.queues.reset(idx)
        self.pending[idx] = pending
        self.snr_db[idx] = snr_db
        self.xi[idx] = xi
        self.rb_capacity[idx] = per_rb
        self.rbs[idx] = shares_to_rbs(np.zeros(3), self.config.n_rbs)
        self._refresh_obs()
        if len(idx) == self.num_envs:
            self.last_info = None
        return {}

    def step(self, actions: np.ndarray, rngs: Sequence[np.random.Generator]) -> StepResult:
        """Split the RBs, serve the queues on this slot's channels, score the SLAs, draw."""
        c = self.config
        q = self.queues
        rbs = _largest_remainder(actions, c.n_rbs)
        cap_units = rbs * self.rb_capacity  # words, bits, bits
        # Critical semantic words go first (strict priority inside the semantic slice).
        crit_served = np.minimum(cap_units[:, 0], q.backlog[:, 0] + self.pending[:, 0])
        capacity = rowwise_dot(cap_units, self._s2q)
        capacity[:, 1] -= crit_served
        res = q.step(self.pending, capacity)
        xi = self.xi
        satisfied = res.served.copy()
        satisfied[:, :2] *= (xi >= c.min_similarity)[:, None]
        stake = res.served + res.expired + res.overflow
        violated = stake - satisfied
        slice_stake = rowwise_dot(stake, self._q2s_w)
        nothing = slice_stake <= 0.0
        sat_frac = (rowwise_dot(satisfied, self._q2s_w) + nothing) / (slice_stake + nothing)
        satisfaction = rowwise_dot(sat_frac, self._w_slice_norm)
        violation = rowwise_dot(rowwise_dot(violated, self._q2s_w), self._viol_coef)
        served_slice = rowwise_dot(res.served, self._q2s)
        delay_sum = rowwise_dot(res.delay_sum_slots, self._q2s)
        delay_s = delay_sum * c.slot_s / np.maximum(served_slice, 1e-300)
        throughput = served_slice * (1.0 / c.slot_s)
        throughput[:, 0] *= xi
        info: dict[str, Any] = {
            "rbs": rbs,
            "throughput": throughput,
            "delay_s": delay_s,
            "semantic_similarity": xi,
            "sla_violations": rowwise_dot(violated, self._q2s),
            "critical_violations": violated[:, 0],
            "sla_satisfaction": sat_frac,
            "served": res.served,
            "expired": res.expired,
            "reward_terms": {"satisfaction": satisfaction, "violation": violation},
        }
        self.last_info = info
        self.rbs = rbs.copy()
        self.pending, self.snr_db, self.xi, self.rb_capacity = self._draw(rngs)
        self._refresh_obs()
        return StepResult(satisfaction + violation, np.zeros(self.num_envs, dtype=bool), info)

    def observe(self) -> np.ndarray:
        """Observations ``(N, 15)`` float32 in ``[0, 1]`` (fresh after every reset/step)."""
        return self._obs


# --------------------------------------------------------------------------------------------
# The environments
# --------------------------------------------------------------------------------------------


class SemanticSlicingEnv(CoreEnv[SemanticSlicingConfig]):
    r"""Slice a cell's resource blocks between semantic, eMBB and URLLC traffic.

    ## Description

    Network slicing for semantic services next to conventional data services (paper Sec. V-B2,
    V-E; Sec. VII-B (iii): Q-DRL agents adapting slices to their SLAs). One cell with ``B``
    resource blocks (RBs) of ``rb_bandwidth_hz`` per slot of ``slot_s``; every slot the agent
    splits them between three slices:

    * **semantic** — text users of a DeepSC-style semantic transceiver (Xie et al., "Deep
      learning enabled semantic communication systems", IEEE TSP 2021). Messages of
      ``words_per_message`` words arrive as two Poisson streams of different importance:
      *critical* (alerts) and *routine*. Each word takes ``k = symbols_per_word`` symbols, so an
      RB carries ``rb_bandwidth_hz slot_s / k`` words per slot, delivered with sentence
      similarity ``xi(SNR)``: the semantic spectral efficiency is ``xi / k`` semantic units per
      symbol (Yan et al., "Resource allocation for text semantic communications", IEEE WCL
      2022). ``xi`` is :func:`semantic_similarity`, a generalised logistic in the SNR in dB,
      ``sim_low + (sim_high - sim_low) / (1 + exp(-(sim_slope_per_db SNR_dB + sim_offset)))``;
      the defaults (0.25, 0.92, 0.45 /dB, -0.3) are a hand fit to the shape of DeepSC's
      AWGN similarity curve for ``k = 8`` (about 0.55 at 0 dB, 0.9 above 10 dB), not a table
      from either paper: change them with ``k``. Critical words are served before routine ones.
      Semantic SLA (as in SemSlice-style semantic slicing): ``xi >= min_similarity`` (0.6) and
      delay ``<= semantic_delay_budget_s`` (0.13 s).
    * **eMBB** — Poisson packets (``embb_load_bps`` mean), Shannon rate
      ``log2(1 + SNR)`` bit/s/Hz per RB; SLA: delay ``<= embb_delay_budget_s`` (0.2 s).
    * **URLLC** — small Poisson packets, Shannon rate; SLA: delay ``<= urllc_delay_budget_s``
      (one 10 ms slot: served in the slot it arrives).

    Each slice sees one effective SNR per slot: its mean SNR times a Rayleigh block-fading power
    (``Exp(1)``), redrawn every slot; the agent observes this slot's SNRs and arrivals before it
    acts. Queues are FIFO with per-unit delays (:class:`qdrl_envs.traffic.FifoQueues`): a unit
    still waiting when it can no longer meet its budget expires (an SLA violation); semantic
    words delivered with ``xi < min_similarity`` are violations too.

    ## Action Space

    ``Box(0, 1, (3,), float32)``: shares of (semantic, eMBB, URLLC), turned into RB counts by
    :func:`shares_to_rbs` (largest remainder; the counts always sum to ``B``; all zeros = equal
    split).

    ## Observation Space

    ``Box(0, 1, (15,), float32)``; every entry clipped to ``[0, 1]``:

    | Index   | Entry                                                   | Scaling                |
    |---------|---------------------------------------------------------|------------------------|
    | 0-3     | backlog + this slot's arrivals per queue (critical,     | RBs needed at the mean |
    |         | routine, eMBB, URLLC)                                   | SNR / ``B``            |
    | 4-7     | slots the oldest waiting unit has waited, per queue     | / the queue's budget   |
    | 8-10    | slice SNR this slot (semantic, eMBB, URLLC)             | -10 dB -> 0, 40 dB -> 1|
    | 11      | semantic similarity ``xi`` this slot                    | as is                  |
    | 12-14   | last slot's RB split                                    | / ``B``                |

    ## Rewards

    ``sum_s w_s sat_s - violation_penalty * sum_s w_s v_s`` with ``w_s`` the slice weights
    normalised to sum 1. For slice ``s`` and this slot: ``sat_s`` the fraction of units at stake
    (served, expired or dropped) that met the SLA (1 when nothing was at stake) and ``v_s`` the
    violating units divided by the slice's mean arrivals per slot. Semantic units are words,
    critical ones weighted ``critical_weight`` (5) against routine 1. The first term is in
    ``[0, 1]``; the second is ``<= 0`` and finite. ``info["reward_terms"]``: ``satisfaction``
    and ``violation`` (signed; they sum to the reward).

    ``info``: ``rbs`` (3,), ``throughput`` (3,: semantic units/s = words/s x ``xi``; eMBB and
    URLLC bit/s), ``delay_s`` (3,: mean delay of what was served, s), ``semantic_similarity``,
    ``sla_violations`` (3,: words, bits, bits), ``critical_violations`` (words),
    ``sla_satisfaction`` (3,), ``served`` and ``expired`` (4 queues), ``reward_terms``.

    ## Starting State

    Empty queues, the first slot's arrivals and SNRs drawn, the last split equal.

    ## Episode End

    No terminal state. Truncated after 200 slots by the registered time limit.

    ## Arguments

    ``gym.make("qdrl/SemanticSlicing-v0", **fields)`` with fields of
    :class:`SemanticSlicingConfig`:

    | Field                       | Default | Unit / range                             |
    |-----------------------------|---------|------------------------------------------|
    | ``n_rbs``                   | 50      | RBs per slot ``B``, [1, 1000]            |
    | ``rb_bandwidth_hz``         | 180e3   | Hz                                       |
    | ``slot_s``                  | 0.01    | s                                        |
    | ``symbols_per_word``        | 8       | ``k``                                    |
    | ``words_per_message``       | 20      | words                                    |
    | ``critical_msg_rate``       | 20      | messages / slot                          |
    | ``routine_msg_rate``        | 100     | messages / slot                          |
    | ``critical_weight``         | 5       | >= 1                                     |
    | ``sim_low``, ``sim_high``   | 0.25, 0.92 | similarity range of ``xi``            |
    | ``sim_slope_per_db``        | 0.45    | 1/dB                                     |
    | ``sim_offset``              | -0.3    |                                          |
    | ``min_similarity``          | 0.6     | semantic SLA                             |
    | ``semantic_delay_budget_s`` | 0.13    | s                                        |
    | ``embb_load_bps``           | 20e6    | bit/s                                    |
    | ``embb_packet_bits``        | 12000   | bit                                      |
    | ``embb_delay_budget_s``     | 0.2     | s                                        |
    | ``urllc_load_bps``          | 4e6     | bit/s                                    |
    | ``urllc_packet_bits``       | 800     | bit                                      |
    | ``urllc_delay_budget_s``    | 0.01    | s                                        |
    | ``semantic_snr_db``         | 10      | dB mean                                  |
    | ``embb_snr_db``             | 15      | dB mean                                  |
    | ``urllc_snr_db``            | 10      | dB mean                                  |
    | ``semantic_weight``, ``embb_weight``, ``urllc_weight`` | 1, 1, 1 | slice weights |
    | ``violation_penalty``       | 1.0     | >= 0                                     |

    Delay budgets are counted in whole slots (``floor(budget / slot_s)``, at least 1).

    ``render_mode``: ``"ansi"`` (a table of queues and the split) or ``"rgb_array"`` (queue
    backlogs per slice and the RB split).

    ## Version History

    * v0: first version.
    """

    config_cls = SemanticSlicingConfig
    core_cls = SemanticSlicingCore
    core: SemanticSlicingCore

    def _render_ansi(self) -> str:
        return _render_ansi(self.core)

    def _render_rgb_array(self) -> np.ndarray:
        return _render_rgb_array(self.core)


class SemanticSlicingVectorEnv(CoreVectorEnv[SemanticSlicingConfig]):
    """NumPy-batched twin of :class:`SemanticSlicingEnv` (same core; see its manual)."""

    config_cls = SemanticSlicingConfig
    core_cls = SemanticSlicingCore


# --------------------------------------------------------------------------------------------
# Rendering (instance 0 of a core)
# --------------------------------------------------------------------------------------------


def _render_ansi(core: SemanticSlicingCore) -> str:
    c = core.config
    backlog = core.queues.backlog[0] + core.pending[0]
    need = backlog / core.mean_units_per_rb
    lines = [f"SemanticSlicing  B={c.n_rbs} RBs  slot {c.slot_s * 1e3:g} ms  "
             f"xi={core.similarity(core.snr_db[0, 0]):.2f}"]
    info = core.last_info
    if info is not None:
        lines.append("last slot: RBs " + " ".join(f"{n}={int(r)}" for n, r in
                                                  zip(SLICE_NAMES, info["rbs"][0], strict=True))
                     + f"  reward terms sat {info['reward_terms']['satisfaction'][0]:.3f} "
                     f"viol {info['reward_terms']['violation'][0]:.3f}")
    lines.append(" queue             | backlog        | RBs needed | oldest (slots)")
    units = ("words", "words", "bit", "bit")
    for i, name in enumerate(QUEUE_NAMES):
        lines.append(f" {name:<17} | {backlog[i]:9.0f} {units[i]:<5}| {need[i]:10.1f} | "
                     f"{core.queues.head_age_slots[0, i]:.0f}/{core.deadlines[i]}")
    lines.append(" SNR dB: " + "  ".join(f"{n}={s:.1f}" for n, s in
                                         zip(SLICE_NAMES, core.snr_db[0], strict=True)))
    return "\n".join(lines) + "\n"


def _render_rgb_array(core: SemanticSlicingCore) -> np.ndarray:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    c = core.config
    backlog = core.queues.backlog[0] + core.pending[0]
    need = backlog / core.mean_units_per_rb
    fig = Figure(figsize=(7, 3.5), dpi=80)
    canvas = FigureCanvasAgg(fig)
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    colours = ["tab:red", "tab:orange", "tab:blue", "tab:green"]
    ax1.bar(range(4), need, color=colours)
    ax1.set_xticks(range(4), ["sem-crit", "sem-rout", "eMBB", "URLLC"], fontsize=7)
    ax1.set_ylabel("backlog (RBs at mean SNR)")
    ax1.set_title("queues", fontsize=9)
    rbs = core.rbs[0]
    left = 0
    for i, name in enumerate(SLICE_NAMES):
        ax2.barh([0], [rbs[i]], left=left, color=["tab:red", "tab:blue", "tab:green"][i],
                 label=f"{name} {int(rbs[i])}")
        left += int(rbs[i])
    ax2.set_xlim(0, c.n_rbs)
    ax2.set_yticks([])
    ax2.set_xlabel("resource blocks")
    ax2.legend(loc="upper center", fontsize=7, ncol=1)
    ax2.set_ylim(-0.6, 1.6)
    title = "last RB split"
    if core.last_info is not None:
        title += f" (xi={core.last_info['semantic_similarity'][0]:.2f})"
    ax2.set_title(title, fontsize=9)
    fig.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
