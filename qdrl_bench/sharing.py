"""Share trained agents without pickles: weights as tensors, everything else as JSON.

SB3's own files (:func:`qdrl_bench.registry.save_agent`) are pickles: ``model.zip`` holds
cloudpickled objects and ``vecnormalize.pkl`` is one, so loading a crafted file runs its code.
An agent meant to travel is exported instead::

    from qdrl_bench.sharing import export_agent, import_agent

    export_agent(model, "shared/ppo-secrecy", name="ppo",
                 env_id="qdrl/SecrecyPowerControl-v1", timesteps=100_000)
    model, obs_filter = import_agent("shared/ppo-secrecy")     # no unpickling
    action, _ = model.predict(obs_filter(obs), deterministic=True)

The folder holds two files:

* ``policy.pt``: the policy's ``state_dict`` (tensors only), read back with
  ``torch.load(weights_only=True)``, PyTorch's restricted loader, which refuses any object but
  tensors and plain containers;
* ``agent.json``: how to rebuild the policy and what it needs at evaluation: the registry agent,
  env id and kwargs, action adapter, the algorithm's arguments as the run resolved them from its
  hyperparameter file and kwargs (so the import does not depend on today's files), the training
  budget (parameter-matched agents size their network from it), the spaces' shapes, and the
  frozen ``VecNormalize`` observation statistics when it trained normalised.

The import builds the agent afresh from ``agent.json`` through the registry (the same code that
built it for training) and loads the weights into it, strictly (every tensor name and shape must
match). It is for evaluation and deployment: optimiser state and replay buffers do not travel
(continue training from SB3's own files, on a machine you trust).
"""

from __future__ import annotations

import json
import math
import os
import pickle
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.vec_env import VecNormalize, unwrap_vec_wrapper

from qdrl_bench import registry

__all__ = ["CONFIG_FILE", "FORMAT", "WEIGHTS_FILE", "ObsNormalizer", "export_agent",
           "import_agent"]

WEIGHTS_FILE = "policy.pt"
CONFIG_FILE = "agent.json"
FORMAT = "qdrl-agent/1"
"""The ``format`` field of ``agent.json`` this version writes and reads."""

_KEYS = {  # agent.json's fields and their JSON types
    "format": str, "agent": str, "env_id": str, "env_kwargs": dict,
    "max_episode_steps": (int, type(None)), "adapter": dict, "algo_kwargs": dict,
    "timesteps": int, "observation_shape": list, "action_space": str,
    "normalize": (dict, type(None)),
}
_NORMALIZE_KEYS = {"mean": list, "var": list, "epsilon": (int, float), "clip_obs": (int, float)}


class SharedAgentError(ValueError):
    """A shared agent's folder is missing, malformed or does not fit its description."""


def _json_plain(value: Any, where: str) -> Any:
    """``value`` as plain JSON (tuples to lists); refuses objects JSON cannot hold exactly."""
    if isinstance(value, Mapping):
        return {str(k): _json_plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, (bool, str, type(None))):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value):
            raise SharedAgentError(f"{where}: {value!r} cannot be written as JSON")
        return float(value)
    raise SharedAgentError(f"{where}: {type(value).__name__} {value!r} is not JSON; pass "
                           "settings as a hyperparameter file writes them (names, numbers)")


def export_agent(model: Any, directory: str | os.PathLike[str], *, name: str, env_id: str,
                 timesteps: int, env_kwargs: Mapping[str, Any] | None = None,
                 kwargs: Mapping[str, Any] | None = None,
                 max_episode_steps: int | None = None) -> list[str]:
    """Write ``policy.pt`` and ``agent.json`` for a trained SB3 model (see the module manual).

    Args:
        model: The trained model (its env, if it is a ``VecNormalize``, gives the statistics).
        directory: Where to write (created).
        name: Its registry agent (``ppo``, ``q-ppo-hybrid``, ...).
        env_id: The env it trained on.
        timesteps: Its training budget (as the run's).
        env_kwargs: The env's kwargs.
        kwargs: The sweep kwargs it trained with (resolved against the agent's hyperparameter
            file now, and written resolved).
        max_episode_steps: The env's time limit, if the run set one.

    Returns:
        The paths written.

    Raises:
        SharedAgentError: If a setting cannot be written as JSON.
    """
    settings = registry.train_settings(name, env_id, kwargs)
    env = model.get_env()
    norm = unwrap_vec_wrapper(env, VecNormalize) if env is not None else None
    normalize = None
    if norm is not None and norm.norm_obs:
        normalize = {"mean": np.asarray(norm.obs_rms.mean, float).tolist(),
                     "var": np.asarray(norm.obs_rms.var, float).tolist(),
                     "epsilon": float(norm.epsilon), "clip_obs": float(norm.clip_obs)}
    config = _json_plain({
        "format": FORMAT, "agent": name, "env_id": env_id, "env_kwargs": dict(env_kwargs or {}),
        "max_episode_steps": max_episode_steps, "adapter": dict(settings.adapter or {}),
        "algo_kwargs": dict(settings.algo_kwargs), "timesteps": int(timesteps),
        "observation_shape": list(model.observation_space.shape),
        "action_space": repr(model.action_space), "normalize": normalize,
    }, "agent")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().clone() for k, v in model.policy.state_dict().items()}
    torch.save(state, out / WEIGHTS_FILE)
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return [str(out / WEIGHTS_FILE), str(out / CONFIG_FILE)]


