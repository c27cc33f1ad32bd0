"""Baselines of ``qdrl/SecrecyPowerControl-v1`` (docs/design.md §3.1, §4).

============  ==============================================================================
Name          Policy
============  ==============================================================================
random        uniform actions in ``[-1, 1]^M`` (on the default dB scale: powers log-uniform
              over the 40 dB below ``P_max``)
full-power    every AP at ``P_max`` (``p = 1``): what a security-unaware network does
oracle        maximises the instantaneous secrecy sum for the true channels: exhaustive grid
              for ``M <= max_grid_aps`` (default 3) refined by bounded local search,
              multi-start local search beyond. Agents are scored as a fraction of it.
============  ==============================================================================
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import gymnasium as gym
import numpy as np
from numpy.typing import NDArray

from qdrl_envs.baselines.base import BaselinePolicy, RandomPolicy
from qdrl_envs.secrecy import SecrecyCore, secrecy_rates

__all__ = ["BASELINES", "FullPowerPolicy", "SecrecyOraclePolicy"]


class FullPowerPolicy(BaselinePolicy):
    """Every AP transmits at full power, ``p = (1, ..., 1)`` (the action 1 on either scale)."""

    def _act(self, obs: np.ndarray) -> np.ndarray:
        return np.ones(self.action_space.shape, dtype=np.float32)


def _core_of(env: gym.Env) -> SecrecyCore:
    core = getattr(env.unwrapped, "core", None)
    if not isinstance(core, SecrecyCore) or core.num_envs != 1:
        raise ValueError("the secrecy oracle needs a single qdrl/SecrecyPowerControl-v1 "
                         f"environment (made with gym.make), got {env!r}")
    return core


class SecrecyOraclePolicy(BaselinePolicy):
    """Maximise the instantaneous sum secrecy rate for the true channels (an upper baseline).

    Reads the channels the next action acts on from ``env.unwrapped.core`` (so it sees what no
    agent sees: the instantaneous eavesdropper channels even under ``eve_csi="statistical"``).

    The secrecy sum lives on a logarithmic power scale (at high SNR the best powers are often
    tens of dB below ``P_max``), so the search is logarithmic. Per AP the levels are ``0`` and
    ``grid_levels - 1`` powers log-spaced from ``p_lo`` to 1, where ``p_lo`` puts the strongest
    link 10 dB below the noise (below it every rate is nearly zero). For
    ``M <= max_grid_aps`` every point of that grid is scored; beyond, all ``2^M`` on/off
    vertices (for ``M <= 12``), full power and ``n_random`` random grid points. The best
    ``n_starts`` points, and full power, then start a bounded L-BFGS-B ascent in log-power
    (analytic gradient; APs off in a start stay off). Every candidate is scored with
    :func:`qdrl_envs.secrecy.secrecy_rates` on the coefficients the env decodes from the
    float32 action that asks for it (so its value is the env's reward, and on the dB power
    scale it never plans a power the scale cannot express), hence the oracle never scores
    below full power or any grid point. It is a numerical maximiser,
    not a certificate of optimality (the problem is non-convex); the tests check that neither
    the other baselines nor thousands of random power vectors ever beat it.

    Args:
        env: A ``qdrl/SecrecyPowerControl-v1`` environment (``gym.make``; wrappers allowed).
        seed: Seed of the random candidates (used when ``M > max_grid_aps``).
        grid_levels: Levels per AP (0 included); ``None`` picks 201, 41, 21 for ``M = 1, 2, 3``
            and 21 beyond.
        max_grid_aps: Largest ``M`` searched exhaustively (the grid has ``levels^M`` points).
        n_starts: Number of best candidates refined by local search.
        n_random: Number of random candidates when ``M > max_grid_aps``.

    Raises:
        ValueError: If ``env`` is not a single secrecy environment or an argument is out of
            range.
    """

    needs_state = True

    def __init__(self, env: gym.Env, *, seed: int | None = None, grid_levels: int | None = None,
                 max_grid_aps: int = 3, n_starts: int = 4, n_random: int = 1024) -> None:
        super().__init__(env, seed=seed)
        self.core = _core_of(env)
        m = self.core.n_aps
        for name, value, low in (("max_grid_aps", max_grid_aps, 0), ("n_starts", n_starts, 0),
                                 ("n_random", n_random, 0)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if grid_levels is not None and (not isinstance(grid_levels, int)
                                        or isinstance(grid_levels, bool) or grid_levels < 2):
            raise ValueError(f"grid_levels must be an integer >= 2 or None, got {grid_levels!r}")
        self.m = m
        self.n_starts = n_starts
        self.use_grid = m <= max_grid_aps
        levels = grid_levels if grid_levels is not None else {1: 201, 2: 41}.get(m, 21)
        if self.use_grid and levels**m > 5_000_000:
            raise ValueError(f"grid_levels={levels} with M={m} gives {levels**m} points; "
                             "lower grid_levels or max_grid_aps")
        self.levels = levels
        # Candidates as level indices: 0 = off, i >= 1 = the i-th log-spaced power.
        if self.use_grid:
            idx = np.stack(np.meshgrid(*([np.arange(levels)] * m), indexing="ij"), -1)
            self._index = idx.reshape(-1, m)
        else:
            parts = [np.full((1, m), levels - 1), self.rng.integers(0, levels, (n_random, m))]
            if m <= 12:
                parts.append(np.array(list(itertools.product((0, levels - 1), repeat=m))))
            self._index = np.concatenate(parts)
        self._serving = np.concatenate([np.eye(m, dtype=bool)] * 2, axis=1)

    # -- the optimisation --------------------------------------------------------------------

    def _value(self, g_user: NDArray[np.float64], g_eve: NDArray[np.float64],
               p: NDArray[np.float64]) -> NDArray[np.float64]:
        return secrecy_rates(g_user, g_eve, p, self.core.p_max_w, self.core.noise_w)[2].sum(-1)

    def _gradient(self, gains: NDArray[np.float64], p: NDArray[np.float64]) -> NDArray[np.float64]:
        """Gradient of the secrecy sum w.r.t. ``p`` (one-sided where a user's secrecy is 0)."""
        m = self.m
        pmax, noise = self.core.p_max_w, self.core.noise_w
        rx = (p * pmax)[:, None] * gains  # (M, 2M): power from AP m at receiver j
        interference = np.where(self._serving, 0.0, rx).sum(0) + noise
        total = interference + np.where(self._serving, rx, 0.0).sum(0)
        # R_j = log2(total_j) - log2(interference_j)
        d_rate = pmax / math.log(2.0) * (gains / total - np.where(self._serving, 0.0, gains)
                                         / interference)
        rates = np.log2(total) - np.log2(interference)
        active = (rates[:m] - rates[m:]) > 0.0
        return d_rate[:, :m] @ active - d_rate[:, m:] @ active

    def _received(self, p: NDArray[np.float64]) -> tuple[NDArray[np.float32],
                                                          NDArray[np.float64]]:
        """The actions that ask for coefficients ``p`` and the coefficients the env applies.

        The env receives float32 actions on its power scale (:meth:`SecrecyCore.action_of`);
        scoring what it decodes from them (:meth:`SecrecyCore.coefficients`) makes the oracle's
        value its reward, and keeps the search to powers the scale can express (on the dB
        scale, nothing between off and ``-power_range_db``).
        """
        actions = self.core.action_of(p)
        return actions, self.core.coefficients(actions)

    def _p_lo(self, gains: NDArray[np.float64]) -> float:
        strongest = float(gains.max()) * self.core.p_max_w / self.core.noise_w
        return float(np.clip(0.1 / max(strongest, 1e-300), 1e-12, 0.5))

    def solve(self, gains: NDArray[np.float64]) -> tuple[NDArray[np.float32], float]:
        """Best power coefficients for one channel matrix ``[G_user | G_eve]`` of shape (M, 2M).

        Args:
            gains: Power gains AP ``m`` -> user ``k`` (columns ``0..M-1``) and -> eavesdropper
                ``k`` (columns ``M..2M-1``).

        Returns:
            ``(p, secrecy_sum)``: the coefficients in ``[0, 1]`` the env applies to the best
            action (:meth:`best_action`; float64) and their sum secrecy rate in bit/s/Hz.
        """
        return self._solve(gains)[1:]

    def best_action(self, gains: NDArray[np.float64]) -> NDArray[np.float32]:
        """The action that sets :meth:`solve`'s coefficients on the env's power scale."""
        return self._solve(gains)[0]

    def _solve(self, gains: NDArray[np.float64]) -> tuple[NDArray[np.float32],
                                                          NDArray[np.float64], float]:
        from scipy.optimize import minimize

        m = self.m
        g_user, g_eve = gains[:, :m], gains[:, m:]
        log_lo = math.log10(self._p_lo(gains))
        axis = np.concatenate(([0.0], np.logspace(log_lo, 0.0, self.levels - 1)))
        actions, candidates = self._received(axis[self._index])
        values = self._value(g_user, g_eve, candidates)
        order = np.argsort(values)[::-1]
        best_a, best_p, best_v = actions[order[0]], candidates[order[0]], float(values[order[0]])
        starts = [candidates[i] for i in order[: self.n_starts]] + [np.ones(m)]
        lo = log_lo - 2.0
        for start in starts:
            on = start > 0.0
            if not on.any():
                continue

            def point(x: NDArray[np.float64], start: NDArray[np.float64] = start,
                      on: NDArray[np.bool_] = on) -> NDArray[np.float64]:
                p = start.copy()
                p[on] = 10.0**x
                return p

            def loss(x: NDArray[np.float64], point: Callable[..., NDArray[np.float64]] = point
                     ) -> float:
                return -float(self._value(g_user, g_eve, point(x)))

            def jac(x: NDArray[np.float64], point: Callable[..., NDArray[np.float64]] = point,
                    on: NDArray[np.bool_] = on) -> NDArray[np.float64]:
                p = point(x)
                return -self._gradient(gains, p)[on] * p[on] * math.log(10.0)

            res = minimize(loss, np.log10(start[on]), jac=jac, method="L-BFGS-B",
                           bounds=[(lo, 0.0)] * int(on.sum()), options={"maxiter": 60})
            a, p = self._received(np.clip(point(res.x), 0.0, 1.0))
            v = float(self._value(g_user, g_eve, p))
            if v > best_v:
                best_a, best_p, best_v = a, p, v
        return best_a, best_p, best_v

    def _act(self, obs: np.ndarray) -> np.ndarray:
        return self.best_action(self.core.gains[0])


BASELINES: dict[str, type[BaselinePolicy]] = {
    "random": RandomPolicy,
    "full-power": FullPowerPolicy,
    "oracle": SecrecyOraclePolicy,
}
"""Baselines of ``qdrl/SecrecyPowerControl-v1`` by name."""
