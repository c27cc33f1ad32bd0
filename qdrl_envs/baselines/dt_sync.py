"""Baselines of ``qdrl/DTSyncAoI-v0``: the classic age-of-information schedulers.

All of them act on the observation alone (ages, age-if-delivered, SNR estimates, mean SNRs
and weights are all in it, see :class:`qdrl_envs.dt_sync.DTSyncAoIEnv`); they read the
environment's *config* (scales, threshold, estimation-error variance), never its hidden state.
Each slot they schedule the ``C`` devices with the largest index (ties: lower device first).

Notation (per device ``i``): ``h_i`` current twin age, ``d_i`` the age the twin would have
after a successful delivery this slot (``1`` under generate-at-will), ``g_i = h_i + 1 - d_i``
the age reduction a delivery brings, ``alpha_i`` the weight, ``p_i`` the success probability
of this slot given the SNR estimate (:func:`qdrl_envs.dt_sync.success_probability`) and
``pbar_i`` the long-run success probability (:func:`~qdrl_envs.dt_sync.mean_success_probability`).

Source: I. Kadota, A. Sinha, E. Uysal-Biyikoglu, R. Singh and E. Modiano, "Scheduling policies
for minimizing age of information in broadcast wireless networks", IEEE/ACM Trans. Netw.,
26(6):2637-2650, Dec. 2018 (single channel, generate-at-will, i.i.d. reliabilities ``p_i``);
its age ``h_i(k)`` at the start of slot ``k`` is our ``xi_i(t-1)``, both reset to 1 by a
delivery. Scheduling the top-``C`` indices is the standard multi-channel extension.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from qdrl_envs.baselines.base import BaselinePolicy, RandomPolicy
from qdrl_envs.dt_sync import (
    DTSyncConfig,
    index_from_subset,
    mean_success_probability,
    success_probability,
)

__all__ = [
    "BASELINES",
    "MaxAgeFirstPolicy",
    "MaxWeightPolicy",
    "RoundRobinPolicy",
    "WhittleIndexPolicy",
    "decode_observation",
    "whittle_index",
]


def decode_observation(obs: np.ndarray, config: DTSyncConfig) -> dict[str, np.ndarray]:
    """Undo the observation scaling of :class:`~qdrl_envs.dt_sync.DTSyncAoIEnv`.

    Args:
        obs: One observation, shape ``(5M,)``.
        config: The environment's config (scales and threshold).

    Returns:
        ``age`` and ``age_if_delivered`` (slots; ``inf`` where float32 saturated),
        ``snr_est_db``, ``mean_snr_db`` (dB, clipped to the observation span) and ``weight``
        (relative to the largest), each of shape ``(M,)``.
    """
    m = config.n_devices
    x = np.asarray(obs, dtype=np.float64).reshape(5, m)
    s = config.age_scale_slots
    with np.errstate(divide="ignore"):
        ages = np.where(x[:2] < 1.0, s * x[:2] / np.maximum(1.0 - x[:2], 1e-300), np.inf)
    db = config.snr_threshold_db + config.snr_scale_db * x[2:4]
    return {"age": ages[0], "age_if_delivered": ages[1], "snr_est_db": db[0],
            "mean_snr_db": db[1], "weight": x[4]}


def whittle_index(gain: Any, weight: Any, p_now: Any, p_mean: Any) -> np.ndarray:
    """Whittle index ``(1/2) w p g (g + 2/pbar - 1)`` of :class:`WhittleIndexPolicy`.

    Args:
        gain: Age reduction ``g`` a delivery brings (the age ``h`` under generate-at-will).
        weight: Weight ``alpha``.
        p_now: Success probability of this slot ``p``.
        p_mean: Long-run success probability ``pbar`` (floored at 1e-9).

    Returns:
        The index, broadcast shape.
    """
    g = np.asarray(gain, dtype=np.float64)
    pbar = np.maximum(np.asarray(p_mean, dtype=np.float64), 1e-9)
    return 0.5 * np.asarray(weight) * np.asarray(p_now) * g * (g + 2.0 / pbar - 1.0)


class _IndexPolicy(BaselinePolicy):
    """Schedule the ``C`` devices with the largest :meth:`_index` (ties: lower device)."""

    def __init__(self, env: gym.Env, *, seed: int | None = None) -> None:
        super().__init__(env, seed=seed)
        self.config: DTSyncConfig = env.unwrapped.config

    def _index(self, d: dict[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def _act(self, obs: np.ndarray) -> Any:
        d = decode_observation(obs, self.config)
        idx = np.nan_to_num(self._index(d), nan=0.0, posinf=1e300)
        top = np.argsort(-idx, kind="stable")[: self.config.n_channels]
        return np.int64(index_from_subset(top.tolist(), self.config.n_devices))

    def _p_now(self, d: dict[str, np.ndarray]) -> np.ndarray:
        c = self.config
        return success_probability(d["snr_est_db"], d["mean_snr_db"], c.snr_threshold_db,
                                   c.csi_error_var, c.rayleigh_fading)

    @staticmethod
    def _gain(d: dict[str, np.ndarray]) -> np.ndarray:
        gain = d["age"] + 1.0 - d["age_if_delivered"]
        return np.where(np.isfinite(gain), np.maximum(gain, 0.0), d["age"])


class MaxAgeFirstPolicy(_IndexPolicy):
    """Greedy: the ``C`` oldest twins, index ``h_i`` (Kadota et al. 2018, Sec. III).

    Optimal for symmetric networks with generate-at-will; it ignores weights, channels and
    whether a device has anything new to send.
    """

    def _index(self, d: dict[str, np.ndarray]) -> np.ndarray:
        return d["age"]


class MaxWeightPolicy(_IndexPolicy):
    """Max-Weight: minimise the one-slot drift of a quadratic Lyapunov function of the ages.

    Kadota et al. (2018, Sec. V) build Max-Weight from the drift of a quadratic Lyapunov
    function of the ages with per-client weights. For ``L = sum_i alpha_i h_i^2`` the
    derivation is short: after a delivery the next age is 1, otherwise ``h_i + 1``, so
    scheduling ``i`` lowers the expected next ``alpha_i h_i^2`` term by
    ``alpha_i p_i ((h_i + 1)^2 - 1) = alpha_i p_i h_i (h_i + 2)``, and the drift-minimising
    schedule takes the largest of these. With stochastic arrivals the age after a delivery
    is ``d_i`` instead of 1, which gives the index used here,

    ``I_i = alpha_i p_i ((h_i + 1)^2 - d_i^2)``,

    equal to ``alpha_i p_i h_i (h_i + 2)`` under generate-at-will (``d_i = 1``); ``p_i`` is
    the success probability of this slot given the SNR estimate.
    """

    def _index(self, d: dict[str, np.ndarray]) -> np.ndarray:
        h1 = d["age"] + 1.0
        dd = np.minimum(d["age_if_delivered"], h1)
        return d["weight"] * self._p_now(d) * (h1 * h1 - dd * dd)


class WhittleIndexPolicy(_IndexPolicy):
    """Whittle's index policy of Kadota et al. (2018, Sec. VI).

    Their closed-form index for generate-at-will and reliability ``p_i`` is

    ``W_i(h_i) = (1/2) alpha_i p_i h_i (h_i + 2/p_i - 1)``:

    the transmission charge at which idling and transmitting at age ``h_i`` are equally good
    in the decoupled single-client problem (re-derived for this environment's timing: under a
    threshold policy "transmit from age H on" the average cost is
    ``(alpha E[S] + C/p) / E[L]`` over a renewal cycle, and equating thresholds ``h`` and
    ``h + 1`` gives ``C = W(h)``; with ``p_i = 1`` it is ``alpha_i h_i (h_i + 1) / 2``).
    Adaptations here: the age ``h_i`` is replaced by the age reduction ``g_i = h_i + 1 - d_i``
    a delivery would bring (equal to ``h_i`` under generate-at-will, 0 when the device has
    nothing new); the leading ``p_i`` is this slot's success probability given the SNR
    estimate, while ``2/p_i`` (expected future retransmissions) uses the long-run
    reliability ``pbar_i``:

    ``W_i = (1/2) alpha_i p_i g_i (g_i + 2/pbar_i - 1)``.
    """

    def _index(self, d: dict[str, np.ndarray]) -> np.ndarray:
        c = self.config
        pbar = mean_success_probability(d["mean_snr_db"], c.snr_threshold_db, c.rayleigh_fading)
        return whittle_index(self._gain(d), d["weight"], self._p_now(d), pbar)


class RoundRobinPolicy(BaselinePolicy):
    """Round-robin: slot ``k = 0, 1, ...`` of an episode schedules ``{(kC + j) mod M}``.

    It keeps one slot counter per observation row (the policy's only state); the counters
    restart when ``predict`` gets ``episode_start=True`` for that row, or on :meth:`reset`.
    """

    def __init__(self, env: gym.Env, *, seed: int | None = None) -> None:
        super().__init__(env, seed=seed)
        self.config: DTSyncConfig = env.unwrapped.config
        self._k = np.zeros(1, dtype=np.int64)

    def reset(self) -> None:
        """Restart every counter at slot 0."""
        self._k[:] = 0

    def _subset_index(self, k: int) -> int:
        m, c = self.config.n_devices, self.config.n_channels
        return index_from_subset([(k * c + j) % m for j in range(c)], m)

    def _act(self, obs: np.ndarray) -> Any:
        return self.predict(obs)[0]

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[Any, Any]:
        """Like :meth:`BaselinePolicy.predict`; ``episode_start`` restarts the counter(s)."""
        obs = np.asarray(observation)
        shape = tuple(self.observation_space.shape)
        if obs.shape == shape:
            rows, batched = 1, False
        elif obs.ndim == len(shape) + 1 and obs.shape[1:] == shape:
            rows, batched = obs.shape[0], True
        else:
            raise ValueError(f"observation shape {obs.shape} matches neither {shape} nor a "
                             "batch of it")
        if self._k.shape[0] != rows:
            self._k = np.zeros(rows, dtype=np.int64)
        if episode_start is not None:
            start = np.broadcast_to(np.asarray(episode_start, dtype=bool).reshape(-1), (rows,))
            self._k[start] = 0
        actions = np.array([self._subset_index(int(k)) for k in self._k], dtype=np.int64)
        self._k += 1
        return (actions if batched else actions[0]), state


BASELINES: dict[str, type[BaselinePolicy]] = {
    "random": RandomPolicy,
    "round-robin": RoundRobinPolicy,
    "max-age-first": MaxAgeFirstPolicy,
    "max-weight": MaxWeightPolicy,
    "whittle": WhittleIndexPolicy,
}
"""Name -> class of every ``qdrl/DTSyncAoI-v0`` baseline."""
