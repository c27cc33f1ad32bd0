"""``qdrl/SecrecyPowerControl-v1``: AP power control for physical-layer secrecy (paper Sec. VI-B).

The physics is written once, on arrays with a leading batch axis:

* :func:`secrecy_rates` — the pure rate model (public, so anyone can check it);
* :class:`SecrecyCore` — geometry, path loss, fading and the concealed-eavesdropper rule on
  ``N`` instances;
* :class:`SecrecyPowerControlEnv` (the single Gymnasium env, whose docstring is the manual) and
  :class:`SecrecyPowerControlVectorEnv` (its NumPy-batched twin) both drive that core.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from gymnasium import spaces
from numpy.typing import ArrayLike, NDArray

from qdrl_envs import radio
from qdrl_envs.config import EnvConfig, check_bool, check_choice, check_int, check_real
from qdrl_envs.core import (
    BatchedCore,
    CoreEnv,
    CoreVectorEnv,
    StepResult,
    agg_figure,
    draw,
    figure_rgb,
)

__all__ = [
    "EVE_CSI_MODES",
    "POWER_SCALES",
    "SecrecyConfig",
    "SecrecyCore",
    "SecrecyPowerControlEnv",
    "SecrecyPowerControlVectorEnv",
    "rate_operator",
    "secrecy_from_operator",
    "secrecy_rates",
]

EVE_CSI_MODES: tuple[str, ...] = ("perfect", "statistical")
"""Values of :attr:`SecrecyConfig.eve_csi`."""

AP_LAYOUTS: tuple[str, ...] = ("grid", "uniform")
"""Values of :attr:`SecrecyConfig.ap_layout`."""

POWER_SCALES: tuple[str, ...] = ("log", "linear")
"""Values of :attr:`SecrecyConfig.power_scale`."""

_TINY_GAIN = 1e-300
_BELOW_ONE = 1.0 - 2.0**-53  # keeps inverse-CDF arguments strictly inside (-1, 0]
_RESET_OPTIONS = ("ap_positions_m", "user_positions_m", "eve_positions_m")
_MAX_BLOCK_STEPS = 128  # slots of channels drawn at once per instance (see _block_steps)


def _block_steps(n_aps: int) -> int:
    """Slots per block of channels: 128, fewer for more APs to bound the memory (at least 4)."""
    return int(min(_MAX_BLOCK_STEPS, max(4, 8192 // (4 * n_aps * n_aps))))


# --------------------------------------------------------------------------------------------
# The rate model
# --------------------------------------------------------------------------------------------


def secrecy_rates(
    g_user: ArrayLike,
    g_eve: ArrayLike,
    p: ArrayLike,
    p_max_w: float,
    noise_w: float,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Rates of users and eavesdroppers and the per-user secrecy rates (paper eq. 5a).

    AP ``k`` serves user ``k`` with power ``p_k P_max``; eavesdropper ``k`` tries to decode user
    ``k``'s stream. Every other AP interferes at every receiver::

        SINR_k     = p_k P g_user[k, k] / (sum_{m != k} p_m P g_user[m, k] + noise)
        SINR_adv,k = p_k P g_eve[k, k]  / (sum_{m != k} p_m P g_eve[m, k]  + noise)
        R = log2(1 + SINR)  (bit/s/Hz),   secrecy_k = max(R_k - R_adv,k, 0)

    All arguments broadcast over leading batch axes. The environment (single and batched)
    evaluates exactly this computation: the same two steps, building the gain operator of the
    channels (which it does once per block of channels, ahead of time) and applying it to the
    powers, so its rewards equal ``secrecy_rates(...)`` on the channels it showed.

    Args:
        g_user: Power gains AP ``m`` -> user ``k``, shape ``(..., M, M)`` (linear, >= 0).
        g_eve: Power gains AP ``m`` -> eavesdropper ``k``, shape ``(..., M, M)``.
        p: Power coefficients in ``[0, 1]``, shape ``(..., M)``.
        p_max_w: Maximum transmit power per AP in W.
        noise_w: Receiver noise power in W (> 0).

    Returns:
        ``(user_rates, eve_rates, secrecy_rates)``, each of shape ``(..., M)`` in bit/s/Hz;
        secrecy rates are never negative.

    Raises:
        ValueError: If the gain matrices are not square ``(..., M, M)`` with ``M`` matching
            ``p``, or ``noise_w`` is not positive.
    """
    gu = np.asarray(g_user, dtype=np.float64)
    ge = np.asarray(g_eve, dtype=np.float64)
    pw = np.asarray(p, dtype=np.float64) * p_max_w
    gs, es, ps = gu.shape, ge.shape, pw.shape
    m = gs[-1] if len(gs) >= 2 else -1
    if len(gs) < 2 or gs[-2] != m or es[-2:] != gs[-2:]:
        raise ValueError(f"g_user and g_eve must have shape (..., M, M), got {gs} and {es}")
    if not ps or ps[-1] != m:
        raise ValueError(f"p must have shape (..., M) with M={m}, got {ps}")
    if not noise_w > 0:
        raise ValueError(f"noise_w must be > 0, got {noise_w!r}")
    if gs != es:
        gu, ge = np.broadcast_arrays(gu, ge)
    return secrecy_from_operator(rate_operator(np.concatenate((gu, ge), axis=-1)), pw, noise_w)


def rate_operator(gains: NDArray[np.float64]) -> NDArray[np.float64]:
    """The power -> (signal, interference) map of channels ``[G_user | G_eve]`` (..., M, 2M).

    Users and eavesdroppers are the ``2M`` receivers of one network: receiver ``j`` decodes
    AP ``j mod M``. The environment builds this once per block of channels (public so that
    :mod:`qdrl_envs.secrecy_jamming` shares it).
    """
    return radio.serving_gain_operator(gains, _serving(gains.shape[-2]))


