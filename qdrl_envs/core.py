"""Physics written once, run single or batched.

Every qdrl environment is built from three pieces:

* a :class:`BatchedCore` — the model of the environment on ``N`` independent instances, its
  state held in NumPy arrays with a leading axis of length ``N``;
* :class:`CoreEnv` — the single :class:`gymnasium.Env`, which drives a core with ``N = 1``;
* :class:`CoreVectorEnv` — the NumPy-batched :class:`gymnasium.vector.VectorEnv` twin registered
  as ``vector_entry_point``, which drives the same core with ``N = num_envs``.

Because both run the same core, the batched twin cannot drift from the single environment.

Randomness. Each instance owns its own ``np.random.Generator``; the single env's is its
``self.np_random``. The vector env seeds instance ``i`` exactly as Gymnasium's
``SyncVectorEnv`` would (``seed + i``), and resets finished instances in the same step
(``AutoresetMode.SAME_STEP``, the final observation in ``info["final_obs"]``), so every instance
consumes its generator in the same order as a single env that calls ``reset()`` at the end of
each episode: for the same seeds and actions, sub-env ``i`` reproduces ``gym.make(id)`` reset
with ``seed + i``. Cores draw through :func:`draw`, which calls each instance's generator once
per draw and stacks the results, or through :class:`Uniforms`, which draws the same numbers in
a compiled loop (cores whose model runs in :mod:`qdrl_envs.jit` kernels).

A core's state may live in NumPy arrays updated by NumPy expressions (the secrecy env) or by
compiled kernels looping over instances (the other four, where a slot is dozens of tiny
operations). Either way ``reset``, ``step`` and ``observe`` take and return NumPy arrays with the
leading instance axis, and the arrays they hand out are never written again.
"""

from __future__ import annotations

import abc
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

import gymnasium as gym
import numba
import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from qdrl_envs.config import EnvConfig, check_int, resolve_config
from qdrl_envs.jit import kernel
from qdrl_envs.validation import check_action

ConfigT = TypeVar("ConfigT", bound=EnvConfig)


def draw(rngs: Sequence[np.random.Generator],
         fn: Callable[[np.random.Generator], np.ndarray]) -> np.ndarray:
    """Draw one block of random numbers per instance and stack them on a leading axis.

    Args:
        rngs: One generator per instance.
        fn: Called once with each generator, e.g. ``lambda g: g.standard_normal((M, K))``.

    Returns:
        Array of shape ``(len(rngs), *block_shape)``.
    """
    if len(rngs) == 1:
        return np.asarray(fn(rngs[0]))[None]
    return np.stack([np.asarray(fn(g)) for g in rngs])


@kernel
def _fill_draws(gens, rows, n_uniform, out):  # pragma: no cover - compiled
    for j in range(rows.shape[0]):
        g = gens[rows[j]]
        for k in range(n_uniform):
            out[j, k] = g.random()
        for k in range(n_uniform, out.shape[1]):
            out[j, k] = g.standard_exponential()


class Uniforms:
    """Each instance's uniforms, drawn from its own generator: ``take(rngs, idx, width)``.

    ``take`` returns exactly what ``np.stack([g.random(width) for g in rngs])`` would, and
    leaves every generator in the same state; with ``exponential=k`` the last ``k`` columns are
    ``g.standard_exponential(k)`` drawn after the uniforms instead (an ``Exp(1)`` fading power
    without a logarithm per draw). With one instance it calls the generator; with several, a
    compiled loop draws from the generators directly (numba's ``Generator`` support
    reproduces NumPy's streams, which a test checks), removing the Python call per instance
    that otherwise bounds a cheap vector env (about 0.7 us each: at 1024 instances the calls
    alone would cost more than the model). The compiled loop needs the generators as a numba
    typed list; it is kept for all ``N`` instances and rebuilt only when one of them is
    replaced (a seeded reset), about 50 us per instance.

    Args:
        num_envs: Number of instances ``N``.
    """

    def __init__(self, num_envs: int) -> None:
        check_int("num_envs", num_envs, low=1)
        self.num_envs = num_envs
        self._py: list[np.random.Generator | None] = [None] * num_envs
        self._typed: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"num_envs": self.num_envs}  # the generators belong to the env, not to this

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["num_envs"])  # type: ignore[misc]

    def take(self, rngs: Sequence[np.random.Generator], idx: np.ndarray | None,
             width: int, exponential: int = 0) -> np.ndarray:
        """The next ``width`` draws of each instance in ``idx`` (all when ``None``).

        Args:
            rngs: The generators of those instances (``rngs[j]`` belongs to ``idx[j]``).
            idx: Instance indices, or ``None`` for ``0..N-1``.
            width: Draws per instance.
            exponential: How many of the ``width`` (the last ones) are standard exponentials;
                the others are uniforms in ``[0, 1)``.

        Returns:
            Shape ``(len(rngs), width)``.
        """
        n_uniform = width - exponential
        if len(rngs) == 1:
            g = rngs[0]
            if not exponential:
                return g.random(width)[None]
            out = np.empty((1, width))
            g.random(out=out[0, :n_uniform])
            g.standard_exponential(out=out[0, n_uniform:])
            return out
        rows = np.arange(len(rngs)) if idx is None else np.asarray(idx, dtype=np.int64)
        py = self._py
        known = py if idx is None else [py[i] for i in rows.tolist()]
        if self._typed is None or not all(map(operator.is_, rngs, known)):
            for g, i in zip(rngs, rows.tolist(), strict=True):
                py[i] = g
            # Instances never seen yet hold a stand-in until their own generator arrives.
            self._typed = numba.typed.List([rngs[0] if g is None else g for g in py])
        out = np.empty((len(rngs), width))
        _fill_draws(self._typed, rows, n_uniform, out)
        return out


