"""Per-environment defaults of the learning agents, in rl-zoo3's hyperparameter-file format.

``qdrl_bench/hyperparams/<agent>.yml`` holds, per env id, what an agent of the registry trains
with on that env, in the format rl-zoo3 users know::

    qdrl/DTSyncAoI-v0:
      n_envs: 16                 # rows of the vector twin trained on
      n_timesteps: !!float 1e5   # the budget when a sweep gives none
      normalize: "{'norm_obs': True, 'norm_reward': True}"  # or true / false / a mapping
      policy: MlpPolicy          # optional; the registry picks the policy class
      gamma: 0.9                 # ... any argument of the SB3 algorithm's constructor
      learning_rate: lin_3e-4    # rl-zoo3's linear schedule (lin_<initial>)
      policy_kwargs: "dict(net_arch=dict(pi=[64, 64], vf=[64, 64]))"  # or a mapping

Which file an agent reads: ``<agent name>.yml`` when it exists, else that of its family's
parent (``q-ppo-hybrid`` and ``q-ppo`` read ``q-ppo.yml``; ``ppo-small`` reads ``ppo.yml``;
``q-ppo.yml`` falls back to nothing). A key ``default`` in a file applies to env ids the file
does not list (rl-zoo3 has no such key; it saves repeating one setting on every env).

Strings that rl-zoo3 evaluates as Python (``"dict(...)"``, ``"{'norm_obs': ...}"``,
``nn.ReLU``) are parsed here without evaluating code: literals only, ``dict(...)`` calls of
literals, and the activation names of :data:`ACTIVATIONS`. Everything is checked when a file is
read, and every error names the file, the line and the key.

Precedence, lowest first: the registry's budget defaults, the file, a sweep's ``kwargs`` (which
may also set ``n_envs`` and ``normalize``). ``normalize`` wraps the training env in SB3's
``VecNormalize`` (``gamma`` taken from the algorithm); evaluation normalises observations with
the statistics frozen, and rewards are always reported in the env's own units.
"""

from __future__ import annotations

import ast
import difflib
import inspect
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import gymnasium as gym
import yaml

import qdrl_envs  # noqa: F401  (registers the qdrl ids: files may list them)
from qdrl_bench.agents import ALGOS, get_agent
from qdrl_bench.spec import SpecError, read_yaml

__all__ = [
    "ACTIVATIONS",
    "DEFAULT_DIR",
    "RUN_KEYS",
    "TUNING_FILE",
    "Hyperparams",
    "dump_hyperparams",
    "file_for",
    "hyperparams_for",
    "load_hyperparams",
    "parse_entry",
    "parse_hyperparams",
    "resolve_schedules",
]

DEFAULT_DIR = Path(__file__).parent / "hyperparams"
"""Where the registry's files live."""

TUNING_FILE = "tuning.json"
"""What ``qdrl-bench tune`` writes beside the files: the studies behind each tuned entry."""

RUN_KEYS = ("n_envs", "n_timesteps", "normalize")
"""Keys that set up the run rather than the algorithm (not passed to its constructor)."""

ACTIVATIONS = ("ReLU", "Tanh", "ELU", "LeakyReLU", "SiLU", "GELU", "Sigmoid")
"""``policy_kwargs.activation_fn`` names accepted (``nn.`` prefix optional)."""

_NORMALIZE_KEYS = ("norm_obs", "norm_reward", "clip_obs", "clip_reward", "epsilon",
                   "norm_obs_keys")
_REFUSED = {"frame_stack": "qdrl envs are not image envs",
            "env_wrapper": "the registry adapts action spaces itself",
            "vec_env_wrapper": "use normalize", "callback": "sweeps take no callbacks",
            "n_envs_eval": "evaluation is part of the sweep's eval section"}
DEFAULT_KEY = "default"


