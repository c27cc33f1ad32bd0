"""Baseline policies: heuristics and oracles every agent is scored against.

Every baseline answers ``predict(obs, state=None, episode_start=None, deterministic=True) ->
(action, state)`` like a stable-baselines3 model, so the benchmark runner scores agents and
baselines the same way. A baseline is built from the environment it will act in
(``Baseline(env, **kwargs)``); oracles read the true state from ``env.unwrapped``.

Baselines live one module per environment (``qdrl_envs.baselines.secrecy``, ...), each exposing
a ``BASELINES`` dict ``name -> class``. Use :func:`baseline_names` and :func:`make_baseline`::

    env = gym.make("qdrl/SecrecyPowerControl-v1")
    oracle = make_baseline("oracle", env)
    action, _ = oracle.predict(obs)
"""

from __future__ import annotations

import importlib
from typing import Any

import gymnasium as gym

from qdrl_envs.baselines.base import BaselinePolicy, RandomPolicy

__all__ = ["BaselinePolicy", "RandomPolicy", "baseline_classes", "baseline_names", "make_baseline"]

_MODULES: dict[str, str] = {
    "qdrl/SecrecyPowerControl-v1": "qdrl_envs.baselines.secrecy",
    "qdrl/DTSyncAoI-v0": "qdrl_envs.baselines.dt_sync",
    "qdrl/DTMigration-v0": "qdrl_envs.baselines.dt_migration",
    "qdrl/SemanticSlicing-v1": "qdrl_envs.baselines.semantic_slicing",
    "qdrl/MobileTransmitter-v1": "qdrl_envs.baselines.mobile_transmitter",
}


def _env_id(env_or_id: gym.Env | str) -> str:
    if isinstance(env_or_id, str):
        return env_or_id
    spec = getattr(env_or_id, "spec", None) or getattr(env_or_id.unwrapped, "spec", None)
    if spec is None:
        raise ValueError(f"cannot tell which qdrl environment {env_or_id!r} is: it has no spec; "
                         "create it with gym.make or pass the id")
    return spec.id


def baseline_classes(env_or_id: gym.Env | str) -> dict[str, type[BaselinePolicy]]:
    """Return ``name -> class`` of the baselines of one environment.

    Raises:
        ValueError: If the id is not a qdrl environment.
    """
    env_id = _env_id(env_or_id)
    if env_id not in _MODULES:
        raise ValueError(f"no baselines for {env_id!r}; known environments: {sorted(_MODULES)}")
    module = importlib.import_module(_MODULES[env_id])
    return dict(module.BASELINES)


def baseline_names(env_or_id: gym.Env | str) -> list[str]:
    """Return the names of the baselines of one environment (``random`` always among them)."""
    return sorted(baseline_classes(env_or_id))


def make_baseline(name: str, env: gym.Env, **kwargs: Any) -> BaselinePolicy:
    """Build the baseline ``name`` for ``env`` (made with ``gym.make``).

    Raises:
        ValueError: If ``name`` is not a baseline of that environment (the message lists them).
    """
    classes = baseline_classes(env)
    if name not in classes:
        raise ValueError(f"unknown baseline {name!r} for {_env_id(env)}; "
                         f"choose from {sorted(classes)}")
    return classes[name](env, **kwargs)