@dataclass
class StepResult:
    """What :meth:`BatchedCore.step` returns for the whole batch.

    Attributes:
        reward: ``(N,)`` float64 rewards.
        terminated: ``(N,)`` bool, genuine terminal states only (time limits truncate).
        info: Metric name -> array with leading axis ``N`` (physical units, see each env).
    """

    reward: np.ndarray
    terminated: np.ndarray
    info: dict[str, np.ndarray]


class BatchedCore(abc.ABC, Generic[ConfigT]):
    """The model of one environment on ``num_envs`` independent instances.

    Subclasses set ``single_observation_space`` and ``single_action_space`` in ``__init__`` and
    implement :meth:`reset`, :meth:`step` and :meth:`observe` on arrays with a leading batch axis.

    Args:
        config: The validated environment config.
        num_envs: Number of instances ``N``.
    """

    single_observation_space: spaces.Space
    single_action_space: spaces.Space

    def __init__(self, config: ConfigT, num_envs: int) -> None:
        self.config = config
        self.num_envs = num_envs

    @abc.abstractmethod
    def reset(self, rngs: Sequence[np.random.Generator], idx: np.ndarray,
              options: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
        """Start new episodes for the instances ``idx`` (``rngs[j]`` belongs to ``idx[j]``).

        Returns:
            Reset info: metric name -> array with leading axis ``len(idx)`` (may be empty).
        """

    @abc.abstractmethod
    def step(self, actions: np.ndarray, rngs: Sequence[np.random.Generator]) -> StepResult:
        """Advance every instance one step with validated ``actions`` (leading axis ``N``)."""

    @abc.abstractmethod
    def observe(self) -> np.ndarray:
        """Return the float32 observations of all instances, shape ``(N, *obs_shape)``.

        A new array after every ``reset`` and ``step`` (the single env hands its row out as
        is), which later calls never write into.
        """


def with_masks(info: dict[str, Any], mask: np.ndarray) -> dict[str, Any]:
    """Lay out a batched info the way Gymnasium's vector envs do: each key with its ``_key`` mask.

    Args:
        info: Metric name -> array with leading axis ``N`` (nested dicts allowed).
        mask: ``(N,)`` bool, the rows that have these entries.

    Returns:
        A new dict: every key as given (nested dicts recursively laid out), and beside it
        ``_key``, a copy of ``mask``.
    """
    out: dict[str, Any] = {}
    for key, value in info.items():
        out[key] = with_masks(value, mask) if isinstance(value, dict) else value
        out[f"_{key}"] = mask.copy()
    return out


def merge_rows(info: dict[str, Any], rows_info: dict[str, Any], idx: np.ndarray,
               rows: np.ndarray) -> None:
    """Make rows ``idx`` of a masked vector info hold ``rows_info`` and nothing else, in place.

    What Gymnasium's ``SAME_STEP`` autoreset shows for a sub-env that was just reset: the reset
    info of its new episode, with every other key masked off for that row (the step's info is
    in ``final_info``).

    Args:
        info: A vector info laid out by :func:`with_masks` (keys and ``_key`` masks).
        rows_info: Name -> array with leading axis ``len(idx)`` (nested dicts allowed).
        idx: The rows, as indices.
        rows: The same rows as an ``(N,)`` bool mask.
    """
    n = rows.shape[0]
    for key in [k for k in info if not k.startswith("_") and k not in rows_info
                and k not in ("final_obs", "final_info")]:
        mask = info[f"_{key}"]
        mask[rows] = False
        if isinstance(info[key], dict):
            merge_rows(info[key], {}, idx, rows)
    for key, value in rows_info.items():
        mask = info.get(f"_{key}")
        if mask is None:
            mask = np.zeros(n, dtype=bool)
        if isinstance(value, dict):
            sub = info.get(key)
            if not isinstance(sub, dict):
                sub = {}
            merge_rows(sub, value, idx, rows)
            info[key] = sub
        else:
            value = np.asarray(value)
            old = info.get(key)
            if old is None or not isinstance(old, np.ndarray) or old.shape[1:] != value.shape[1:]:
                old = np.zeros((n, *value.shape[1:]), dtype=value.dtype)
            else:
                old = old.copy()  # the step's array may be handed out as final_info too
            old[idx] = value
            info[key] = old
        mask[rows] = True
        info[f"_{key}"] = mask


class CoreEnv(gym.Env, Generic[ConfigT]):
    """A single Gymnasium environment driven by a :class:`BatchedCore` with one instance.

    Subclasses set ``config_cls`` and ``core_cls`` and write the manual in their docstring;
    rendering hooks are :meth:`_render_ansi` and :meth:`_render_rgb_array`.

    Args:
        config: A config instance or mapping (defaults when ``None``).
        render_mode: ``None``, ``"ansi"`` or ``"rgb_array"``.
        **kwargs: Config field overrides (what ``gym.make(id, **kwargs)`` forwards).

    Raises:
        ValueError: On unknown config fields, invalid values or an unknown render mode.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}
    config_cls: type[ConfigT]
    core_cls: type[BatchedCore[ConfigT]]

    def __init__(self, config: ConfigT | dict[str, Any] | None = None,
                 render_mode: str | None = None, **kwargs: Any) -> None:
        self.config: ConfigT = resolve_config(self.config_cls, config, kwargs)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or one of "
                             f"{self.metadata['render_modes']}, got {render_mode!r}")
        self.render_mode = render_mode
        self.core: BatchedCore[ConfigT] = self.core_cls(self.config, 1)
        self.observation_space = self.core.single_observation_space
        self.action_space = self.core.single_action_space
        self._needs_reset = True

    @staticmethod
    def _unbatch(info: dict[str, np.ndarray]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in info.items():
            if isinstance(value, np.ndarray):  # the common case, kept cheap
                out[key] = value.item(0) if value.ndim == 1 else value[0]
            elif isinstance(value, dict):
                out[key] = CoreEnv._unbatch(value)
            else:
                item = np.asarray(value)[0]
                out[key] = item.item() if item.ndim == 0 else item
        return out

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode; ``seed`` makes it fully reproducible. See the class manual."""
        super().reset(seed=seed)
        info = self.core.reset([self.np_random], np.array([0]), options)
        self._needs_reset = False
        return self.core.observe()[0], self._unbatch(info)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Apply ``action`` for one slot. Raises ``ValueError`` on an invalid action."""
        if self._needs_reset:
            raise RuntimeError("call reset() before step()")
        act = check_action(self.action_space, action)
        result = self.core.step(act[None], [self.np_random])
        obs = self.core.observe()[0]
        return (obs, float(result.reward[0]), bool(result.terminated[0]), False,
                self._unbatch(result.info))

    def render(self) -> str | np.ndarray | None:
        """Render according to ``render_mode`` (``None`` renders nothing)."""
        if self.render_mode == "ansi":
            return self._render_ansi()
        if self.render_mode == "rgb_array":
            return self._render_rgb_array()
        return None

    def _render_ansi(self) -> str:
        return f"{type(self).__name__} obs={np.array2string(self.core.observe()[0], precision=3)}"

    def _render_rgb_array(self) -> np.ndarray:  # pragma: no cover - overridden where useful
        raise NotImplementedError(f"{type(self).__name__} has no rgb_array rendering")


class CoreVectorEnv(VectorEnv, Generic[ConfigT]):
    """The NumPy-batched twin of a :class:`CoreEnv`: one core with ``num_envs`` instances.

    Autoreset is ``SAME_STEP``: an instance that terminates or truncates is reset within the
    same ``step`` call. ``info`` is laid out as Gymnasium's ``SyncVectorEnv`` lays it out in that
    mode: every key with a ``_key`` mask of the rows that have it; for a row that was reset,
    ``info["final_obs"][i]`` (an object array, ``None`` elsewhere) and ``info["final_info"]``
    hold the episode's last observation and step info (masked by ``_final_obs`` /
    ``_final_info``), and the top-level keys of that row hold the new episode's reset info
    only (the step's other keys are masked off there).

    Args:
        num_envs: Number of sub-environments.
        max_episode_steps: Truncation horizon (``gym.make_vec`` passes the registered one);
            ``None`` never truncates.
        config: A config instance or mapping; ``**kwargs`` override its fields.
        render_mode: Accepted for compatibility; only ``None`` is supported when batched.

    Raises:
        ValueError: On invalid ``num_envs``, ``max_episode_steps`` or config.
    """

    metadata: ClassVar[dict[str, Any]] = {"autoreset_mode": AutoresetMode.SAME_STEP}
    config_cls: type[ConfigT]
    core_cls: type[BatchedCore[ConfigT]]

    def __init__(self, num_envs: int = 1, max_episode_steps: int | None = None,
                 config: ConfigT | dict[str, Any] | None = None,
                 render_mode: str | None = None, **kwargs: Any) -> None:
        check_int("num_envs", num_envs, low=1)
        if max_episode_steps is not None:
            check_int("max_episode_steps", max_episode_steps, low=1)
        if render_mode is not None:
            raise ValueError(f"{type(self).__name__} does not render; got render_mode="
                             f"{render_mode!r}")
        self.config: ConfigT = resolve_config(self.config_cls, config, kwargs)
        self.num_envs = num_envs
        self.max_episode_steps = max_episode_steps
        self.render_mode = None
        self.core: BatchedCore[ConfigT] = self.core_cls(self.config, num_envs)
        self.single_observation_space = self.core.single_observation_space
        self.single_action_space = self.core.single_action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._rngs: list[np.random.Generator] = [seeding.np_random(None)[0]
                                                 for _ in range(num_envs)]
        self._elapsed = np.zeros(num_envs, dtype=np.int64)
        self._needs_reset = True

    def reset(self, *, seed: int | list[int | None] | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset every sub-environment; ``seed`` an int (sub-env ``i`` gets ``seed + i``) or list.

        Raises:
            ValueError: If a seed list does not have ``num_envs`` entries.
        """
        if seed is not None:
            seeds = seed if isinstance(seed, list) else [seed + i for i in range(self.num_envs)]
            if len(seeds) != self.num_envs:
                raise ValueError(f"seed list must have num_envs={self.num_envs} entries, "
                                 f"got {len(seeds)}")
            self._rngs = [seeding.np_random(s)[0] for s in seeds]
        idx = np.arange(self.num_envs)
        info = self.core.reset(self._rngs, idx, options)
        self._elapsed[:] = 0
        self._needs_reset = False
        return self.core.observe().copy(), with_masks(info, np.ones(self.num_envs, dtype=bool))

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                          dict[str, Any]]:
        """Step every sub-environment; finished ones are reset in the same call.

        Raises:
            ValueError: On an invalid batch of actions (shape, NaN/inf, outside the space).
        """
        if self._needs_reset:
            raise RuntimeError("call reset() before step()")
        acts = check_action(self.single_action_space, actions, batch=self.num_envs)
        result = self.core.step(acts, self._rngs)
        obs = self.core.observe().copy()
        self._elapsed += 1
        terminated = np.asarray(result.terminated, dtype=bool)
        truncated = np.zeros(self.num_envs, dtype=bool)
        if self.max_episode_steps is not None:
            truncated = (self._elapsed >= self.max_episode_steps) & ~terminated
        done = terminated | truncated
        every = np.ones(self.num_envs, dtype=bool)
        info = with_masks(result.info, every)
        if done.any():
            idx = np.flatnonzero(done)
            final_obs = np.full(self.num_envs, None, dtype=object)
            for i in idx.tolist():
                final_obs[i] = obs[i]
            info["final_obs"], info["_final_obs"] = final_obs, done.copy()
            info["final_info"], info["_final_info"] = with_masks(result.info, done), done.copy()
            reset_info = self.core.reset([self._rngs[i] for i in idx], idx, None)
            self._elapsed[idx] = 0
            obs = self.core.observe().copy()
            merge_rows(info, reset_info, idx, done)
        return obs, np.asarray(result.reward, dtype=np.float64), terminated, truncated, info
