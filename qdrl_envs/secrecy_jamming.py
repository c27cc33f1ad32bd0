"""``qdrl/SecrecyJamming-v0``: transmitters and friendly jammers against eavesdroppers (Fig. 9).

A PettingZoo ``ParallelEnv`` built on the physics of ``qdrl/SecrecyPowerControl-v1``
(:mod:`qdrl_envs.secrecy`): the same geometry, channels, concealment rule and observations
(:class:`SecrecyJammingCore` *is* a :class:`~qdrl_envs.secrecy.SecrecyCore`, with a step of its
own), and the same rate maths (:func:`~qdrl_envs.secrecy.rate_operator`,
:func:`~qdrl_envs.secrecy.secrecy_from_operator`) with the jamming added to each receiver's
noise. Written once:

* :func:`jamming_power` and :func:`jamming_rates` — the pure jamming model (public, so anyone
  can check it; with no jamming it is :func:`~qdrl_envs.secrecy.secrecy_rates`);
* :class:`SecrecyJammingCore` — the model on ``N`` instances (NumPy-batched like its parent);
* :class:`SecrecyJammingEnv` — the ParallelEnv (its docstring is the manual), on one instance.

``parallel_env(**kwargs)`` and ``env(**kwargs)`` (the AEC form) are PettingZoo's usual entry
points; ``qdrl_envs.make_parallel("qdrl/SecrecyJamming-v0", **kwargs)`` goes through the
registry (:mod:`qdrl_envs.marl`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces
from numpy.typing import ArrayLike, NDArray

from qdrl_envs import radio
from qdrl_envs._parallel import CoreParallelEnv
from qdrl_envs.config import check_choice, check_int, check_real
from qdrl_envs.core import StepResult, agg_figure, figure_rgb
from qdrl_envs.secrecy import (
    SecrecyConfig,
    SecrecyCore,
    draw_links,
    draw_scene,
    rate_operator,
    secrecy_from_operator,
)

__all__ = [
    "REWARD_MODES",
    "ROLES",
    "SecrecyJammingConfig",
    "SecrecyJammingCore",
    "SecrecyJammingEnv",
    "env",
    "jamming_power",
    "jamming_rates",
    "parallel_env",
]

ROLES: tuple[str, ...] = ("tx", "jam", "choose")
"""Values of the entries of :attr:`SecrecyJammingConfig.roles`."""

REWARD_MODES: tuple[str, ...] = ("individual", "team")
"""Values of :attr:`SecrecyJammingConfig.reward_mode`."""

_RESET_OPTIONS = ("ap_positions_m", "user_positions_m", "eve_positions_m")


# --------------------------------------------------------------------------------------------
# The jamming model
# --------------------------------------------------------------------------------------------


def jamming_power(gains: ArrayLike, beams_w: ArrayLike, beam_gain: float = 1.0,
                  user_leakage: float = 1.0) -> NDArray[np.float64]:
    """Jamming power each AP delivers at each receiver, ``(..., M, 2M)`` in W.

    AP ``j`` radiates ``beams_w[j, e]`` W of artificial noise on a beam matched to
    eavesdropper ``e``'s channel. That eavesdropper receives it with the beam's gain
    ``beam_gain`` on top of the link's power gain; every other receiver with the link's gain
    alone (under Rayleigh fading a beam matched to one channel is independent of the others:
    ``E|h^H w|^2 = |w|^2``). Users receive it through their channels too, scaled by
    ``user_leakage`` (1: no null steering)::

        J[j, k]     = user_leakage * g_user[j, k] * sum_e beams_w[j, e]        (user k)
        J[j, M + e] = g_eve[j, e] * (sum_f beams_w[j, f] + (beam_gain - 1) beams_w[j, e])

    Args:
        gains: Channels ``[G_user | G_eve]``, shape ``(..., M, 2M)`` (AP ``j`` -> receiver).
        beams_w: Jamming powers in W per AP and target eavesdropper, shape ``(..., M, M)``.
        beam_gain: Linear power gain of a beam at its target (>= 1).
        user_leakage: Linear factor on the jamming reaching users (in ``[0, 1]``).

    Returns:
        ``J`` of shape ``(..., M, 2M)``; receiver ``r`` sees ``sum_j J[j, r]``.
    """
    g = np.asarray(gains, dtype=np.float64)
    b = np.asarray(beams_w, dtype=np.float64)
    m = b.shape[-1]
    total = b[..., 0]
    for e in range(1, m):  # index order, elementwise: the same bits at any batch size
        total = total + b[..., e]
    contrib = g * total[..., None]
    if user_leakage != 1.0:
        contrib[..., :m] *= user_leakage
    if beam_gain != 1.0:
        contrib[..., m:] += (beam_gain - 1.0) * b * g[..., m:]
    return contrib


def _received(contrib: NDArray[np.float64]) -> NDArray[np.float64]:
    """``sum_j contrib[..., j, :]`` in index order (``(..., 2M)``)."""
    out = contrib[..., 0, :].copy()
    for j in range(1, contrib.shape[-2]):
        out += contrib[..., j, :]
    return out


def _received_without_each(contrib: NDArray[np.float64]) -> NDArray[np.float64]:
    """``out[..., j, :] = sum_{i != j} contrib[..., i, :]``, exact masked sums in index order.

    Never ``total - contrib[j]`` (which cancels), so a silent AP ``j`` gives exactly the
    total, and each sum is at most the total.
    """
    m = contrib.shape[-2]
    out = np.zeros(contrib.shape)
    for j in range(m):
        for i in range(m):
            if i != j:
                out[..., j, :] += contrib[..., i, :]
    return out


def jamming_rates(
    g_user: ArrayLike,
    g_eve: ArrayLike,
    p: ArrayLike,
    q: ArrayLike,
    p_max_w: float,
    noise_w: float,
    beam_gain_db: float = 0.0,
    user_leakage_db: float = 0.0,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Rates of users and eavesdroppers, secrecy rates and jamming under friendly jamming.

    AP ``k`` sends user ``k``'s stream with power ``p_k P_max`` (eavesdropper ``k`` tries to
    decode it; other streams interfere, as in :func:`qdrl_envs.secrecy.secrecy_rates`) and
    radiates ``q[k, e] P_max`` of artificial noise on a beam at eavesdropper ``e``
    (:func:`jamming_power`). The jamming ``J_r`` received at receiver ``r`` adds to its
    noise::

        SINR_k     = p_k P g_user[k, k] / (sum_{m != k} p_m P g_user[m, k] + J_k + noise)
        SINR_adv,k = p_k P g_eve[k, k]  / (sum_{m != k} p_m P g_eve[m, k]  + J_M+k + noise)
        R = log2(1 + SINR),   secrecy_k = max(R_k - R_adv,k, 0)

    With ``q = 0`` this is exactly (bit for bit) :func:`~qdrl_envs.secrecy.secrecy_rates`.
    The environment evaluates this very computation on the channels it showed.

    Args:
        g_user: Power gains AP ``m`` -> user ``k``, shape ``(..., M, M)``.
        g_eve: Power gains AP ``m`` -> eavesdropper ``k``, shape ``(..., M, M)``.
        p: Data power coefficients, shape ``(..., M)`` (``0`` for an AP that only jams).
        q: Jamming power coefficients per AP and target eavesdropper, shape ``(..., M, M)``
            (an AP's row sums to at most 1 in the environment; the function takes any
            non-negative figures).
        p_max_w: Maximum power per AP in W.
        noise_w: Receiver noise power in W (> 0).
        beam_gain_db: Gain of a jamming beam at its target eavesdropper (dB, >= 0).
        user_leakage_db: Attenuation of the jamming at the users (dB, >= 0; 0 = none).

    Returns:
        ``(user_rates, eve_rates, secrecy_rates, jamming_w)``: the first three ``(..., M)`` in
        bit/s/Hz, ``jamming_w`` ``(..., 2M)`` the jamming power in W at each user, then at
        each eavesdropper.

    Raises:
        ValueError: On shapes that do not fit ``(..., M, M)`` / ``(..., M)``, a non-positive
            noise or a negative gain in dB.
    """
    gu = np.asarray(g_user, dtype=np.float64)
    ge = np.asarray(g_eve, dtype=np.float64)
    pw = np.asarray(p, dtype=np.float64) * p_max_w
    qw = np.asarray(q, dtype=np.float64) * p_max_w
    gs, es = gu.shape, ge.shape
    m = gs[-1] if len(gs) >= 2 else -1
    if len(gs) < 2 or gs[-2] != m or es[-2:] != gs[-2:]:
        raise ValueError(f"g_user and g_eve must have shape (..., M, M), got {gs} and {es}")
    if not pw.shape or pw.shape[-1] != m:
        raise ValueError(f"p must have shape (..., M) with M={m}, got {pw.shape}")
    if qw.ndim < 2 or qw.shape[-2:] != (m, m):
        raise ValueError(f"q must have shape (..., M, M) with M={m}, got {qw.shape}")
    if not noise_w > 0:
        raise ValueError(f"noise_w must be > 0, got {noise_w!r}")
    if not (beam_gain_db >= 0 and user_leakage_db >= 0):
        raise ValueError(f"beam_gain_db and user_leakage_db must be >= 0, got "
                         f"{beam_gain_db!r} and {user_leakage_db!r}")
    if gs != es:
        gu, ge = np.broadcast_arrays(gu, ge)
    gains = np.concatenate((gu, ge), axis=-1)
    jam = _received(jamming_power(gains, qw, float(radio.db_to_linear(beam_gain_db)),
                                  float(radio.db_to_linear(-user_leakage_db))))
    user, eve, sec = secrecy_from_operator(rate_operator(gains), pw, noise_w + jam)
    return user, eve, sec, jam


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SecrecyJammingConfig(SecrecyConfig):
    """Configuration of ``qdrl/SecrecyJamming-v0`` (see the env manual for the model).

    Every field of :class:`~qdrl_envs.secrecy.SecrecyConfig` (geometry, channels, CSI,
    observation and power scales, ``varsigma``) means what it means there; ``n_aps`` defaults
    to 3 here. The new fields:

    Attributes:
        roles: One role per AP: ``"tx"`` (serves its user), ``"jam"`` (friendly jammer) or
            ``"choose"`` (the agent picks its role every slot). ``None``: every AP transmits
            but the last, which jams (just ``("tx",)`` when ``n_aps == 1``). At least one AP
            must be able to transmit.
        jam_beam_gain_db: Power gain (dB) of a jamming beam at its target eavesdropper, on top
            of the link's gain (``10 log10 N`` for an ``N``-antenna matched beam: the default
            12 dB is about 16 antennas); 0 is a single-antenna, isotropic jammer. In [0, 40].
        jam_user_leakage_db: Attenuation (dB) of the jamming at the legitimate users: 0 (the
            default) models no null steering, the jamming reaching every user through its
            channel in full; larger values model partial nulls towards the users. In [0, 100].
        jam_user_weight: Weight of the users' rate loss in a jammer's reward, in [0, 1e6]
            (1: a jammer is paid the rate it takes from the eavesdroppers minus the rate it
            takes from the users; 0: eavesdroppers' loss only).
        reward_mode: ``"individual"`` (role-specific rewards, see the manual) or ``"team"``
            (every agent gets ``varsigma`` times the secrecy sum).
        max_cycles: Steps per episode; every agent is truncated after this many, in
            [1, 10_000_000].
    """

    n_aps: int = 3
    roles: tuple[str, ...] | None = None
    jam_beam_gain_db: float = 12.0
    jam_user_leakage_db: float = 0.0
    jam_user_weight: float = 1.0
    reward_mode: str = "individual"
    max_cycles: int = 100

    @property
    def agent_roles(self) -> tuple[str, ...]:
        """The roles per AP, ``roles`` with its ``None`` default resolved."""
        if self.roles is not None:
            return self.roles
        if self.n_aps == 1:
            return ("tx",)
        return ("tx",) * (self.n_aps - 1) + ("jam",)

    def validate(self) -> None:
        """Check every field.

        Raises:
            ValueError: Naming the field, its value and the allowed range.
        """
        super().validate()
        if self.roles is not None:
            if not isinstance(self.roles, tuple):
                raise ValueError(f"roles must be None or a tuple of {list(ROLES)}, got "
                                 f"{self.roles!r}")
            if len(self.roles) != self.n_aps:
                raise ValueError(f"roles must have one entry per AP (n_aps={self.n_aps}), got "
                                 f"{len(self.roles)}: {self.roles!r}")
            for i, role in enumerate(self.roles):
                check_choice(f"roles[{i}]", role, ROLES)
            if all(r == "jam" for r in self.roles):
                raise ValueError(f"roles must let at least one AP transmit ('tx' or 'choose'),"
                                 f" got {self.roles!r}")
        check_real("jam_beam_gain_db", self.jam_beam_gain_db, 0.0, 40.0)
        check_real("jam_user_leakage_db", self.jam_user_leakage_db, 0.0, 100.0)
        check_real("jam_user_weight", self.jam_user_weight, 0.0, 1e6)
        check_choice("reward_mode", self.reward_mode, REWARD_MODES)
        check_int("max_cycles", self.max_cycles, low=1, high=10_000_000)


