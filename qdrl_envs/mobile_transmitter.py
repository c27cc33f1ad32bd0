"""A mobile (UAV) transmitter serving ground users: ``qdrl/MobileTransmitter-v1``.

The example of paper Sec. III-E / Fig. 8: the agent sets the transmit power per user and the
flight step of the transmitter; the reward is ``w * sum_k R_k``. See
:class:`MobileTransmitterEnv` for the manual and :func:`user_rates` for the rate formula on
its own.

The model of one slot is a handful of operations per user, which NumPy alone would spend on call
overhead, so the core runs compiled kernels over row functions that model one instance
(:mod:`qdrl_envs.jit`); the single env and its vector twin run the very same code.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from gymnasium import spaces

from qdrl_envs import radio
from qdrl_envs.config import EnvConfig, check_bool, check_int, check_real
from qdrl_envs.core import (
    BatchedCore,
    CoreEnv,
    CoreVectorEnv,
    StepResult,
    Uniforms,
    agg_figure,
    figure_rgb,
)
from qdrl_envs.jit import jitable, kernel, plain

__all__ = [
    "MobileTransmitterConfig",
    "MobileTransmitterCore",
    "MobileTransmitterEnv",
    "MobileTransmitterVectorEnv",
    "powers_from_action",
    "user_rates",
]

_RESET_OPTIONS = ("uav_position_m", "user_positions_m")


def powers_from_action(coeffs: Any, p_max_w: float) -> np.ndarray:
    """Map power coefficients in ``[0, 1]`` to transmit powers within the total budget.

    ``P_k = P_max c_k / max(1, sum_j c_j)``: coefficients summing to at most 1 are fractions of
    the budget; larger sums are scaled down onto it, so ``sum_k P_k <= P_max`` always holds
    (and all-ones gives the equal split ``P_max / K``).

    Args:
        coeffs: Coefficients, shape ``(..., K)``.
        p_max_w: Total power budget (W).

    Returns:
        Powers in W, shape ``(..., K)``.
    """
    c = np.asarray(coeffs, dtype=np.float64)
    total = np.maximum(c.sum(axis=-1, keepdims=True), 1.0)
    return p_max_w * c / total


def user_rates(powers_w: Any, gains: Any, noise_w: float, n_users: int | None = None
               ) -> np.ndarray:
    """Per-user rates of the orthogonal (equal bandwidth split) downlink, in bit/s/Hz.

    User ``k`` gets ``1/K`` of the band, so its noise is ``noise_w / K`` and its rate,
    normalised to the whole band, is

    ``R_k = (1/K) log2(1 + P_k g_k / (sigma^2 / K))``,

    with ``sigma^2 = noise_w`` the noise over the whole band. ``K = 1`` gives the Shannon rate
    ``log2(1 + P g / sigma^2)``.

    Args:
        powers_w: Transmit powers (W), shape ``(..., K)``.
        gains: Channel power gains (path gain x fading), shape ``(..., K)``.
        noise_w: Noise power over the whole bandwidth (W).
        n_users: ``K`` (defaults to the last axis length).

    Returns:
        Rates ``R_k`` in bit/s/Hz of the whole band, shape ``(..., K)``.
    """
    p = np.asarray(powers_w, dtype=np.float64)
    k = p.shape[-1] if n_users is None else n_users
    return radio.shannon_rate(p * np.asarray(gains, dtype=np.float64) * k / noise_w) / k


@dataclass(frozen=True)
class MobileTransmitterConfig(EnvConfig):
    """Configuration of :class:`MobileTransmitterEnv` (defaults: docs/design.md §3.5).

    Attributes:
        n_users: Ground users ``K``.
        area_m: Side of the square area ``[0, area_m]^2`` (m) holding users and UAV.
        altitude_m: Fixed flight altitude (m).
        max_speed_m_s: UAV speed limit (m/s).
        slot_s: Slot duration (s); the longest step is ``max_speed_m_s * slot_s``.
        p_max_dbm: Total transmit power budget (dBm).
        bandwidth_hz: Total bandwidth (Hz), split equally among the users.
        noise_figure_db: Receiver noise figure (dB).
        carrier_hz: Carrier frequency (Hz) of the log-distance path loss.
        path_loss_exponent: Path-loss exponent (air-to-ground, mostly line of sight).
        rayleigh_fading: Rayleigh block fading per user and slot (not observed).
        user_speed_m_s: Users' random-walk speed (m/s); 0 keeps them static.
        rate_weight: The coefficient ``w`` of the reward ``w * sum_k R_k``.
    """

    n_users: int = 4
    area_m: float = 400.0
    altitude_m: float = 50.0
    max_speed_m_s: float = 20.0
    slot_s: float = 1.0
    p_max_dbm: float = 20.0
    bandwidth_hz: float = 10e6
    noise_figure_db: float = 7.0
    carrier_hz: float = 2.4e9
    path_loss_exponent: float = 2.5
    rayleigh_fading: bool = False
    user_speed_m_s: float = 0.0
    rate_weight: float = 1.0

    def validate(self) -> None:
        """Check every field.

        Raises:
            ValueError: Naming the first invalid field, its value and the allowed range.
        """
        check_int("n_users", self.n_users, low=1, high=256)
        check_real("area_m", self.area_m, 1.0, 1e6)
        check_real("altitude_m", self.altitude_m, 1.0, 1e5)
        check_real("max_speed_m_s", self.max_speed_m_s, 0.0, 1e3)
        check_real("slot_s", self.slot_s, 0.0, 1e4, low_inclusive=False)
        check_real("p_max_dbm", self.p_max_dbm, -50.0, 60.0)
        check_real("bandwidth_hz", self.bandwidth_hz, 1.0, 1e11)
        check_real("noise_figure_db", self.noise_figure_db, 0.0, 30.0)
        check_real("carrier_hz", self.carrier_hz, 1e6, 3e11)
        check_real("path_loss_exponent", self.path_loss_exponent, 1.5, 6.0)
        check_bool("rayleigh_fading", self.rayleigh_fading)
        check_real("user_speed_m_s", self.user_speed_m_s, 0.0, 1e3)
        check_real("rate_weight", self.rate_weight, 0.0, 1e6, low_inclusive=False)

    @property
    def max_step_m(self) -> float:
        """Longest flight step per slot (m)."""
        return self.max_speed_m_s * self.slot_s

    @property
    def max_distance_m(self) -> float:
        """Largest UAV-user distance within the area (m): ``sqrt(2 area^2 + altitude^2)``."""
        return math.sqrt(2.0 * self.area_m ** 2 + self.altitude_m ** 2)

    def noise_w(self) -> float:
        """Noise power over the whole bandwidth (W)."""
        return float(radio.noise_power_w(self.bandwidth_hz, self.noise_figure_db))


# --------------------------------------------------------------------------------------------
# One instance at a time: row functions compiled into the core's kernels (see qdrl_envs.jit)
# --------------------------------------------------------------------------------------------

# The constants the kernels take (the template in qdrl_envs.core), built by
# MobileTransmitterCore. The world draws nothing a pack must describe: fading powers and
# walking directions come as uniforms, read by the model.


class _Model(NamedTuple):
    """The slot model: powers, rates, the flight step and the users' random walk."""

    n_users: int
    snr_at_1m: float
    """SNR of a user 1 m away with the whole power budget, ``P_max g(1 m) K / sigma^2``."""
    neg_exponent: float
    """Minus the path-loss exponent."""
    inv_k_ln2: float
    """``1 / (K ln 2)``: a user's rate ``(1/K) log2(1 + SNR)`` from ``log1p``."""
    p_max_w: float
    """The power budget ``P_max`` (W)."""
    rayleigh_fading: int
    """1 with Rayleigh block fading (``K`` uniforms a slot), else 0."""
    area_m: float
    max_step_m: float
    user_step_m: float
    """How far a user walks in one slot (0: users stand still)."""


