"""Shared radio maths: unit conversions, path loss, fading, noise and Shannon rates.

Every function works on NumPy arrays of any shape and broadcasts, so the single environments
(no batch axis) and their batched vector twins (a leading batch axis) call the very same code.
The scalar maths (unit conversions, path loss, Shannon rates) is also
:func:`~qdrl_envs.jit.jitable`: compiled environment kernels call these same functions on floats.

Randomness always comes from a caller-supplied :class:`numpy.random.Generator` so that seeding
the environment seeds the physics.

Conventions:
    * Powers in watts unless a name says ``_dbm`` / ``_db``.
    * Channel *power* gains are linear and dimensionless (path gain x fading power).
    * Rates from :func:`shannon_rate` are spectral efficiencies in bit/s/Hz.
"""

from __future__ import annotations

import functools

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qdrl_envs.jit import jitable

SPEED_OF_LIGHT_M_S = 299_792_458.0
"""Speed of light in vacuum (m/s)."""

THERMAL_NOISE_DBM_PER_HZ = -174.0
"""Thermal noise power spectral density at 290 K (dBm/Hz)."""

_TINY = 1e-300


@jitable
def db_to_linear(x_db: ArrayLike) -> NDArray[np.float64]:
    """Convert decibels to a linear power ratio: ``10 ** (x_db / 10)``."""
    return np.power(10.0, np.divide(x_db, 10.0))


@jitable
def linear_to_db(x: ArrayLike, floor_db: float = -300.0) -> NDArray[np.float64]:
    """Convert a linear power ratio to decibels, clamping non-positive values at ``floor_db``."""
    return np.maximum(10.0 * np.log10(np.maximum(x, _TINY)), floor_db)


def dbm_to_watt(p_dbm: ArrayLike) -> NDArray[np.float64]:
    """Convert a power in dBm to watts."""
    return db_to_linear(p_dbm) * 1e-3


def watt_to_dbm(p_w: ArrayLike) -> NDArray[np.float64]:
    """Convert a power in watts to dBm (``-300`` dBm for zero power)."""
    return linear_to_db(np.asarray(p_w, dtype=np.float64) * 1e3)


def noise_power_w(bandwidth_hz: ArrayLike, noise_figure_db: ArrayLike = 0.0) -> NDArray[np.float64]:
    """Receiver noise power: ``-174 dBm/Hz + 10 log10(B) + NF``, in watts.

    Args:
        bandwidth_hz: Receiver bandwidth in Hz.
        noise_figure_db: Receiver noise figure in dB.

    Returns:
        Noise power in watts.
    """
    b = np.asarray(bandwidth_hz, dtype=np.float64)
    return dbm_to_watt(THERMAL_NOISE_DBM_PER_HZ + linear_to_db(b) + np.asarray(noise_figure_db))


@jitable
def free_space_path_loss_db(distance_m: ArrayLike, carrier_hz: float) -> NDArray[np.float64]:
    """Friis free-space path loss ``20 log10(4 pi d f / c)`` in dB (positive = loss)."""
    d = np.maximum(distance_m, _TINY)
    return 20.0 * np.log10(4.0 * np.pi * d * carrier_hz / SPEED_OF_LIGHT_M_S)


@jitable
def log_distance_path_loss_db(
    distance_m: ArrayLike,
    carrier_hz: float,
    exponent: float,
    reference_m: float = 1.0,
    min_distance_m: float = 1.0,
) -> NDArray[np.float64]:
    """Log-distance path loss with a free-space reference at ``reference_m``.

    ``PL(d) = FSPL(d0) + 10 n log10(d / d0)`` for ``d >= min_distance_m`` (shorter distances are
    clamped so the model never predicts gain).

    Args:
        distance_m: Transmitter-receiver distance(s) in metres.
        carrier_hz: Carrier frequency in Hz.
        exponent: Path-loss exponent ``n`` (2 free space, about 3 urban micro).
        reference_m: Reference distance ``d0`` in metres.
        min_distance_m: Distances below this are treated as this.

    Returns:
        Path loss in dB (positive).
    """
    d = np.maximum(distance_m, min_distance_m)
    return free_space_path_loss_db(reference_m, carrier_hz) + 10.0 * exponent * np.log10(
        d / reference_m
    )