# --------------------------------------------------------------------------------------------
# The batched core
# --------------------------------------------------------------------------------------------


class SecrecyJammingCore(SecrecyCore):
    """The jamming model on ``num_envs`` instances (see :class:`SecrecyJammingEnv`'s manual).

    Geometry, channel blocks, randomness and observations are :class:`SecrecyCore`'s,
    unchanged (the same seed draws the same network); :meth:`step` scores a joint action
    with :func:`jamming_rates`' maths instead.

    The joint action of instance ``n`` is an array ``(M, 2 + M)``, one row per AP: column 0
    the role (1 jams, 0 transmits), column 1 the power action in ``[-1, 1]`` (the parent's
    :meth:`~SecrecyCore.coefficients` scale), columns ``2..`` the beam-weight actions in
    ``[-1, 1]`` towards eavesdroppers ``0..M-1`` (read only for the AP's targets, see
    :attr:`targets`). :meth:`SecrecyJammingEnv.joint_action` builds it from the agents'
    actions.

    Public state beyond the parent's: ``roles`` (config), ``targets`` ``(M, M)`` bool (which
    eavesdroppers AP ``j`` can aim at when it jams), ``beam_gain``, ``user_leakage`` (linear),
    ``team`` (team rewards).
    """

    config: SecrecyJammingConfig

    def __init__(self, config: SecrecyJammingConfig, num_envs: int) -> None:
        super().__init__(config, num_envs)
        m = self.n_aps
        self.roles = config.agent_roles
        self.beam_gain = float(radio.db_to_linear(config.jam_beam_gain_db))
        self.user_leakage = float(radio.db_to_linear(-config.jam_user_leakage_db))
        self.targets = np.array([[e != j and self.roles[e] != "jam" for e in range(m)]
                                 for j in range(m)])
        self.targets.flags.writeable = False
        # The beams an AP may form: its targets, or, when it has none, one beam at its own
        # eavesdropper, which is idle while its AP jams: an unfocused (isotropic) jammer.
        aim = self.targets.astype(np.float64)
        aim[~self.targets.any(axis=1)] = np.eye(m)[~self.targets.any(axis=1)]
        self._aim = aim
        self._even = aim / aim.sum(axis=1, keepdims=True)
        self.team = config.reward_mode == "team"
        self.action_width = 2 + m

    @property
    def n_agents(self) -> int:
        """Agents per instance: one per AP."""
        return self.n_aps

    def step(self, actions: np.ndarray, rngs: Sequence[np.random.Generator]) -> StepResult:
        """Score joint actions ``(N, M, 2 + M)`` on the current channels, then move on.

        Returns:
            ``reward`` is the team reward ``varsigma * secrecy sum`` ``(N,)``; the agents'
            rewards are ``info["rewards"]`` ``(N, M)``; ``info`` is :meth:`evaluate`'s.
        """
        info = self.evaluate(actions)
        self.last_info = info
        self._advance(rngs)
        return StepResult(self.config.varsigma * info["secrecy_rate"],
                          np.zeros(self.num_envs, dtype=bool), info)

    def evaluate(self, actions: ArrayLike) -> dict[str, Any]:
        """What joint actions would score on the current channels (no state changes).

        Args:
            actions: Joint actions ``(N, M, 2 + M)``; with one instance, any leading shape
                ``(..., M, 2 + M)`` (candidates scored on the same channels, e.g. by a
                search).

        Returns:
            Arrays with the actions' leading axes: ``secrecy_rate`` (the sum), ``user_rates``,
            ``eve_rates``, ``secrecy_rates`` (per user, bit/s/Hz), ``jamming`` (bool, per AP),
            ``powers`` (data, W), ``jam_powers`` (W), ``beam_powers`` (W per AP and target,
            ``(..., M, M)``), ``jamming_w`` (W received per user then eavesdropper,
            ``(..., 2M)``), ``eve_rate_reduction``, ``user_rate_loss`` (per AP, bit/s/Hz, 0
            for transmitters) and ``rewards`` (per AP).
        """
        c, pmax = self.config, self.p_max_w
        a = np.asarray(actions, dtype=np.float64)
        jam = a[..., 0] > 0.5  # (N, M)
        coef = self.coefficients(a[..., 1])
        p_w = np.where(jam, 0.0, coef) * pmax  # data powers
        q_w = np.where(jam, coef, 0.0) * pmax  # jamming powers (all beams)
        w = (a[..., 2:] + 1.0) * 0.5 * self._aim  # beam weights, (N, M, M)
        w_sum = w.sum(axis=-1, keepdims=True)
        split = np.where(w_sum > 0.0, w / np.where(w_sum > 0.0, w_sum, 1.0), self._even)
        beams = q_w[..., None] * split
        contrib = jamming_power(self.gains, beams, self.beam_gain, self.user_leakage)
        jam_rx = _received(contrib)
        # jamming_rates(...) with the channels' operator built ahead of time.
        user, eve, sec = secrecy_from_operator(self._op, p_w, self.noise_w + jam_rx)
        total = sec.sum(axis=-1)
        eve_cut = np.zeros(jam.shape)
        user_cut = np.zeros(jam.shape)
        if q_w.any():
            # Each jammer's share: the rates with that AP silent, everything else as played.
            alone = self.noise_w + _received_without_each(contrib)  # (N, M, 2M)
            user_0, eve_0, _ = secrecy_from_operator(self._op[:, None], p_w[:, None], alone)
            eve_cut = np.where(jam, (eve_0 - eve[:, None]).sum(axis=-1), 0.0)
            user_cut = np.where(jam, (user_0 - user[:, None]).sum(axis=-1), 0.0)
        if self.team:
            rewards = np.broadcast_to((c.varsigma * total)[..., None], jam.shape).copy()
        else:
            rewards = c.varsigma * np.where(jam, eve_cut - c.jam_user_weight * user_cut, sec)
        return {
            "secrecy_rate": total,
            "user_rates": user,
            "eve_rates": eve,
            "secrecy_rates": sec,
            "jamming": jam,
            "powers": p_w,
            "jam_powers": q_w,
            "beam_powers": beams,
            "jamming_w": jam_rx,
            "eve_rate_reduction": eve_cut,
            "user_rate_loss": user_cut,
            "rewards": rewards,
        }

    def render_ansi(self, row: int = 0) -> str:
        """Row ``row`` as text (``render_mode="ansi"`` in the env manual)."""
        return _render_ansi(self, row)

    def render_rgb_array(self, row: int = 0) -> np.ndarray:
        """Row ``row`` as an RGB picture (``render_mode="rgb_array"`` in the env manual)."""
        return _render_rgb_array(self, row)