@dataclass(frozen=True)
class Hyperparams:
    """What one file says for one env id (plain YAML values, JSON-able).

    Attributes:
        n_envs: Rows of the vector env trained on.
        n_timesteps: Training budget when the sweep gives none (``None``: not set).
        normalize: ``VecNormalize`` keyword arguments, or ``None`` for no normalisation.
        algo_kwargs: Arguments of the SB3 algorithm (``policy_kwargs`` included); schedules
            still as strings (see :func:`resolve_schedules`).
        source: ``file:line`` of the entry.
    """

    n_envs: int = 1
    n_timesteps: int | None = None
    normalize: Mapping[str, Any] | None = None
    algo_kwargs: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""

    def as_kwargs(self) -> dict[str, Any]:
        """The entry as sweep-style kwargs: algorithm arguments plus ``n_envs``/``normalize``."""
        out = dict(self.algo_kwargs)
        out["n_envs"] = self.n_envs
        out["normalize"] = None if self.normalize is None else dict(self.normalize)
        return out


def _safe_literal(text: str, where: str) -> Any:
    """Parse an rl-zoo3 Python-expression string without evaluating code."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise SpecError(f"{where}: not a Python literal: {text!r} ({exc.msg})") from exc

    def conv(node: ast.AST) -> Any:
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id == "dict" and not node.args:
            return {kw.arg: conv(kw.value) for kw in node.keywords}
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id == "nn":
            return f"nn.{node.attr}"
        if isinstance(node, ast.Dict):
            return {conv(k): conv(v) for k, v in zip(node.keys, node.values, strict=True)}
        if isinstance(node, (ast.List, ast.Tuple)):
            return [conv(e) for e in node.elts]
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -conv(node.operand)
        raise SpecError(f"{where}: only literals, dict(...) and nn.<Activation> are accepted "
                        f"(no code is evaluated), got {ast.unparse(node)!r}")

    return conv(tree.body)


@cache
def algo_params(algo: str) -> dict[str, inspect.Parameter]:
    """The constructor parameters of ``algo``'s SB3 class a file may set (cached)."""
    import stable_baselines3  # heavy (torch): imported when a file is first checked

    cls = getattr(stable_baselines3, ALGOS[algo][0])
    params = dict(inspect.signature(cls.__init__).parameters)
    for name in ("self", "policy", "env", "seed", "device", "_init_setup_model"):
        params.pop(name, None)
    return params


def _check_type(value: Any, param: inspect.Parameter, where: str) -> None:
    default = param.default
    if default is inspect.Parameter.empty or default is None:
        return
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer())
    elif isinstance(default, float):
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool)) or (
            param.name == "learning_rate" and isinstance(value, str))
    elif isinstance(default, str):
        ok = isinstance(value, (str, int, float)) and not isinstance(value, bool)
    elif isinstance(default, tuple):
        ok = isinstance(value, (list, tuple, int))
    else:
        return
    if not ok:
        raise SpecError(f"{where}: must be like its default {default!r} "
                        f"({type(default).__name__}), got {type(value).__name__} {value!r}")


def _check_schedule(value: Any, where: str) -> None:
    if isinstance(value, str):
        if not value.startswith("lin_"):
            raise SpecError(f"{where}: a schedule string must be lin_<initial value>, "
                            f"got {value!r}")
        try:
            float(value[4:])
        except ValueError as exc:
            raise SpecError(f"{where}: lin_ must be followed by a number, got {value!r}") from exc


def _check_policy_kwargs(value: Any, where: str) -> dict[str, Any]:
    if isinstance(value, str):
        value = _safe_literal(value, where)
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise SpecError(f"{where}: must be a mapping of keyword arguments, got {value!r}")
    out = dict(value)
    act = out.get("activation_fn")
    if act is not None:
        name = act[3:] if isinstance(act, str) and act.startswith("nn.") else act
        if name not in ACTIVATIONS:
            raise SpecError(f"{where}.activation_fn: must be one of {list(ACTIVATIONS)}, "
                            f"got {act!r}")
        out["activation_fn"] = name
    return out


