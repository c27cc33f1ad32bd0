"""Poisoned training data: wrappers that corrupt a seeded fraction of rewards or observations.

The paper's secure Q-DRL section (Sec. VI-A) names data poisoning and backdoors as the threats
to a learned 6G controller: an attacker who can touch the measurements or the reward feedback
of some training slots. These wrappers model that attacker on any Gymnasium env, so the same
agent can be trained clean and poisoned and the two compared:

* :class:`PoisonedReward`: on each step, with probability ``fraction``, the reward becomes
  ``-r`` (``"flip"``), ``scale * r`` (``"scale"``), ``r + bias`` (``"bias"``), or ``r + bias``
  only when the action is the attacker's ``target_action`` (``"targeted"``: a backdoor that
  teaches that action).
* :class:`PoisonedObservation`: on each reset and step, with probability ``fraction``, the Box
  observation gets Gaussian noise of ``scale`` times each feature's range (``"noise"``,
  clipped into the space), or the features ``trigger_features`` set to ``trigger_value``
  (``"trigger"``: a backdoor's trigger pattern).

Which steps are corrupted is drawn from the wrapper's own generator, so poisoning never
changes the env's own randomness (the clean and the poisoned run see the same channels). Like
the env's, it restarts on every ``reset(seed=s)``, from ``(seed, s)`` (from ``s`` alone when the
wrapper's ``seed`` is ``None``; salted, so it is not the env's stream), and continues across
unseeded resets. Every step's ``info["poisoned"]`` says whether that step
was corrupted (for :class:`PoisonedObservation`, the observation returned with it), and
``poisoned_steps`` / ``steps`` count them. With ``fraction=0`` a wrapper is the identity.

Agents evaluate on the clean env: these wrappers are for training only.

This module imports only Gymnasium and NumPy.

Example:
    >>> import gymnasium as gym
    >>> env = PoisonedReward(gym.make("CartPole-v1"), fraction=0.3, mode="flip", seed=0)
    >>> _ = env.reset(seed=0)
    >>> _, reward, *_, info = env.step(0)
    >>> (reward, info["poisoned"]) in {(1.0, False), (-1.0, True)}
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import RecordConstructorArgs

__all__ = ["OBSERVATION_MODES", "REWARD_MODES", "PoisonedObservation", "PoisonedReward"]

REWARD_MODES: tuple[str, ...] = ("flip", "scale", "bias", "targeted")
OBSERVATION_MODES: tuple[str, ...] = ("noise", "trigger")

_SALT = 0x706F69736F6E  # "poison": keeps the wrapper's stream apart from the env's


def _fraction(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"fraction={value!r} must be a number in [0, 1]")
    value = float(value)
    if not 0.0 <= value <= 1.0:  # NaN fails too
        raise ValueError(f"fraction={value!r} must be in [0, 1]")
    return value


def _finite(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(float(value)):
        raise ValueError(f"{name}={value!r} must be a finite number")
    return float(value)


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name}={value!r} is not one of {list(allowed)}")
    return value


def _seed(seed: Any) -> int | None:
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed={seed!r} must be None or an int >= 0")
    return int(seed)


class _Poisoner(gym.Wrapper, RecordConstructorArgs):
    """What both wrappers share: the fraction, the seeded draw and the counters."""

    def __init__(self, env: gym.Env, fraction: float, seed: int | None) -> None:
        self.fraction = _fraction(fraction)
        self.poison_seed = _seed(seed)
        self._rng = (None if self.poison_seed is None
                     else np.random.default_rng([self.poison_seed, _SALT]))
        self.steps = 0
        self.poisoned_steps = 0
        gym.Wrapper.__init__(self, env)

    def _ensure_rng(self, seed: int | None) -> np.random.Generator:
        """A seeded reset restarts the stream (as ``reset(seed=...)`` does for the env)."""
        base = [] if self.poison_seed is None else [self.poison_seed]
        if seed is not None:
            self._rng = np.random.default_rng([*base, int(seed), _SALT])
        elif self._rng is None:
            self._rng = np.random.default_rng([*base, _SALT] if base else None)
        return self._rng

    def _draw(self) -> bool:
        """Whether this step is corrupted (one uniform per step, even at fraction 0 or 1)."""
        assert self._rng is not None
        return bool(self._rng.random() < self.fraction)


class PoisonedReward(_Poisoner):
    """Corrupt the reward of a seeded ``fraction`` of steps (see the module manual).

    Args:
        env: The env to poison.
        fraction: Probability that a step's reward is corrupted, in [0, 1].
        mode: ``"flip"`` (``-r``), ``"scale"`` (``scale * r``), ``"bias"`` (``r + bias``) or
            ``"targeted"`` (``r + bias`` when the action taken is ``target_action``, ``r``
            otherwise).
        scale: The factor of ``"scale"`` (finite).
        bias: The offset of ``"bias"`` and ``"targeted"`` (finite).
        target_action: The action ``"targeted"`` rewards: an element of the action space.
            A ``Box`` action counts as the target when every entry is within ``target_tol``
            times that entry's range (or absolute, where the range is infinite); other spaces
            compare exactly.
        target_tol: See ``target_action``; in [0, 1].
        seed: Seeds which steps are corrupted, with each ``reset(seed=...)``'s seed.

    Raises:
        ValueError: On a fraction outside [0, 1], an unknown mode, a non-finite scale or bias,
            ``target_action`` missing for ``"targeted"`` (or given for another mode) or not in
            the action space, or a bad seed; each names the argument.
    """

    def __init__(self, env: gym.Env, fraction: float, mode: str = "flip", *,
                 scale: float = -1.0, bias: float = 1.0, target_action: Any = None,
                 target_tol: float = 0.05, seed: int | None = None) -> None:
        RecordConstructorArgs.__init__(self, fraction=fraction, mode=mode, scale=scale,
                                       bias=bias, target_action=target_action,
                                       target_tol=target_tol, seed=seed)
        self.mode = _choice("mode", mode, REWARD_MODES)
        self.scale = _finite("scale", scale)
        self.bias = _finite("bias", bias)
        self.target_tol = _finite("target_tol", target_tol)
        if not 0.0 <= self.target_tol <= 1.0:
            raise ValueError(f"target_tol={target_tol!r} must be in [0, 1]")
        space = env.action_space
        if self.mode == "targeted":
            if target_action is None:
                raise ValueError("mode='targeted' needs target_action (the action the poisoned "
                                 "reward teaches)")
            target = np.asarray(target_action, dtype=space.dtype) \
                if isinstance(space, spaces.Box) else target_action
            if not space.contains(target):
                raise ValueError(f"target_action={target_action!r} is not in the action space "
                                 f"{space}")
            self.target_action = target
        elif target_action is not None:
            raise ValueError(f"target_action is only used with mode='targeted', not "
                             f"mode={mode!r}")
        else:
            self.target_action = None
        super().__init__(env, fraction, seed)
        if isinstance(space, spaces.Box):
            span = (space.high - space.low).astype(np.float64)
            self._tol = np.where(np.isfinite(span), self.target_tol * span, self.target_tol)

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """Reset the env; a seeded reset also restarts the poisoning's stream."""
        self._ensure_rng(seed)
        return self.env.reset(seed=seed, options=options)

    def _is_target(self, action: Any) -> bool:
        space = self.env.action_space
        if isinstance(space, spaces.Box):
            diff = np.abs(np.asarray(action, dtype=np.float64) - self.target_action)
            return bool(np.all(diff <= self._tol))
        return bool(np.array_equal(np.asarray(action), np.asarray(self.target_action)))

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step the env and corrupt the reward with probability ``fraction``."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._ensure_rng(None)
        hit = self._draw()
        if hit:
            r = float(reward)
            if self.mode == "flip":
                reward = -r
            elif self.mode == "scale":
                reward = self.scale * r
            elif self.mode == "bias" or self._is_target(action):
                reward = r + self.bias
            else:
                hit = False  # "targeted" with another action: nothing changed
        self.steps += 1
        self.poisoned_steps += hit
        return obs, reward, terminated, truncated, {**info, "poisoned": hit}