# --------------------------------------------------------------------------------------------
# The environment
# --------------------------------------------------------------------------------------------


class SecrecyJammingEnv(CoreParallelEnv[SecrecyJammingConfig]):
    r"""Transmitters and friendly jammers keep users' messages from eavesdroppers (Fig. 9).

    ## Description

    The multi-agent twin of ``qdrl/SecrecyPowerControl-v1`` that the paper sketches in
    Sec. III-F 3 and Fig. 9: distinct agent roles, with their own action spaces and rewards,
    collaborating for physical-layer security. The network is exactly that env's (Sec. VI-B,
    eq. 5a, footnote 11): ``M`` single-antenna APs, user ``k`` near AP ``k``, eavesdropper
    ``k`` hiding near user ``k`` and trying to decode user ``k``'s stream, the same path loss,
    Rayleigh (or Gauss-Markov) fading, penetration loss and concealment rule
    ``g_adv[m, k] <= g[m, k]`` on every link, drawn from the same random numbers: for the
    same seed and config fields, both envs see the same geometry and channels slot by slot.

    Each AP is an agent (``ap_0 .. ap_{M-1}``) with a **role** (``roles``): a **transmitter**
    sends its user's stream with power ``p_k P_max``; a **friendly jammer** sends no data and
    radiates artificial noise, ``q_j P_max`` in all, split over beams matched to the
    eavesdroppers it targets (those of the other APs that may transmit). With
    ``roles[j] = "choose"`` the agent picks its role every slot. The user (and the
    eavesdropper) of an AP that jams is idle for that slot: it gets no stream, so no rate.

    Jamming is noise at every receiver (nobody can decode it). A beam at eavesdropper ``e``
    reaches it with gain ``G_b`` (``jam_beam_gain_db``) on top of the link's power gain; all
    other receivers, **the legitimate users included**, receive the jammer's total power
    through their own channels (a beam matched to one Rayleigh channel is independent of the
    others). By default there is **no null steering**: the users suffer the jamming in full
    (``jam_user_leakage_db = 0``); a positive ``jam_user_leakage_db`` models partial nulls
    towards them. So jamming trades the eavesdroppers' rate against the users'. The 10 dB
    penetration loss that conceals the eavesdroppers (``eve_extra_loss_db``) weakens the
    jammer's links to them as much as the transmitters', so jamming pays only where the beam
    gain and the instantaneous channels favour it. At the defaults (a grid search over the
    joint powers and beam split on 1000 slots) the best secrecy sum with jamming averaged
    6.37 bit/s/Hz against 5.52 with the jammer silent, jamming helping in 69% of the slots;
    with both transmitters at full power, a full-power jammer (equal split) lifted it from
    2.52 to 3.56. A jammer must learn when, and at whom, to jam, and the transmitters how
    hard to push against it. Per receiver, with ``J`` the jamming it receives
    (:func:`jamming_power`)::

        J_k     = l * sum_j Q_j P g[j, k]                                 (user k, l = leakage)
        J_adv,e = sum_j P g_adv[j, e] (Q_j + (G_b - 1) q_j,e)             (eavesdropper e)
        SINR_k     = p_k P g[k, k]     / (sum_{m != k} p_m P g[m, k]     + J_k     + sigma^2)
        SINR_adv,k = p_k P g_adv[k, k] / (sum_{m != k} p_m P g_adv[m, k] + J_adv,k + sigma^2)

    (``Q_j = sum_e q_j,e``; ``p = 0`` for jammers, ``q = 0`` for transmitters), and
    ``R = log2(1 + SINR)``: :func:`jamming_rates`. With every jammer silent the rates are
    :func:`~qdrl_envs.secrecy.secrecy_rates` with those APs off, bit for bit.

    The beam gain is applied as a constant on the link's single-antenna fading draw (an
    ``N``-antenna matched beam has mean gain ``N``); a matched beam needs the eavesdropper's
    instantaneous channel at the jammer, which ``eve_csi="statistical"`` denies the agents
    (set ``jam_beam_gain_db`` accordingly).

    ## Action Spaces (per role)

    All ``Box(-1, 1, (n,), float32)``; a *power action* sets a coefficient in ``[0, 1]`` on
    the env's power scale (``power_scale``, ``power_range_db``: on the default dB scale
    ``1`` is ``P_max``, ``-1`` is off; see ``SecrecyPowerControl-v1``).

    | Role     | n                 | Entries                                                |
    |----------|-------------------|--------------------------------------------------------|
    | tx       | 1                 | data power action                                      |
    | jam      | 1 (+ T)           | jamming power action (then T beam weights)             |
    | choose   | 2 (+ T)           | role (``> 0`` jams), power action (then T weights)     |

    ``T`` is the number of eavesdroppers the AP can target (those of the other APs whose role
    is not ``"jam"``; listed by ``targets(agent)``); the weights are given only when
    ``T >= 2``. Weight ``w`` gives beam share ``(w + 1) / 2`` normalised over the targets (all
    ``-1``: an equal split); with one target the whole jamming power is on it; with none the
    jammer radiates unfocused. A ``"choose"`` agent that transmits ignores its weights.
    Actions are checked, not repaired: a NaN/inf, misshaped or out-of-range action, a missing
    live agent or an unknown agent raises ``ValueError`` naming the agent.

    ## Observation Space (every agent)

    ``Box(-1, 1, (2 M^2 + M,), float32)``: the scaled channel matrix of
    ``SecrecyPowerControl-v1`` (``2 M^2`` entries: AP ``m``'s SNR at full power to user ``k``
    at ``2M m + k``, to eavesdropper ``k`` at ``2M m + M + k``; ``eve_csi`` applies), then the
    one-hot index of the agent's AP (``M`` entries). ``state()`` (``state_space``) is the
    channel matrix alone, for centralised critics. The observation at step ``t`` is the
    channel the actions at step ``t`` act on.

    ## Rewards

    ``reward_mode="individual"`` (the default; paper Fig. 9: "separate reward functions"):

    * a transmitter gets ``varsigma * [R_k - R_adv,k]^+``, its own user's secrecy rate;
    * a jammer ``j`` gets ``varsigma * (sum_k (R_adv,k^(-j) - R_adv,k) - jam_user_weight *
      sum_k (R_k^(-j) - R_k))``, where ``^(-j)`` is the rate with jammer ``j`` silent and
      everything else as played: the eavesdroppers' rate (SINR) it took away, minus what it
      took from the users (both sums >= 0; a silent jammer gets exactly 0).

    ``reward_mode="team"``: every agent gets ``varsigma * sum_k [R_k - R_adv,k]^+``.

    ``infos[agent]``: ``role`` (this slot's, ``"tx"`` or ``"jam"``), ``power_w`` (its data or
    jamming power), ``user_rate``, ``eve_rate``, ``secrecy_rate`` (of its own user, bit/s/Hz;
    0 while it jams), ``eve_rate_reduction``, ``user_rate_loss`` (its jamming's effect, 0
    while it transmits), ``secrecy_sum`` (the shared objective, eq. 5a, over all users),
    ``team_reward`` (``varsigma * secrecy_sum``, what ``reward_mode="team"`` pays every agent)
    and ``reward_terms`` (the unweighted parts of its reward). The full arrays of the last step
    are ``env.core.last_info``.

    ## Starting State

    As ``SecrecyPowerControl-v1`` (APs on a grid or uniform, users and eavesdroppers in discs;
    ``reset(options=...)`` accepts ``ap_positions_m``, ``user_positions_m``,
    ``eve_positions_m``). Other option keys are ignored with a warning (PettingZoo's API test
    passes one).

    ## Episode End

    No terminal state; every agent is truncated after ``max_cycles`` (100) steps, and
    ``agents`` is then empty until ``reset``.

    ## Arguments

    ``parallel_env(**fields)``, ``env(**fields)`` (AEC) or
    ``qdrl_envs.make_parallel("qdrl/SecrecyJamming-v0", **fields)``, with the fields of
    :class:`SecrecyJammingConfig`: every ``SecrecyPowerControl-v1`` field with its default
    (``area_m`` 200, ``p_max_dbm`` 30, ``eve_extra_loss_db`` 10, ``eve_csi`` "perfect",
    ``power_scale`` "log", ...) but ``n_aps``, and:

    | Field                  | Default      | Unit / range                                  |
    |------------------------|--------------|-----------------------------------------------|
    | ``n_aps``              | 3            | M, [1, 16]                                    |
    | ``roles``              | None         | per AP "tx" / "jam" / "choose"; None: all tx  |
    |                        |              | but the last, which jams                      |
    | ``jam_beam_gain_db``   | 12.0         | dB at the target, [0, 40] (0: isotropic)      |
    | ``jam_user_leakage_db``| 0.0          | dB less jamming at users, [0, 100] (0: none)  |
    | ``jam_user_weight``    | 1.0          | weight of users' loss in a jammer's reward    |
    | ``reward_mode``        | "individual" | "individual" or "team"                        |
    | ``max_cycles``         | 100          | steps per episode                             |

    ``render_mode``: ``"ansi"`` (a text table) or ``"rgb_array"`` (a map with the data links
    and the jamming beams).

    ## Baselines

    ``qdrl_envs.marl.make_baseline(name, env)`` with ``name`` in ``random``, ``full-power``
    (transmitters at ``P_max``, jammers silent), ``full-power-jam`` (jammers at ``P_max`` too,
    equal beams) and ``oracle`` (coordinate ascent on the true channels); see
    :mod:`qdrl_envs.baselines.secrecy_jamming`. Each maps a dict of observations to a dict of
    actions (``predict``) or answers one agent (``act``).

    ## Version History

    * v0: first version.
    """

    metadata: ClassVar[dict[str, Any]] = {"name": "secrecy_jamming_v0",
                                          **CoreParallelEnv.metadata}
    config_cls = SecrecyJammingConfig
    core_cls = SecrecyJammingCore
    agent_prefix = "ap"
    reset_options = _RESET_OPTIONS
    config: SecrecyJammingConfig
    core: SecrecyJammingCore
    observation_spaces: dict[str, spaces.Box]
    action_spaces: dict[str, spaces.Box]

    # -- spaces ------------------------------------------------------------------------------

    def _make_spaces(self) -> tuple[dict[str, spaces.Box], dict[str, spaces.Box], spaces.Box]:
        m = self.core.n_aps
        self.roles: dict[str, str] = dict(zip(self.possible_agents, self.core.roles,
                                              strict=True))
        self._targets = {a: tuple(int(e) for e in np.flatnonzero(self.core.targets[j]))
                         for a, j in self._index.items()}
        self._one_hot = np.eye(m, dtype=np.float32)
        obs_dim = 2 * m * m + m
        observation_spaces = {a: spaces.Box(-1.0, 1.0, (obs_dim,), dtype=np.float32)
                              for a in self.possible_agents}
        action_spaces = {a: spaces.Box(-1.0, 1.0, (self._action_width(a),), dtype=np.float32)
                         for a in self.possible_agents}
        return (observation_spaces, action_spaces,
                spaces.Box(-1.0, 1.0, (2 * m * m,), dtype=np.float32))

    def _action_width(self, agent: str) -> int:
        role, n_targets = self.roles[agent], len(self._targets[agent])
        weights = n_targets if n_targets >= 2 else 0
        return {"tx": 1, "jam": 1 + weights, "choose": 2 + weights}[role]

    def targets(self, agent: str) -> tuple[int, ...]:
        """The eavesdroppers ``agent`` can aim its jamming at (its beam weights, in order)."""
        self._agent(agent)
        return self._targets[agent]

    @property
    def np_random(self) -> np.random.Generator:
        """The generator of all randomness (seeded by ``reset(seed=...)``)."""
        if self._instance_rngs is None:
            self._reseed(None)
        return self._instance_rngs

    # -- episode -----------------------------------------------------------------------------

    def _agent_label(self, agent: str) -> str:
        return f"agent {agent!r} ({self.roles[agent]})"

    def joint_action(self, actions: Mapping[str, Any]) -> np.ndarray:
        """Check the agents' actions and lay them out as the core's joint action ``(M, 2+M)``.

        Raises:
            ValueError: If a live agent has no action, an agent is unknown or not live, or an
                action is misshaped, NaN/inf or outside its space (naming the agent).
        """
        joint = np.ones((self.core.n_aps, self.core.action_width))  # weights: full on all
        joint[:, 0] = 0.0
        for agent, act in self._checked_actions(actions).items():
            j, role = self._index[agent], self.roles[agent]
            if role == "choose":
                jams, act = act[0] > 0.0, act[1:]
            else:
                jams = role == "jam"
            joint[j, 0] = 1.0 if jams else 0.0
            joint[j, 1] = act[0]
            if act.shape[0] > 1:
                joint[j, 2 + np.asarray(self._targets[agent])] = act[1:]
        return joint

    def agent_action(self, agent: str, *, jam: bool, power: float,
                     weights: ArrayLike | None = None) -> np.ndarray:
        """The action (float32) by which ``agent`` takes a role, a power and beam weights.

        The inverse of :meth:`joint_action` for one agent.

        Args:
            agent: The agent.
            jam: Whether it jams (must match a fixed role).
            power: Its power action in ``[-1, 1]``.
            weights: Beam-weight actions in ``[-1, 1]`` towards eavesdroppers ``0..M-1``
                (only its targets are used; ``None``: all 1, an equal split).

        Raises:
            ValueError: On an unknown agent or a role its config does not allow.
        """
        role = self.roles[self.possible_agents[self._agent(agent)]]
        if role != "choose" and (role == "jam") != bool(jam):
            raise ValueError(f"agent {agent!r} has the fixed role {role!r}; it cannot "
                             f"{'jam' if jam else 'transmit'}")
        parts = [1.0 if jam else -1.0] if role == "choose" else []
        parts.append(float(power))
        if self.action_spaces[agent].shape[0] > len(parts):
            w = np.ones(self.core.n_aps) if weights is None else np.asarray(weights, float)
            parts.extend(w[np.asarray(self._targets[agent])].tolist())
        return np.asarray(parts, dtype=np.float32)

    def _rewards_and_infos(self, info: Mapping[str, Any]
                           ) -> tuple[dict[str, float], dict[str, dict[str, Any]]]:
        secrecy_sum = float(info["secrecy_rate"][0])
        rewards, infos = {}, {}
        for agent in self.agents:
            j = self._index[agent]
            jams = bool(info["jamming"][0, j])
            terms: dict[str, float]
            if self.core.team:
                terms = {"secrecy_sum": secrecy_sum}
            elif jams:
                terms = {"eve_rate_reduction": float(info["eve_rate_reduction"][0, j]),
                         "user_rate_loss": float(info["user_rate_loss"][0, j])}
            else:
                terms = {"secrecy_rate": float(info["secrecy_rates"][0, j])}
            rewards[agent] = float(info["rewards"][0, j])
            infos[agent] = {
                "role": "jam" if jams else "tx",
                "power_w": float((info["jam_powers"] if jams else info["powers"])[0, j]),
                "user_rate": float(info["user_rates"][0, j]),
                "eve_rate": float(info["eve_rates"][0, j]),
                "secrecy_rate": float(info["secrecy_rates"][0, j]),
                "eve_rate_reduction": float(info["eve_rate_reduction"][0, j]),
                "user_rate_loss": float(info["user_rate_loss"][0, j]),
                "secrecy_sum": secrecy_sum,
                "team_reward": self.config.varsigma * secrecy_sum,
                "reward_terms": terms,
            }
        return rewards, infos

    def _observations(self) -> dict[str, np.ndarray]:
        h = self.core.observe()[0]
        return {a: np.concatenate((h, self._one_hot[self._index[a]])) for a in self.agents}

    def state(self) -> np.ndarray:
        """The global state: the scaled channel matrix (``state_space``), a fresh array."""
        return self.core.observe()[0].copy()