def _check_normalize(value: Any, where: str) -> dict[str, Any] | None:
    if isinstance(value, str):
        value = _safe_literal(value, where)
    if value is None or value is False:
        return None
    if value is True:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(f"{where}: must be true, false or a mapping of VecNormalize "
                        f"arguments {list(_NORMALIZE_KEYS)}, got {value!r}")
    for key in value:
        if key not in _NORMALIZE_KEYS:
            raise SpecError(f"{where}.{key}: unknown VecNormalize argument; allowed: "
                            f"{list(_NORMALIZE_KEYS)}")
    return dict(value)


def _int(value: Any, where: str, low: int) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise SpecError(f"{where}: must be an integer >= {low}, got {value!r}")
    return value


def parse_entry(entry: Any, algo: str, where: str,
                key_where: Callable[[str], str] | None = None) -> Hyperparams:
    """Check one env's entry of a file for ``algo`` and return it.

    Args:
        entry: The entry's mapping.
        algo: Lower-case SB3 algorithm (``ppo``, ...).
        where: ``file:line: env id`` for messages about the entry.
        key_where: The same prefix for a key's own line (default: ``where``).

    Raises:
        SpecError: On unknown keys, wrong types or unparseable strings.
    """
    if entry is None:
        entry = {}
    if not isinstance(entry, Mapping):
        raise SpecError(f"{where}: must be a mapping of hyperparameters, got {entry!r}")
    params = algo_params(algo)
    n_envs, n_timesteps, normalize = 1, None, None
    algo_kwargs: dict[str, Any] = {}
    for key, value in entry.items():
        at = f"{key_where(key) if key_where else where}.{key}"
        if key == "n_envs":
            n_envs = _int(value, at, 1)
        elif key == "n_timesteps":
            n_timesteps = _int(value, at, 1)
        elif key == "normalize":
            normalize = _check_normalize(value, at)
        elif key == "policy":
            if value != "MlpPolicy":
                raise SpecError(f"{at}: the registry chooses the policy class; only "
                                f"'MlpPolicy' (rl-zoo3's usual entry) is accepted, got {value!r}")
        elif key == "policy_kwargs":
            algo_kwargs[key] = _check_policy_kwargs(value, at)
        elif key in _REFUSED:
            raise SpecError(f"{at}: not supported here: {_REFUSED[key]}")
        elif key in params:
            _check_type(value, params[key], at)
            if key in ("learning_rate", "clip_range", "clip_range_vf"):
                _check_schedule(value, at)
            default = params[key].default
            if isinstance(default, int) and not isinstance(default, bool) \
                    and isinstance(value, float):
                value = int(value)  # an integral float such as 1e5, checked above
            algo_kwargs[key] = value
        else:
            raise SpecError(f"{at}: unknown hyperparameter {key!r} for {algo.upper()}; allowed: "
                            f"{sorted([*RUN_KEYS, 'policy', 'policy_kwargs', *params])}")
    return Hyperparams(n_envs=n_envs, n_timesteps=n_timesteps, normalize=normalize,
                       algo_kwargs=algo_kwargs, source=where.split(": ")[0])


