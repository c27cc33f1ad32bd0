"""Baselines of ``qdrl/SemanticSlicing-v0``: random, equal-split, proportional, semantic-priority.

They read only the observation (documented in :class:`qdrl_envs.semantic_slicing.
SemanticSlicingEnv`) and the public config: queue demands in RBs at the mean SNR, and the
slices' SNRs this slot, from which the RBs each slice needs *now* follow.
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
)

__all__ = ["BASELINES", "EqualSplitPolicy", "ProportionalPolicy", "SemanticPriorityPolicy"]


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
        return (slices / slices.max()).astype(np.float32)


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
        return (alloc / self.cfg.n_rbs).astype(np.float32)


BASELINES: dict[str, type[BaselinePolicy]] = {
    "random": RandomPolicy,
    "equal-split": EqualSplitPolicy,
    "proportional": ProportionalPolicy,
    "semantic-priority": SemanticPriorityPolicy,
}
"""Baseline name -> class, for :func:`qdrl_envs.baselines.make_baseline`."""