def parallel_env(**kwargs: Any) -> SecrecyJammingEnv:
    """The ParallelEnv (keyword arguments: ``render_mode``, ``config`` and config fields)."""
    return SecrecyJammingEnv(**kwargs)


env = SecrecyJammingEnv.aec_env
"""The AEC form, ``pettingzoo.utils.parallel_to_aec(parallel_env(**kwargs))``."""


# --------------------------------------------------------------------------------------------
# Rendering (one row of a core)
# --------------------------------------------------------------------------------------------


def _render_ansi(core: SecrecyJammingCore, row: int) -> str:
    m, c = core.n_aps, core.config
    snr_user = radio.linear_to_db(core.user_gains[row] * core.p_max_w / core.noise_w)
    snr_eve = radio.linear_to_db(core.eve_gains[row] * core.p_max_w / core.noise_w)
    lines = [f"SecrecyJamming  M={m}  P_max={c.p_max_dbm:g} dBm  roles={list(core.roles)}  "
             f"beam gain {c.jam_beam_gain_db:g} dB  null at users {c.jam_user_leakage_db:g} dB",
             " k | role    AP (m)          user (m)        eve (m)         | now: SNR k->k "
             "user  eve"]
    for k in range(m):
        ap, us, ev = (core.ap_positions_m[row, k], core.user_positions_m[row, k],
                      core.eve_positions_m[row, k])
        lines.append(f"{k:2d} | {core.roles[k]:6s} ({ap[0]:6.1f},{ap[1]:6.1f}) "
                     f"({us[0]:6.1f},{us[1]:6.1f}) ({ev[0]:6.1f},{ev[1]:6.1f}) | "
                     f"{snr_user[k, k]:9.1f} dB {snr_eve[k, k]:5.1f} dB")
    info = core.last_info
    if info is not None:
        lines.append(f"last step: secrecy sum {info['secrecy_rate'][row]:.3f} bit/s/Hz")
        lines.append(" k | role  power (W)  R_k  R_adv,k  secrecy | jam at user, eve (dBm)  "
                     "eve cut  user loss  reward")
        jam_dbm = radio.watt_to_dbm(info["jamming_w"][row])
        for k in range(m):
            jams = bool(info["jamming"][row, k])
            power = (info["jam_powers"] if jams else info["powers"])[row, k]
            lines.append(f"{k:2d} | {'jam' if jams else 'tx':4s} {power:9.3f} "
                         f"{info['user_rates'][row, k]:5.2f} {info['eve_rates'][row, k]:8.2f} "
                         f"{info['secrecy_rates'][row, k]:8.2f} | {jam_dbm[k]:9.1f} "
                         f"{jam_dbm[m + k]:9.1f}      {info['eve_rate_reduction'][row, k]:7.2f} "
                         f"{info['user_rate_loss'][row, k]:9.2f} {info['rewards'][row, k]:7.2f}")
    return "\n".join(lines) + "\n"


