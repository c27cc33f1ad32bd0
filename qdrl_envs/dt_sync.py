"""Digital-twin synchronisation by age of information: ``qdrl/DTSyncAoI-v0``.

M physical devices are mirrored by digital twins on an MEC server; each slot, C < M uplink
channels carry synchronisation packets, and the agent picks which C devices transmit. The
freshness of every twin is its age of information (AoI), updated with the paper's rule
(Sec. V-F2 (ii), after Zhang et al. [198]). See :class:`DTSyncAoIEnv` for the manual.

Public helpers, usable without an environment:

* :func:`subset_from_index` / :func:`index_from_subset` / :func:`combination_table` — the
  mapping between the ``Discrete(comb(M, C))`` action index and the scheduled subset
  (lexicographic order of :func:`itertools.combinations`);
* :func:`success_probability` / :func:`mean_success_probability` — the probability that a
  scheduled packet gets through, given the SNR estimate the agent sees (resp. on average).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np
from gymnasium import spaces
from numpy.typing import NDArray

from qdrl_envs import radio
from qdrl_envs.config import (
    EnvConfig,
    check_bool,
    check_int,
    check_order,
    check_real,
    check_reals,
)
from qdrl_envs.core import (
    BatchedCore,
    CoreEnv,
    CoreVectorEnv,
    StepResult,
    Uniforms,
    agg_figure,
    figure_rgb,
    row_view,
)
from qdrl_envs.jit import jitable, kernel, plain, row_map

__all__ = [
    "MAX_ACTIONS",
    "DTSyncAoICore",
    "DTSyncAoIEnv",
    "DTSyncAoIVectorEnv",
    "DTSyncConfig",
    "combination_table",
    "index_from_subset",
    "mean_success_probability",
    "subset_from_index",
    "success_probability",
]

MAX_ACTIONS = 65_536
"""Largest allowed action count ``comb(n_devices, n_channels)`` (the index table is cached)."""

_N_FEATURES = 5  # age, age-if-delivered, SNR estimate, mean SNR, weight
_BLOCK_SLOTS = 67  # slots of randomness drawn at once per instance (see _block_slots)


# --------------------------------------------------------------------------------------------
# Action index <-> scheduled subset
# --------------------------------------------------------------------------------------------


def _check_mc(n_devices: Any, n_channels: Any) -> None:
    check_int("n_devices", n_devices, low=1)
    check_int("n_channels", n_channels, low=1, high=int(n_devices))


def subset_from_index(index: int, n_devices: int, n_channels: int) -> tuple[int, ...]:
    """Return the subset of devices scheduled by action ``index``.

    Subsets are numbered in the lexicographic order of
    ``itertools.combinations(range(n_devices), n_channels)``: for ``M = 4, C = 2`` the indices
    ``0..5`` are ``(0,1), (0,2), (0,3), (1,2), (1,3), (2,3)``. Computed with the combinatorial
    number system in ``O(M)``, without building the table.

    Args:
        index: Action index in ``[0, comb(n_devices, n_channels))``.
        n_devices: Number of devices ``M`` (>= 1).
        n_channels: Channels per slot ``C`` in ``[1, M]``.

    Returns:
        The ``C`` scheduled device indices, increasing.

    Raises:
        ValueError: If a size is invalid or ``index`` is out of range.
    """
    _check_mc(n_devices, n_channels)
    total = math.comb(n_devices, n_channels)
    check_int("index", index, low=0, high=total - 1)
    rest = int(index)
    out: list[int] = []
    v = 0
    for i in range(n_channels):
        while True:
            count = math.comb(n_devices - 1 - v, n_channels - 1 - i)
            if rest < count:
                out.append(v)
                v += 1
                break
            rest -= count
            v += 1
    return tuple(out)


def index_from_subset(subset: Sequence[int], n_devices: int) -> int:
    """Return the action index that schedules ``subset`` (inverse of :func:`subset_from_index`).

    Args:
        subset: Distinct device indices in ``[0, n_devices)``, in any order; its length is the
            number of channels ``C``.
        n_devices: Number of devices ``M``.

    Returns:
        The lexicographic rank of ``sorted(subset)`` among the ``C``-subsets of ``range(M)``.

    Raises:
        ValueError: If ``subset`` is empty, has repeats, or holds out-of-range devices.
    """
    check_int("n_devices", n_devices, low=1)
    items = [int(s) for s in subset]
    if not items:
        raise ValueError("subset must hold at least one device")
    if len(set(items)) != len(items):
        raise ValueError(f"subset must not repeat devices, got {list(subset)!r}")
    if min(items) < 0 or max(items) >= n_devices:
        raise ValueError(f"subset devices must lie in [0, {n_devices - 1}], got {list(subset)!r}")
    c = sorted(items)
    k = len(c)
    rank = 0
    prev = -1
    for i, ci in enumerate(c):
        # sum_{v=prev+1}^{ci-1} comb(M-1-v, k-1-i), by the hockey-stick identity.
        rank += math.comb(n_devices - prev - 1, k - i) - math.comb(n_devices - ci, k - i)
        prev = ci
    return rank


@lru_cache(maxsize=32)
def _tables(n_devices: int, n_channels: int) -> tuple[np.ndarray, np.ndarray]:
    import itertools

    combos = np.array(list(itertools.combinations(range(n_devices), n_channels)), dtype=np.int64)
    masks = np.zeros((len(combos), n_devices), dtype=bool)
    masks[np.arange(len(combos))[:, None], combos] = True
    combos.setflags(write=False)
    masks.setflags(write=False)
    return combos, masks


def combination_table(n_devices: int, n_channels: int) -> np.ndarray:
    """Return the read-only table ``(comb(M, C), C)``: row ``i`` is ``subset_from_index(i)``.

    Index it with an array of actions to map a whole batch at once.

    Raises:
        ValueError: If a size is invalid or ``comb(M, C)`` exceeds :data:`MAX_ACTIONS`.
    """
    _check_mc(n_devices, n_channels)
    if math.comb(n_devices, n_channels) > MAX_ACTIONS:
        raise ValueError(f"comb(n_devices={n_devices}, n_channels={n_channels}) = "
                         f"{math.comb(n_devices, n_channels)} exceeds MAX_ACTIONS={MAX_ACTIONS}")
    return _tables(int(n_devices), int(n_channels))[0]


# --------------------------------------------------------------------------------------------
# Link success given the SNR estimate
# --------------------------------------------------------------------------------------------


def success_probability(snr_est_db: Any, mean_snr_db: Any, threshold_db: float,
                        csi_error_var: float, rayleigh_fading: bool = True) -> np.ndarray:
    """Probability that a scheduled packet is decoded, given this slot's SNR estimate.

    The channel model of :class:`DTSyncAoIEnv`: ``h = h_hat + e`` with the estimate
    ``h_hat ~ CN(0, 1 - s2)`` and the error ``e ~ CN(0, s2)`` independent (MMSE channel
    estimation, ``s2 = csi_error_var``); the true SNR is ``mean_snr |h|^2``, the reported
    estimate ``mean_snr |h_hat|^2``. Given ``h_hat``, ``2|h|^2 / s2`` is non-central chi-square
    with 2 degrees of freedom and non-centrality ``2|h_hat|^2 / s2``, so

    ``P(SNR >= thr | h_hat) = Q_1(sqrt(2|h_hat|^2 / s2), sqrt(2 thr / (mean_snr s2)))``

    (Marcum Q-function). With ``s2 = 0`` or without fading it is ``1{snr_est >= thr}``.

    Args:
        snr_est_db: SNR estimate(s) in dB.
        mean_snr_db: Mean (large-scale) SNR(s) in dB, broadcast against ``snr_est_db``.
        threshold_db: Decoding threshold in dB.
        csi_error_var: Estimation error variance ``s2`` in ``[0, 1)``.
        rayleigh_fading: Whether the channel fades (without fading the estimate is exact).

    Returns:
        Success probabilities in ``[0, 1]``, float64, broadcast shape.
    """
    est = np.asarray(snr_est_db, dtype=np.float64)
    mean = np.asarray(mean_snr_db, dtype=np.float64)
    est, mean = np.broadcast_arrays(est, mean)
    if not rayleigh_fading or csi_error_var == 0.0:
        return (est >= threshold_db).astype(np.float64)
    from scipy.stats import ncx2  # lazy: scipy.stats is slow to import

    h_hat2 = radio.db_to_linear(est - mean)
    x = radio.db_to_linear(threshold_db - mean)
    return np.clip(ncx2.sf(2.0 * x / csi_error_var, 2.0, 2.0 * h_hat2 / csi_error_var), 0.0, 1.0)


def mean_success_probability(mean_snr_db: Any, threshold_db: float,
                             rayleigh_fading: bool = True) -> np.ndarray:
    """Long-run success probability of a link with mean SNR ``mean_snr_db``.

    Rayleigh fading: ``P(mean_snr |h|^2 >= thr) = exp(-thr / mean_snr)``; without fading
    ``1{mean_snr >= thr}``.

    Returns:
        Probabilities in ``[0, 1]``, float64.
    """
    mean = np.asarray(mean_snr_db, dtype=np.float64)
    if not rayleigh_fading:
        return (mean >= threshold_db).astype(np.float64)
    return np.exp(-radio.db_to_linear(threshold_db - mean))


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DTSyncConfig(EnvConfig):
    """Configuration of :class:`DTSyncAoIEnv` (defaults: docs/design.md §3.2).

    Attributes:
        n_devices: Devices / twins ``M``.
        n_channels: Uplink sync channels per slot ``C`` (``1 <= C < M``).
        arrival_prob: Probability that a device generates a status update at the start of a
            slot (Bernoulli), one number for all or a tuple of ``M``; ``1.0`` is
            generate-at-will (a fresh update in every slot).
        weights: Twin importance weights ``w_m > 0`` (tuple of ``M``); ``None`` means all 1.
        tx_power_dbm: Device transmit power (dBm).
        bandwidth_hz: Channel bandwidth (Hz), sets the noise power.
        noise_figure_db: Receiver noise figure (dB).
        carrier_hz: Carrier frequency (Hz) of the log-distance path loss.
        path_loss_exponent: Path-loss exponent.
        min_distance_m: Smallest device-server distance (m).
        max_distance_m: Largest device-server distance (m).
        snr_threshold_db: A transmission succeeds when the slot's SNR is at least this (dB).
        rayleigh_fading: Rayleigh block fading per device and slot (``False``: the SNR is the
            mean SNR, and the estimate is exact).
        csi_error_var: Variance ``s2`` of the channel-estimation error, ``[0, 1)``.
        age_scale_slots: Age squashing scale ``s`` of the observation (``x = a / (a + s)``).
        snr_scale_db: dB span of the SNR observation (``(snr_db - threshold) / span``).
    """

    n_devices: int = 6
    n_channels: int = 2
    arrival_prob: float | tuple[float, ...] = 0.5
    weights: tuple[float, ...] | None = None
    tx_power_dbm: float = 20.0
    bandwidth_hz: float = 1e6
    noise_figure_db: float = 7.0
    carrier_hz: float = 2.4e9
    path_loss_exponent: float = 3.5
    min_distance_m: float = 30.0
    max_distance_m: float = 250.0
    snr_threshold_db: float = 5.0
    rayleigh_fading: bool = True
    csi_error_var: float = 0.1
    age_scale_slots: float = 10.0
    snr_scale_db: float = 30.0

    def validate(self) -> None:
        """Check every field (see the class docstring for the ranges).

        Raises:
            ValueError: Naming the first invalid field, its value and the allowed range.
        """
        check_int("n_devices", self.n_devices, low=2, high=64)
        check_int("n_channels", self.n_channels, low=1, high=63)
        check_order("n_channels", self.n_channels, "n_devices", self.n_devices, strict=True)
        n_actions = math.comb(self.n_devices, self.n_channels)
        if n_actions > MAX_ACTIONS:
            raise ValueError(f"comb(n_devices, n_channels) = comb({self.n_devices}, "
                             f"{self.n_channels}) = {n_actions} actions exceeds MAX_ACTIONS="
                             f"{MAX_ACTIONS}; use fewer devices or channels")
        if isinstance(self.arrival_prob, tuple):
            check_reals("arrival_prob", self.arrival_prob, self.n_devices, 0.0, 1.0)
            if min(self.arrival_prob) <= 0.0:
                raise ValueError(f"arrival_prob entries must be in (0, 1], got "
                                 f"{self.arrival_prob!r}")
        else:
            check_real("arrival_prob", self.arrival_prob, 0.0, 1.0, low_inclusive=False)
        if self.weights is not None:
            check_reals("weights", self.weights, self.n_devices, 0.0, 1e6)
            if min(self.weights) <= 0.0:
                raise ValueError(f"weights must be > 0, got {self.weights!r}")
        check_real("tx_power_dbm", self.tx_power_dbm, -50.0, 60.0)
        check_real("bandwidth_hz", self.bandwidth_hz, 1.0, 1e11)
        check_real("noise_figure_db", self.noise_figure_db, 0.0, 30.0)
        check_real("carrier_hz", self.carrier_hz, 1e6, 3e11)
        check_real("path_loss_exponent", self.path_loss_exponent, 1.5, 6.0)
        check_real("min_distance_m", self.min_distance_m, 1.0, 1e5)
        check_real("max_distance_m", self.max_distance_m, 1.0, 1e5)
        check_order("min_distance_m", self.min_distance_m, "max_distance_m", self.max_distance_m)
        check_real("snr_threshold_db", self.snr_threshold_db, -200.0, 200.0)
        check_bool("rayleigh_fading", self.rayleigh_fading)
        check_real("csi_error_var", self.csi_error_var, 0.0, 1.0, high_inclusive=False)
        check_real("age_scale_slots", self.age_scale_slots, 0.0, 1e6, low_inclusive=False)
        check_real("snr_scale_db", self.snr_scale_db, 0.0, 1e3, low_inclusive=False)

    @property
    def n_actions(self) -> int:
        """Number of actions ``comb(n_devices, n_channels)``."""
        return math.comb(self.n_devices, self.n_channels)

    def arrival_probs(self) -> np.ndarray:
        """Per-device arrival probabilities, shape ``(M,)``."""
        return np.broadcast_to(np.asarray(self.arrival_prob, dtype=np.float64),
                               (self.n_devices,)).copy()

    def weight_vector(self) -> np.ndarray:
        """Per-twin weights ``w_m``, shape ``(M,)`` (ones when ``weights`` is ``None``)."""
        if self.weights is None:
            return np.ones(self.n_devices)
        return np.asarray(self.weights, dtype=np.float64)

    def noise_dbm(self) -> float:
        """Receiver noise power (dBm)."""
        return float(radio.watt_to_dbm(radio.noise_power_w(self.bandwidth_hz,
                                                           self.noise_figure_db)))

    def mean_snr_db(self, distance_m: Any) -> np.ndarray:
        """Mean SNR (dB) of devices at ``distance_m``: ``P_tx - PL(d) - noise``."""
        pl = radio.log_distance_path_loss_db(distance_m, self.carrier_hz, self.path_loss_exponent)
        return self.tx_power_dbm - pl - self.noise_dbm()


# --------------------------------------------------------------------------------------------
# Core: one instance at a time in compiled kernels (see qdrl_envs.jit)
# --------------------------------------------------------------------------------------------

# The constants the kernels take (the template in qdrl_envs.core), built by DTSyncAoICore.


class _Model(NamedTuple):
    """The slot model: the scheduled subset, deliveries and the weighted-AoI reward."""

    combos: NDArray[np.int64]
    """``(comb(M, C), C)`` the devices of each action (:func:`combination_table`)."""
    weights: NDArray[np.float64]
    """``(M,)`` the devices' AoI weights."""
    inv_m: float
    """``1 / M``."""


