"""Train stable-baselines3 on a Gymnasium vector env: :class:`VectorEnvAdapter`.

SB3 steps its own :class:`~stable_baselines3.common.vec_env.VecEnv` type, and its
``DummyVecEnv`` steps one Python env per row. A Gymnasium :class:`~gymnasium.vector.VectorEnv`
steps all rows in one call, and the NumPy-batched twins registered as ``vector_entry_point``
(``gym.make_vec(id, n, vectorization_mode="vector_entry_point",
                autoreset_mode=AutoresetMode.SAME_STEP)``) do so at millions of
env-steps per second. This adapter presents any of them to SB3 with SB3's own semantics::

    import gymnasium as gym
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecMonitor, VecNormalize
    from qdrl_agents import VectorEnvAdapter

    venv = VecMonitor(VectorEnvAdapter(gym.make_vec("qdrl/DTSyncAoI-v0", num_envs=64,
                                                    vectorization_mode="vector_entry_point",
                                                    autoreset_mode=AutoresetMode.SAME_STEP)))
    model = PPO("MlpPolicy", VecNormalize(venv), n_steps=64).learn(100_000)

What SB3 expects, and what the adapter does:

* Autoreset in the step that ends an episode: the returned row is the new episode's first
  observation, ``infos[i]["terminal_observation"]`` the last one, and
  ``infos[i]["TimeLimit.truncated"]`` whether a time limit (not a terminal state) ended it, as
  ``DummyVecEnv`` sets on every step (PPO bootstraps truncated episodes from it). The wrapped env
  must autoreset in the same step (``AutoresetMode.SAME_STEP``: build the qdrl twins with
  ``gym.make_vec(id, n, autoreset_mode=AutoresetMode.SAME_STEP)`` and a ``SyncVectorEnv`` with
  ``autoreset_mode=AutoresetMode.SAME_STEP``) or not at all
  (``DISABLED``: the adapter resets finished rows with ``options={"reset_mask": ...}``).
  Gymnasium's default ``NEXT_STEP`` spends a step on the reset, which SB3 cannot express; it is
  refused with that explanation.
* ``seed(s)`` then ``reset()``: row ``i`` is reset with ``s + i``, as ``DummyVecEnv`` seeds its
  envs; seeds and ``set_options`` apply to the next reset only. ``reset_infos`` holds each row's
  last reset info (explicit or automatic).
* ``infos`` is a list of one dict per row, unbatched from Gymnasium's masked layout (a row has
  the keys whose ``_key`` mask is set). ``info_keys`` limits which keys are unbatched: the
  per-row dicts cost a Python loop over rows and keys, which a cheap batched env would
  otherwise spend more time on than on its physics; SB3's own keys are always there.
* ``get_attr``, ``set_attr``, ``env_method`` and ``env_is_wrapped`` reach the sub-envs of a
  vector env that has them (``SyncVectorEnv``); on a batched twin, which has no sub-env
  objects, ``get_attr`` reads the attribute of the vector env itself (the same for every row:
  ``render_mode``, ``config``, ``spec``), and the others raise ``AttributeError`` naming the
  env.
* ``render()`` / ``get_images()`` use the vector env's ``render()`` when it renders
  ``rgb_array`` frames per row.

The adapter works under ``VecMonitor``, ``VecNormalize``, ``VecFrameStack`` and
``stable_baselines3.common.evaluation.evaluate_policy``; it needs only gymnasium and SB3.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.vec_env.base_vec_env import (
    VecEnv,
    VecEnvIndices,
    VecEnvObs,
    VecEnvStepReturn,
)

__all__ = ["VectorEnvAdapter", "unbatch_info"]

_OWN_KEYS = ("final_obs", "final_info")


def unbatch_info(info: dict[str, Any], i: int,
                 keys: Iterable[str] | None = None) -> dict[str, Any]:
    """Row ``i`` of a Gymnasium vector info: the entries whose ``_key`` mask is set there.

    Args:
        info: A vector info (keys with batched values and optional ``_key`` masks; nested dicts
            recursively). A key without a mask counts as present in every row.
        i: The row.
        keys: Top-level keys to unbatch (default: all but ``final_obs`` / ``final_info``).

    Returns:
        A dict of Python scalars (for 0-d entries) and arrays (for the rest).
    """
    out: dict[str, Any] = {}
    for key in info if keys is None else keys:
        if key.startswith("_") or key in _OWN_KEYS or key not in info:
            continue
        mask = info.get(f"_{key}")
        if mask is not None and not mask[i]:
            continue
        value = info[key]
        if isinstance(value, dict):
            out[key] = unbatch_info(value, i)
            continue
        item = value[i]
        if isinstance(item, np.ndarray) and item.ndim == 0:
            item = item.item()
        elif isinstance(item, np.generic):
            item = item.item()
        out[key] = item
    return out


class VectorEnvAdapter(VecEnv):
    """A Gymnasium :class:`~gymnasium.vector.VectorEnv` as a stable-baselines3 ``VecEnv``.

    See the module manual for the semantics.

    Args:
        venv: The vector env (a qdrl twin from ``gym.make_vec``, or a ``SyncVectorEnv`` /
            ``AsyncVectorEnv`` built with ``autoreset_mode=AutoresetMode.SAME_STEP``).
        info_keys: Top-level info keys to hand out per row; ``None`` (default) hands out all,
            ``()`` only SB3's (``terminal_observation``, ``TimeLimit.truncated``).

    Raises:
        TypeError: If ``venv`` is not a Gymnasium ``VectorEnv``.
        ValueError: If it autoresets in the next step (``NEXT_STEP``).
    """

    def __init__(self, venv: gym.vector.VectorEnv, *,
                 info_keys: Sequence[str] | None = None) -> None:
        if not isinstance(venv, gym.vector.VectorEnv):
            raise TypeError(f"VectorEnvAdapter needs a gymnasium.vector.VectorEnv, got "
                            f"{type(venv).__name__}; wrap a single env with SB3's DummyVecEnv")
        mode = AutoresetMode(venv.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP))
        if mode == AutoresetMode.NEXT_STEP:
            raise ValueError(
                f"{type(venv).__name__} autoresets in the next step (AutoresetMode.NEXT_STEP), "
                "which SB3 cannot express: SB3 expects the first observation of the new "
                "episode in the step that ends the old one. Build the vector env with "
                "autoreset_mode=AutoresetMode.SAME_STEP (or DISABLED): gym.make_vec(id, n, "
                "vectorization_mode='vector_entry_point', autoreset_mode=AutoresetMode."
                "SAME_STEP) for a qdrl twin")
        self.venv = venv
        self.autoreset_mode = mode
        self.info_keys = None if info_keys is None else tuple(info_keys)
        self._actions: np.ndarray | None = None
        super().__init__(venv.num_envs, venv.single_observation_space,
                         venv.single_action_space)

    # ------------------------------------------------------------------ stepping

    def _rows(self, info: dict[str, Any]) -> list[dict[str, Any]]:
        return [unbatch_info(info, i, self.info_keys) for i in range(self.num_envs)]

    def _obs(self, obs: Any) -> VecEnvObs:
        space = self.observation_space
        if isinstance(space, gym.spaces.Box) and isinstance(obs, np.ndarray):
            return obs if obs.dtype == space.dtype else obs.astype(space.dtype)
        return obs

    def reset(self) -> VecEnvObs:
        """Reset every row, with the seeds of :meth:`seed` and options of ``set_options``.

        Raises:
            ValueError: If rows were given different options (a vector env takes one dict).
        """
        seeds = None if all(s is None for s in self._seeds) else list(self._seeds)
        options = [o for o in self._options if o]
        if options and (len(options) != self.num_envs
                        or any(o != options[0] for o in options)):
            raise ValueError("VectorEnvAdapter: set_options gave rows different options; a "
                             "vector env resets with one options dict for all rows")
        obs, info = self.venv.reset(seed=seeds, options=options[0] if options else None)
        self.reset_infos = self._rows(info)
        self._reset_seeds()
        self._reset_options()
        return self._obs(obs)

    def step_async(self, actions: np.ndarray) -> None:
        """Keep the batch of actions for :meth:`step_wait`."""
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        """Step every row; rows whose episode ended are reset in this step."""
        if self._actions is None:
            raise RuntimeError("VectorEnvAdapter.step_wait() called without step_async()")
        actions, self._actions = self._actions, None
        obs, rewards, terminated, truncated, info = self.venv.step(actions)
        terminated = np.asarray(terminated, dtype=bool)
        truncated = np.asarray(truncated, dtype=bool)
        dones = terminated | truncated
        ended = np.flatnonzero(dones).tolist()
        if ended and self.autoreset_mode == AutoresetMode.DISABLED:
            last_obs, step_info = obs, info
            obs, info = self.venv.reset(options={"reset_mask": dones})
            final_obs = [last_obs[i] for i in ended]
        elif ended:
            step_info = info.get("final_info", {})
            final_obs = [info["final_obs"][i] for i in ended]
        infos = []
        for i in range(self.num_envs):
            if dones[i]:
                row = unbatch_info(step_info, i, self.info_keys)
                self.reset_infos[i] = unbatch_info(info, i, self.info_keys)
            else:
                row = unbatch_info(info, i, self.info_keys)
            row["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
            infos.append(row)
        for j, i in enumerate(ended):
            infos[i]["terminal_observation"] = final_obs[j]
        return (self._obs(obs), np.asarray(rewards, dtype=np.float32), dones, infos)

    def close(self) -> None:
        """Close the vector env."""
        self.venv.close()

    # ------------------------------------------------------------------ sub-env access

    def _subenvs(self, what: str) -> Sequence[gym.Env]:
        envs = getattr(self.venv, "envs", None)
        if envs is None:
            raise AttributeError(
                f"{type(self.venv).__name__} is one batched env with no sub-env objects, so "
                f"VectorEnvAdapter cannot {what} per row; use a SyncVectorEnv for that")
        return envs

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """An attribute of each row's env (of the batched env itself on a twin)."""
        idx = list(self._get_indices(indices))
        envs = getattr(self.venv, "envs", None)
        if envs is None:
            return [getattr(self.venv, attr_name)] * len(idx)
        return [envs[i].get_wrapper_attr(attr_name) for i in idx]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Set an attribute on each row's env (sub-envs only)."""
        envs = self._subenvs(f"set {attr_name!r}")
        for i in self._get_indices(indices):
            envs[i].set_wrapper_attr(attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None,
                   **method_kwargs: Any) -> list[Any]:
        """Call a method of each row's env (sub-envs only)."""
        envs = self._subenvs(f"call {method_name!r}")
        return [envs[i].get_wrapper_attr(method_name)(*method_args, **method_kwargs)
                for i in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper],
                       indices: VecEnvIndices = None) -> list[bool]:
        """Whether each row's env is wrapped in ``wrapper_class`` (``False`` on a twin)."""
        idx = list(self._get_indices(indices))
        envs = getattr(self.venv, "envs", None)
        if envs is None:
            return [False] * len(idx)
        from stable_baselines3.common import env_util

        return [env_util.is_wrapped(envs[i], wrapper_class) for i in idx]

    def get_images(self) -> Sequence[np.ndarray | None]:
        """One ``rgb_array`` frame per row, from the vector env's ``render()``."""
        if self.render_mode != "rgb_array":
            return [None] * self.num_envs
        frames = self.venv.render()
        if frames is None:
            return [None] * self.num_envs
        return list(frames)