def parse_hyperparams(text: str, algo: str, source: str = "<hyperparams>",
                      known_ids: Any = None) -> dict[str, Hyperparams]:
    """Parse a hyperparameter file's text for ``algo``: env id -> :class:`Hyperparams`.

    Args:
        text: The YAML text.
        algo: Lower-case SB3 algorithm the file configures.
        source: The file name for messages.
        known_ids: Env ids the file may list (default: Gymnasium's registry, qdrl ids
            included); the key ``default`` is always allowed.

    Raises:
        SpecError: ``source:line: key: ...`` for malformed YAML, unknown env ids, unknown
            keys or wrong types.
    """
    data, lines = read_yaml(text, source)
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise SpecError(f"{source}:1: a hyperparameter file maps env ids to settings, got "
                        f"{type(data).__name__}")
    if known_ids is None:
        known_ids = set(gym.registry)
    out: dict[str, Hyperparams] = {}
    for env_id, entry in data.items():
        where = f"{source}:{lines.get((env_id,))}: {env_id}"
        if env_id != DEFAULT_KEY and env_id not in known_ids:
            close = difflib.get_close_matches(str(env_id), sorted(known_ids), n=3)
            raise SpecError(f"{where}: unknown environment id {env_id!r}"
                            + (f"; did you mean {close}?" if close else ""))
        out[str(env_id)] = parse_entry(
            entry, algo, where,
            lambda key, env_id=env_id: f"{source}:{lines.get((env_id, key))}: {env_id}")
    return out


@lru_cache(maxsize=64)
def _load_cached(path: str, mtime_ns: int, algo: str) -> dict[str, Hyperparams]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: cannot read the hyperparameter file: {exc}") from exc
    return parse_hyperparams(text, algo, source=path)


def load_hyperparams(path: str | Path, algo: str) -> dict[str, Hyperparams]:
    """Read and check a hyperparameter file (cached until the file changes)."""
    p = Path(path)
    try:
        mtime = p.stat().st_mtime_ns
    except OSError as exc:
        raise SpecError(f"{p}: cannot read the hyperparameter file: {exc}") from exc
    return _load_cached(str(p), mtime, algo)


def file_for(agent: str, directory: str | Path | None = None) -> Path | None:
    """The file an agent of the registry reads (see the module manual), or ``None``."""
    entry = get_agent(agent)
    base = Path(directory) if directory is not None else DEFAULT_DIR
    prefix = "q-" if entry.family in ("quantum", "hybrid") else ""
    for name in dict.fromkeys((agent, f"{prefix}{entry.algo}")):
        path = base / f"{name}.yml"
        if path.is_file():
            return path
    return None


def hyperparams_for(agent: str, env_id: str,
                    directory: str | Path | None = None) -> Hyperparams:
    """What ``agent`` trains with on ``env_id``: its file's entry, else the file's ``default``.

    Returns:
        The entry, or an empty :class:`Hyperparams` (one env, no normalisation) when no file
        or entry applies.

    Raises:
        SpecError: If the file is malformed.
    """
    path = file_for(agent, directory)
    if path is None:
        return Hyperparams()
    entries = load_hyperparams(path, get_agent(agent).algo)
    return entries.get(env_id) or entries.get(DEFAULT_KEY) or Hyperparams()


def describe_settings(agent: str, env_id: str, directory: str | Path | None = None) -> str:
    """Where ``agent``'s settings on ``env_id`` come from, for the report: file and tuning.

    ``"ppo.yml:12, tuned: 8 trials (6 complete, 2 pruned) x 50000 steps"`` when the
    directory's ``tuning.json`` (written by ``qdrl-bench tune``) has the study of that entry
    (``..., best of 3 finalists on 3 seeds`` when its finalists were confirmed),
    ``"... hand-set (not its tuning study's best, trial 3)"`` for an entry that differs from
    the study's best settings (kept or edited by hand), ``"ppo-small.yml:20, hand-set"``
    without a study, ``"SB3 defaults"`` without an entry; never
    raises (a malformed file is described as such).
    """
    if get_agent(agent).engine == "torchrl":
        return "CTDEConfig defaults"
    try:
        entry = hyperparams_for(agent, env_id, directory)
    except SpecError as exc:
        return f"malformed file: {str(exc).splitlines()[0]}"
    if not entry.source:
        return "SB3 defaults"
    path, _, line = entry.source.rpartition(":")
    where = f"{Path(path).name}:{line}"
    summary = Path(path).parent / TUNING_FILE
    try:
        doc = json.loads(summary.read_text())
        studies = [s for s in doc.get("studies", [])
                   if s.get("env_id") == env_id and s.get("file") == Path(path).name]
    except (OSError, ValueError, AttributeError):
        studies = []
    if not studies:
        return f"{where}, hand-set"
    best = studies[0].get("best_settings")
    if isinstance(best, Mapping) and not _same_entry(entry, best, get_agent(agent).algo):
        return (f"{where}, hand-set (not its tuning study's best, trial "
                f"{studies[0].get('best_trial', '?')})")
    t = studies[0].get("trials", {})
    done = int(t.get("complete", 0)) + int(t.get("pruned", 0))
    steps = studies[0].get("timesteps_per_trial", doc.get("timesteps_per_trial", "?"))
    seeds = studies[0].get("best_seeds", 1)
    confirmed = (f", best of {len(studies[0].get('finalists') or [])} finalists on {seeds} "
                 "seeds" if isinstance(seeds, int) and seeds > 1 else "")
    return (f"{where}, tuned: {done} trials ({t.get('complete', 0)} complete, "
            f"{t.get('pruned', 0)} pruned) x {steps} steps{confirmed}")


