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

**Vector envs.** :class:`VectorPoisonedReward` and :class:`VectorPoisonedObservation` do the
same to every row of a Gymnasium ``VectorEnv`` (a qdrl NumPy twin, a ``SyncVectorEnv``), row
for row what a ``SyncVectorEnv`` over single envs wrapped in :class:`PoisonedReward` /
:class:`PoisonedObservation` gives: row ``i`` keeps its own stream, restarted by a seeded reset
from ``(seed, row seed)`` as the single wrapper's (the row seed is ``seed + i`` for an int
seed, ``seed[i]`` for a list, as Gymnasium seeds the rows), and it draws exactly when the
single wrapper in that row would, in each autoreset mode (``SAME_STEP``: a finished row's
final observation, in ``info["final_obs"]``, is corrupted before the reset one; ``NEXT_STEP``:
the reset step draws no reward corruption; ``DISABLED``: masked resets corrupt the reset
observation). So poisoning a training run on a twin costs no speed, and the clean and poisoned
runs see the same channels. ``info["poisoned"]`` is a bool array over the rows (of the step's
observation; for a finished ``SAME_STEP`` row, of its final observation).

**Adversarial training.** :class:`VectorAdversarialObservation` replaces a seeded ``rate`` of
the rows' observations (of resets and steps) by ``attack(rows)``, a callable the trainer sets
(it computes the attack with the current policy: see :mod:`qdrl_bench.robustness`), clipped
into the observation space; this module knows no policy.

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
from collections.abc import Callable, Sequence
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import RecordConstructorArgs
from gymnasium.vector import AutoresetMode, VectorEnv, VectorWrapper

__all__ = [
    "OBSERVATION_MODES",
    "REWARD_MODES",
    "PoisonedObservation",
    "PoisonedReward",
    "VectorAdversarialObservation",
    "VectorPoisonedObservation",
    "VectorPoisonedReward",
]

REWARD_MODES: tuple[str, ...] = ("flip", "scale", "bias", "targeted")
OBSERVATION_MODES: tuple[str, ...] = ("noise", "trigger")

_SALT = 0x706F69736F6E  # "poison": keeps the wrapper's stream apart from the env's
_ATTACK_SALT = 0x617474616B  # "attak": the adversarial-training draw's stream


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
        reward, hit = self._poison(reward, action)
        self.steps += 1
        self.poisoned_steps += hit
        return obs, reward, terminated, truncated, {**info, "poisoned": hit}

    def _poison(self, reward: SupportsFloat, action: Any) -> tuple[SupportsFloat, bool]:
        """This step's reward after the draw, and whether it was corrupted."""
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
        return reward, hit


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


# ----------------------------------------------------------------------------- vector envs


class _SpacesOnly(gym.Env):
    """A stand-in env holding one row's spaces.

    The per-row streams of the vector wrappers are single-env wrappers around it, so their
    draws are the single wrappers' by construction.
    """

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space) -> None:
        self.observation_space = observation_space
        self.action_space = action_space


def _row_seeds(seed: Any, n: int) -> list[int | None]:
    """Per-row seeds of a vector reset, as Gymnasium's vector envs seed their rows."""
    if seed is None:
        return [None] * n
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return [int(seed) + i for i in range(n)]
    seeds = list(seed)
    if len(seeds) != n:
        raise ValueError(f"reset(seed=...) got {len(seeds)} seeds for {n} rows")
    return [None if s is None else int(s) for s in seeds]