class _View(NamedTuple):
    """The observation's scaling (and the geometry of the distances it shows)."""

    n_users: int
    altitude_sq: float
    """Squared flight altitude (m^2)."""
    inv_max_distance: float
    """``1 / max_distance_m``: distances to ``[0, 1]``."""
    pos_scale: float
    """``2 / area_m``: positions to ``[-1, 1]``."""


@jitable
def _place_row(view, uav, users, distance, obs):  # pragma: no cover - compiled
    """Write one instance's UAV-user distances and its observation (layout: the manual)."""
    k, scale = view.n_users, view.pos_scale
    # 0 <= x <= A holds exactly and d <= sqrt(2 A^2 + H^2) up to a few ulps of float64 (no
    # overflow: A, H <= 1e6 m); the float32 cast removes such overshoots, so no clipping.
    for i in range(k):
        x, y = users[i, 0], users[i, 1]
        dx, dy = x - uav[0], y - uav[1]
        distance[i] = d = np.sqrt(dx * dx + dy * dy + view.altitude_sq)
        obs[i] = d * view.inv_max_distance
        obs[k + 2 + 2 * i] = x * scale - 1.0
        obs[k + 3 + 2 * i] = y * scale - 1.0
    obs[k] = uav[0] * scale - 1.0
    obs[k + 1] = uav[1] * scale - 1.0


