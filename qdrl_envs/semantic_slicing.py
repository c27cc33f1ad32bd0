"""``qdrl/SemanticSlicing-v1``: resource-block slicing between semantic and conventional slices.

Paper Sec. V-B2 (network slicing for semantic services vs conventional data), V-E and
VII-B (iii) (slices adapted to SLAs). The physics is written once, as row functions that model
one instance and run inside compiled kernels looping over a batch (:mod:`qdrl_envs.jit`: a slot
takes dozens of tiny operations, which NumPy alone would spend on call overhead):

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
from typing import Any, NamedTuple

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
    Uniforms,
    agg_figure,
    figure_rgb,
)
from qdrl_envs.jit import jitable, kernel, plain, row_map
from qdrl_envs.traffic import (
    QUEUE_STEP_ROWS,
    FifoParams,
    FifoQueues,
    InverseCdf,
    PoissonArrivals,
    fifo_backlog_and_head_age,
    fifo_step,
    inverse_cdf_draw,
)

__all__ = [
    "QUEUE_NAMES",
    "SLICE_NAMES",
    "SemanticSlicingConfig",
    "SemanticSlicingCore",
    "SemanticSlicingEnv",
    "SemanticSlicingVectorEnv",
    "all_splits",
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


def all_splits(n_rbs: int, rb_step: int = 1) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """Every split of ``n_rbs`` RBs over the slices, as counts and as the actions that give them.

    With ``rb_step``, only the splits whose semantic and eMBB counts are multiples of it.

    Returns:
        ``counts`` ``(K, 3)`` (semantic, eMBB, URLLC RBs, summing to ``n_rbs``), semantic
        count major, and ``actions`` ``(K, 3)`` float32 in ``[-1, 1]``, ``2 counts / n_rbs - 1``
        (which :func:`shares_to_rbs` maps back to ``counts``).
    """
    steps = range(0, n_rbs + 1, rb_step)
    counts = np.array([(i, j, n_rbs - i - j) for i in steps for j in steps if i + j <= n_rbs],
                      dtype=np.int64)
    return counts, (2.0 * counts / n_rbs - 1.0).astype(np.float32)


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


@jitable
def _largest_remainder_row(x, n_rbs, out):  # pragma: no cover - compiled
    """:func:`shares_to_rbs` of one share vector ``x``, unchecked, into ``out`` (int64)."""
    n = x.shape[0]
    total = 0.0
    for i in range(n):
        total += x[i]
    bump = (total <= 0.0) * 1.0  # all zeros -> equal shares
    total += bump * n
    left = n_rbs
    for i in range(n):
        out[i] = int(np.floor((x[i] + bump) / total * n_rbs))  # (divide first: subnormals)
        left -= out[i]
    # One more block each to the ``left`` largest fractional parts, ties to the lower index.
    # (``out`` changes as blocks are handed out: fractions come from the quotas.)
    for i in range(n if left > 0 else 0):
        quota_i = (x[i] + bump) / total * n_rbs
        frac_i = quota_i - np.floor(quota_i)
        rank = 0
        for j in range(n):
            quota_j = (x[j] + bump) / total * n_rbs
            frac_j = quota_j - np.floor(quota_j)
            rank += frac_j > frac_i or (frac_j == frac_i and j < i)
        out[i] += rank < left


@kernel
def _largest_remainder_kernel(x, n_rbs, out):  # pragma: no cover - compiled
    for m in range(x.shape[0]):
        _largest_remainder_row(x[m], n_rbs, out[m])


def _largest_remainder(x: NDArray[np.float64], n_rbs: int) -> NDArray[np.int64]:
    """:func:`shares_to_rbs` without the input checks, for any leading shape."""
    flat = np.array(x, dtype=np.float64, order="C").reshape(-1, x.shape[-1])
    out = np.empty(flat.shape, dtype=np.int64)
    _largest_remainder_kernel(flat, n_rbs, out)
    return out.reshape(x.shape)


@jitable
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
    t = np.tanh(np.multiply(0.5 * slope_per_db, snr_db) + 0.5 * offset)
    return (low + half) + half * t


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SemanticSlicingConfig(EnvConfig):
    """Configuration of ``qdrl/SemanticSlicing-v1`` (see :class:`SemanticSlicingEnv`).

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
# One instance at a time: row functions compiled into the core's kernels (see qdrl_envs.jit)
# --------------------------------------------------------------------------------------------