class _World(NamedTuple):
    """What is drawn: distances, arrivals and the (estimated) fading of every slot."""

    arrival_prob: NDArray[np.float64]
    """``(M,)`` each device's probability of a new update per slot."""
    min_distance_sq: float
    """Squared inner radius of the annulus the devices are drawn in (m^2)."""
    distance_sq_span: float
    """Its squared outer radius minus ``min_distance_sq`` (m^2)."""
    tx_power_dbm: float
    noise_dbm: float
    """Receiver noise power (dBm)."""
    carrier_hz: float
    path_loss_exponent: float
    snr_threshold_db: float
    snr_threshold_lin: float
    """The threshold, linear."""
    rayleigh_fading: bool
    hat_var: float
    """Variance of the channel estimate ``h_hat``, ``1 - csi_error_var``."""
    err_var: float
    """Variance of the estimation error, ``csi_error_var``."""


class _View(NamedTuple):
    """The observation's scaling."""

    age_scale_slots: float
    """``s`` of the squashed ages ``a / (a + s)``."""
    est_gain: float
    """``10 / snr_scale_db``: ``log10`` of the SNR estimate over the threshold to the span."""
    snr_scale_db: float


# Rows of the core's state ``_f`` (float64) and ``_b`` (bool), ``(N, rows, M)``: instance-major,
# so that one instance's state lies together.