class _VectorPoisoner(VectorWrapper):
    """What the vector wrappers share: one single-env wrapper per row, and autoreset bookkeeping."""

    def __init__(self, env: VectorEnv, rows: list[_Poisoner]) -> None:
        super().__init__(env)
        self.rows = rows
        self.autoreset_mode = AutoresetMode(env.metadata.get("autoreset_mode",
                                                             AutoresetMode.NEXT_STEP))
        self._resetting = np.zeros(env.num_envs, dtype=bool)  # NEXT_STEP: reset in this step

    @property
    def steps(self) -> int:
        """Row-steps taken (resets not counted), summed over rows."""
        return sum(r.steps for r in self.rows)

    @property
    def poisoned_steps(self) -> int:
        """Row-steps corrupted, summed over rows."""
        return sum(r.poisoned_steps for r in self.rows)

    def _restart(self, seed: Any, options: dict[str, Any] | None) -> np.ndarray:
        """Restart the streams of the rows being reset; return the mask of those rows."""
        n = self.num_envs
        mask = np.ones(n, dtype=bool)
        if options and "reset_mask" in options:
            mask = np.asarray(options["reset_mask"], dtype=bool)
        for i, s in enumerate(_row_seeds(seed, n)):
            if mask[i]:
                self.rows[i]._ensure_rng(s)
        self._resetting[mask] = False
        return mask

    def _stepped(self, terminated: Any, truncated: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(rows that stepped, rows whose episode ended)``; updates the NEXT_STEP bookkeeping."""
        done = np.asarray(terminated, dtype=bool) | np.asarray(truncated, dtype=bool)
        stepped = ~self._resetting
        if self.autoreset_mode == AutoresetMode.NEXT_STEP:
            self._resetting = done & stepped
        for i in range(self.num_envs):
            self.rows[i]._ensure_rng(None)
        return stepped, done & stepped


class VectorPoisonedReward(_VectorPoisoner):
    """:class:`PoisonedReward` on every row of a vector env (see the module manual).

    Args:
        env: The vector env; ``single_action_space`` is the space ``target_action`` lies in.
        fraction, mode, scale, bias, target_action, target_tol, seed: As
            :class:`PoisonedReward`.

    Raises:
        ValueError: As :class:`PoisonedReward`.
    """

    def __init__(self, env: VectorEnv, fraction: float, mode: str = "flip", *,
                 scale: float = -1.0, bias: float = 1.0, target_action: Any = None,
                 target_tol: float = 0.05, seed: int | None = None) -> None:
        stub = _SpacesOnly(env.single_observation_space, env.single_action_space)
        rows = [PoisonedReward(stub, fraction, mode, scale=scale, bias=bias,
                               target_action=target_action, target_tol=target_tol, seed=seed)
                for _ in range(env.num_envs)]
        super().__init__(env, list(rows))
        self.fraction, self.mode = rows[0].fraction, rows[0].mode

    def reset(self, *, seed: Any = None,
              options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """Reset the env; a seeded reset restarts each reset row's stream."""
        obs, info = self.env.reset(seed=seed, options=options)
        self._restart(seed, options)
        return obs, info

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        """Step the env and corrupt each stepping row's reward with probability ``fraction``."""
        obs, rewards, terminated, truncated, info = self.env.step(actions)
        stepped, _ = self._stepped(terminated, truncated)
        out = np.array(rewards, copy=True)
        hits = np.zeros(self.num_envs, dtype=bool)
        for i in np.flatnonzero(stepped):
            row = self.rows[i]
            out[i], hits[i] = row._poison(out[i], actions[i])
            row.steps += 1
            row.poisoned_steps += bool(hits[i])
        info = {**info, "poisoned": hits, "_poisoned": stepped.copy()}
        return obs, out, terminated, truncated, info


class VectorPoisonedObservation(_VectorPoisoner):
    """:class:`PoisonedObservation` on every row of a vector env with a ``Box`` row space.

    Args:
        env: The vector env.
        fraction, mode, scale, trigger_features, trigger_value, seed: As
            :class:`PoisonedObservation`.

    Raises:
        ValueError: As :class:`PoisonedObservation`.
    """

    def __init__(self, env: VectorEnv, fraction: float, mode: str = "noise", *,
                 scale: float = 0.1, trigger_features: Sequence[int] | None = None,
                 trigger_value: float = 0.0, seed: int | None = None) -> None:
        stub = _SpacesOnly(env.single_observation_space, env.single_action_space)
        rows = [PoisonedObservation(stub, fraction, mode, scale=scale,
                                    trigger_features=trigger_features,
                                    trigger_value=trigger_value, seed=seed)
                for _ in range(env.num_envs)]
        super().__init__(env, list(rows))
        self.fraction, self.mode = rows[0].fraction, rows[0].mode

    def _corrupt_rows(self, obs: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = np.array(obs, copy=True)
        hits = np.zeros(self.num_envs, dtype=bool)
        for i in np.flatnonzero(rows):
            out[i], hits[i] = self.rows[i]._corrupt(out[i])
        return out, hits

    def reset(self, *, seed: Any = None,
              options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """Reset the env and corrupt each reset row's first observation."""
        obs, info = self.env.reset(seed=seed, options=options)
        mask = self._restart(seed, options)
        obs, _ = self._corrupt_rows(obs, mask)
        return obs, info

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        """Step the env and corrupt each row's observation with probability ``fraction``."""
        obs, rewards, terminated, truncated, info = self.env.step(actions)
        resetting = self._resetting.copy()
        stepped, ended = self._stepped(terminated, truncated)
        out = np.array(obs, copy=True)
        hits = np.zeros(self.num_envs, dtype=bool)
        same_step = self.autoreset_mode == AutoresetMode.SAME_STEP
        if same_step and ended.any():
            final = np.array(info["final_obs"], copy=True)
            info = {**info, "final_obs": final}
        for i in range(self.num_envs):
            row = self.rows[i]
            if resetting[i]:  # NEXT_STEP: this row was reset, not stepped
                out[i], _ = row._corrupt(out[i])
                continue
            if same_step and ended[i]:  # the final observation, then the reset one
                final[i], hits[i] = row._corrupt(final[i])
                out[i], _ = row._corrupt(out[i])
            else:
                out[i], hits[i] = row._corrupt(out[i])
            row.steps += 1
            row.poisoned_steps += bool(hits[i])
        info = {**info, "poisoned": hits, "_poisoned": stepped.copy()}
        return out, rewards, terminated, truncated, info


class VectorAdversarialObservation(VectorWrapper):
    """Replace a seeded ``rate`` of the rows' observations by an attacked version.

    Each reset and step, each row is attacked with probability ``rate`` (one uniform draw per
    row from the wrapper's own stream, restarted from ``seed`` by a seeded reset); the rows
    drawn go through ``attack`` (a callable ``(k, *obs_shape) array -> same shape``, set by the
    trainer, which computes it with the current policy), clipped into the observation space.
    While ``attack`` is ``None`` nothing changes (the draws still happen). A ``SAME_STEP``
    final observation stays clean: it is not acted on. ``attacked_steps`` / ``steps`` count the
    row-steps.

    Args:
        env: The vector env (``Box`` row observations).
        rate: Probability that a row's observation is attacked, in [0, 1].
        attack: The attack (settable later as ``.attack``).
        seed: Seeds the draw.

    Raises:
        ValueError: On a non-Box observation space, a rate outside [0, 1] or a bad seed.
    """

    def __init__(self, env: VectorEnv, rate: float,
                 attack: Callable[[np.ndarray], np.ndarray] | None = None, *,
                 seed: int | None = None) -> None:
        super().__init__(env)
        space = env.single_observation_space
        if not isinstance(space, spaces.Box):
            raise ValueError(f"VectorAdversarialObservation needs a Box observation space, "
                             f"got {space}")
        self.rate = _fraction(rate)
        self.attack_seed = _seed(seed)
        self.attack = attack
        self._rng = np.random.default_rng(
            None if self.attack_seed is None else [self.attack_seed, _ATTACK_SALT])
        self.steps = 0
        self.attacked_steps = 0

    def _apply(self, obs: np.ndarray, count: bool) -> np.ndarray:
        hit = self._rng.random(self.num_envs) < self.rate
        if count:
            self.steps += self.num_envs
        if self.attack is None or not hit.any():
            return obs
        space = self.env.single_observation_space
        out = np.array(obs, copy=True)
        attacked = np.asarray(self.attack(out[hit]), dtype=np.float64)
        out[hit] = np.clip(attacked, space.low, space.high).astype(space.dtype)
        if count:
            self.attacked_steps += int(hit.sum())
        return out

    def reset(self, *, seed: Any = None,
              options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """Reset the env (a seeded reset restarts the draw) and attack the drawn rows."""
        obs, info = self.env.reset(seed=seed, options=options)
        if seed is not None and self.attack_seed is not None:
            first = seed if isinstance(seed, (int, np.integer)) else next(
                (s for s in seed if s is not None), 0)
            self._rng = np.random.default_rng([self.attack_seed, int(first), _ATTACK_SALT])
        return self._apply(obs, count=False), info

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        """Step the env and attack the drawn rows' observations."""
        obs, rewards, terminated, truncated, info = self.env.step(actions)
        return self._apply(obs, count=True), rewards, terminated, truncated, info