# The constants the kernels take (the template in qdrl_envs.core), built by SemanticSlicingCore.


class _Model(NamedTuple):
    """The slot model: the RB split, the queues' service and the SLA score."""

    n_rbs: int
    slot_s: float
    min_similarity: float
    critical_weight: float
    slice_weights: NDArray[np.float64]
    """``(3,)`` the slices' satisfaction weights, normalised."""
    violation_weights: NDArray[np.float64]
    """``(3,)`` reward per violated unit of each slice (negative)."""
    queues: FifoParams
    """The queues' constants (:attr:`qdrl_envs.traffic.FifoQueues.params`)."""


class _World(NamedTuple):
    """What is drawn: each queue's arrivals, each slice's fading, and what an RB carries."""

    arrivals: InverseCdf
    """Arrival counts per slot (Poisson), one row per queue."""
    unit: NDArray[np.float64]
    """``(4,)`` words or bits of one arrival of each queue."""
    mean_snr: NDArray[np.float64]
    """``(3,)`` each slice's mean SNR (linear)."""
    rb_symbols: float
    """Channel uses of one RB in one slot."""
    words_per_rb: float
    """Semantic words one RB carries in one slot."""
    sim_low: float
    sim_high: float
    sim_slope_per_db: float
    sim_offset: float


class _View(NamedTuple):
    """The observation's scaling."""

    inv_demand: NDArray[np.float64]
    """``(4,)`` one over each queue's demand scale (what all RBs carry at the mean SNR)."""
    inv_deadline: NDArray[np.float64]
    """``(4,)`` one over each queue's deadline (slots)."""
    snr_scale: float
    """One over the observed SNR span (dB)."""
    inv_rbs: float
    """``1 / n_rbs``."""


class _ScalarRows(NamedTuple):
    """Rows of the per-instance scalars a kernel writes (``scalars[row, m]``)."""

    xi: int
    critical_violations: int
    satisfaction: int
    violation: int


class _SliceRows(NamedTuple):
    """Rows of the per-slice figures (``slices[row, m, s]``)."""

    throughput: int
    delay: int
    sla_violations: int
    sla_satisfaction: int


_SCALAR = row_map(_ScalarRows)
_SLICE = row_map(_SliceRows)
_QUEUE = QUEUE_STEP_ROWS  # rows of the per-queue figures (``queues[row, m, q]``): fifo_step's


@jitable
def _draw_slot(world, u, pending, snr_db, rb_capacity):  # pragma: no cover - compiled
    """This slot's arrivals, slice SNRs and units per RB; returns ``xi``.

    ``u[:4]`` are uniforms (arrival counts), ``u[4:7]`` standard exponentials: the slices'
    Rayleigh fading powers ``Exp(1)`` themselves.
    """
    for q in range(4):
        pending[q] = inverse_cdf_draw(world.arrivals, q, u[q]) * world.unit[q]
    for s in range(3):
        snr = world.mean_snr[s] * u[4 + s]
        snr_db[s] = radio.linear_to_db(snr)
        rb_capacity[s] = world.rb_symbols * radio.shannon_rate(snr)
    rb_capacity[0] = world.words_per_rb
    return semantic_similarity(snr_db[0], world.sim_low, world.sim_high, world.sim_slope_per_db,
                               world.sim_offset)