@jitable
def path_gain(distance_m: ArrayLike, carrier_hz: float, exponent: float,
              extra_loss_db: ArrayLike = 0.0) -> NDArray[np.float64]:
    """Linear large-scale power gain ``10^(-(PL(d) + extra_loss_db)/10)`` (log-distance PL)."""
    loss = np.add(log_distance_path_loss_db(distance_m, carrier_hz, exponent), extra_loss_db)
    return db_to_linear(-loss)


def rayleigh_coefficients(
    rng: np.random.Generator, shape: tuple[int, ...]
) -> NDArray[np.complex128]:
    """Draw i.i.d. unit-power circularly-symmetric complex Gaussian coefficients CN(0, 1)."""
    re = rng.standard_normal(shape)
    im = rng.standard_normal(shape)
    return (re + 1j * im) / np.sqrt(2.0)


def gauss_markov_step(
    h_prev: NDArray[np.complex128], rho: ArrayLike, rng: np.random.Generator
) -> NDArray[np.complex128]:
    """Advance Rayleigh coefficients by one first-order Gauss-Markov step.

    ``h_t = rho h_{t-1} + sqrt(1 - rho^2) w_t`` with ``w_t ~ CN(0, 1)``; keeps unit power.
    ``rho = 0`` is i.i.d. block fading (fresh draw every step), ``rho = 1`` a static channel.
    (Jakes' model gives ``rho = J0(2 pi f_D T)`` for Doppler ``f_D`` and slot ``T``.)
    """
    return gauss_markov_update(h_prev, rayleigh_coefficients(rng, np.shape(h_prev)), rho)


def gauss_markov_update(h_prev: NDArray, innovation: NDArray, rho: ArrayLike) -> NDArray:
    """One first-order Gauss-Markov step from a pre-drawn innovation.

    ``h_t = rho h_{t-1} + sqrt(1 - rho^2) w_t``, where ``innovation`` holds ``w_t`` with the
    stationary law of ``h`` (complex CN(0, 1), or real and imaginary parts as separate real
    planes). Environments that draw their randomness in blocks call this directly;
    :func:`gauss_markov_step` draws the innovation itself.
    """
    rho = np.asarray(rho, dtype=np.float64)
    return rho * h_prev + np.sqrt(np.maximum(1.0 - rho**2, 0.0)) * innovation


def fading_power(h: NDArray[np.complex128]) -> NDArray[np.float64]:
    """Small-scale power gain ``|h|^2`` of complex coefficients."""
    return np.abs(h) ** 2


@jitable
def shannon_rate(sinr: ArrayLike) -> NDArray[np.float64]:
    """Spectral efficiency ``log2(1 + SINR)`` in bit/s/Hz (SINR linear, non-negative)."""
    return np.log2(1.0 + np.maximum(sinr, 0.0))


def shannon_capacity_bps(bandwidth_hz: ArrayLike, sinr: ArrayLike) -> NDArray[np.float64]:
    """Shannon capacity ``B log2(1 + SINR)`` in bit/s."""
    return np.asarray(bandwidth_hz, dtype=np.float64) * shannon_rate(sinr)


def interference_sinr(p_w: ArrayLike, gains: ArrayLike, noise_w: ArrayLike) -> NDArray[np.float64]:
    """SINR of one-to-one links under mutual interference.

    Transmitter ``m`` serves receiver ``m``; every other transmitter interferes.

    ``SINR_k = p_k g_kk / (sum_{m != k} p_m g_mk + sigma^2)``

    Args:
        p_w: Transmit powers in W, shape ``(..., M)``.
        gains: Power gains, shape ``(..., M, K)`` with ``K == M``; ``gains[..., m, k]`` is the gain
            from transmitter ``m`` to receiver ``k``.
        noise_w: Noise power in W (broadcast against ``(..., K)``).

    Returns:
        Linear SINR per receiver, shape ``(..., K)``.
    """
    g = np.asarray(gains, dtype=np.float64)
    return serving_sinr(p_w, g, tuple(range(g.shape[-1])), noise_w)


