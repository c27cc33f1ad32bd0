"""Baselines of ``qdrl/SemanticSlicing-v1``: random, equal-split, proportional, slot-oracle...

... and semantic-priority. All but ``slot-oracle`` read only the observation (documented in
:class:`qdrl_envs.semantic_slicing.SemanticSlicingEnv`) and the public config: queue demands
in RBs at the mean SNR, and the slices' SNRs this slot, from which the RBs each slice needs
*now* follow.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from qdrl_envs.baselines.base import BaselinePolicy, RandomPolicy
from qdrl_envs.semantic_slicing import (
    SNR_OBS_HIGH_DB,
    SNR_OBS_LOW_DB,
    SemanticSlicingConfig,
    SemanticSlicingCore,
    all_splits,
)

__all__ = ["BASELINES", "EqualSplitPolicy", "ProportionalPolicy", "SemanticPriorityPolicy",
           "SlotOraclePolicy"]


class EqualSplitPolicy(BaselinePolicy):
    """The same share for every slice, every slot."""

    def _act(self, obs: np.ndarray) -> Any:
        return np.ones(3, dtype=np.float32)


class _DemandPolicy(BaselinePolicy):
    """Decodes the RBs each slice needs this slot from the observation."""

    def __init__(self, env: gym.Env, *, seed: int | None = None) -> None:
        super().__init__(env, seed=seed)
        cfg = env.unwrapped.config
        if not isinstance(cfg, SemanticSlicingConfig):
            raise ValueError(f"{type(self).__name__} needs a SemanticSlicing env, got config "
                             f"{type(cfg).__name__}")
        self.cfg = cfg
        # A scratch core (one instance) for the documented unit conversions.
        self._model = SemanticSlicingCore(cfg, 1)

    def _needs(self, obs: np.ndarray) -> np.ndarray:
        """RBs per queue needed this slot (critical, routine, eMBB, URLLC), at this slot's SNR.

        The SNR entries of the observation are clipped to [-10, 40] dB, so a slice in a fade
        deeper than -10 dB is planned for -10 dB.
        """
        b = self.cfg.n_rbs
        units = obs[:4].astype(np.float64) * b * self._model.mean_units_per_rb
        snr_db = SNR_OBS_LOW_DB + obs[8:11].astype(np.float64) * (SNR_OBS_HIGH_DB
                                                                   - SNR_OBS_LOW_DB)
        per_rb = self._model.units_per_rb(snr_db)
        per_rb_q = np.array([per_rb[0], per_rb[0], per_rb[1], per_rb[2]])
        return units / np.maximum(per_rb_q, 1e-12)


class ProportionalPolicy(_DemandPolicy):
    """Shares proportional to the RBs each slice needs this slot (backlog and arrivals)."""

    def _act(self, obs: np.ndarray) -> Any:
        need = self._needs(obs)
        slices = np.array([need[0] + need[1], need[2], need[3]])
        if slices.sum() <= 0:
            return np.ones(3, dtype=np.float32)
        return (2.0 * slices / slices.max() - 1.0).astype(np.float32)


class SemanticPriorityPolicy(_DemandPolicy):
    """Semantic first (critical, then routine), URLLC next, eMBB gets what is left.

    Each slice in turn receives the RBs it needs this slot, up to what remains of ``B``;
    anything left over goes to eMBB.
    """

    def _act(self, obs: np.ndarray) -> Any:
        need = self._needs(obs)
        left = float(self.cfg.n_rbs)
        alloc = np.zeros(3)
        for s, demand in ((0, need[0] + need[1]), (2, need[3]), (1, need[2])):
            alloc[s] = min(np.ceil(demand), left)
            left -= alloc[s]
        alloc[1] += left
        return (2.0 * alloc / self.cfg.n_rbs - 1.0).astype(np.float32)


class SlotOraclePolicy(BaselinePolicy):
    """The best split of this slot for the true queues, by exhaustive search (an oracle).

    Reads the true state of the env (every queued unit and its age, this slot's arrivals,
    SNRs and similarity) and scores every split of the ``B`` resource blocks into whole
    counts (``(B + 1)(B + 2) / 2`` of them, 1,326 for ``B = 50``) with the env's own step
    (:meth:`SemanticSlicingCore.slot_outcomes`), then plays the one of highest

    ``reward + serve_weight * sum_s w_s served_s / stake_s``,

    this slot's reward plus the units it serves, weighted and scaled as the violation term
    weighs the units it loses (importance ``critical_weight`` for critical words, slice
    weights ``w_s``, per mean arrivals of the slice ``stake_s``); ties go to the split that
    serves the most by that measure. The second term stands in for the future: a unit served
    now cannot expire later, which a one-slot objective ignores (a slice with nothing about
    to expire scores the same however much of it is served). By default it only breaks ties
    (``serve_weight=0``), which scored best: mean returns over six default episodes were
    198.0 (weight 0), 197.9 (0.1), 196.8 (1) and 178.4 (5), against semantic-priority's 181.4
    and random's 132.2 (a return is at most 200, one per slot). It knows everything about
    the slot but nothing about later arrivals and fades: a strong reference, not a bound.

    Args:
        env: A ``qdrl/SemanticSlicing-v1`` env (``gym.make``; wrappers allowed).
        seed: Unused (deterministic).
        serve_weight: Weight of the served units against this slot's reward, >= 0.

    Raises:
        ValueError: If the env is not a single SemanticSlicing env or ``serve_weight`` is
            negative or not finite.
    """

    needs_state = True

    def __init__(self, env: gym.Env, *, seed: int | None = None,
                 serve_weight: float = 0.0) -> None:
        super().__init__(env, seed=seed)
        core = getattr(env.unwrapped, "core", None)
        if not isinstance(core, SemanticSlicingCore) or core.num_envs != 1:
            raise ValueError("the slot oracle needs a single qdrl/SemanticSlicing-v1 env (made "
                             f"with gym.make), got {env!r}")
        if isinstance(serve_weight, bool) or not isinstance(serve_weight, (int, float)) \
                or not np.isfinite(serve_weight) or serve_weight < 0:
            raise ValueError(f"serve_weight must be a finite number >= 0, got {serve_weight!r}")
        self.core = core
        self.serve_weight = float(serve_weight)
        self.splits, self._actions = all_splits(core.config.n_rbs)
        """Every split ``(K, 3)`` of the RBs, the candidates (and their actions)."""
        # Per queue: slice weight x importance / mean arrivals of the slice (the violation
        # term's scale, positive).
        per_slice = core.unit_weights
        importance = np.array([core.config.critical_weight, 1.0, 1.0, 1.0])
        self._serve_scale = importance * per_slice[[0, 0, 1, 2]]

    def _act(self, obs: np.ndarray) -> Any:
        out = self.core.slot_outcomes(0, self._actions)
        served = out["served"] @ self._serve_scale
        score = out["reward"] + self.serve_weight * served
        best = np.lexsort((served, score))[-1]  # highest score, then most served
        return self._actions[best]


BASELINES: dict[str, type[BaselinePolicy]] = {
    "random": RandomPolicy,
    "equal-split": EqualSplitPolicy,
    "proportional": ProportionalPolicy,
    "semantic-priority": SemanticPriorityPolicy,
    "slot-oracle": SlotOraclePolicy,
}
"""Baseline name -> class, for :func:`qdrl_envs.baselines.make_baseline`."""