@jitable
def _observe_row(view, queue, pending, snr_db, xi, rbs, obs):  # pragma: no cover - compiled
    """Write one instance's observation (layout in the :class:`SemanticSlicingEnv` manual)."""
    for q in range(4):
        backlog, age = fifo_backlog_and_head_age(queue, q)
        obs[q] = min(max((backlog + pending[q]) * view.inv_demand[q], 0.0), 1.0)
        obs[4 + q] = min(max(age * view.inv_deadline[q], 0.0), 1.0)
    for s in range(3):
        obs[8 + s] = min(max((snr_db[s] - SNR_OBS_LOW_DB) * view.snr_scale, 0.0), 1.0)
        obs[12 + s] = min(max(rbs[s] * view.inv_rbs, 0.0), 1.0)
    obs[11] = min(max(xi, 0.0), 1.0)


@jitable
def _serve_row(model, action, queue, pending, rb_capacity, xi, rbs, capacity, qout, sout,
               scalars, m):  # pragma: no cover - compiled
    """Split the RBs by ``action``, serve the queues and score the SLAs of instance ``m``.

    ``qout`` ``(6, 4)`` and ``sout`` ``(4, 3)`` take the per-queue and per-slice figures (rows
    ``_QUEUE``, ``_SLICE``); ``scalars[:, m]`` the per-instance ones (rows ``_SCALAR``);
    ``capacity`` is scratch of length 4.
    """
    fifo = FifoParams(*model.queues)
    for s in range(3):
        capacity[s] = 0.5 * (action[s] + 1.0)  # shares x = (a + 1) / 2 (scratch reused below)
    _largest_remainder_row(capacity[:3], model.n_rbs, rbs)
    # Critical semantic words go first and routine ones get what they leave (the queues are
    # built with after_previous = (F, T, F, F)); eMBB and URLLC have their own slices.
    capacity[0] = rbs[0] * rb_capacity[0]
    capacity[1] = 0.0
    capacity[2] = rbs[1] * rb_capacity[1]
    capacity[3] = rbs[2] * rb_capacity[2]
    fifo_step(queue, pending, capacity, fifo.buffer, fifo.delay, fifo.expire_col,
              fifo.after_previous, qout)
    served, expired, overflow = qout[_QUEUE.served], qout[_QUEUE.expired], qout[_QUEUE.overflow]
    ok = 1.0 if xi >= model.min_similarity else 0.0  # semantic words need the similarity SLA too
    # Per slice: at stake = served + expired + dropped; met = served within the SLA. The
    # semantic slice holds queues 0 (critical words, weight critical_weight) and 1.
    satisfaction = 0.0
    violation = 0.0
    for s in range(3):
        q = 0 if s == 0 else s + 1
        stake = served[q] + expired[q] + overflow[q]
        met = served[q] * ok if s == 0 else served[q]
        weight = model.critical_weight if s == 0 else 1.0
        stake_w, met_w = weight * stake, weight * met
        violated, violated_w = stake - met, weight * (stake - met)
        done, waited = served[q], qout[_QUEUE.delay_sum_slots, q]
        if s == 0:
            scalars[_SCALAR.critical_violations, m] = violated
            stake1 = served[1] + expired[1] + overflow[1]
            met1 = served[1] * ok
            stake_w += stake1
            met_w += met1
            violated += stake1 - met1
            violated_w += stake1 - met1
            done += served[1]
            waited += qout[_QUEUE.delay_sum_slots, 1]
        nothing = 1.0 if stake_w <= 0.0 else 0.0
        sout[_SLICE.sla_satisfaction, s] = frac = (met_w + nothing) / (stake_w + nothing)
        sout[_SLICE.sla_violations, s] = violated
        sout[_SLICE.delay, s] = waited * model.slot_s / max(done, 1e-300)
        sout[_SLICE.throughput, s] = done * (1.0 / model.slot_s) * (xi if s == 0 else 1.0)
        satisfaction += frac * model.slice_weights[s]
        violation += violated_w * model.violation_weights[s]
    scalars[_SCALAR.xi, m] = xi
    scalars[_SCALAR.satisfaction, m] = satisfaction
    scalars[_SCALAR.violation, m] = violation