def _read_config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SharedAgentError(f"{path}: no {CONFIG_FILE} there") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SharedAgentError(f"{path}: not readable JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise SharedAgentError(f"{path}: expected a JSON object, got {type(config).__name__}")
    if config.get("format") != FORMAT:
        raise SharedAgentError(f"{path}: format: expected {FORMAT!r}, got "
                               f"{config.get('format')!r}")
    for key, kind in _KEYS.items():
        if key not in config:
            raise SharedAgentError(f"{path}: {key}: missing")
        if not isinstance(config[key], kind) or isinstance(config[key], bool):
            raise SharedAgentError(f"{path}: {key}: wrong type {type(config[key]).__name__}")
    unknown = sorted(set(config) - set(_KEYS))
    if unknown:
        raise SharedAgentError(f"{path}: unknown keys {unknown}")
    norm = config["normalize"]
    if norm is not None:
        for key, kind in _NORMALIZE_KEYS.items():
            if not isinstance(norm.get(key), kind) or isinstance(norm.get(key), bool):
                raise SharedAgentError(f"{path}: normalize.{key}: missing or of the wrong type")
        shape = config["observation_shape"]
        for key in ("mean", "var"):
            values = np.asarray(norm[key], dtype=float) if _numbers(norm[key]) else None
            if values is None or list(values.shape) != shape or not np.isfinite(values).all():
                raise SharedAgentError(f"{path}: normalize.{key}: expected finite numbers of "
                                       f"shape {shape}")
        if (np.asarray(norm["var"]) < 0).any() or norm["epsilon"] <= 0 or norm["clip_obs"] <= 0:
            raise SharedAgentError(f"{path}: normalize: var must be >= 0, epsilon and clip_obs "
                                   "> 0")
    return config


def _numbers(value: Any) -> bool:
    """Whether ``value`` is a number or nested lists of numbers (no bools, no strings)."""
    if isinstance(value, list):
        return all(_numbers(v) for v in value)
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class ObsNormalizer:
    """``VecNormalize.normalize_obs`` of frozen statistics (the same arithmetic and dtype).

    Callable on observations like the ``obs_filter`` the runner evaluates with; its
    statistics (``mean``, ``var``, ``epsilon``, ``clip_obs``) are attributes, so the
    robustness attacks can differentiate through it (:mod:`qdrl_bench.robustness`).
    """

    def __init__(self, mean: Any, var: Any, epsilon: float, clip_obs: float) -> None:
        self.mean = np.asarray(mean, dtype=np.float64)
        self.var = np.asarray(var, dtype=np.float64)
        self.epsilon = float(epsilon)
        self.clip_obs = float(clip_obs)

    @classmethod
    def of(cls, vec_normalize: Any) -> ObsNormalizer:
        """The current statistics of a ``VecNormalize`` (a copy: later updates do not show)."""
        rms = vec_normalize.obs_rms
        return cls(np.array(rms.mean, dtype=np.float64), np.array(rms.var, dtype=np.float64),
                   vec_normalize.epsilon, vec_normalize.clip_obs)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """Normalise ``obs`` (float32, as ``VecNormalize.normalize_obs`` returns it)."""
        return np.clip((obs - self.mean) / np.sqrt(self.var + self.epsilon), -self.clip_obs,
                       self.clip_obs).astype(np.float32)


def _obs_filter(norm: Mapping[str, Any]) -> Callable[[np.ndarray], np.ndarray]:
    """``VecNormalize.normalize_obs`` of frozen statistics (the same arithmetic and dtype)."""
    return ObsNormalizer(norm["mean"], norm["var"], norm["epsilon"], norm["clip_obs"])


def import_agent(directory: str | os.PathLike[str]) -> tuple[Any, Any]:
    """Rebuild an exported agent: ``(model, obs_filter)``, without unpickling anything.

    Returns:
        The model (on the CPU) and the frozen observation normaliser, or ``None`` when it
        trained without one; evaluate as ``model.predict(obs_filter(obs))``, or pass it as
        ``obs_filter`` to :func:`qdrl_bench.execute.evaluate`.

    Raises:
        SharedAgentError: If ``agent.json`` is missing or malformed, ``policy.pt`` is missing,
            is not a plain file of tensors (a pickle of any other object is refused unread),
            or does not fit the policy ``agent.json`` describes (names, shapes).
    """
    base = Path(directory)
    config = _read_config(base / CONFIG_FILE)
    weights = base / WEIGHTS_FILE
    if not weights.is_file():
        raise SharedAgentError(f"{weights}: no weights there")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SharedAgentError(f"{weights}: not a file of tensors (refused by "
                               f"torch.load(weights_only=True)): {first}") from exc
    if not isinstance(state, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise SharedAgentError(f"{weights}: expected a mapping of names to tensors")
    entry = registry.get_agent(config["agent"])
    env, _ = registry.make_train_env(
        config["env_id"], config["env_kwargs"], n_envs=1, action_need=entry.action_need,
        adapter=config["adapter"], max_episode_steps=config["max_episode_steps"])
    shape = list(env.observation_space.shape)
    if shape != config["observation_shape"]:
        raise SharedAgentError(f"{base / CONFIG_FILE}: observation_shape "
                               f"{config['observation_shape']} but {config['env_id']} with its "
                               f"kwargs observes {shape}")
    model, _ = registry.build_agent(config["agent"], env, seed=0, timesteps=config["timesteps"],
                                    kwargs={**config["algo_kwargs"], "device": "cpu"})
    if repr(model.action_space) != config["action_space"]:
        raise SharedAgentError(f"{base / CONFIG_FILE}: action_space {config['action_space']} "
                               f"but the rebuilt agent acts in {model.action_space!r}")
    try:
        model.policy.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise SharedAgentError(f"{weights}: does not fit the policy {CONFIG_FILE} describes: "
                               f"{' '.join(str(exc).split())[:400]}") from exc
    model.policy.set_training_mode(False)
    norm = config["normalize"]
    return model, None if norm is None else _obs_filter(norm)