class _FloatRows(NamedTuple):
    """Rows of ``_f``, the float64 state."""

    gen: int
    """Generation time stamp (slot) of the buffered update."""
    pending: int
    """The age a delivery in the upcoming slot would give."""
    clear_level: int
    """``|h|^2`` at or above which the upcoming slot's true SNR clears the threshold."""
    log_rel: int
    """``(mean SNR dB - threshold dB) / 10``."""
    distance_m: int
    mean_snr_db: int
    mean_snr: int


class _BoolRows(NamedTuple):
    """Rows of ``_b``, the bool state."""

    has_pkt: int
    clear: int
    scheduled: int


class _SlotRows(NamedTuple):
    """Rows of a slot in the blocks drawn ahead, ``(K, N, rows, M)``."""

    arrival: int
    """The arrival uniform."""
    fade_est: int
    """``|h_hat|^2``."""
    fade: int
    """``|h|^2``."""
    log_fade_est: int
    """``log10 |h_hat|^2``."""


class _StatRows(NamedTuple):
    """Rows of the per-instance figures a step writes (``stats[row, n]`` for instance ``n``)."""

    reward: int
    mean_aoi: int
    peak_aoi: int


_F = row_map(_FloatRows)
_B = row_map(_BoolRows)
_S = row_map(_SlotRows)
_STAT = row_map(_StatRows)
_UNIFORMS_PER_DEVICE = 4  # arrival, |h_hat|^2, |e|^2, phase of e relative to h_hat
_REFILL_CHUNK = 64  # instances whose blocks are worked out together (scratch stays in cache)