def secrecy_from_operator(operator: NDArray[np.float64], p_w: NDArray[np.float64],
                          noise_w: float | NDArray[np.float64]
                          ) -> tuple[NDArray[np.float64], NDArray[np.float64],
                                     NDArray[np.float64]]:
    """User, eavesdropper and secrecy rates from a :func:`rate_operator` and powers in W.

    ``noise_w`` is the receiver noise in W: a number, or an array broadcasting against
    ``(..., 2M)`` (one figure per user, then per eavesdropper: noise plus any extra
    noise-like power, such as the jamming of :mod:`qdrl_envs.secrecy_jamming`).
    """
    m = p_w.shape[-1]
    rates = radio.shannon_rate(radio.operator_sinr(p_w, operator, noise_w))
    user, eve = rates[..., :m], rates[..., m:]
    return user, eve, np.maximum(user - eve, 0.0)


@functools.lru_cache(maxsize=32)
def _serving(m: int) -> tuple[int, ...]:
    return tuple(range(m)) * 2


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SecrecyConfig(EnvConfig):
    """Configuration of ``qdrl/SecrecyPowerControl-v1`` (see the env manual for the model).

    Attributes:
        n_aps: Number of APs ``M`` = users = eavesdroppers, in [1, 16].
        area_m: Side of the square deployment area in m, in (0, 1e6].
        ap_layout: ``"grid"`` (cell centres of a ceil(sqrt(M))-column grid) or ``"uniform"``.
        user_radius_m: User ``k`` is uniform in a disc of this radius (m) around AP ``k``.
        eve_radius_m: Eavesdropper ``k`` is uniform in a disc of this radius (m) around user ``k``.
        carrier_hz: Carrier frequency (Hz) of the 1 m free-space reference loss.
        path_loss_exponent: Log-distance exponent (about 3 in urban micro cells).
        bandwidth_hz: Receiver bandwidth (Hz), for the noise power.
        noise_figure_db: Receiver noise figure (dB).
        p_max_dbm: Maximum transmit power per AP (dBm).
        eve_extra_loss_db: Extra penetration loss on every AP -> eavesdropper link (dB): the
            eavesdroppers are concealed (paper footnote 11).
        concealed_eves: Enforce ``g_eve[m, k] <= g_user[m, k]`` on every link at every step
            (paper footnote 11) by redrawing violating eavesdropper fading; ``False`` lifts it.
        fading_rho: Gauss-Markov correlation of the fading between steps (0 = i.i.d. block
            fading, 1 = static).
        eve_csi: ``"perfect"`` (the agent sees the eavesdroppers' instantaneous gains) or
            ``"statistical"`` (their large-scale gains only).
        varsigma: Reward scale (the paper's varsigma), > 0.
        obs_center_db: SNR (dB) mapped to observation 0.
        obs_scale_db: SNR span (dB) mapped to one observation unit.
        power_scale: How an action in ``[-1, 1]`` sets a power coefficient: ``"log"`` (in dB
            over ``power_range_db``; -1 switches the AP off) or ``"linear"`` (``(a + 1) / 2``).
        power_range_db: The span of the ``"log"`` scale: ``a`` just above -1 is
            ``-power_range_db`` dB of ``P_max``, in [1, 200].
    """

    n_aps: int = 2
    area_m: float = 200.0
    ap_layout: str = "grid"
    user_radius_m: float = 50.0
    eve_radius_m: float = 15.0
    carrier_hz: float = 3.5e9
    path_loss_exponent: float = 3.0
    bandwidth_hz: float = 10e6
    noise_figure_db: float = 7.0
    p_max_dbm: float = 30.0
    eve_extra_loss_db: float = 10.0
    concealed_eves: bool = True
    fading_rho: float = 0.0
    eve_csi: str = "perfect"
    varsigma: float = 1.0
    obs_center_db: float = 25.0
    obs_scale_db: float = 60.0
    power_scale: str = "log"
    power_range_db: float = 40.0

    def validate(self) -> None:
        """Check every field.

        Raises:
            ValueError: Naming the field, its value and the allowed range.
        """
        check_int("n_aps", self.n_aps, low=1, high=16)
        check_real("area_m", self.area_m, 0.0, 1e6, low_inclusive=False)
        check_choice("ap_layout", self.ap_layout, AP_LAYOUTS)
        check_real("user_radius_m", self.user_radius_m, 0.0, 1e6)
        check_real("eve_radius_m", self.eve_radius_m, 0.0, 1e6)
        check_real("carrier_hz", self.carrier_hz, 1e6, 1e12)
        check_real("path_loss_exponent", self.path_loss_exponent, 1.5, 6.0)
        check_real("bandwidth_hz", self.bandwidth_hz, 1.0, 1e11)
        check_real("noise_figure_db", self.noise_figure_db, 0.0, 30.0)
        check_real("p_max_dbm", self.p_max_dbm, -30.0, 60.0)
        check_real("eve_extra_loss_db", self.eve_extra_loss_db, 0.0, 100.0)
        check_bool("concealed_eves", self.concealed_eves)
        check_real("fading_rho", self.fading_rho, 0.0, 1.0)
        check_choice("eve_csi", self.eve_csi, EVE_CSI_MODES)
        check_real("varsigma", self.varsigma, 0.0, 1e6, low_inclusive=False)
        check_real("obs_center_db", self.obs_center_db, -300.0, 300.0)
        check_real("obs_scale_db", self.obs_scale_db, 1.0, 1000.0)
        check_choice("power_scale", self.power_scale, POWER_SCALES)
        check_real("power_range_db", self.power_range_db, 1.0, 200.0)


# --------------------------------------------------------------------------------------------
# The batched core
# --------------------------------------------------------------------------------------------