@jitable
def _step_row(model, view, action, u, uav, users, distance, rates, powers, new_distance,
              obs):  # pragma: no cover - compiled
    """Serve one instance from where the UAV is, fly, move the users; returns the sum rate.

    ``u`` holds this slot's uniforms: ``K`` fading powers (if fading), then ``K`` user
    directions (if users move). ``distance`` is read; the new distances and observation go to
    ``new_distance`` and ``obs``; ``uav`` and ``users`` are updated in place.
    """
    k, area = model.n_users, model.area_m
    total = 0.0
    for i in range(k):
        total += 0.5 * (action[i] + 1.0)  # c_k = (a_k + 1) / 2
    budget = max(total, 1.0)  # P_k = P_max c_k / max(1, sum_j c_j)
    sum_rate = 0.0
    for i in range(k):
        share = 0.5 * (action[i] + 1.0) / budget
        # SNR at full budget, (P_max g_k) / (sigma^2 / K), times the share of the budget.
        snr = model.snr_at_1m * distance[i] ** model.neg_exponent
        if model.rayleigh_fading:
            snr *= -np.log1p(-u[i])  # Rayleigh block fading: Exp(1) power, inverse CDF
        rates[i] = rate = np.log1p(share * snr) * model.inv_k_ln2  # (1/K) log2(1 + SNR_k)
        powers[i] = model.p_max_w * share
        sum_rate += rate
    # Fly: the step vector (dx, dy) is scaled onto the unit disc (speed limit), then the
    # position is clamped to the area (the UAV cannot leave it).
    reach = model.max_step_m / max(np.hypot(action[k], action[k + 1]), 1.0)
    uav[0] = min(max(uav[0] + action[k] * reach, 0.0), area)
    uav[1] = min(max(uav[1] + action[k + 1] * reach, 0.0), area)
    user_step = model.user_step_m
    if user_step > 0.0:  # a random-walk step in a uniformly random direction, clamped
        first = k * model.rayleigh_fading
        for i in range(k):
            angle = 2.0 * np.pi * u[first + i]
            users[i, 0] = min(max(users[i, 0] + user_step * np.cos(angle), 0.0), area)
            users[i, 1] = min(max(users[i, 1] + user_step * np.sin(angle), 0.0), area)
    _place_row(view, uav, users, new_distance, obs)
    return sum_rate


@kernel
def _place_kernel(view, idx, uav, users, distance, obs):  # pragma: no cover - compiled
    view = _View(*view)
    for j in range(idx.shape[0]):
        m = idx[j]
        _place_row(view, uav[m], users[m], distance[m], obs[m])


@kernel
def _step_kernel(model, view, actions, uniforms, uav, users, distance, rates, powers, sum_rate,
                 new_distance, obs):  # pragma: no cover - compiled
    model = _Model(*model)
    view = _View(*view)
    for m in range(actions.shape[0]):
        sum_rate[m] = _step_row(model, view, actions[m], uniforms[m], uav[m], users[m],
                                distance[m], rates[m], powers[m], new_distance[m], obs[m])