def _block_slots(n_devices: int) -> int:
    """Slots per block of randomness drawn at once per instance.

    67 (a 200-slot episode draws slots 1..201: exactly three blocks), fewer for more than 8
    devices to bound the memory (at least 8).
    """
    return _BLOCK_SLOTS if n_devices <= 8 else max(8, (8 * _BLOCK_SLOTS) // n_devices)


@kernel
def _prepare_block(world, idx, uniforms, slots, powers, phases):  # pragma: no cover - compiled
    """Lay out the new blocks of ``idx`` from their ``uniforms``.

    Arrival uniforms go into ``slots``; ``1 - u`` of the two channel powers into ``powers``
    and the phases ``2 pi u`` (float32) into ``phases``, contiguous so that NumPy's
    vectorised ``log`` / ``cos`` run over them at full speed.
    """
    world = _World(*world)
    n_slots, m_dev = slots.shape[0], slots.shape[3]
    for k in range(n_slots):  # slot-major, like ``slots``: its writes stay within a page
        at = k * _UNIFORMS_PER_DEVICE * m_dev  # slot k: u0 (M), u1 (M), u2 (M), u3 (M)
        for j in range(idx.shape[0]):
            n = idx[j]
            for i in range(m_dev):
                slots[k, n, _S.arrival, i] = uniforms[j, at + i]
                if world.rayleigh_fading:
                    # 1 - u is exact for NumPy's uniforms (multiples of 2**-53) and in (0, 1].
                    powers[j, 0, k, i] = 1.0 - uniforms[j, at + m_dev + i]
                    powers[j, 1, k, i] = 1.0 - uniforms[j, at + 2 * m_dev + i]
                    phases[j, k, i] = uniforms[j, at + 3 * m_dev + i] * (2.0 * np.pi)
                else:  # no fading: the SNR is the mean SNR, and the estimate is exact
                    slots[k, n, _S.fade_est, i] = 1.0
                    slots[k, n, _S.fade, i] = 1.0
                    slots[k, n, _S.log_fade_est, i] = 0.0


@kernel
def _combine_block(world, idx, powers, phases, slots, logs):  # pragma: no cover - compiled
    """Fading powers of the new blocks from ``powers = log(1 - u)`` and ``phases = cos(.)``."""
    world = _World(*world)
    hat_var, err_var = world.hat_var, world.err_var
    n_slots, m_dev = slots.shape[0], slots.shape[3]
    for k in range(n_slots):  # slot-major, like ``slots``
        for j in range(idx.shape[0]):
            n = idx[j]
            for i in range(m_dev):
                # h = h_hat + e, h_hat ~ CN(0, 1 - s2) and e ~ CN(0, s2) independent: their
                # powers are scaled Exp(1) variates -log(1 - u) and their phase difference is
                # uniform, so |h|^2 = |h_hat|^2 + |e|^2 + 2 |h_hat| |e| cos(phase).
                hat2 = hat_var * -powers[j, 0, k, i]
                err2 = err_var * -powers[j, 1, k, i]
                cross = 2.0 * np.sqrt(hat2 * err2) * np.float64(phases[j, k, i])
                slots[k, n, _S.fade_est, i] = hat2
                slots[k, n, _S.fade, i] = max(hat2 + err2 + cross, 0.0)  # >= 0 after rounding
                logs[j, k, i] = max(hat2, 1e-30)


@kernel
def _finish_block(idx, logs, slots):  # pragma: no cover - compiled
    """Store ``log10 |h_hat|^2`` (worked out in ``logs``) into the new blocks."""
    n_slots, m_dev = slots.shape[0], slots.shape[3]
    for k in range(n_slots):  # slot-major, like ``slots``
        for j in range(idx.shape[0]):
            n = idx[j]
            for i in range(m_dev):
                slots[k, n, _S.log_fade_est, i] = logs[j, k, i]


@jitable
def _draw_slot(world, slots, slot, t, age, f, b, n):  # pragma: no cover - compiled
    """Enter slot ``t + 1`` of instance ``n``, which is ``slots[slot, n]`` of its block.

    Sets its arrivals (time stamp ``t``; LCFS with replacement), whether its true SNR clears
    the threshold, and the age a delivery in it would give (``age[n]``: the ages after slot
    ``t``). Arrays are indexed in place: per-instance views would cost reference counting.
    """
    arrival = world.arrival_prob
    for i in range(arrival.shape[0]):
        b[n, _B.clear, i] = slots[slot, n, _S.fade, i] >= f[n, _F.clear_level, i]
        # Its arrivals replace any buffered update. Age if delivered in that slot:
        # t + 1 - a = 1 for a new update, one more than now for a still-buffered one, else
        # (nothing to send) the age plus one. Every operand is loaded first so that these
        # compile to selects, not branches: arrivals are coin flips no predictor learns.
        new = slots[slot, n, _S.arrival, i] < arrival[i]
        has = b[n, _B.has_pkt, i]
        gen = f[n, _F.gen, i]
        waiting = f[n, _F.pending, i] + 1.0
        idle = age[n, i] + 1.0
        f[n, _F.gen, i] = t if new else gen
        f[n, _F.pending, i] = 1.0 if new else (waiting if has else idle)
        b[n, _B.has_pkt, i] = has | new


@jitable
def _observe_row(view, slots, slot, age, f, static, obs, n):  # pragma: no cover - compiled
    """Write instance ``n``'s observation (layout in the :class:`DTSyncAoIEnv` manual)."""
    scale = view.age_scale_slots
    m_dev = age.shape[1]
    for i in range(m_dev):
        x = age[n, i]
        obs[n, i] = x / (x + scale)
        y = f[n, _F.pending, i]
        obs[n, m_dev + i] = y / (y + scale)
        # (10 log10(snr_est) - thr_db) / span, clipped to [-1, 1].
        est = (slots[slot, n, _S.log_fade_est, i] + f[n, _F.log_rel, i]) * view.est_gain
        obs[n, 2 * m_dev + i] = min(max(est, -1.0), 1.0)
    for i in range(3 * m_dev, static.shape[1]):  # mean SNR and weights, fixed per episode
        obs[n, i] = static[n, i]


@kernel
def _reset_kernel(world, view, idx, dist_in, from_uniforms, slots, t, f, b, age, delivered,
                  static, obs):  # pragma: no cover - compiled
    world = _World(*world)
    view = _View(*view)
    threshold_db = world.snr_threshold_db
    m_dev = age.shape[1]
    for j in range(idx.shape[0]):
        n = idx[j]
        for i in range(m_dev):
            # Uniform over the annulus area, or as given.
            d = (np.sqrt(world.min_distance_sq + dist_in[j, i] * world.distance_sq_span)
                 if from_uniforms else dist_in[j, i])
            path_loss_db = radio.log_distance_path_loss_db(d, world.carrier_hz,
                                                           world.path_loss_exponent)
            mean_db = world.tx_power_dbm - path_loss_db - world.noise_dbm
            mean_lin = radio.db_to_linear(mean_db)
            f[n, _F.distance_m, i] = d
            f[n, _F.mean_snr_db, i] = mean_db
            f[n, _F.mean_snr, i] = mean_lin
            # A slot clears the threshold when |h|^2 >= this (an absurd mean SNR: 0 or inf).
            f[n, _F.clear_level, i] = world.snr_threshold_lin / mean_lin
            f[n, _F.log_rel, i] = (mean_db - threshold_db) / 10.0
            f[n, _F.gen, i] = 0.0
            age[n, i] = 1.0
            b[n, _B.has_pkt, i] = False
            b[n, _B.scheduled, i] = False
            delivered[n, i] = False
            static[n, 3 * m_dev + i] = min(max((mean_db - threshold_db) / view.snr_scale_db,
                                               -1.0), 1.0)
        t[n] = 0.0
        _draw_slot(world, slots, 0, 0.0, age, f, b, n)  # slot 1: the block's first
        _observe_row(view, slots, 0, age, f, static, obs, n)


@kernel
def _step_kernel(model, world, view, actions, slots, t, f, b, age, new_age, delivered, static,
                 obs, stats, deliveries):  # pragma: no cover - compiled
    model = _Model(*model)
    world = _World(*world)
    view = _View(*view)
    combos, weights, inv_m = model.combos, model.weights, model.inv_m
    m_dev = age.shape[1]
    n_channels = combos.shape[1]
    n_slots = slots.shape[0]
    for n in range(actions.shape[0]):
        a = actions[n]
        for i in range(m_dev):
            b[n, _B.scheduled, i] = False
        for c in range(n_channels):
            b[n, _B.scheduled, combos[a, c]] = True
        tn = t[n] + 1.0
        t[n] = tn
        total = 0.0
        weighted = 0.0
        peak = 0.0
        count = 0
        for i in range(m_dev):
            # Paper Sec. V-F2 (ii): xi_m(t) = t - a_m(t) on reception, else xi_m(t-1) + 1
            # (``pending`` holds t - a_m for a buffered update, the age a delivery now gives).
            has = b[n, _B.has_pkt, i]
            ok = b[n, _B.scheduled, i] & has & b[n, _B.clear, i]
            fresh = f[n, _F.pending, i]
            stale = age[n, i] + 1.0
            x = fresh if ok else stale  # operands loaded first: a select, not a branch
            new_age[n, i] = x
            delivered[n, i] = ok
            b[n, _B.has_pkt, i] = has ^ ok  # a delivery empties the buffer
            count += ok
            total += x
            weighted += weights[i] * x
            peak = max(peak, x)
        stats[_STAT.reward, n] = weighted * -inv_m
        stats[_STAT.mean_aoi, n] = total * inv_m
        stats[_STAT.peak_aoi, n] = peak
        deliveries[n] = count
        # The next slot, t + 1, is slot t mod K of the instance's block (slot 1 its first).
        slot = int(tn) % n_slots
        _draw_slot(world, slots, slot, tn, new_age, f, b, n)
        _observe_row(view, slots, slot, new_age, f, static, obs, n)


class DTSyncAoICore(BatchedCore[DTSyncConfig]):
    """The physics of :class:`DTSyncAoIEnv` on ``num_envs`` instances (see its manual).

    State arrays (leading axis ``N``): ``t`` (slots elapsed), ``age`` (twin AoI, slots),
    ``gen`` / ``has_pkt`` (generation time stamp of the buffered update, and whether a
    not-yet-delivered update is buffered), ``distance_m``, ``mean_snr_db``, ``mean_snr``
    (linear), ``scheduled`` / ``delivered`` (last slot), and the upcoming slot's true and
    estimated fading powers ``fade`` / ``fade_est`` and whether its true SNR clears the
    threshold (``clear``).

    Randomness, per instance from :class:`qdrl_envs.core.Uniforms` (float64 uniforms): at reset
    ``random(M)`` (distances; not drawn when ``options`` give them), then one block of
    ``random(K * 4M)`` for the next ``K`` slots, redrawn when used up (and at every reset);
    ``K = 67`` (a 200-slot episode then uses exactly three blocks), fewer for more than 8
    devices. In slot ``k`` of a block, ``4M`` uniforms ``u0 (M), u1 (M), u2 (M), u3 (M)``
    give each device's arrival (``u0 < arrival_prob``), the powers
    ``|h_hat|^2 = -(1 - s2) log(1 - u1)`` and ``|e|^2 = -s2 log(1 - u2)`` (exponential, the
    powers of complex Gaussians) and their phase difference ``2 pi u3``, so that
    ``|h|^2 = |h_hat|^2 + |e|^2 + 2 |h_hat| |e| cos(2 pi u3)``: exactly the laws of
    ``h = h_hat + e`` with independent ``h_hat ~ CN(0, 1 - s2)`` and ``e ~ CN(0, s2)`` (the
    cosine is evaluated in float32). Drawing ahead in blocks is what makes the single env
    fast; seeding still fixes every episode, and the vector twin reproduces the single env bit
    for bit.

    The model runs in compiled kernels over row functions shared by reset and step; their
    constants are packed once (``_model``, ``_world``, ``_view``: the packs :class:`_Model`,
    :class:`_World`, :class:`_View` as plain tuples, the template of :mod:`qdrl_envs.core`).
    The logarithms and cosines of a block run as NumPy's vectorised loops over contiguous
    scratch arrays, between kernels that lay the block out (``_prepare_block``,
    ``_combine_block``, ``_finish_block``).
    """

    # Views of the state the kernels write in place, ``(N, M)``.
    gen = row_view("_f", _F.gen, "Generation time stamp (slot) of each device's buffered update.")
    distance_m = row_view("_f", _F.distance_m, "Device-server distances (m).")
    mean_snr_db = row_view("_f", _F.mean_snr_db, "Mean SNR of each device's link (dB).")
    mean_snr = row_view("_f", _F.mean_snr, "Mean SNR of each device's link (linear).")
    has_pkt = row_view("_b", _B.has_pkt, "Whether a device holds an update not yet delivered.")
    clear = row_view("_b", _B.clear, "Whether the upcoming slot's true SNR clears the threshold.")
    scheduled = row_view("_b", _B.scheduled, "Whether each device was scheduled in the last slot.")

    def render_ansi(self, row: int = 0) -> str:
        """Row ``row`` as text (see the env manual's Rendering)."""
        return _render_ansi(self, row)

    def render_rgb_array(self, row: int = 0) -> np.ndarray:
        """Row ``row`` as an RGB picture (see the env manual's Rendering)."""
        return _render_rgb_array(self, row)

    def __init__(self, config: DTSyncConfig, num_envs: int) -> None:
        super().__init__(config, num_envs)
        m = config.n_devices
        self.n_devices = m
        self.n_channels = config.n_channels
        self.single_action_space = spaces.Discrete(config.n_actions)
        low = np.concatenate([np.zeros(2 * m), -np.ones(2 * m), np.zeros(m)]).astype(np.float32)
        self.single_observation_space = spaces.Box(low, np.ones(_N_FEATURES * m, np.float32),
                                                   dtype=np.float32)
        self.combos, self.masks = _tables(m, config.n_channels)
        self.weights = config.weight_vector()
        self.weights_obs = (self.weights / self.weights.max()).astype(np.float32)
        self.arrival = config.arrival_probs()
        self.threshold_db = float(config.snr_threshold_db)
        self.threshold_lin = float(radio.db_to_linear(config.snr_threshold_db))
        self.s2 = float(config.csi_error_var)
        span = float(config.snr_scale_db)
        self._fading = bool(config.rayleigh_fading)
        lo2, hi2 = config.min_distance_m ** 2, config.max_distance_m ** 2
        # What the kernels take, as plain tuples (numba dispatches those fast).
        self._model = plain(_Model(combos=np.ascontiguousarray(self.combos),
                                   weights=self.weights, inv_m=1.0 / m))
        self._world = plain(_World(
            arrival_prob=self.arrival, min_distance_sq=float(lo2),
            distance_sq_span=float(hi2 - lo2), tx_power_dbm=float(config.tx_power_dbm),
            noise_dbm=float(config.noise_dbm()), carrier_hz=float(config.carrier_hz),
            path_loss_exponent=float(config.path_loss_exponent),
            snr_threshold_db=self.threshold_db, snr_threshold_lin=self.threshold_lin,
            rayleigh_fading=self._fading, hat_var=1.0 - self.s2, err_var=self.s2))
        self._view = plain(_View(age_scale_slots=float(config.age_scale_slots),
                                 est_gain=10.0 / span, snr_scale_db=span))
        n = num_envs
        k = self._block = _block_slots(m)
        self._uniforms = Uniforms(n)
        self._rows = np.arange(n)
        # Slot counters, ages and time stamps are integers held in float64 (exact below 2**53),
        # which spares int->float conversions in every step.
        self.t = np.zeros(n)
        self.age = np.ones((n, m))
        self.delivered = np.zeros((n, m), dtype=bool)
        self._f = np.zeros((n, len(_F), m))
        self._f[:, _F.pending] = 2.0
        self._f[:, _F.distance_m] = config.min_distance_m
        self._f[:, _F.clear_level] = self._f[:, _F.mean_snr] = 1.0
        self._b = np.zeros((n, len(_B), m), dtype=bool)
        self._b[:, _B.clear] = True
        self._static = np.zeros((n, _N_FEATURES * m), dtype=np.float32)
        self._static[:, 4 * m:] = self.weights_obs
        self._obs = self._static.copy()
        # The blocks, slot-major: a step reads one contiguous plane for all instances.
        self._slots = np.zeros((k, n, len(_S), m))
        self._slots[:, :, _S.fade_est] = self._slots[:, :, _S.fade] = 1.0
        chunk = min(n, _REFILL_CHUNK)  # scratch of the refills
        self._powers = np.empty((chunk, 2, k, m))
        self._phases = np.empty((chunk, k, m), dtype=np.float32)
        self._logs = np.empty((chunk, k, m))
        self._left = 0  # steps before some instance uses up its block
        self._no_term = np.zeros(n, dtype=bool)

    @property
    def fade(self) -> np.ndarray:
        """True fading power ``|h|^2`` of the upcoming slot, ``(N, M)``."""
        return self._slots[self._slot_index(), self._rows, _S.fade]

    @property
    def fade_est(self) -> np.ndarray:
        """Estimated fading power ``|h_hat|^2`` of the upcoming slot, ``(N, M)``."""
        return self._slots[self._slot_index(), self._rows, _S.fade_est]

    def _slot_index(self) -> np.ndarray:
        """Index of each instance's upcoming slot (``t + 1``) within its block, ``(N,)``."""
        return (self.t % self._block).astype(np.int64)

    def _parse_distances(self, options: dict[str, Any] | None, count: int) -> np.ndarray | None:
        if not options:
            return None
        unknown = sorted(set(options) - {"distances_m"})
        if unknown:
            raise ValueError(f"unknown reset option(s) {unknown}; valid: ['distances_m']")
        d = np.asarray(options["distances_m"], dtype=np.float64)
        if d.shape not in ((self.n_devices,), (count, self.n_devices)):
            raise ValueError(f"options['distances_m'] must have shape ({self.n_devices},) or "
                             f"({count}, {self.n_devices}), got {d.shape}")
        if not np.all(np.isfinite(d)) or np.any(d <= 0.0):
            raise ValueError(f"options['distances_m'] must be finite and > 0, got {d.tolist()}")
        return np.array(np.broadcast_to(d, (count, self.n_devices)))

    def reset(self, rngs: Sequence[np.random.Generator], idx: np.ndarray,
              options: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
        """Start episodes for ``idx``: ages 1, empty buffers, new distances and first slot."""
        idx = np.asarray(idx, dtype=np.int64)
        dist = self._parse_distances(options, len(idx))
        from_uniforms = dist is None
        if dist is None:
            dist = self._uniforms.take(rngs, idx, self.n_devices)
        self._refill(rngs, idx)
        # Copy before writing: the last step's info (e.g. the vector env's final_info) holds
        # these arrays, and a reset must not change what it reported.
        self.age = self.age.copy()
        self.delivered = self.delivered.copy()
        obs = self._obs.copy()  # a new array; instances not reset keep their rows
        _reset_kernel(self._world, self._view, idx, dist, from_uniforms, self._slots, self.t,
                      self._f, self._b, self.age, self.delivered, self._static, obs)
        self._obs = obs
        self._left = self._block - 1 - int((self.t % self._block).max())
        return {"distance_m": self.distance_m[idx], "mean_snr_db": self.mean_snr_db[idx]}

    def _refill(self, rngs: Sequence[np.random.Generator], idx: np.ndarray) -> None:
        """Draw the next block (``K`` slots) of the instances ``idx`` and work out its channels.

        In chunks of instances whose scratch stays in cache, NumPy's ``log``, ``cos`` and
        ``log10`` run over contiguous scratch arrays (they compute each element alike
        wherever it lies, so one instance or many get the same bits).
        """
        width = _UNIFORMS_PER_DEVICE * self._block * self.n_devices
        for lo in range(0, len(idx), _REFILL_CHUNK):
            part = idx[lo:lo + _REFILL_CHUNK]
            u = self._uniforms.take(rngs[lo:lo + _REFILL_CHUNK], part, width)
            count = len(part)
            powers, phases, logs = self._powers[:count], self._phases[:count], self._logs[:count]
            _prepare_block(self._world, part, u, self._slots, powers, phases)
            if self._fading:
                np.log(powers, out=powers)
                np.cos(phases, out=phases)  # float32: vectorised (float64 cosines: ~20x slower)
                _combine_block(self._world, part, powers, phases, self._slots, logs)
                np.log10(logs, out=logs)
                _finish_block(part, logs, self._slots)

    def step(self, actions: np.ndarray, rngs: Sequence[np.random.Generator]) -> StepResult:
        """Schedule the subsets ``actions`` (indices), deliver, age the twins, draw next slot."""
        n, m = self.num_envs, self.n_devices
        refilled = self._left <= 0
        if refilled:  # some instance used up its block
            due = np.flatnonzero(self.t % self._block == self._block - 1)
            self._refill([rngs[i] for i in due], due)
        age = np.empty((n, m))
        delivered = np.empty((n, m), dtype=bool)
        stats = np.empty((len(_STAT), n))
        deliveries = np.empty(n, dtype=np.int64)
        obs = np.empty((n, _N_FEATURES * m), dtype=np.float32)  # the kernel writes every row
        _step_kernel(self._model, self._world, self._view, actions, self._slots, self.t, self._f,
                     self._b, self.age, age, delivered, self._static, obs, stats, deliveries)
        self.age = age
        self.delivered = delivered
        self._obs = obs
        if refilled:
            self._left = self._block - 1 - int((self.t % self._block).max())
        else:
            self._left -= 1
        reward = stats[_STAT.reward]
        info = {
            "aoi": age,
            "mean_aoi": stats[_STAT.mean_aoi],
            "peak_aoi": stats[_STAT.peak_aoi],
            "deliveries": deliveries,
            "delivered": delivered,
            "reward_terms": {"weighted_aoi": reward},
        }
        return StepResult(reward, self._no_term, info)

    def age_if_delivered(self) -> np.ndarray:
        """Age each twin would have after the next slot if its device got through, ``(N, M)``.

        ``t + 1 - gen`` when an update is buffered, else ``age + 1`` (nothing to deliver).
        """
        return self._f[:, _F.pending].copy()

    def observe(self) -> np.ndarray:
        """Observations ``(N, 5M)`` float32 (layout in :class:`DTSyncAoIEnv`; new every step)."""
        return self._obs


# --------------------------------------------------------------------------------------------
# Environments
# --------------------------------------------------------------------------------------------


class DTSyncAoIEnv(CoreEnv[DTSyncConfig]):
    r"""Schedule digital-twin synchronisation uplinks to keep the twins fresh (AoI).

    ## Description

    Paper Sec. V-F2 (ii) ("Optimizing DT operations"): ``M`` physical devices are mirrored by
    digital twins on a mobile-edge-computing (MEC) server. In every slot the agent chooses which
    ``C < M`` devices get one of the ``C`` uplink synchronisation channels. Each device produces
    status updates at the start of a slot with probability ``arrival_prob`` (Bernoulli; ``1.0``
    = generate-at-will) and keeps only the newest one (LCFS with replacement: a device never
    sends an update older than one it holds, cf. Kaul, Yates & Gruteser, "Status updates through
    queues", CISS 2012). A scheduled device with an update succeeds when the slot's SNR clears
    ``snr_threshold_db``; the SNR is ``mean_snr |h|^2`` with the mean SNR from the device's
    distance (log-distance path loss, thermal noise, ``qdrl_envs.radio``) and ``h`` Rayleigh
    block fading, redrawn independently per device and slot. The agent sees this slot's SNR
    *estimate* ``mean_snr |h_hat|^2`` (MMSE estimation, ``h = h_hat + e``, ``e ~ CN(0,
    csi_error_var)``), so a transmission it schedules may still fail;
    :func:`success_probability` gives the exact chance.

    Age of information, exactly the paper's rule (after Zhang et al. [198]): if twin ``m``
    receives a sync packet in slot ``t``, ``xi_m(t) = t - a_m(t)`` with ``a_m(t)`` the packet's
    generation time; otherwise ``xi_m(t) = xi_m(t-1) + 1``.

    Timing convention. Slot ``t = 1, 2, ...`` is the interval ``[t-1, t)``. Updates are
    generated at its start (time stamp ``a = t - 1``), transmissions happen during it, and the
    ages ``xi_m(t)`` are read at its end (time ``t``). A packet generated and delivered in the
    same slot therefore gives ``xi = 1``, the age after delivery in Kadota et al. (2018). In
    the steady state of round-robin over ``M`` reliable devices with ``C = 1`` and
    generate-at-will, every twin's age cycles through ``1, 2, ..., M`` and the mean AoI is
    ``(M + 1) / 2`` in every slot (tested).

    ## Action Space

    ``Discrete(comb(M, C))``: index ``i`` schedules the devices
    ``subset_from_index(i, M, C)``, the ``i``-th subset in the lexicographic order of
    ``itertools.combinations(range(M), C)`` (inverse: :func:`index_from_subset`; all at once:
    :func:`combination_table`).

    ## Observation Space

    ``Box(shape=(5M,), float32)``, five blocks of ``M`` entries, all for the slot about to be
    played:

    | Block | Entry for device ``m``                        | Scaling               | Bounds  |
    |-------|-----------------------------------------------|-----------------------|---------|
    | 0     | twin age ``xi_m`` (slots)                     | ``xi / (xi + s)``     | [0, 1]  |
    | 1     | age if ``m`` gets through this slot (slots)¹  | ``a / (a + s)``       | [0, 1]  |
    | 2     | SNR estimate of this slot (dB)                | ``(dB - thr) / span`` | [-1, 1] |
    | 3     | mean SNR (dB)                                 | ``(dB - thr) / span`` | [-1, 1] |
    | 4     | weight ``w_m``                                | ``w_m / max(w)``      | (0, 1]  |

    ``s = age_scale_slots``, ``thr = snr_threshold_db``, ``span = snr_scale_db``. The age
    squashing is strictly increasing, so no age is ever clipped (invert with
    ``xi = s x / (1 - x)``); the SNR entries are clipped to [-1, 1]. ¹ ``t + 1 - a`` for a
    buffered update generated at ``a`` (``t`` the slots played so far), or ``xi_m + 1`` when
    the device has nothing new to send (delivering gains nothing).

    ## Rewards

    ``r(t) = -(sum_m w_m xi_m(t)) / M``: the paper's ``R = sum_m xi_m`` with importance weights,
    negated so that agents maximise, averaged over twins. ``info["reward_terms"]`` holds it as
    ``{"weighted_aoi": r}``.

    ``info``: ``aoi`` (ages, slots, ``(M,)``), ``mean_aoi``, ``peak_aoi`` (largest age this
    slot), ``deliveries`` (successful syncs this slot), ``delivered`` (bool ``(M,)``),
    ``reward_terms``; ``reset`` returns ``distance_m`` and ``mean_snr_db`` (``(M,)``).

    ## Starting State

    Every twin has age 1 and every buffer is empty; device distances are drawn uniformly over
    the annulus area ``[min_distance_m, max_distance_m]`` (or given by
    ``reset(options={"distances_m": [...]})``); the arrivals and the channel of slot 1 are
    drawn. Arrivals and channels are drawn ahead from the env's generator, 67 slots at a time
    (fewer for more than 8 devices), by exact transforms of uniforms (see
    :class:`DTSyncAoICore`), so a seed fixes the whole episode.

    ## Episode End

    No terminal state: the registered id truncates after 200 slots.

    ## Arguments

    ``gym.make("qdrl/DTSyncAoI-v0", **fields)`` with the fields of :class:`DTSyncConfig`:

    | Field                | Default | Unit / meaning                                        |
    |----------------------|---------|-------------------------------------------------------|
    | ``n_devices``        | 6       | devices / twins ``M`` (2..64)                         |
    | ``n_channels``       | 2       | channels per slot ``C`` (1..M-1)                      |
    | ``arrival_prob``     | 0.5     | update probability per slot (or tuple of ``M``)       |
    | ``weights``          | None    | twin weights ``w_m > 0`` (tuple of ``M``; None = 1)   |
    | ``tx_power_dbm``     | 20      | dBm                                                   |
    | ``bandwidth_hz``     | 1e6     | Hz (noise power)                                      |
    | ``noise_figure_db``  | 7       | dB                                                    |
    | ``carrier_hz``       | 2.4e9   | Hz                                                    |
    | ``path_loss_exponent``| 3.5    | log-distance exponent                                 |
    | ``min_distance_m``   | 30      | m                                                     |
    | ``max_distance_m``   | 250     | m                                                     |
    | ``snr_threshold_db`` | 5       | dB, decoding threshold                                |
    | ``rayleigh_fading``  | True    | Rayleigh block fading per device and slot             |
    | ``csi_error_var``    | 0.1     | channel-estimation error variance, [0, 1)             |
    | ``age_scale_slots``  | 10      | slots, age squashing scale of the observation         |
    | ``snr_scale_db``     | 30      | dB, SNR observation span                              |

    With the defaults the mean SNR spans about 35 dB (30 m) to 3 dB (250 m), i.e. long-run
    success probabilities from 1 down to about 0.2.

    ## Version History

    * v0: Initial version.
    """

    config_cls = DTSyncConfig
    core_cls = DTSyncAoICore
    core: DTSyncAoICore



class DTSyncAoIVectorEnv(CoreVectorEnv[DTSyncConfig]):
    """NumPy-batched twin of :class:`DTSyncAoIEnv` (same physics and manual)."""

    config_cls = DTSyncConfig
    core_cls = DTSyncAoICore


# --------------------------------------------------------------------------------------------
# Rendering (one row of a core)
# --------------------------------------------------------------------------------------------


def _render_ansi(core: DTSyncAoICore, row: int) -> str:
    c = core
    lines = [f"DTSyncAoI slot {int(c.t[row])}  mean AoI {c.age[row].mean():.2f}  "
             f"peak {int(c.age[row].max())}"]
    for m in range(c.n_devices):
        mark = ("delivered" if c.delivered[row, m] else
                "FAILED" if c.scheduled[row, m] else "")
        lines.append(f"  twin {m:2d}  age {int(c.age[row, m]):4d}  w {c.weights[m]:.2f}  "
                     f"mean SNR {c.mean_snr_db[row, m]:6.1f} dB  "
                     f"buffer {'yes' if c.has_pkt[row, m] else 'no '}  {mark}")
    return "\n".join(lines)


def _render_rgb_array(core: DTSyncAoICore, row: int) -> np.ndarray:
    c = core
    fig = agg_figure(6.4, 3.6)
    ax = fig.add_subplot(1, 1, 1)
    colours = np.where(c.delivered[row], "tab:green",
                       np.where(c.scheduled[row], "tab:red", "tab:gray"))
    x = np.arange(c.n_devices)
    ax.bar(x, c.age[row], color=list(colours))
    ax.set_xticks(x)
    ax.set_xlabel("twin (green: synced this slot, red: scheduled but failed)")
    ax.set_ylabel("age of information (slots)")
    ax.set_title(f"slot {int(c.t[row])}, mean AoI {c.age[row].mean():.2f}")
    fig.tight_layout()
    return figure_rgb(fig)