def _grid_positions(n_aps: int, area_m: float) -> NDArray[np.float64]:
    cols = math.ceil(math.sqrt(n_aps))
    rows = math.ceil(n_aps / cols)
    m = np.arange(n_aps)
    return np.stack([(m % cols + 0.5) * area_m / cols, (m // cols + 0.5) * area_m / rows], axis=-1)


class _Model(NamedTuple):
    """The slot model's constants: the action's power scale (the rates need no other)."""

    log_power: bool
    """``power_scale == "log"``."""
    power_range_db: float


class _World(NamedTuple):
    """What is drawn: the geometry at reset and the blocks of fading."""

    ap_grid: NDArray[np.float64]
    """``(M, 2)`` AP positions of the ``"grid"`` layout."""
    extra_loss_db: NDArray[np.float64]
    """``(2M,)`` extra path loss of each receiver column (0 for users)."""
    geometry_shape: tuple[int, ...]
    """Shape of the uniforms of one instance's geometry, ``(3, M, 2)``."""
    block_shape: tuple[int, ...]
    """Shape of one instance's fading draws for a block."""
    fading_rho: float
    concealed_eves: bool


class _View(NamedTuple):
    """The observation's scaling: ``clip(log10(g) * obs_a + obs_b, -1, 1)``."""

    obs_a: float
    obs_b: float
    statistical_csi: bool
    """Eavesdropper links show their path gains only (``eve_csi == "statistical"``)."""


def _check_positions(name: str, value: Any, n_aps: int, area_m: float) -> NDArray[np.float64]:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"reset option {name} must be an array of shape ({n_aps}, 2) in m, "
                         f"got {value!r}") from exc
    if arr.shape != (n_aps, 2) or not np.all(np.isfinite(arr)):
        raise ValueError(f"reset option {name} must be a finite array of shape ({n_aps}, 2) in m,"
                         f" got shape {arr.shape}: {arr.tolist()}")
    outside = (arr < 0.0) | (arr > area_m)
    if outside.any():
        rows = sorted({int(i) for i in np.argwhere(outside)[:, 0]})
        raise ValueError(f"reset option {name}: rows {rows} lie outside the area [0, {area_m}]^2"
                         f" m: {arr[rows].tolist()}")
    return arr


class SecrecyCore(BatchedCore[SecrecyConfig]):
    """The secrecy power-control model on ``num_envs`` instances (see the env manual).

    Channels are held as one matrix per instance, ``H = [G_user | G_eve]`` of shape ``(M, 2M)``:
    column ``j < M`` is user ``j``, column ``M + k`` eavesdropper ``k``.

    Public state (leading axis ``N``), read by renderers and the oracle baseline:
    ``ap_positions_m``, ``user_positions_m``, ``eve_positions_m`` ``(N, M, 2)``;
    :attr:`gains` ``(N, M, 2M)`` and its views :attr:`user_gains`, :attr:`eve_gains`
    ``(N, M, M)`` — the channels the next action acts on; ``path_gains`` ``(N, M, 2M)``
    (large-scale part); ``p_max_w``, ``noise_w``; ``last_info`` (the batch info of the last
    step, ``None`` after a full reset). Treat them as read-only.

    Channels come in blocks: an instance draws the fading of ``block_steps`` slots at once
    (after its geometry at reset, then whenever its block is used up) and the gains, the rate
    operators of :func:`secrecy_rates` and the observations of the whole block are computed
    in one vectorised pass. This is what makes
    both the single env and the batched twin fast (one generator call and one pass of array
    maths per ``block_steps`` slots instead of per slot); it changes no law, only how far
    ahead the generator is read. Randomness per instance: at reset ``random((3, M, 2))`` (AP,
    user, eavesdropper placement), then per block ``standard_exponential((2, block_steps, M,
    M))`` (the fading powers ``|h|^2 ~ Exp(1)`` of the user links, then of the eavesdropper
    links, slot by slot) or, with Gauss-Markov fading, ``standard_normal((block_steps, 2, M,
    2M))`` (real and imaginary parts of every coefficient, slot by slot).

    Constants sit in the packs of the template of :mod:`qdrl_envs.core` (``_model``,
    ``_world``, ``_view``: :class:`_Model`, :class:`_World`, :class:`_View`), read by name; the
    model is NumPy algebra on whole batches, so there is no kernel to hand them to as plain
    tuples, and no state block needs row maps.

    :attr:`gains` and the current rate operators and observations are selections of the
    blocks at each instance's slot, not state of their own: :meth:`save_rows` and
    :meth:`restore_rows` keep the blocks and the slots, and select again.
    """

    not_state = ("gains", "_op", "_obs")  # the blocks at _pos, selected again on a restore

    def render_ansi(self, row: int = 0) -> str:
        """Row ``row`` as text (see the env manual's Rendering)."""
        return _render_ansi(self, row)

    def render_rgb_array(self, row: int = 0) -> np.ndarray:
        """Row ``row`` as an RGB picture (see the env manual's Rendering)."""
        return _render_rgb_array(self, row)

    def __init__(self, config: SecrecyConfig, num_envs: int) -> None:
        super().__init__(config, num_envs)
        c = config
        m = c.n_aps
        self.n_aps = m
        self.p_max_w = float(radio.dbm_to_watt(c.p_max_dbm))
        self.noise_w = float(radio.noise_power_w(c.bandwidth_hz, c.noise_figure_db))
        self.single_action_space = spaces.Box(-1.0, 1.0, (m,), dtype=np.float32)
        self.single_observation_space = spaces.Box(-1.0, 1.0, (2 * m * m,), dtype=np.float32)
        self.block_steps = _block_steps(m)
        rho = float(c.fading_rho)
        self._model = _Model(log_power=c.power_scale == "log",
                             power_range_db=float(c.power_range_db))
        self._world = _World(
            ap_grid=_grid_positions(m, c.area_m),
            extra_loss_db=np.concatenate((np.zeros(m), np.full(m, c.eve_extra_loss_db))),
            geometry_shape=(3, m, 2),
            # I.i.d. fading draws the fading powers |h|^2 ~ Exp(1) directly (one number per
            # link); Gauss-Markov fading needs the complex coefficients (two normals per link).
            block_shape=((2, self.block_steps, m, m) if rho == 0.0
                         else (self.block_steps, 2, m, 2 * m)),
            fading_rho=rho, concealed_eves=c.concealed_eves)
        # Observation = clip((10 log10(P_max g / noise) - center) / scale, -1, 1)
        #             = clip(log10(g) * obs_a + obs_b, -1, 1).
        self._view = _View(
            obs_a=10.0 / c.obs_scale_db,
            obs_b=(10.0 * math.log10(self.p_max_w / self.noise_w) - c.obs_center_db)
            / c.obs_scale_db,
            statistical_csi=c.eve_csi == "statistical")
        n, t = num_envs, self.block_steps
        self.ap_positions_m = np.zeros((n, m, 2))
        self.user_positions_m = np.zeros((n, m, 2))
        self.eve_positions_m = np.zeros((n, m, 2))
        self.path_gains = np.ones((n, m, 2 * m))
        self._pg_user = np.ones((n, m, m))  # path gains of the user links
        self._pg_eve = np.ones((n, m, m))  # ... and of the eavesdropper links
        self._inv_pg_eve = np.ones((n, m, m))
        self._pg_obs = np.zeros((n, m, m), dtype=np.float32)  # statistical eve CSI, scaled
        self._z = np.zeros((n, 2, m, 2 * m))  # Gauss-Markov state after each block: re, im
        self._gain_block = np.ones((n, t, m, 2 * m))
        self._op_block = rate_operator(self._gain_block)  # power -> signal, interference
        self._obs_block = np.zeros((n, t, 2 * m * m), dtype=np.float32)
        self._pos = np.zeros(n, dtype=np.int64)  # slot of each instance within its block
        self._aligned: int | None = 0  # the common slot while all instances are in phase
        self.gains = self._gain_block[:, 0]
        self._op = self._op_block[:, 0]
        self._obs = self._obs_block[:, 0]
        self.last_info: dict[str, Any] | None = None

    # -- public views ------------------------------------------------------------------------

    @property
    def user_gains(self) -> NDArray[np.float64]:
        """Instantaneous power gains AP ``m`` -> user ``k``, shape ``(N, M, M)``."""
        return self.gains[..., : self.n_aps]

    @property
    def eve_gains(self) -> NDArray[np.float64]:
        """Instantaneous power gains AP ``m`` -> eavesdropper ``k``, shape ``(N, M, M)``."""
        return self.gains[..., self.n_aps:]

    # -- the action scale --------------------------------------------------------------------

    def coefficients(self, actions: ArrayLike) -> NDArray[np.float64]:
        """Power coefficients ``p`` in ``[0, 1]`` of actions in ``[-1, 1]`` (any shape).

        ``"log"``: ``p = 10^(-power_range_db (1 - a) / 20)`` for ``a > -1`` and ``p = 0`` at
        ``a = -1``; ``"linear"``: ``p = (a + 1) / 2``.
        """
        a = np.asarray(actions, dtype=np.float64)
        if not self._model.log_power:
            return 0.5 * (a + 1.0)
        p = np.power(10.0, (a - 1.0) * (0.05 * self._model.power_range_db))
        return np.where(a <= -1.0, 0.0, p)

    def action_of(self, coefficients: ArrayLike) -> NDArray[np.float32]:
        """The action (float32, in ``[-1, 1]``) that sets power coefficients ``p`` in [0, 1].

        The inverse of :meth:`coefficients`; on the ``"log"`` scale coefficients below
        ``-power_range_db`` dB (0 among them) become -1, off.
        """
        p = np.clip(np.asarray(coefficients, dtype=np.float64), 0.0, 1.0)
        if not self._model.log_power:
            a = 2.0 * p - 1.0
        else:
            db = 10.0 * np.log10(np.maximum(p, 1e-300))
            a = np.maximum(1.0 + 2.0 * db / self._model.power_range_db, -1.0)
        return a.astype(np.float32)

    # -- model -------------------------------------------------------------------------------

    def _gains(self, x_u: NDArray[np.float64], x_e: NDArray[np.float64], rows: np.ndarray
               ) -> NDArray[np.float64]:
        """Gains ``[G_user | G_eve]`` ``(n, ..., M, 2M)`` from fading powers ``(n, ..., M, M)``.

        ``x_u``, ``x_e`` are ``|h|^2`` of the user and eavesdropper links of instances ``rows``
        (any axes between the instance and the ``(M, M)`` ones: slots of a block). Where an
        eavesdropper link breaks the concealment rule, ``x_e`` is redrawn *in place* from its
        law conditioned on the rule: ``Exp(1)`` truncated to ``[0, cap]``, by inverse CDF (the
        same law as redrawing until the rule holds). The uniform comes from the violating draw
        itself: given ``x > cap``, ``x - cap ~ Exp(1)`` independently of everything else
        (memorylessness), so ``exp(-(x - cap)) ~ U(0, 1)``.
        """
        extra = (slice(None),) + (None,) * (x_u.ndim - 3)
        pg_u, pg_e = self._pg_user[rows][extra], self._pg_eve[rows][extra]
        g_u = x_u * pg_u
        if self._world.concealed_eves:
            cap = g_u * self._inv_pg_eve[rows][extra]  # largest allowed eavesdropper x
            viol = x_e > cap
            if np.count_nonzero(viol):
                c, x = cap[viol], x_e[viol]
                u = np.exp(c - x)
                u *= _BELOW_ONE  # keeps the log1p argument inside (-1, 0]
                x_new = np.log1p(u * np.expm1(-c))
                x_new *= -1.0
                x_e[viol] = x_new
                # The clamp only absorbs rounding in cap: the rule then holds exactly.
                return np.concatenate((g_u, np.minimum(x_e * pg_e, g_u)), axis=-1)
        return np.concatenate((g_u, x_e * pg_e), axis=-1)

    def _gauss_markov_slot(self, w: NDArray[np.float64], z: NDArray[np.float64] | None,
                           rows: np.ndarray) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """One Gauss-Markov slot: state ``(n, 2, M, 2M)`` (re, im) and gains ``(n, M, 2M)``.

        ``w`` are unit-variance normals (the innovation; the state itself when ``z`` is
        ``None``, a stationary start). A concealment redraw rescales the eavesdropper
        coefficient (its phase is kept), so the process carries on from the redrawn channel.
        """
        z = w if z is None else radio.gauss_markov_update(z, w, self._world.fading_rho)
        m = self.n_aps
        x = 0.5 * (z[:, 0] * z[:, 0] + z[:, 1] * z[:, 1])  # |h|^2, (n, M, 2M)
        x_u, x_e = x[..., :m], x[..., m:].copy()
        gains = self._gains(x_u, x_e, rows)
        changed = x_e != x[..., m:]
        if np.count_nonzero(changed):
            scale = np.sqrt(np.divide(x_e, x[..., m:], out=np.ones_like(x_e), where=changed))
            z = z.copy()
            z[..., m:] *= scale[:, None]
        return z, gains

    def _observation(self, gains: NDArray[np.float64], pg_obs: NDArray[np.float32]
                     ) -> NDArray[np.float32]:
        """Scaled, clipped float32 observations of gains ``(..., M, 2M)``, flattened."""
        db = np.log10(np.maximum(gains, _TINY_GAIN))
        db *= self._view.obs_a
        db += self._view.obs_b
        obs = db.astype(np.float32)
        if self._view.statistical_csi:
            obs[..., self.n_aps:] = pg_obs
        np.maximum(obs, -1.0, out=obs)  # clip without np.clip's Python overhead
        np.minimum(obs, 1.0, out=obs)
        return obs.reshape((*obs.shape[:-2], -1))

    def _new_blocks(self, rngs: Sequence[np.random.Generator], idx: np.ndarray, fresh: bool
                    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float32]]:
        """Draw the next block of gains, rate operators and observations of instances ``idx``.

        ``fresh``: the block starts an episode (a Gauss-Markov process starts stationary).
        """
        shape = self._world.block_shape
        if self._world.fading_rho == 0.0:
            w = draw(rngs, lambda g: g.standard_exponential(shape))  # (n,2,T,M,M)
            gains = self._gains(w[:, 0], w[:, 1], idx)
        else:
            w = draw(rngs, lambda g: g.standard_normal(shape))  # (n,T,2,M,2M)
            gains = np.empty((len(idx), self.block_steps, self.n_aps, 2 * self.n_aps))
            z = None if fresh else self._z[idx]
            for t in range(self.block_steps):
                z, gains[:, t] = self._gauss_markov_slot(w[:, t], z, idx)
            self._z[idx] = z
        return (gains, rate_operator(gains),
                self._observation(gains, self._pg_obs[idx, None]))

    def _advance(self, rngs: Sequence[np.random.Generator]) -> None:
        """Move every instance to its next slot, drawing new blocks where one is used up."""
        t = self.block_steps
        if self._aligned is not None:
            slot = self._aligned + 1
            if slot == t:
                slot = 0
                self._gain_block, self._op_block, self._obs_block = self._new_blocks(
                    rngs, np.arange(self.num_envs), fresh=False)
            self._aligned = slot  # (self._pos is stale while aligned)
            self.gains = self._gain_block[:, slot]
            self._op = self._op_block[:, slot]
            self._obs = self._obs_block[:, slot]
            return
        self._pos += 1
        done = np.flatnonzero(self._pos == t)
        if done.size:
            self._store(done, *self._new_blocks([rngs[i] for i in done], done, fresh=False))
        self._select()

    def save_rows(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        """Copies of the state of instances ``idx``, for :meth:`restore_rows`."""
        self._sync_pos()
        return super().save_rows(idx)

    def restore_rows(self, idx: np.ndarray, saved: dict[str, np.ndarray]) -> None:
        """Put instances ``idx`` back as :meth:`save_rows` copied them, slots included."""
        self._sync_pos()
        super().restore_rows(idx, saved)
        self._select()

    def _sync_pos(self) -> None:
        """Make ``_pos`` hold every instance's slot (it is stale while they are aligned)."""
        if self._aligned is not None:
            self._pos[:] = self._aligned

    def _store(self, idx: np.ndarray, gains: NDArray[np.float64], op: NDArray[np.float64],
               obs: NDArray[np.float32]) -> None:
        self._gain_block[idx], self._op_block[idx], self._obs_block[idx] = gains, op, obs
        self._pos[idx] = 0

    def _select(self) -> None:
        if np.all(self._pos == self._pos[0]):
            slot = self._aligned = int(self._pos[0])
            self.gains, self._op = self._gain_block[:, slot], self._op_block[:, slot]
            self._obs = self._obs_block[:, slot]
        else:
            self._aligned = None
            rows = np.arange(self.num_envs)
            self.gains = self._gain_block[rows, self._pos]
            self._op = self._op_block[rows, self._pos]
            self._obs = self._obs_block[rows, self._pos]

    def reset(self, rngs: Sequence[np.random.Generator], idx: np.ndarray,
              options: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
        """Draw geometry and a first block of channels for the instances ``idx``.

        Options (applied to every instance in ``idx``): ``ap_positions_m``,
        ``user_positions_m``, ``eve_positions_m`` — ``(M, 2)`` arrays in m that replace the
        drawn positions (the draws are still made, so seeding is unaffected).

        Raises:
            ValueError: On an unknown option, a malformed position array, or a position
                outside the square area.
        """
        c, m, n = self.config, self.n_aps, len(idx)
        fixed: dict[str, NDArray[np.float64]] = {}
        if options:
            unknown = sorted(set(options) - set(_RESET_OPTIONS))
            if unknown:
                raise ValueError(f"unknown reset option(s) {unknown}; valid options are "
                                 f"{list(_RESET_OPTIONS)}")
            fixed = {k: _check_positions(k, v, m, self.config.area_m) for k, v in options.items()}
        u = draw(rngs, lambda g: g.random(self._world.geometry_shape))  # (n, 3, M, 2)
        if c.ap_layout == "grid":
            ap = np.broadcast_to(self._world.ap_grid, (n, m, 2))
        else:
            ap = u[:, 0] * c.area_m
        ap = np.broadcast_to(fixed.get("ap_positions_m", ap), (n, m, 2))
        r_u, t_u = c.user_radius_m * np.sqrt(u[:, 1, :, 0]), 2.0 * np.pi * u[:, 1, :, 1]
        user = np.clip(ap + np.stack([r_u * np.cos(t_u), r_u * np.sin(t_u)], -1), 0.0, c.area_m)
        user = np.broadcast_to(fixed.get("user_positions_m", user), (n, m, 2))
        r_e, t_e = c.eve_radius_m * np.sqrt(u[:, 2, :, 0]), 2.0 * np.pi * u[:, 2, :, 1]
        eve = np.clip(user + np.stack([r_e * np.cos(t_e), r_e * np.sin(t_e)], -1), 0.0, c.area_m)
        eve = np.broadcast_to(fixed.get("eve_positions_m", eve), (n, m, 2))
        dist = radio.pairwise_distance(ap, np.concatenate((user, eve), axis=1))  # (n, M, 2M)
        pg = radio.path_gain(dist, c.carrier_hz, c.path_loss_exponent, self._world.extra_loss_db)
        self.ap_positions_m[idx] = ap
        self.user_positions_m[idx] = user
        self.eve_positions_m[idx] = eve
        self.path_gains[idx] = pg
        self._pg_user[idx] = pg[..., :m]
        self._pg_eve[idx] = pg[..., m:]
        self._inv_pg_eve[idx] = 1.0 / pg[..., m:]
        view = self._view
        self._pg_obs[idx] = np.clip(np.log10(pg[..., m:]) * view.obs_a + view.obs_b, -1.0, 1.0)
        gains, op, obs = self._new_blocks(rngs, idx, fresh=True)
        if n == self.num_envs:
            self._gain_block, self._op_block, self._obs_block = gains, op, obs
            self._pos[:] = 0
            self._aligned = 0
            self.gains, self._op, self._obs = gains[:, 0], op[:, 0], obs[:, 0]
            self.last_info = None
        else:
            if self._aligned is not None:
                self._pos[:] = self._aligned
            self._store(idx, gains, op, obs)
            self._select()
        return {}

    def step(self, actions: np.ndarray, rngs: Sequence[np.random.Generator]) -> StepResult:
        """Score ``actions`` ``(N, M)`` on the current channels, then move to the next ones."""
        powers = self.coefficients(actions) * self.p_max_w
        # secrecy_rates(user_gains, eve_gains, actions, ...) with the channels' operator
        # built ahead of time (see secrecy_rates).
        user, eve, sec = secrecy_from_operator(self._op, powers, self.noise_w)
        # A per-row sum, never a BLAS matmul: BLAS picks its kernel, and the order of the
        # additions, by the number of rows, and the vector twin would drift from the single env.
        total = sec.sum(axis=-1)
        info: dict[str, Any] = {
            "secrecy_rate": total,
            "user_rates": user,
            "eve_rates": eve,
            "secrecy_rates": sec,
            "powers": powers,
            "reward_terms": {"secrecy_rate": total},
        }
        self.last_info = info
        self._advance(rngs)
        return StepResult(self.config.varsigma * total, np.zeros(self.num_envs, dtype=bool), info)

    def observe(self) -> np.ndarray:
        """Observations ``(N, 2 M^2)`` float32 (never written to once handed out)."""
        return self._obs


# --------------------------------------------------------------------------------------------
# The environments
# --------------------------------------------------------------------------------------------


class SecrecyPowerControlEnv(CoreEnv[SecrecyConfig]):
    r"""Access points set their transmit powers to keep their users' messages secret.

    ## Description

    The paper's own Q-DRL use case (Sec. VI-B, Fig. 11, eq. 5a/5b and footnote 11). ``M``
    single-antenna APs each serve one single-antenna user (``K_user = M``, AP ``k`` -> user
    ``k``) on the same band. ``K_adv = M`` eavesdroppers: eavesdropper ``k`` hides near user
    ``k`` and tries to decode user ``k``'s stream. Every slot the APs choose power coefficients
    ``p in [0, 1]^M``; a user's rate grows with its own AP's power, but that power also feeds
    its eavesdropper and interferes with everybody else (the agent acts in ``[-1, 1]^M``, see
    the action space). The objective is the sum secrecy rate
    ``sum_k [R_k - R_adv,k]^+``.

    Channel (standard urban-micro link budget): power gain ``g = PL(d)^-1 |h|^2`` with
    log-distance path loss ``PL(d) = FSPL(1 m, f_c) + 10 n log10(d / 1 m)`` (``f_c = 3.5`` GHz,
    ``n = 3``; distances below 1 m count as 1 m) and Rayleigh fading ``h ~ CN(0, 1)`` redrawn
    every slot (first-order Gauss-Markov ``h_t = rho h_{t-1} + sqrt(1 - rho^2) w_t`` if
    ``fading_rho > 0``). Eavesdropper links carry ``eve_extra_loss_db`` of penetration loss.
    Noise ``sigma^2 = -174 dBm/Hz + 10 log10(B) + NF`` (-97 dBm for 10 MHz and 7 dB).
    SINRs and rates are :func:`secrecy_rates`::

        SINR_k     = p_k P g[k, k]     / (sum_{m != k} p_m P g[m, k]     + sigma^2)
        SINR_adv,k = p_k P g_adv[k, k] / (sum_{m != k} p_m P g_adv[m, k] + sigma^2)

    **Concealed eavesdroppers (footnote 11).** The paper assumes ``|h_k|^2 >= |h_adv,k|^2`` for
    all ``t`` and ``k``. With ``M`` APs the channel of user ``k`` is the vector of its gains from
    every AP; this environment enforces the rule *per link*, ``g_adv[m, k] <= g[m, k]`` for every
    AP ``m`` and every step, which implies both readings of the footnote (the serving-link gain
    ``g[k, k] >= g_adv[k, k]`` and the vector norm ``sum_m g[m, k] >= sum_m g_adv[m, k]``).
    It is enforced by the extra penetration loss and, where a fading draw still violates it,
    by redrawing that eavesdropper fading power from its law conditioned on the rule: an
    ``Exp(1)`` truncated at the allowed maximum, sampled exactly by inverse CDF from the
    violating draw's own excess over that maximum (a fresh ``Exp(1)`` by memorylessness) — the
    same law as redrawing until the rule holds; with Gauss-Markov fading the coefficient's
    phase is kept. ``concealed_eves=False`` lifts the rule. Note that an eavesdropper can still
    out-rate its user: interference differs at the two receivers.

    ## Action Space

    ``Box(-1, 1, (M,), float32)``: action ``a_m`` sets the power coefficient ``p_m in [0, 1]``
    of AP ``m``, which transmits ``p_m * P_max`` (constraint 5b holds by construction). With
    ``power_scale="log"`` (the default) ``a_m`` is the power in dB:
    ``p_m = 10^(-power_range_db (1 - a_m) / 20)``, from ``P_max`` at ``a_m = 1`` down to
    ``-power_range_db`` (40) dB just above ``a_m = -1``, and ``a_m = -1`` switches the AP off;
    with ``"linear"``, ``p_m = (a_m + 1) / 2``. ``core.coefficients(a)`` and
    ``core.action_of(p)`` convert. Out-of-range, NaN/inf or misshaped actions raise
    ``ValueError``.

    Why symmetric and why dB: an untrained Gaussian policy centred on 0 sits mid-range instead
    of on the lower bound (half its samples clipped to "off"), as SB3 recommends; and the
    secrecy-optimal powers spread over decades (an AP whose eavesdropper is close is best a
    few dB to tens of dB below ``P_max``), which a linear scale crowds into a sliver next to 0.
    PPO (100k steps, file settings, 2 seeds, 10 held-out episodes) reached 0.977 of the
    oracle with the dB scale against 0.922 with the linear one (normalised against random:
    0.94 and 0.84); the oracle scores the same on both (581.3 per episode), so the 40 dB
    span costs nothing at the default geometry.

    ## Observation Space

    ``Box(-1, 1, (2 M^2,), float32)``: the channel matrix ``H = [G_user | G_eve]`` (``M`` rows,
    one per AP; ``2M`` columns, users then eavesdroppers) flattened row by row, each entry the
    link's SNR at full power in dB, scaled and clipped:
    ``clip((10 log10(P_max g / sigma^2) - obs_center_db) / obs_scale_db, -1, 1)``
    (defaults: -35 dB -> -1, 25 dB -> 0, 85 dB -> +1: at the default geometry about 0.3% of
    the direct links were above +70 dB, the clip of v0, and none below -35 dB; the direct
    link's largest SNR over 80,000 draws was 84.6 dB).

    | Index                    | Entry                                   | Unit (before scaling) |
    |--------------------------|-----------------------------------------|-----------------------|
    | ``2M m + k``             | AP ``m`` -> user ``k`` gain             | dB SNR at full power  |
    | ``2M m + M + k``         | AP ``m`` -> eavesdropper ``k`` gain     | dB SNR at full power  |

    With ``eve_csi="statistical"`` the eavesdropper entries are their large-scale gains
    (path loss and penetration loss, no fading): the APs know roughly where the eavesdroppers
    are, not their instantaneous channels. The observation at step ``t`` is the channel the
    action at step ``t`` is applied to.

    ## Rewards

    ``varsigma * sum_k [R_k - R_adv,k]^+`` (paper eq. 5a; bit/s/Hz times ``varsigma``),
    always finite and >= 0. ``info["reward_terms"] = {"secrecy_rate": sum}`` (unweighted).

    ``info``: ``secrecy_rate`` (sum, bit/s/Hz), ``user_rates``, ``eve_rates``,
    ``secrecy_rates`` (per user, bit/s/Hz), ``powers`` (per AP, W), ``reward_terms``.

    ## Starting State

    APs on a grid (cell centres of a ``ceil(sqrt(M))``-column grid over the square area) or
    uniform in it (``ap_layout``); user ``k`` uniform in a disc of ``user_radius_m`` around AP
    ``k``; eavesdropper ``k`` uniform in a disc of ``eve_radius_m`` around user ``k`` (both
    clipped to the area). Positions are fixed for the episode; ``reset(options=...)`` accepts
    ``ap_positions_m``, ``user_positions_m``, ``eve_positions_m`` (``(M, 2)`` arrays in m).
    A fresh fading sample is drawn at reset.

    ## Episode End

    No terminal state. Truncated after 100 steps by the registered time limit.

    ## Arguments

    ``gym.make("qdrl/SecrecyPowerControl-v1", **fields)`` with fields of :class:`SecrecyConfig`:

    | Field                | Default  | Unit / range                                          |
    |----------------------|----------|-------------------------------------------------------|
    | ``n_aps``            | 2        | M, [1, 16] (the paper uses 2)                         |
    | ``area_m``           | 200.0    | m, side of the square area                            |
    | ``ap_layout``        | "grid"   | "grid" or "uniform"                                   |
    | ``user_radius_m``    | 50.0     | m                                                     |
    | ``eve_radius_m``     | 15.0     | m                                                     |
    | ``carrier_hz``       | 3.5e9    | Hz                                                    |
    | ``path_loss_exponent`` | 3.0    | [1.5, 6]                                              |
    | ``bandwidth_hz``     | 10e6     | Hz                                                    |
    | ``noise_figure_db``  | 7.0      | dB                                                    |
    | ``p_max_dbm``        | 30.0     | dBm per AP                                            |
    | ``eve_extra_loss_db``| 10.0     | dB on AP -> eavesdropper links                        |
    | ``concealed_eves``   | True     | enforce footnote 11 per link                          |
    | ``fading_rho``       | 0.0      | [0, 1] Gauss-Markov correlation                       |
    | ``eve_csi``          | "perfect"| "perfect" or "statistical"                            |
    | ``varsigma``         | 1.0      | reward scale, > 0                                     |
    | ``obs_center_db``    | 25.0     | dB SNR mapped to 0                                    |
    | ``obs_scale_db``     | 60.0     | dB per observation unit                               |
    | ``power_scale``      | "log"    | "log" (dB, -1 = off) or "linear" action scale         |
    | ``power_range_db``   | 40.0     | dB span of the "log" scale, [1, 200]                  |

    ``render_mode``: ``"ansi"`` (a text table) or ``"rgb_array"`` (a map of APs, users and
    eavesdroppers with their links).

    ## Version History

    * v1: actions in ``[-1, 1]`` on a dB scale (``power_scale``), observations over -35..85
      dB instead of -30..70 dB.
    * v0: first version (actions were the coefficients ``p`` in ``[0, 1]``).
    """

    config_cls = SecrecyConfig
    core_cls = SecrecyCore
    core: SecrecyCore



class SecrecyPowerControlVectorEnv(CoreVectorEnv[SecrecyConfig]):
    """NumPy-batched twin of :class:`SecrecyPowerControlEnv` (same core; see its manual)."""

    config_cls = SecrecyConfig
    core_cls = SecrecyCore


# --------------------------------------------------------------------------------------------
# Rendering (one row of a core)
# --------------------------------------------------------------------------------------------


def _render_ansi(core: SecrecyCore, row: int) -> str:
    m = core.n_aps
    snr_user = radio.linear_to_db(core.user_gains[row] * core.p_max_w / core.noise_w)
    snr_eve = radio.linear_to_db(core.eve_gains[row] * core.p_max_w / core.noise_w)
    info = core.last_info
    lines = [f"SecrecyPowerControl  M={m}  P_max={core.config.p_max_dbm:g} dBm  "
             f"eve_csi={core.config.eve_csi}",
             " k |  AP (m)          user (m)        eve (m)         | now: SNR k->k user  eve",
             ]
    for k in range(m):
        ap, us, ev = (core.ap_positions_m[row, k], core.user_positions_m[row, k],
                      core.eve_positions_m[row, k])
        lines.append(f"{k:2d} | ({ap[0]:6.1f},{ap[1]:6.1f}) ({us[0]:6.1f},{us[1]:6.1f}) "
                     f"({ev[0]:6.1f},{ev[1]:6.1f}) | {snr_user[k, k]:9.1f} dB "
                     f"{snr_eve[k, k]:5.1f} dB")
    if info is not None:
        lines.append(f"last step: secrecy sum {info['secrecy_rate'][row]:.3f} bit/s/Hz")
        lines.append(" k | p_k (W)   R_k  R_adv,k  secrecy (bit/s/Hz)")
        for k in range(m):
            lines.append(f"{k:2d} | {info['powers'][row, k]:7.3f} "
                         f"{info['user_rates'][row, k]:5.2f} "
                         f"{info['eve_rates'][row, k]:8.2f} {info['secrecy_rates'][row, k]:8.2f}")
    return "\n".join(lines) + "\n"


def _render_rgb_array(core: SecrecyCore, row: int) -> np.ndarray:
    m = core.n_aps
    ap, us, ev = core.ap_positions_m[row], core.user_positions_m[row], core.eve_positions_m[row]
    info = core.last_info
    powers = np.ones(m) if info is None else info["powers"][row] / core.p_max_w
    fig = agg_figure(5, 5)
    ax = fig.add_subplot(1, 1, 1)
    colours = [f"C{k % 10}" for k in range(m)]
    for k in range(m):
        draw_links(ax, ap[k], us[k], ev[k], colours[k], float(powers[k]))
        ax.plot([ev[k, 0], us[k, 0]], [ev[k, 1], us[k, 1]], "--", color="grey", lw=0.8)
        label = f"p={powers[k]:.2f}"
        if info is not None:
            label += f"\nsec={info['secrecy_rates'][row, k]:.2f}"
        ax.annotate(label, ap[k], textcoords="offset points", xytext=(5, 5), fontsize=7)
    title = f"Secrecy power control, M={m}"
    if info is not None:
        title += f": secrecy sum {info['secrecy_rate'][row]:.2f} bit/s/Hz"
    draw_scene(ax, ap, us, ev, core.config.area_m, colours, "AP", title)
    return figure_rgb(fig)


def draw_links(ax: Any, ap: NDArray[np.float64], user: NDArray[np.float64],
               eve: NDArray[np.float64], colour: str, power: float) -> None:
    """Draw one transmitting AP's links to its user and to its eavesdropper.

    The user link is drawn in ``colour`` with its width by ``power`` (a fraction of the
    maximum), the eavesdropper's dotted red; positions ``(2,)`` in metres.
    """
    ax.plot([ap[0], user[0]], [ap[1], user[1]], "-", color=colour, lw=0.5 + 3.0 * power,
            alpha=0.8)
    ax.plot([ap[0], eve[0]], [ap[1], eve[1]], ":", color="red", lw=1.0)


def draw_scene(ax: Any, ap: NDArray[np.float64], users: NDArray[np.float64],
               eves: NDArray[np.float64], area_m: float, ap_colours: Sequence[str],
               ap_label: str, title: str) -> None:
    """Draw the APs, users and eavesdroppers over the square area, with axes, title, legend.

    The scene every secrecy env's render shares; positions ``(M, 2)`` in metres, one colour
    per AP.
    """
    ax.scatter(ap[:, 0], ap[:, 1], marker="^", s=120, c=list(ap_colours), edgecolors="k",
               label=ap_label, zorder=3)
    ax.scatter(users[:, 0], users[:, 1], marker="o", s=60,
               c=[f"C{k % 10}" for k in range(len(users))], edgecolors="k", label="user",
               zorder=3)
    ax.scatter(eves[:, 0], eves[:, 1], marker="x", s=60, c="red", label="eavesdropper",
               zorder=3)
    ax.set_xlim(0.0, area_m)
    ax.set_ylim(0.0, area_m)
    ax.set_aspect("equal")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper right", fontsize=7)