class PoisonedObservation(_Poisoner):
    """Corrupt a seeded ``fraction`` of the observations of a ``Box`` env (see the manual).

    Args:
        env: The env to poison; its observation space must be a ``Box``.
        fraction: Probability that an observation (of a reset or a step) is corrupted.
        mode: ``"noise"`` (add Gaussian noise of ``scale`` times each feature's range, or of
            ``scale`` where the range is infinite; clipped into the space) or ``"trigger"``
            (set the flat features ``trigger_features`` to ``trigger_value``, clipped).
        scale: Noise scale of ``"noise"``, >= 0.
        trigger_features: Flat indices of the trigger's features (``"trigger"`` only).
        trigger_value: The value they take (finite).
        seed: Seeds which observations are corrupted and the noise, with each
            ``reset(seed=...)``'s seed.

    Raises:
        ValueError: On a non-Box observation space, a fraction outside [0, 1], an unknown
            mode, a negative or non-finite scale, trigger features missing, repeated or out of
            range, or a bad seed; each names the argument.
    """

    def __init__(self, env: gym.Env, fraction: float, mode: str = "noise", *,
                 scale: float = 0.1, trigger_features: Sequence[int] | None = None,
                 trigger_value: float = 0.0, seed: int | None = None) -> None:
        RecordConstructorArgs.__init__(self, fraction=fraction, mode=mode, scale=scale,
                                       trigger_features=trigger_features,
                                       trigger_value=trigger_value, seed=seed)
        space = env.observation_space
        if not isinstance(space, spaces.Box):
            raise ValueError(f"PoisonedObservation needs a Box observation space, got {space}")
        self.mode = _choice("mode", mode, OBSERVATION_MODES)
        self.scale = _finite("scale", scale)
        if self.scale < 0:
            raise ValueError(f"scale={scale!r} must be >= 0")
        self.trigger_value = _finite("trigger_value", trigger_value)
        size = int(np.prod(space.shape))
        if self.mode == "trigger":
            if not trigger_features:
                raise ValueError("mode='trigger' needs trigger_features (flat indices of the "
                                 "observation features the trigger sets)")
            features = [int(i) for i in trigger_features]
            if any(i < 0 or i >= size for i in features) or len(set(features)) != len(features):
                raise ValueError(f"trigger_features={list(trigger_features)!r} must be distinct "
                                 f"indices in [0, {size})")
            self.trigger_features = np.asarray(features, dtype=np.int64)
        elif trigger_features is not None:
            raise ValueError(f"trigger_features is only used with mode='trigger', not "
                             f"mode={mode!r}")
        else:
            self.trigger_features = np.zeros(0, dtype=np.int64)
        super().__init__(env, fraction, seed)
        span = (space.high - space.low).astype(np.float64)
        self._sigma = np.where(np.isfinite(span), self.scale * span, self.scale)

    def _corrupt(self, obs: np.ndarray) -> tuple[np.ndarray, bool]:
        assert self._rng is not None
        if not self._draw():
            return obs, False
        space = self.env.observation_space
        if self.mode == "noise":
            out = obs + self._rng.normal(0.0, 1.0, obs.shape) * self._sigma
        else:
            out = np.array(obs, dtype=np.float64).reshape(-1)
            out[self.trigger_features] = self.trigger_value
            out = out.reshape(obs.shape)
        return np.clip(out, space.low, space.high).astype(space.dtype), True

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """Reset the env and corrupt its first observation with probability ``fraction``."""
        obs, info = self.env.reset(seed=seed, options=options)
        self._ensure_rng(seed)
        obs, hit = self._corrupt(obs)
        return obs, {**info, "poisoned": hit}

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step the env and corrupt the observation with probability ``fraction``."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._ensure_rng(None)
        obs, hit = self._corrupt(obs)
        self.steps += 1
        self.poisoned_steps += hit
        return obs, reward, terminated, truncated, {**info, "poisoned": hit}