def _render_rgb_array(core: SecrecyJammingCore, row: int) -> np.ndarray:
    m = core.n_aps
    ap, us, ev = core.ap_positions_m[row], core.user_positions_m[row], core.eve_positions_m[row]
    info = core.last_info
    jams = (np.array([r == "jam" for r in core.roles]) if info is None
            else info["jamming"][row])
    fig = agg_figure(5, 5)
    ax = fig.add_subplot(1, 1, 1)
    colours = [f"C{k % 10}" for k in range(m)]
    for k in range(m):
        if jams[k]:
            beams = (core.targets[k].astype(float) if info is None
                     else info["beam_powers"][row, k] / core.p_max_w)
            for e in np.flatnonzero(beams > 0.0):
                ax.annotate("", ev[e], ap[k], arrowprops={
                    "arrowstyle": "->", "color": "black", "ls": "--",
                    "lw": 0.5 + 3.0 * float(beams[e])})
            q = None if info is None else info["jam_powers"][row, k] / core.p_max_w
            label = "jam" if q is None else f"jam q={q:.2f}"
        else:
            p = 1.0 if info is None else float(info["powers"][row, k] / core.p_max_w)
            draw_links(ax, ap[k], us[k], ev[k], colours[k], p)
            label = "tx" if info is None else (f"tx p={p:.2f}\n"
                                               f"sec={info['secrecy_rates'][row, k]:.2f}")
        ax.annotate(label, ap[k], textcoords="offset points", xytext=(5, 5), fontsize=7)
    title = f"Secrecy with friendly jamming, M={m}"
    if info is not None:
        title += f": secrecy sum {info['secrecy_rate'][row]:.2f} bit/s/Hz"
    draw_scene(ax, ap, us, ev, core.config.area_m,
               ["black" if jams[k] else colours[k] for k in range(m)], "AP (black: jammer)",
               title)
    return figure_rgb(fig)
