"""Baselines of ``qdrl/MobileTransmitter-v1``: random, and hover at the users' centroid."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from qdrl_envs.baselines.base import BaselinePolicy, RandomPolicy
from qdrl_envs.mobile_transmitter import MobileTransmitterConfig

__all__ = ["BASELINES", "HoverCentroidPolicy"]


class HoverCentroidPolicy(BaselinePolicy):
    """Fly straight to the users' centroid at full speed, then hover there; full power.

    Acts on the observation alone: it decodes the UAV and user positions
    (``x = A (o + 1) / 2``), steps towards the centroid by at most ``max_speed_m_s * slot_s``
    (landing on it exactly), and sets every power coefficient to 1, i.e. the equal split
    ``P_max / K`` of the whole budget. The centroid minimises the sum of squared horizontal
    distances, a reasonable but not optimal stand-in for the sum-rate-optimal hovering point.
    """

    def __init__(self, env: gym.Env, *, seed: int | None = None) -> None:
        super().__init__(env, seed=seed)
        self.config: MobileTransmitterConfig = env.unwrapped.config

    def _act(self, obs: np.ndarray) -> Any:
        cfg = self.config
        k = cfg.n_users
        o = np.asarray(obs, dtype=np.float64)
        half = cfg.area_m / 2.0
        uav = (o[k:k + 2] + 1.0) * half
        users = (o[k + 2:].reshape(k, 2) + 1.0) * half
        delta = users.mean(axis=0) - uav
        step = cfg.max_step_m
        move = delta / step if step > 0.0 else np.zeros(2)
        norm = float(np.hypot(*move))
        if norm > 1.0:
            move = move / norm
        action = np.concatenate([np.ones(k), np.clip(move, -1.0, 1.0)])
        return action.astype(np.float32)


BASELINES: dict[str, type[BaselinePolicy]] = {
    "random": RandomPolicy,
    "hover-centroid": HoverCentroidPolicy,
}
"""Name -> class of every ``qdrl/MobileTransmitter-v1`` baseline."""