def pairwise_distance(a: ArrayLike, b: ArrayLike) -> NDArray[np.float64]:
    """Euclidean distances between ``a (..., M, D)`` and ``b (..., K, D)``: ``(..., M, K)``."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return np.linalg.norm(a[..., :, None, :] - b[..., None, :, :], axis=-1)


def serving_sinr(p_w: ArrayLike, gains: ArrayLike, serving: tuple[int, ...],
                 noise_w: ArrayLike) -> NDArray[np.float64]:
    """SINR when receiver ``k`` decodes the stream of transmitter ``serving[k]``.

    Every other transmitter interferes at receiver ``k``::

        SINR_k = p_s g_sk / (sum_{m != s} p_m g_mk + sigma^2),   s = serving[k]

    :func:`interference_sinr` is the one-to-one case ``serving = (0, 1, ..., M-1)``; several
    receivers may decode the same transmitter (e.g. a user and an eavesdropper). This is
    :func:`operator_sinr` applied to :func:`serving_gain_operator`; a caller that scores many
    power vectors on one channel can build the operator once.

    The sums are exact masked sums, never ``total - signal``, which cancels catastrophically
    when the signal dwarfs interference plus noise.

    Args:
        p_w: Transmit powers in W, shape ``(..., M)``.
        gains: Power gains, shape ``(..., M, K)``; ``gains[..., m, k]`` is transmitter ``m`` ->
            receiver ``k``.
        serving: ``K`` transmitter indices in ``[0, M)`` (a tuple: it keys a cache).
        noise_w: Noise power in W (broadcast against ``(..., K)``).

    Returns:
        Linear SINR per receiver, shape ``(..., K)``.

    Raises:
        ValueError: If ``serving`` does not have ``K`` entries in ``[0, M)``.
    """
    return operator_sinr(p_w, serving_gain_operator(gains, serving), noise_w)


def serving_gain_operator(gains: ArrayLike, serving: tuple[int, ...]) -> NDArray[np.float64]:
    """The linear map from transmit powers to each receiver's signal and interference.

    Args:
        gains: Power gains ``(..., M, K)``, transmitter ``m`` -> receiver ``k``.
        serving: ``K`` transmitter indices in ``[0, M)``: receiver ``k`` decodes
            ``serving[k]``.

    Returns:
        ``A`` of shape ``(..., M, 2K)``: ``p @ A`` gives the received signal powers (first
        ``K`` columns: ``A[m, k] = g[m, k]`` if ``m == serving[k]`` else 0) and interference
        powers (last ``K`` columns: the other entries).

    Raises:
        ValueError: If ``serving`` does not have ``K`` entries in ``[0, M)``.
    """
    g = np.asarray(gains, dtype=np.float64)
    signal_mask, interference_mask = _serving_masks(g.shape[-2], g.shape[-1], serving)
    return np.concatenate((g * signal_mask, g * interference_mask), axis=-1)


def operator_sinr(p_w: ArrayLike, operator: ArrayLike, noise_w: ArrayLike) -> NDArray[np.float64]:
    """SINR per receiver from powers ``(..., M)`` and a :func:`serving_gain_operator` ``A``.

    Returns:
        ``signal / (interference + noise)``, shape ``(..., K)`` with ``2K = A.shape[-1]``.
    """
    p = np.asarray(p_w, dtype=np.float64)
    a = np.asarray(operator, dtype=np.float64)
    k = a.shape[-1] // 2
    # parts = p @ A, summed over transmitters in index order with elementwise operations: the
    # result is bit-identical whatever the batch size (a batched matmul may round differently
    # from a single one, and is slow for many tiny matrices).
    parts = p[..., 0, None] * a[..., 0, :]  # (..., 2K): signal, then interference
    for m in range(1, a.shape[-2]):
        parts += p[..., m, None] * a[..., m, :]
    return parts[..., :k] / (parts[..., k:] + np.asarray(noise_w, dtype=np.float64))


@functools.lru_cache(maxsize=128)
def _serving_masks(m: int, k: int, serving: tuple[int, ...]
                   ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Return 0/1 masks ``(M, K)`` of each receiver's serving link and of its other links."""
    serving = tuple(int(s) for s in serving)
    if len(serving) != k or any(not 0 <= s < m for s in serving):
        raise ValueError(f"serving must list {k} transmitter indices in [0, {m}), got {serving}")
    signal = np.zeros((m, k))
    signal[list(serving), list(range(k))] = 1.0
    interference = 1.0 - signal
    signal.flags.writeable = False
    interference.flags.writeable = False
    return signal, interference