@kernel
def _reset_kernel(model, world, view, idx, draws, queues, pending, snr_db, xi, rb_capacity,
                  rbs, obs):  # pragma: no cover - compiled
    model = _Model(*model)
    world = _World(*world)
    view = _View(*view)
    equal = np.zeros(3)
    for j in range(idx.shape[0]):
        m = idx[j]
        queues[m] = 0.0
        xi[m] = _draw_slot(world, draws[j], pending[m], snr_db[m], rb_capacity[m])
        _largest_remainder_row(equal, model.n_rbs, rbs[m])
        _observe_row(view, queues[m], pending[m], snr_db[m], xi[m], rbs[m], obs[m])


@kernel
def _step_kernel(model, world, view, actions, draws, queues, pending, snr_db, xi,
                 rb_capacity, rbs, obs, qout, sout, rbs_out, scalars
                 ):  # pragma: no cover - compiled
    model = _Model(*model)
    world = _World(*world)
    view = _View(*view)
    capacity = np.empty(4)
    for m in range(actions.shape[0]):
        _serve_row(model, actions[m], queues[m], pending[m], rb_capacity[m], xi[m],
                   rbs_out[m], capacity, qout[:, m], sout[:, m], scalars, m)
        rbs[m] = rbs_out[m]
        xi[m] = _draw_slot(world, draws[m], pending[m], snr_db[m], rb_capacity[m])
        _observe_row(view, queues[m], pending[m], snr_db[m], xi[m], rbs[m], obs[m])


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

    Randomness per instance: one block at reset and every step from
    :class:`qdrl_envs.core.Uniforms`, 4 uniforms (Poisson arrival counts) then 3 standard
    exponentials (Rayleigh fading powers), so the vector twin reproduces the single env
    exactly.

    The model runs in compiled kernels (``_reset_kernel``, ``_step_kernel``) over row
    functions; the constants they need are packed once (``_model``, ``_world``, ``_view``: the
    packs :class:`_Model` (the queues' :attr:`FifoQueues.params` among them), :class:`_World`,
    :class:`_View` as plain tuples, the template of :mod:`qdrl_envs.core`).
    """

    def render_ansi(self, row: int = 0) -> str:
        """Row ``row`` as text (see the env manual's Rendering)."""
        return _render_ansi(self, row)

    def render_rgb_array(self, row: int = 0) -> np.ndarray:
        """Row ``row`` as an RGB picture (see the env manual's Rendering)."""
        return _render_rgb_array(self, row)

    def __init__(self, config: SemanticSlicingConfig, num_envs: int) -> None:
        super().__init__(config, num_envs)
        c = config
        self.single_action_space = spaces.Box(-1.0, 1.0, (3,), dtype=np.float32)
        self.single_observation_space = spaces.Box(0.0, 1.0, (15,), dtype=np.float32)
        self.deadlines = np.array(c.deadline_slots(), dtype=np.int64)
        self.queues = FifoQueues(num_envs, self.deadlines.tolist(), [np.inf] * 4,
                                 after_previous=[False, True, False, False])
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
        # Importance-weighted mean arrivals per slice (critical words x critical_weight), the
        # scale of each slice's violations.
        stake = np.maximum(self.mean_arrivals, 1.0)
        viol_norm = np.array([c.critical_weight * stake[0] + stake[1], stake[2], stake[3]])
        self.unit_weights = self._w_slice_norm / viol_norm
        """Weight of one violated unit of each slice ``(3,)`` in the violation term (before
        ``violation_penalty``; a critical word counts ``critical_weight`` units)."""
        self._viol_coef = -c.violation_penalty * self.unit_weights
        self._inv_demand = 1.0 / (self.mean_units_per_rb * c.n_rbs)
        self._inv_deadline = 1.0 / self.deadlines
        self._snr_scale = 1.0 / (SNR_OBS_HIGH_DB - SNR_OBS_LOW_DB)

        self._uniforms = Uniforms(num_envs)
        # What the kernels take, as plain tuples (numba dispatches those fast).
        self._model = plain(_Model(
            n_rbs=int(c.n_rbs), slot_s=float(c.slot_s), min_similarity=float(c.min_similarity),
            critical_weight=float(c.critical_weight), slice_weights=self._w_slice_norm,
            violation_weights=self._viol_coef, queues=self.queues.params))
        self._world = plain(_World(
            arrivals=self._arrivals.table, unit=self._unit, mean_snr=self._mean_snr_lin,
            rb_symbols=float(self._rb_symbols), words_per_rb=float(self.words_per_rb),
            sim_low=float(c.sim_low), sim_high=float(c.sim_high),
            sim_slope_per_db=float(c.sim_slope_per_db), sim_offset=float(c.sim_offset)))
        self._view = plain(_View(inv_demand=self._inv_demand, inv_deadline=self._inv_deadline,
                                 snr_scale=self._snr_scale, inv_rbs=1.0 / c.n_rbs))

        n = num_envs
        self.pending = np.zeros((n, 4))
        self.snr_db = np.zeros((n, 3))
        self.xi = np.zeros(n)
        self.rb_capacity = np.zeros((n, 3))
        self.rbs = np.zeros((n, 3), dtype=np.int64)
        self._obs = np.zeros((n, 15), dtype=np.float32)
        self.last_info: dict[str, Any] | None = None
        self._scratch: dict[int, SemanticSlicingCore] = {}

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

    def reset(self, rngs: Sequence[np.random.Generator], idx: np.ndarray,
              options: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
        """Empty the queues, draw the first arrivals and channels; the last split is equal.

        Raises:
            ValueError: If ``options`` is given (this env takes no reset options).
        """
        if options:
            raise ValueError(f"SemanticSlicing takes no reset options, got {sorted(options)}")
        obs = self._obs.copy()  # a new array; instances not reset keep their rows
        _reset_kernel(self._model, self._world, self._view, np.asarray(idx, dtype=np.int64),
                      self._uniforms.take(rngs, idx, 7, exponential=3), self.queues.storage,
                      self.pending, self.snr_db, self.xi, self.rb_capacity, self.rbs, obs)
        self._obs = obs
        if len(idx) == self.num_envs:
            self.last_info = None
        return {}

    def step(self, actions: np.ndarray, rngs: Sequence[np.random.Generator]) -> StepResult:
        """Split the RBs, serve the queues on this slot's channels, score the SLAs, draw."""
        n = self.num_envs
        obs = np.empty_like(self._obs)  # a new array; the kernel writes every row
        qout, sout, rbs, scalars = self._slot(
            actions, self._uniforms.take(rngs, None, 7, exponential=3), obs)
        self._obs = obs
        info: dict[str, Any] = {
            "rbs": rbs,
            "throughput": sout[_SLICE.throughput],
            "delay_s": sout[_SLICE.delay],
            "semantic_similarity": scalars[_SCALAR.xi],
            "sla_violations": sout[_SLICE.sla_violations],
            "critical_violations": scalars[_SCALAR.critical_violations],
            "sla_satisfaction": sout[_SLICE.sla_satisfaction],
            "served": qout[_QUEUE.served],
            "expired": qout[_QUEUE.expired],
            "reward_terms": {"satisfaction": scalars[_SCALAR.satisfaction],
                             "violation": scalars[_SCALAR.violation]},
        }
        self.last_info = info
        reward = scalars[_SCALAR.satisfaction] + scalars[_SCALAR.violation]
        return StepResult(reward, np.zeros(n, dtype=bool), info)

    def observe(self) -> np.ndarray:
        """Observations ``(N, 15)`` float32 in ``[0, 1]`` (fresh after every reset/step)."""
        return self._obs

    def slot_outcomes(self, i: int, actions: ArrayLike) -> dict[str, NDArray[np.float64]]:
        """What each of ``actions`` would do to instance ``i`` this slot, changing nothing.

        Copies instance ``i`` into a scratch core of ``K`` instances (:meth:`scratch`) and runs
        the step's own kernel there (:meth:`trial`), so the figures are exactly what
        :meth:`step` would report for that instance and action.

        Args:
            i: The instance.
            actions: Candidate actions ``(K, 3)`` in ``[-1, 1]`` (unchecked).

        Returns:
            ``reward`` ``(K,)``, ``served`` ``(K, 4)`` (per queue, in its units) and
            ``backlog`` ``(K, 4)`` (left waiting after the slot).
        """
        acts = np.ascontiguousarray(actions, dtype=np.float64)
        scratch = self.scratch(acts.shape[0])
        scratch.copy_instance(self, i)
        return scratch.trial(acts)

    def scratch(self, k: int) -> SemanticSlicingCore:
        """A core of ``k`` instances of this config for trial slots, kept for reuse.

        Its state is whatever the last user left: set it with :meth:`copy_instance` first.
        The few most recent sizes are kept (an oracle asks for the same ``k`` every slot).
        """
        if k not in self._scratch:
            if len(self._scratch) >= 4:
                self._scratch.pop(next(iter(self._scratch)))
            self._scratch[k] = SemanticSlicingCore(self.config, k)
        return self._scratch[k]

    def copy_instance(self, source: SemanticSlicingCore, row: int) -> None:
        """Set every instance to ``source``'s instance ``row``: the state a slot reads.

        That is its queues, the arrivals and channels drawn for the coming slot (so its SNRs,
        similarity and RB capacities, as they stand: after any interference applied to
        ``source``) and its last split. ``source`` must have the same config.
        """
        self.queues.storage[:] = source.queues.storage[row]
        self.pending[:] = source.pending[row]
        self.snr_db[:] = source.snr_db[row]
        self.xi[:] = source.xi[row]
        self.rb_capacity[:] = source.rb_capacity[row]
        self.rbs[:] = source.rbs[row]

    def trial(self, actions: NDArray[np.float64]) -> dict[str, NDArray[np.float64]]:
        """Play one slot of ``actions`` ``(N, 3)`` (float64, contiguous) on this core's state.

        The step's kernel with dummy draws for the next slot: the reward, served and backlog
        are exactly :meth:`step`'s, while the queues and channels left behind are not a real
        next slot (use it on a :meth:`scratch` core). Returns ``reward`` ``(N,)``, ``served``
        ``(N, 4)`` and ``backlog`` ``(N, 4)``.
        """
        n = self.num_envs
        qout, _, _, scalars = self._slot(actions, np.full((n, 7), 0.5),
                                         np.empty((n, 15), dtype=np.float32))
        return {"reward": scalars[_SCALAR.satisfaction] + scalars[_SCALAR.violation],
                "served": qout[_QUEUE.served], "backlog": self.queues.storage.sum(axis=-1)}

    def _slot(self, actions: np.ndarray, draws: np.ndarray, obs: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One slot of the step kernel on this core's state, writing ``obs``.

        Returns the per-queue ``(len(_QUEUE), N, 4)``, per-slice ``(len(_SLICE), N, 3)``,
        split ``(N, 3)`` and scalar ``(len(_SCALAR), N)`` outputs.
        """
        n = self.num_envs
        qout = np.empty((len(_QUEUE), n, 4))
        sout = np.empty((len(_SLICE), n, 3))
        rbs = np.empty((n, 3), dtype=np.int64)
        scalars = np.empty((len(_SCALAR), n))
        _step_kernel(self._model, self._world, self._view, actions, draws, self.queues.storage,
                     self.pending, self.snr_db, self.xi, self.rb_capacity, self.rbs, obs, qout,
                     sout, rbs, scalars)
        return qout, sout, rbs, scalars


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

    ``Box(-1, 1, (3,), float32)``: action ``a`` gives the shares ``x = (a + 1) / 2`` of
    (semantic, eMBB, URLLC), turned into RB counts by :func:`shares_to_rbs` (largest
    remainder; the counts always sum to ``B``; all -1, zero shares, is the equal split).
    Symmetric, so that an untrained Gaussian policy centred on 0 splits evenly instead of
    sitting on the lower bound.

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

    ``gym.make("qdrl/SemanticSlicing-v1", **fields)`` with fields of
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

    * v1: actions in ``[-1, 1]`` (shares ``(a + 1) / 2``).
    * v0: first version (actions were the shares in ``[0, 1]``).
    """

    config_cls = SemanticSlicingConfig
    core_cls = SemanticSlicingCore
    core: SemanticSlicingCore



class SemanticSlicingVectorEnv(CoreVectorEnv[SemanticSlicingConfig]):
    """NumPy-batched twin of :class:`SemanticSlicingEnv` (same core; see its manual)."""

    config_cls = SemanticSlicingConfig
    core_cls = SemanticSlicingCore


# --------------------------------------------------------------------------------------------
# Rendering (one row of a core)
# --------------------------------------------------------------------------------------------


def _render_ansi(core: SemanticSlicingCore, row: int) -> str:
    c = core.config
    backlog = core.queues.backlog[row] + core.pending[row]
    need = backlog / core.mean_units_per_rb
    lines = [f"SemanticSlicing  B={c.n_rbs} RBs  slot {c.slot_s * 1e3:g} ms  "
             f"xi={core.similarity(core.snr_db[row, 0]):.2f}"]
    info = core.last_info
    if info is not None:
        lines.append("last slot: RBs " + " ".join(f"{n}={int(r)}" for n, r in
                                                  zip(SLICE_NAMES, info["rbs"][row], strict=True))
                     + f"  reward terms sat {info['reward_terms']['satisfaction'][row]:.3f} "
                     f"viol {info['reward_terms']['violation'][row]:.3f}")
    lines.append(" queue             | backlog        | RBs needed | oldest (slots)")
    units = ("words", "words", "bit", "bit")
    for i, name in enumerate(QUEUE_NAMES):
        lines.append(f" {name:<17} | {backlog[i]:9.0f} {units[i]:<5}| {need[i]:10.1f} | "
                     f"{core.queues.head_age_slots[row, i]:.0f}/{core.deadlines[i]}")
    lines.append(" SNR dB: " + "  ".join(f"{n}={s:.1f}" for n, s in
                                         zip(SLICE_NAMES, core.snr_db[row], strict=True)))
    return "\n".join(lines) + "\n"


def _render_rgb_array(core: SemanticSlicingCore, row: int) -> np.ndarray:
    c = core.config
    backlog = core.queues.backlog[row] + core.pending[row]
    need = backlog / core.mean_units_per_rb
    fig = agg_figure(7, 3.5)
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    colours = ["tab:red", "tab:orange", "tab:blue", "tab:green"]
    ax1.bar(range(4), need, color=colours)
    ax1.set_xticks(range(4), ["sem-crit", "sem-rout", "eMBB", "URLLC"], fontsize=7)
    ax1.set_ylabel("backlog (RBs at mean SNR)")
    ax1.set_title("queues", fontsize=9)
    rbs = core.rbs[row]
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
        title += f" (xi={core.last_info['semantic_similarity'][row]:.2f})"
    ax2.set_title(title, fontsize=9)
    fig.tight_layout()
    return figure_rgb(fig)