def _same_entry(entry: Hyperparams, settings: Mapping[str, Any], algo: str) -> bool:
    """Whether a file entry trains as a study's ``best_settings`` would (else hand-set)."""
    try:
        other = parse_entry(dict(settings), algo, "tuning.json")
    except SpecError:
        return False
    return (entry.n_envs, entry.n_timesteps, entry.normalize, dict(entry.algo_kwargs)) == (
        other.n_envs, other.n_timesteps, other.normalize, dict(other.algo_kwargs))


def resolve_schedules(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Turn file strings into objects for the algorithm: ``lin_x`` schedules, activations.

    Args:
        kwargs: Algorithm keyword arguments (as a file or sweep gives them).

    Returns:
        A copy with ``lin_<x>`` replaced by a linear schedule from ``x`` to 0 (rl-zoo3's
        convention) and ``policy_kwargs.activation_fn`` names by ``torch.nn`` classes.
    """
    out = dict(kwargs)
    for key in ("learning_rate", "clip_range", "clip_range_vf"):
        value = out.get(key)
        if isinstance(value, str) and value.startswith("lin_"):
            out[key] = _Linear(float(value[4:]))
    pk = out.get("policy_kwargs")
    if isinstance(pk, Mapping) and isinstance(pk.get("activation_fn"), str):
        import torch.nn as nn  # heavy: imported only for a named activation

        name = pk["activation_fn"].removeprefix("nn.")
        if name not in ACTIVATIONS:
            raise ValueError(f"policy_kwargs.activation_fn must be one of {list(ACTIVATIONS)}, "
                             f"got {pk['activation_fn']!r}")
        out["policy_kwargs"] = {**pk, "activation_fn": getattr(nn, name)}
    return out


@dataclass(frozen=True)
class _Linear:
    """rl-zoo3's ``lin_<x>``: ``x * progress_remaining`` (picklable, unlike a lambda)."""

    initial: float

    def __call__(self, progress_remaining: float) -> float:
        return progress_remaining * self.initial


def dump_hyperparams(entries: Mapping[str, Mapping[str, Any]], header: str = "") -> str:
    """Write entries (env id -> settings) as a hyperparameter file's YAML text.

    Args:
        entries: Env id -> keyword arguments (``n_envs``, ``normalize``, algorithm arguments).
        header: Comment lines put first (each prefixed ``# ``).

    Returns:
        YAML that :func:`parse_hyperparams` reads back to the same settings.
    """
    text = "".join(f"# {line}\n" for line in header.splitlines())
    body = {k: {kk: (dict(vv) if isinstance(vv, Mapping) else vv) for kk, vv in v.items()}
            for k, v in entries.items()}
    return text + yaml.safe_dump(body, sort_keys=False, default_flow_style=None)