# --------------------------------------------------------------------------------------------
# The batched core and the environments
# --------------------------------------------------------------------------------------------


class MobileTransmitterCore(BatchedCore[MobileTransmitterConfig]):
    """The physics of :class:`MobileTransmitterEnv` on ``num_envs`` instances (see its manual).

    State (leading axis ``N``): ``uav`` ``(N, 2)`` and ``users`` ``(N, K, 2)`` positions (m),
    ``distance_m`` ``(N, K)`` UAV-user 3D distances. While ``rendering`` (the env has a render
    mode), each instance's UAV positions since its reset are kept in ``trails[i]``.

    Randomness per instance, from :class:`qdrl_envs.core.Uniforms` (so the vector twin
    reproduces the single env exactly): ``random(2K + 2)`` at reset (UAV, then users), and
    every step ``K`` uniforms for the fading powers (with ``rayleigh_fading``) followed by
    ``K`` for the users' directions (with ``user_speed_m_s > 0``); none otherwise.

    The model runs in compiled kernels (``_step_kernel``, ``_place_kernel``) over row
    functions; the constants they need are packed once (``_model``, ``_view``: the packs
    :class:`_Model`, :class:`_View` as plain tuples, the template of :mod:`qdrl_envs.core`).
    """

    not_state = ("trails",)  # a picture's history, not the physics

    def render_ansi(self, row: int = 0) -> str:
        """Row ``row`` as text (see the env manual's Rendering)."""
        return _render_ansi(self, row)

    def render_rgb_array(self, row: int = 0) -> np.ndarray:
        """Row ``row`` as an RGB picture (see the env manual's Rendering)."""
        return _render_rgb_array(self, row)

    def __init__(self, config: MobileTransmitterConfig, num_envs: int) -> None:
        super().__init__(config, num_envs)
        k = config.n_users
        self.n_users = k
        self.single_action_space = spaces.Box(
            -1.0, 1.0, (k + 2,), dtype=np.float32)
        self.single_observation_space = spaces.Box(
            np.concatenate([np.zeros(k), -np.ones(2 + 2 * k)]).astype(np.float32),
            np.ones(3 * k + 2, dtype=np.float32), dtype=np.float32)
        self.p_max_w = float(radio.dbm_to_watt(config.p_max_dbm))
        self.noise_w = config.noise_w()
        # Log-distance path gain g(d) = g(1 m) d^-n for d >= 1 m (d >= altitude >= 1 here).
        self._g1 = float(radio.path_gain(1.0, config.carrier_hz, config.path_loss_exponent))
        self._neg_n = -float(config.path_loss_exponent)
        self._area = float(config.area_m)
        self._w = float(config.rate_weight)
        fading = int(bool(config.rayleigh_fading))
        user_step = config.user_speed_m_s * config.slot_s
        # What the kernels take, as plain tuples (numba dispatches those fast).
        snr_g1 = self.p_max_w * k / self.noise_w * self._g1  # SNR at 1 m, full budget
        self._model = plain(_Model(
            n_users=k, snr_at_1m=snr_g1, neg_exponent=self._neg_n,
            inv_k_ln2=1.0 / (k * math.log(2.0)), p_max_w=self.p_max_w, rayleigh_fading=fading,
            area_m=self._area, max_step_m=float(config.max_step_m),
            user_step_m=float(user_step)))
        self._view = plain(_View(n_users=k, altitude_sq=float(config.altitude_m) ** 2,
                                 inv_max_distance=1.0 / config.max_distance_m,
                                 pos_scale=2.0 / self._area))
        self._n_uniforms = k * fading + k * (user_step > 0.0)
        self._uniforms = Uniforms(num_envs)
        self._no_uniforms = np.empty((num_envs, 0))
        self.uav = np.zeros((num_envs, 2))
        self.users = np.zeros((num_envs, k, 2))
        self.distance_m = np.ones((num_envs, k))
        self._obs = np.zeros((num_envs, 3 * k + 2), dtype=np.float32)
        self._no_term = np.zeros(num_envs, dtype=bool)
        self.trails: list[list[np.ndarray]] = [[] for _ in range(num_envs)]
        self.last_rates = np.zeros((num_envs, k))
        self.last_powers_w = np.zeros((num_envs, k))

    def _parse_options(self, options: dict[str, Any] | None, count: int
                       ) -> dict[str, np.ndarray]:
        if not options:
            return {}
        unknown = sorted(set(options) - set(_RESET_OPTIONS))
        if unknown:
            raise ValueError(f"unknown reset option(s) {unknown}; valid: {list(_RESET_OPTIONS)}")
        shapes = {"uav_position_m": (2,), "user_positions_m": (self.n_users, 2)}
        out = {}
        for key, value in options.items():
            arr = np.asarray(value, dtype=np.float64)
            if arr.shape not in (shapes[key], (count, *shapes[key])):
                raise ValueError(f"options[{key!r}] must have shape {shapes[key]} or "
                                 f"{(count, *shapes[key])}, got {arr.shape}")
            if not np.all(np.isfinite(arr)) or arr.min() < 0.0 or arr.max() > self._area:
                raise ValueError(f"options[{key!r}] must lie in [0, area_m={self._area}], got "
                                 f"{arr.tolist()}")
            out[key] = np.broadcast_to(arr, (count, *shapes[key]))
        return out

    def reset(self, rngs: Sequence[np.random.Generator], idx: np.ndarray,
              options: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
        """Place users and UAV uniformly in the area (or as ``options`` say)."""
        fixed = self._parse_options(options, len(idx))
        k = self.n_users
        u = self._uniforms.take(rngs, idx, 2 * k + 2).reshape(len(idx), k + 1, 2) * self._area
        self.uav[idx] = fixed.get("uav_position_m", u[:, 0])
        self.users[idx] = fixed.get("user_positions_m", u[:, 1:])
        # New arrays: the step infos handed out hold the old ones; other instances keep theirs.
        self.distance_m = self.distance_m.copy()
        obs = self._obs.copy()
        _place_kernel(self._view, np.asarray(idx, dtype=np.int64), self.uav, self.users,
                      self.distance_m, obs)
        self._obs = obs
        if self.rendering:
            for i in np.asarray(idx).tolist():
                self.trails[i] = [self.uav[i].copy()]
        return {"uav_position_m": self.uav[idx].copy(),
                "user_positions_m": self.users[idx].copy()}

    def path_gains(self) -> np.ndarray:
        """Large-scale power gains UAV -> users at the current positions, ``(N, K)``."""
        return self._g1 * self.distance_m ** self._neg_n

    def step(self, actions: np.ndarray, rngs: Sequence[np.random.Generator]) -> StepResult:
        """Transmit from the current position with the chosen powers, then fly the step."""
        n, k = self.num_envs, self.n_users
        u = (self._uniforms.take(rngs, None, self._n_uniforms) if self._n_uniforms
             else self._no_uniforms)
        rates = np.empty((n, k))
        powers = np.empty((n, k))
        sum_rate = np.empty(n)
        distance = np.empty((n, k))
        obs = np.empty_like(self._obs)  # a new array; the kernel writes every row
        _step_kernel(self._model, self._view, actions, u, self.uav, self.users, self.distance_m,
                     rates, powers, sum_rate, distance, obs)
        reward = sum_rate if self._w == 1.0 else self._w * sum_rate
        self.last_rates, self.last_powers_w = rates, powers
        info = {
            "rates": rates,
            "sum_rate": sum_rate,
            "powers_w": powers,
            "distance_m": self.distance_m,  # where this slot was served from
            "reward_terms": {"sum_rate": reward},
        }
        self.distance_m, self._obs = distance, obs
        if self.rendering:
            for trail, position in zip(self.trails, self.uav, strict=True):
                trail.append(position.copy())
        return StepResult(reward, self._no_term, info)

    def observe(self) -> np.ndarray:
        """Observations ``(N, 3K + 2)`` float32 (layout in :class:`MobileTransmitterEnv`).

        A new array after every reset and step.
        """
        return self._obs


class MobileTransmitterEnv(CoreEnv[MobileTransmitterConfig]):
    r"""A UAV transmitter sets per-user powers and its flight path to maximise the sum rate.

    ## Description

    Paper Sec. III-E, Fig. 8: "a mobile transmitter serves several users. Its action space
    includes transmit power and movement trajectory, while its state space includes
    user-transmitter distances", with reward ``R(t) = w sum_k R_k(t)``. Here the transmitter is
    a UAV at a fixed altitude over a square area ``[0, area_m]^2``, serving ``K`` ground users
    on orthogonal channels (the bandwidth split equally, no interference). The channel is the
    log-distance path loss over the 3D UAV-user distance (free-space reference at 1 m,
    exponent ``path_loss_exponent``, ``qdrl_envs.radio``), optionally with Rayleigh block
    fading per user and slot (unobserved). User ``k``'s rate, normalised to the whole band
    (:func:`user_rates`), is

    ``R_k = (1/K) log2(1 + P_k g_k / (sigma^2 / K))``  [bit/s/Hz],

    ``sigma^2 = -174 dBm/Hz + 10 log10(B) + NF``. With one user and no fading this is exactly
    the Shannon rate ``log2(1 + P g / sigma^2)`` (tested).

    Timing: in each slot the UAV first transmits from its current position with the chosen
    powers (the distances in the observation are those of this slot), then flies the chosen
    step; users (if ``user_speed_m_s > 0``) then take a random-walk step of
    ``user_speed_m_s * slot_s`` in a uniformly random direction. Positions are clamped to the
    area: a UAV or user that would leave it stops at the border (physics, not action repair).

    Randomness: all of it comes from ``np_random`` as uniforms ``u`` in ``[0, 1)``, turned into
    the distributions above by exact transforms. Reset draws ``2K + 2`` (the UAV's ``(x, y)``,
    then each user's, times ``area_m``); each step draws ``K`` fading powers ``-ln(1 - u)``
    (``Exp(1)``, i.e. ``|h|^2`` of a ``CN(0, 1)`` coefficient) if ``rayleigh_fading``, then
    ``K`` walk directions at angle ``2 pi u`` if ``user_speed_m_s > 0``, and nothing
    otherwise. The vector twin draws each sub-env's uniforms from that sub-env's generator in
    the same order, so it reproduces the single env exactly.

    ## Action Space

    ``Box(-1, 1, (K + 2,), float32)``: entries ``0..K-1`` set the power coefficients
    ``c_k = (a_k + 1) / 2`` in ``[0, 1]`` (symmetric, so that an untrained Gaussian policy
    centred on 0 sits mid-range rather than on the lower bound), mapped to powers within the
    total budget by :func:`powers_from_action`, ``P_k = P_max c_k / max(1, sum_j c_j)`` (all
    ones, ``c = 1``: the equal split ``P_max / K``; all -1: silence); entries
    ``K, K+1`` are the flight step ``(dx, dy)`` in ``[-1, 1]``, in units of
    ``max_speed_m_s * slot_s``, scaled onto the unit disc when longer than 1 so that the speed
    never exceeds ``max_speed_m_s``.

    ## Observation Space

    ``Box(shape=(3K + 2,), float32)``:

    | Entries       | Meaning                           | Scaling                | Bounds  |
    |---------------|-----------------------------------|------------------------|---------|
    | ``0..K-1``    | UAV-user 3D distances (m)         | ``d / sqrt(2A^2+H^2)`` | (0, 1]  |
    | ``K, K+1``    | UAV position ``(x, y)`` (m)       | ``2 x / A - 1``        | [-1, 1] |
    | ``K+2..3K+1`` | user positions ``(x_k, y_k)`` (m) | ``2 x / A - 1``        | [-1, 1] |

    ``A = area_m``, ``H = altitude_m``. Users' positions are included (their GPS reports) so
    that position-seeking policies, such as the hover-at-centroid baseline, act on the
    observation alone.

    ## Rewards

    ``r = w sum_k R_k`` (paper Sec. III-E), ``w = rate_weight``, ``R_k`` in bit/s/Hz as above;
    ``info["reward_terms"] = {"sum_rate": r}``. ``info``: ``rates`` (``R_k``, ``(K,)``),
    ``sum_rate``, ``powers_w`` (``(K,)``), ``distance_m`` (the distances this slot was served
    at, ``(K,)``); ``reset`` returns ``uav_position_m`` and ``user_positions_m``.

    ## Starting State

    Users and UAV uniformly in the area (or ``reset(options={"uav_position_m": (x, y),
    "user_positions_m": [[x, y], ...]})``).

    ## Episode End

    No terminal state: the registered id truncates after 100 slots.

    ## Arguments

    ``gym.make("qdrl/MobileTransmitter-v1", **fields)``, the fields of
    :class:`MobileTransmitterConfig`:

    | Field                  | Default | Unit / meaning                                |
    |------------------------|---------|-----------------------------------------------|
    | ``n_users``            | 4       | users ``K``                                   |
    | ``area_m``             | 400     | m, side of the square area                    |
    | ``altitude_m``         | 50      | m, UAV altitude                               |
    | ``max_speed_m_s``      | 20      | m/s, UAV speed limit                          |
    | ``slot_s``             | 1       | s, slot duration                              |
    | ``p_max_dbm``          | 20      | dBm, total transmit power budget              |
    | ``bandwidth_hz``       | 10e6    | Hz, split equally among users                 |
    | ``noise_figure_db``    | 7       | dB                                            |
    | ``carrier_hz``         | 2.4e9   | Hz                                            |
    | ``path_loss_exponent`` | 2.5     | air-to-ground log-distance exponent           |
    | ``rayleigh_fading``    | False   | Rayleigh block fading per user and slot       |
    | ``user_speed_m_s``     | 0       | m/s, users' random walk (0: static)           |
    | ``rate_weight``        | 1       | ``w`` in ``w sum_k R_k``                      |

    ## Version History

    * v1: power entries of the action in ``[-1, 1]`` (``c_k = (a_k + 1) / 2``).
    * v0: Initial version (power entries were the coefficients ``c_k`` in ``[0, 1]``).
    """

    config_cls = MobileTransmitterConfig
    core_cls = MobileTransmitterCore
    core: MobileTransmitterCore



class MobileTransmitterVectorEnv(CoreVectorEnv[MobileTransmitterConfig]):
    """NumPy-batched twin of :class:`MobileTransmitterEnv` (same physics and manual)."""

    config_cls = MobileTransmitterConfig
    core_cls = MobileTransmitterCore


# --------------------------------------------------------------------------------------------
# Rendering (one row of a core)
# --------------------------------------------------------------------------------------------


def _render_ansi(core: MobileTransmitterCore, row: int) -> str:
    c = core
    x, y = c.uav[row]
    lines = [f"MobileTransmitter UAV at ({x:.1f}, {y:.1f}) m, sum rate "
             f"{c.last_rates[row].sum():.3f} bit/s/Hz"]
    for k in range(c.n_users):
        ux, uy = c.users[row, k]
        lines.append(f"  user {k:2d} at ({ux:7.1f}, {uy:7.1f}) m  distance "
                     f"{c.distance_m[row, k]:7.1f} m  power {c.last_powers_w[row, k]:.4f} W  "
                     f"rate {c.last_rates[row, k]:.3f}")
    return "\n".join(lines)


def _render_rgb_array(core: MobileTransmitterCore, row: int) -> np.ndarray:
    c = core
    fig = agg_figure(4.8, 4.8)
    ax = fig.add_subplot(1, 1, 1)
    trail = np.array(c.trails[row] or [c.uav[row]])
    ax.plot(trail[:, 0], trail[:, 1], "-", color="tab:red", lw=1, label="UAV trajectory")
    ax.plot(*c.uav[row], "^", color="tab:red", ms=10, label="UAV")
    ax.plot(c.users[row, :, 0], c.users[row, :, 1], "o", color="tab:blue", label="users")
    ax.set_xlim(0, c._area)
    ax.set_ylim(0, c._area)
    ax.set_aspect("equal")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.set_title(f"sum rate {c.last_rates[row].sum():.2f} bit/s/Hz")
    ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    return figure_rgb(fig)
