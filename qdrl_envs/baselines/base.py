"""The baseline policy interface (SB3-style ``predict``) and the random baseline."""

from __future__ import annotations

import abc
import copy
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np


class BaselinePolicy(abc.ABC):
    """A fixed (non-learning) policy with stable-baselines3's ``predict`` signature.

    Subclasses implement :meth:`_act` for one observation. ``predict`` also accepts a batch of
    observations (leading axis) and returns a batch of actions, as SB3 models do.

    Args:
        env: The environment the policy acts in (as made by ``gym.make``; wrappers allowed).
        seed: Seed of the policy's own random generator (used by stochastic baselines).
    """

    #: Whether the policy needs the environment's true (hidden) state, i.e. is an oracle.
    needs_state: bool = False

    def __init__(self, env: gym.Env, *, seed: int | None = None) -> None:
        self.env = env
        self.observation_space = env.observation_space
        self.action_space = env.action_space
        self.rng = np.random.default_rng(seed)

    @abc.abstractmethod
    def _act(self, obs: np.ndarray) -> Any:
        """Return the action for one observation."""

    def predict(
        self,
        observation: Any,
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = True,
    ) -> tuple[Any, Any]:
        """Return ``(action, state)`` like ``stable_baselines3.BaseAlgorithm.predict``.

        Args:
            observation: One observation, or a batch with a leading axis.
            state: Unused (baselines are memoryless unless documented); passed back.
            episode_start: Unused; accepted for interface compatibility.
            deterministic: Unused by deterministic baselines.

        Returns:
            The action (or a batch of actions) and ``state``.
        """
        obs = np.asarray(observation)
        single_shape = self.observation_space.shape
        if single_shape is not None and obs.shape == tuple(single_shape):
            return self._act(obs), state
        if single_shape is not None and obs.shape[1:] == tuple(single_shape):
            if self.needs_state and obs.shape[0] != 1:
                raise ValueError(f"{type(self).__name__} reads the true state of one environment "
                                 f"and cannot act on a batch of {obs.shape[0]} observations")
            return np.stack([np.asarray(self._act(o)) for o in obs]), state
        raise ValueError(f"observation shape {obs.shape} matches neither {single_shape} nor a "
                         "batch of it")


class RandomPolicy(BaselinePolicy):
    """Uniformly random actions from the action space (seeded by ``seed``)."""

    def __init__(self, env: gym.Env, *, seed: int | None = None) -> None:
        super().__init__(env, seed=seed)
        self._space = copy.deepcopy(env.action_space)
        self._space.seed(int(self.rng.integers(2**31)))

    def _act(self, obs: np.ndarray) -> Any:
        return self._space.sample()


def coordinate_ascent(value: Callable[[np.ndarray], np.ndarray], starts: Iterable[np.ndarray],
                      candidates: Sequence[np.ndarray], max_sweeps: int
                      ) -> tuple[np.ndarray, float]:
    """Coordinate ascent of a joint action's value, one agent's row at a time (the oracles').

    From each start ``(n, ...)``, agent ``j``'s row is replaced by the best of its
    ``candidates[j]`` ``(K_j, ...)`` with the others fixed, sweeping over the agents until a
    sweep improves nothing (at most ``max_sweeps``).

    Args:
        value: Values ``(K,)`` of joint actions ``(K, n, ...)``.
        starts: The joint actions to start from.
        candidates: Per agent, its candidate rows.
        max_sweeps: Largest number of sweeps from each start.

    Returns:
        The best joint action found and its value (the first start if none has a value
        above ``-inf``).
    """
    best, best_v = None, -np.inf
    for start in starts:
        if best is None:
            best = start
        x = start.copy()
        v = float(value(x[None])[0])
        for _ in range(max_sweeps):
            improved = False
            for j, rows in enumerate(candidates):
                cand = np.repeat(x[None], len(rows), axis=0)
                cand[:, j] = rows
                values = value(cand)
                k = int(np.argmax(values))
                if values[k] > v:
                    x, v, improved = cand[k], float(values[k]), True
            if not improved:
                break
        if v > best_v:
            best, best_v = x, v
    assert best is not None, "coordinate_ascent needs at least one start"
    return best, best_v
