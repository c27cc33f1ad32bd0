"""Wrappers: action-space adapters that let any agent act in any env, and poisoned training.

An agent family needs a particular kind of action space: DQN needs ``Discrete``, TD3 / DDPG /
SAC need ``Box``, PPO / A2C take either. These wrappers translate:

============================  ==============================  ==================================
Wrapper                       Agent sees                      Environment receives
============================  ==============================  ==================================
:class:`BoxToDiscrete`        ``Discrete(levels ** n)``       the grid point (``levels`` evenly
                                                              spaced values per Box entry)
:class:`DiscreteToBox`        ``Box(-1, 1, (sum n_i,))``      the argmax of each segment (one
                                                              segment per discrete component)
:class:`MultiDiscreteToDiscrete`  ``Discrete(prod nvec)``     the mixed-radix digits of the index
============================  ==============================  ==================================

Each adapter has a cap on the size it creates (``max_actions`` / ``max_dims``); a space that
would exceed it raises :class:`AdapterNotApplicable` (a ``ValueError``) that says the size and the
cap, so a benchmark records the pairing as *not applicable* rather than building a
billion-action head.

:func:`adapt_action_space` picks the adapter an agent needs and returns its name (``None`` when
the env already fits), which the benchmark runner records with each result.

The poisoning wrappers (:class:`PoisonedReward`, :class:`PoisonedObservation`, their vector-env
versions :class:`VectorPoisonedReward`, :class:`VectorPoisonedObservation`, and the
adversarial-training :class:`VectorAdversarialObservation`) live in :mod:`qdrl_envs.poisoning`
and are importable from here.

This module imports only Gymnasium and NumPy.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import RecordConstructorArgs

from qdrl_envs.poisoning import (
    PoisonedObservation,
    PoisonedReward,
    VectorAdversarialObservation,
    VectorPoisonedObservation,
    VectorPoisonedReward,
)

__all__ = [
    "DEFAULT_LEVELS",
    "DEFAULT_MAX_ACTIONS",
    "DEFAULT_MAX_DIMS",
    "AdapterNotApplicable",
    "BoxToDiscrete",
    "DiscreteToBox",
    "MultiDiscreteToDiscrete",
    "PoisonedObservation",
    "PoisonedReward",
    "VectorAdversarialObservation",
    "VectorPoisonedObservation",
    "VectorPoisonedReward",
    "adapt_action_space",
    "adapter_for",
]

DEFAULT_LEVELS = 5
"""Grid levels per Box entry used by :class:`BoxToDiscrete` unless told otherwise."""
DEFAULT_MAX_ACTIONS = 4096
"""Cap on the number of discrete actions an adapter may create."""
DEFAULT_MAX_DIMS = 1024
"""Cap on the Box dimension :class:`DiscreteToBox` may create."""

ActionNeed = Literal["discrete", "box", "any"]
_NEEDS = ("discrete", "box", "any")


class AdapterNotApplicable(ValueError):
    """The adapter would exceed its size cap, or cannot handle this action space."""


def _int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return int(value)


class BoxToDiscrete(gym.ActionWrapper, RecordConstructorArgs):
    """Present a bounded ``Box`` action space as ``Discrete(levels ** n)``.

    Every Box entry (the space is flattened, ``n = prod(shape)``) takes one of ``levels`` evenly
    spaced values from its low to its high bound, ends included. Action index ``a`` is read as
    ``n`` base-``levels`` digits, entry 0 the most significant.

    Args:
        env: The environment, whose action space must be a Box with finite bounds.
        levels: Values per Box entry (>= 2).
        max_actions: Cap on ``levels ** n``.

    Raises:
        AdapterNotApplicable: If the space is not a finite Box, or ``levels ** n`` exceeds
            ``max_actions``.
        TypeError, ValueError: If ``levels`` or ``max_actions`` are not ints >= 2 / >= 1.
    """

    def __init__(self, env: gym.Env, levels: int = DEFAULT_LEVELS,
                 max_actions: int = DEFAULT_MAX_ACTIONS) -> None:
        RecordConstructorArgs.__init__(self, levels=levels, max_actions=max_actions)
        gym.ActionWrapper.__init__(self, env)
        levels = _int("levels", levels, 2)
        max_actions = _int("max_actions", max_actions, 1)
        space = env.action_space
        if not isinstance(space, spaces.Box):
            raise AdapterNotApplicable(f"BoxToDiscrete needs a Box action space, got {space}")
        if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
            raise AdapterNotApplicable(f"BoxToDiscrete needs finite Box bounds, got {space}")
        n = int(np.prod(space.shape))
        size = levels**n
        if size > max_actions:
            raise AdapterNotApplicable(
                f"BoxToDiscrete: {levels} levels on {n} Box entries make {levels}**{n} = {size} "
                f"actions, above the cap max_actions={max_actions}")
        self.levels = levels
        self._box = space
        self._n = n
        low = space.low.reshape(-1).astype(np.float64)
        high = space.high.reshape(-1).astype(np.float64)
        self._grid = low[:, None] + (high - low)[:, None] * np.linspace(0.0, 1.0, levels)[None, :]
        self.action_space = spaces.Discrete(size)

    def action(self, action: Any) -> np.ndarray:
        """Map a discrete index to the Box grid point.

        Raises:
            ValueError: If ``action`` is not an integer index of the discrete space.
        """
        index = _index(action, self.action_space.n)
        digits = np.unravel_index(index, (self.levels,) * self._n) if self._n else ()
        values = np.array([self._grid[i, d] for i, d in enumerate(digits)], dtype=np.float64)
        out = values.reshape(self._box.shape).astype(self._box.dtype)
        # float rounding of the grid must never leave the env's bounds
        return np.clip(out, self._box.low, self._box.high)


class DiscreteToBox(gym.ActionWrapper, RecordConstructorArgs):
    """Present a ``Discrete`` or ``MultiDiscrete`` action space as ``Box(-1, 1, (sum n_i,))``.

    The Box vector holds one segment of scores per discrete component (``n`` scores for
    ``Discrete(n)``; ``nvec[i]`` scores for component ``i`` of a MultiDiscrete); the environment
    receives the argmax of each segment (ties go to the lowest index), offset by the space's
    ``start``.

    Args:
        env: The environment, with a Discrete or (1-D) MultiDiscrete action space.
        max_dims: Cap on the Box dimension ``sum n_i``.

    Raises:
        AdapterNotApplicable: If the space is neither, or the dimension exceeds ``max_dims``.
    """

    def __init__(self, env: gym.Env, max_dims: int = DEFAULT_MAX_DIMS) -> None:
        RecordConstructorArgs.__init__(self, max_dims=max_dims)
        gym.ActionWrapper.__init__(self, env)
        max_dims = _int("max_dims", max_dims, 1)
        space = env.action_space
        if isinstance(space, spaces.Discrete):
            self._sizes = [int(space.n)]
            self._start = np.array([int(space.start)])
            self._multi = False
        elif isinstance(space, spaces.MultiDiscrete) and len(space.shape) == 1:
            self._sizes = [int(n) for n in space.nvec]
            self._start = np.asarray(space.start, dtype=np.int64).reshape(-1)
            self._multi = True
        else:
            raise AdapterNotApplicable(
                f"DiscreteToBox needs a Discrete or 1-D MultiDiscrete action space, got {space}")
        dims = sum(self._sizes)
        if dims > max_dims:
            raise AdapterNotApplicable(
                f"DiscreteToBox: {space} needs a Box of {dims} dimensions, above the cap "
                f"max_dims={max_dims}")
        self._bounds = np.cumsum([0, *self._sizes])
        self.action_space = spaces.Box(-1.0, 1.0, (dims,), dtype=np.float32)

    def action(self, action: Any) -> Any:
        """Map a score vector to the argmax of each segment.

        Raises:
            ValueError: If the vector has the wrong shape or holds NaN / inf.
        """
        vec = np.asarray(action, dtype=np.float64).reshape(-1)
        if vec.shape != self.action_space.shape:
            raise ValueError(f"DiscreteToBox action must have shape {self.action_space.shape}, "
                             f"got {np.shape(action)}")
        if not np.all(np.isfinite(vec)):
            raise ValueError(f"DiscreteToBox action contains NaN or inf: {vec.tolist()}")
        picks = np.array([int(np.argmax(vec[a:b]))
                          for a, b in zip(self._bounds[:-1], self._bounds[1:], strict=True)])
        picks = picks + self._start
        if self._multi:
            return picks.astype(np.int64)
        return int(picks[0])


class MultiDiscreteToDiscrete(gym.ActionWrapper, RecordConstructorArgs):
    """Present a ``MultiDiscrete(nvec)`` action space as ``Discrete(prod nvec)``.

    Index ``a`` is read as mixed-radix digits with radices ``nvec`` (component 0 the most
    significant, as ``np.unravel_index``), each offset by the space's ``start``.

    Args:
        env: The environment, with a 1-D MultiDiscrete action space.
        max_actions: Cap on ``prod(nvec)``.

    Raises:
        AdapterNotApplicable: If the space is not a 1-D MultiDiscrete, or ``prod(nvec)``
            exceeds ``max_actions``.
    """

    def __init__(self, env: gym.Env, max_actions: int = DEFAULT_MAX_ACTIONS) -> None:
        RecordConstructorArgs.__init__(self, max_actions=max_actions)
        gym.ActionWrapper.__init__(self, env)
        max_actions = _int("max_actions", max_actions, 1)
        space = env.action_space
        if not (isinstance(space, spaces.MultiDiscrete) and len(space.shape) == 1):
            raise AdapterNotApplicable(
                f"MultiDiscreteToDiscrete needs a 1-D MultiDiscrete action space, got {space}")
        self._nvec = tuple(int(n) for n in space.nvec)
        self._start = np.asarray(space.start, dtype=np.int64).reshape(-1)
        size = math.prod(self._nvec)
        if size > max_actions:
            raise AdapterNotApplicable(
                f"MultiDiscreteToDiscrete: {space} has {size} joint actions, above the cap "
                f"max_actions={max_actions}")
        self.action_space = spaces.Discrete(size)

    def action(self, action: Any) -> np.ndarray:
        """Map a joint index to the MultiDiscrete action.

        Raises:
            ValueError: If ``action`` is not an integer index of the discrete space.
        """
        index = _index(action, self.action_space.n)
        digits = np.array(np.unravel_index(index, self._nvec), dtype=np.int64)
        return digits + self._start


def _index(action: Any, n: int) -> int:
    arr = np.asarray(action)
    if arr.size != 1 or not (np.issubdtype(arr.dtype, np.integer)
                             or (np.issubdtype(arr.dtype, np.floating)
                                 and float(arr.reshape(-1)[0]).is_integer())):
        raise ValueError(f"action must be one integer index in [0, {n - 1}], got {action!r}")
    index = int(arr.reshape(-1)[0])
    if not 0 <= index < n:
        raise ValueError(f"action must be in [0, {n - 1}], got {index}")
    return index


def adapter_for(space: spaces.Space, need: str) -> str | None:
    """Name the adapter that turns ``space`` into what an agent ``need``s.

    Args:
        space: The environment's action space.
        need: ``"discrete"`` (e.g. DQN), ``"box"`` (TD3, DDPG, SAC) or ``"any"`` (PPO, A2C:
            Box, Discrete, MultiDiscrete all accepted).

    Returns:
        ``None`` when no adapter is needed, else the wrapper's class name.

    Raises:
        ValueError: If ``need`` is not one of the three.
        AdapterNotApplicable: If no adapter handles ``space`` (e.g. a Dict space).
    """
    if need not in _NEEDS:
        raise ValueError(f"need must be one of {_NEEDS}, got {need!r}")
    supported = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete)
    if not isinstance(space, supported):
        raise AdapterNotApplicable(f"no action adapter for {type(space).__name__} spaces; "
                                   "supported: Box, Discrete, MultiDiscrete")
    if need == "any":
        return None
    if need == "discrete":
        if isinstance(space, spaces.Discrete):
            return None
        if isinstance(space, spaces.Box):
            return BoxToDiscrete.__name__
        return MultiDiscreteToDiscrete.__name__
    if isinstance(space, spaces.Box):
        return None
    return DiscreteToBox.__name__


def adapt_action_space(env: gym.Env, need: str, *, levels: int = DEFAULT_LEVELS,
                       max_actions: int = DEFAULT_MAX_ACTIONS,
                       max_dims: int = DEFAULT_MAX_DIMS) -> tuple[gym.Env, str | None]:
    """Wrap ``env`` so that its action space is what an agent needs.

    Args:
        env: The environment.
        need: ``"discrete"``, ``"box"`` or ``"any"`` (see :func:`adapter_for`).
        levels: Grid levels per Box entry for :class:`BoxToDiscrete`.
        max_actions: Cap for :class:`BoxToDiscrete` and :class:`MultiDiscreteToDiscrete`.
        max_dims: Cap for :class:`DiscreteToBox`.

    Returns:
        ``(env, adapter)``: the (possibly) wrapped env and the adapter's name, or ``None`` when
        the env is returned unchanged.

    Raises:
        AdapterNotApplicable: When the needed adapter would exceed its cap (the message says the
            size and the cap) or no adapter handles the space.
        ValueError: If ``need`` is unknown.
    """
    name = adapter_for(env.action_space, need)
    if name is None:
        return env, None
    if name == BoxToDiscrete.__name__:
        return BoxToDiscrete(env, levels=levels, max_actions=max_actions), name
    if name == MultiDiscreteToDiscrete.__name__:
        return MultiDiscreteToDiscrete(env, max_actions=max_actions), name
    return DiscreteToBox(env, max_dims=max_dims), name
