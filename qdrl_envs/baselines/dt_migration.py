"""Baselines of ``qdrl/DTMigration-v0``: random, never-migrate, cloud-only, follow-me, greedy.

All but ``greedy`` read only the observation (the documented one-hot areas and hosts and the
host occupancy) and the public config; ``greedy`` is a one-step oracle that scores candidate
placements with the true slot model (:meth:`qdrl_envs.dt_migration.DTMigrationCore.evaluate`).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from qdrl_envs.baselines.base import BaselinePolicy, RandomPolicy
from qdrl_envs.dt_migration import DTMigrationConfig, DTMigrationCore

__all__ = ["BASELINES", "CloudOnlyPolicy", "FollowMePolicy", "GreedyPolicy",
           "NeverMigratePolicy"]


class _ObsPolicy(BaselinePolicy):
    """Decodes the DTMigration observation into areas, hosts and free capacity."""

    def __init__(self, env: gym.Env, *, seed: int | None = None) -> None:
        super().__init__(env, seed=seed)
        cfg = env.unwrapped.config
        if not isinstance(cfg, DTMigrationConfig):
            raise ValueError(f"{type(self).__name__} needs a DTMigration env, got config "
                             f"{type(cfg).__name__}")
        self.cfg = cfg
        self.n_edges, self.n_users = cfg.n_edges, cfg.n_users

    def _decode(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        e, u = self.n_edges, self.n_users
        area = obs[: u * e].reshape(u, e).argmax(axis=-1)
        off = u * e
        host = obs[off: off + u * (e + 1)].reshape(u, e + 1).argmax(axis=-1)
        off += u * (e + 1)
        occ = np.rint(obs[off: off + e] * self.cfg.edge_capacity_twins).astype(np.int64)
        return area, host, self.cfg.edge_capacity_twins - occ


class NeverMigratePolicy(_ObsPolicy):
    """Every twin stays where it was placed at reset."""

    def _act(self, obs: np.ndarray) -> Any:
        return self._decode(obs)[1]


class CloudOnlyPolicy(_ObsPolicy):
    """Every twin to the cloud (after the first slot nothing moves again)."""

    def _act(self, obs: np.ndarray) -> Any:
        return np.full(self.n_users, self.n_edges, dtype=np.int64)


class FollowMePolicy(_ObsPolicy):
    """Each twin follows its user to the access edge when that edge has free capacity.

    Requests are made in user order against the capacity free at the start of the slot (the
    environment's admission rule), so follow-me never triggers an overload; a twin whose access
    edge is full stays where it is.
    """

    def _act(self, obs: np.ndarray) -> Any:
        area, host, free = self._decode(obs)
        action = host.copy()
        for i in range(self.n_users):
            a = area[i]
            if host[i] != a and free[a] > 0:
                action[i] = a
                free[a] -= 1
        return action


class GreedyPolicy(BaselinePolicy):
    """One-step oracle: coordinate descent on this slot's reward (latency + migration cost).

    Starting from the current hosts, users are visited in order; each picks the host that
    maximises the slot's full reward (latency, migration downtime, energy and overload terms)
    with the other users' choices fixed, scored by the true model
    (:meth:`DTMigrationCore.evaluate` on the true tasks and channels). Myopic by design: it
    pays a migration only if it is repaid within the same slot.
    """

    needs_state = True

    def __init__(self, env: gym.Env, *, seed: int | None = None, sweeps: int = 1) -> None:
        super().__init__(env, seed=seed)
        core = env.unwrapped.core
        if not isinstance(core, DTMigrationCore):
            raise ValueError(f"GreedyPolicy needs a DTMigration env, got {type(core).__name__}")
        if not isinstance(sweeps, int) or sweeps < 1:
            raise ValueError(f"sweeps must be an integer >= 1, got {sweeps!r}")
        self.core = core
        self.sweeps = sweeps

    def _act(self, obs: np.ndarray) -> Any:
        core = self.core
        h = core.n_hosts
        cur = core.host[:1].repeat(h, axis=0)
        area = core.area[:1].repeat(h, axis=0)
        tasks = core.tasks[:1].repeat(h, axis=0)
        rate = core.uplink_bps[:1].repeat(h, axis=0)
        choice = core.host[0].copy()
        candidates = np.arange(h)
        for _ in range(self.sweeps):
            for i in range(core.n_users):
                target = np.broadcast_to(choice, (h, core.n_users)).copy()
                target[:, i] = candidates
                reward = core.evaluate(target, cur, area, tasks, rate).reward
                best = int(np.argmax(reward))
                if reward[best] > reward[choice[i]] + 1e-12:
                    choice[i] = best
        return choice


BASELINES: dict[str, type[BaselinePolicy]] = {
    "random": RandomPolicy,
    "never-migrate": NeverMigratePolicy,
    "cloud-only": CloudOnlyPolicy,
    "follow-me": FollowMePolicy,
    "greedy": GreedyPolicy,
}
"""Baseline name -> class, for :func:`qdrl_envs.baselines.make_baseline`."""
