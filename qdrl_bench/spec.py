"""The sweep file: which agents on which environments, with which seeds, budgets and executor.

A sweep is a YAML file (read with ``yaml.safe_load`` semantics) such as::

    name: quick                        # names the sweep in the store (required)
    store: sqlite:///results/quick.db  # default: sqlite:///results/<name>.db (relative to cwd)
    seeds: 2                           # an int n (seeds 0..n-1) or a list of ints
    timesteps: 4096                    # training steps per run (agents may override); when
                                       #   absent, each learning agent's n_timesteps from its
                                       #   hyperparameter file (10000 without one)
    eval:
      every: 1024                      # evaluate every N training steps (and at 0 and the end)
      episodes: 5                      # K evaluation episodes per evaluation
      seed: 100000                     # evaluation envs are reset with seed + 1000*run_seed + k
      conditions:                      # robustness: every finished learning run is also
        - {name: fgsm, kind: adversarial, attack: fgsm, epsilon: [0.01, 0.1]}  # evaluated
                                       #   under these (qdrl_bench.conditions is the manual)
    executor:
      kind: local                      # local | ray
      workers: 2                       # worker processes (local) / CPUs (ray, local cluster)
      address: null                    # ray only: an existing cluster ("auto", "ray://...")
    envs:                              # "registered" = every qdrl environment, or a list of:
      - qdrl/SecrecyPowerControl-v1    #   an id,
      - id: Pendulum-v1                #   or a mapping with kwargs for gym.make
        kwargs: {g: 9.81}
        max_episode_steps: 100
        label: pendulum                #   (optional display name; default: the id)
    agents:                            # registry names (``qdrl-bench list``), or mappings:
      - ppo
      - name: q-ppo
        kwargs: {policy_kwargs: {n_qubits: 2}}
        timesteps: 2048                #   per-agent override
        label: q-ppo-2q                #   distinguishes two entries of the same agent
      - name: ppo
        label: ppo-flip10
        train_wrappers: [{kind: reward, fraction: 0.1, mode: flip}]  # poisoned training
        adversarial_training: {attack: fgsm, epsilon: 0.05, rate: 0.5}  # (see conditions)
      - name: sac
        envs: [pendulum]               #   only on these env labels (default: every env)
      - baselines                      # every baseline of each env (random, oracle, ...)

Every error raised while reading a sweep is a :class:`SpecError` (a ``ValueError``) whose message
starts with ``file:line:`` and names the offending key (``agents[1].kwargs``).

The expansion of a sweep into runs, and the identity of a run (sweep, env label, agent label,
seed, config hash), are defined by :func:`expand_runs` and :class:`RunSpec`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

import qdrl_envs
from qdrl_bench.conditions import (
    ConditionSpec,
    Knobs,
    parse_adversarial_training,
    parse_conditions,
    parse_train_wrappers,
)

__all__ = [
    "DEFAULT_TIMESTEPS",
    "AgentSpec",
    "ConditionSpec",
    "EnvSpec",
    "EvalSpec",
    "ExecutorSpec",
    "RunSpec",
    "SpecError",
    "SweepSpec",
    "config_hash",
    "expand_runs",
    "load_sweep",
    "parse_sweep",
]

MAX_SEEDS = 10_000
"""The most seeds a sweep may list (or count)."""

MAX_SEED = 2**32 - 1
"""The largest seed (NumPy and SB3 take seeds in ``[0, 2**32)``)."""

_TOP_KEYS = ("name", "store", "seeds", "timesteps", "eval", "executor", "envs", "agents")
_REQUIRED = ("name", "envs", "agents")
_EXECUTORS = ("local", "ray")
ALL_REGISTERED = "registered"
ALL_BASELINES = "baselines"


class SpecError(ValueError):
    """A sweep file is malformed: the message says where (file:line) and which key."""


@dataclass(frozen=True)
class EnvSpec:
    """One environment of a sweep.

    Attributes:
        id: Gymnasium id (``qdrl/...`` or any registered id such as ``Pendulum-v1``).
        kwargs: Keyword arguments for ``gym.make`` (config overrides).
        label: Display / identity name (default: the id).
        max_episode_steps: Optional override of the registered time limit.
        line: Line of the entry in the sweep file (0 when built in code).
    """

    id: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    label: str = ""
    max_episode_steps: int | None = None
    line: int = 0

    def __post_init__(self) -> None:
        if not self.label:
            object.__setattr__(self, "label", self.id)


@dataclass(frozen=True)
class AgentSpec:
    """One agent of a sweep: a registry name plus keyword arguments for its factory.

    Attributes:
        name: Registry name (``q-ppo``, ``ppo``, ``oracle``, ...).
        kwargs: Passed through to the factory (for SB3 agents: the algorithm's constructor,
            ``policy_kwargs`` included).
        label: Display / identity name (default: the name).
        timesteps: Per-agent training budget (default: the sweep's).
        envs: The env labels the agent runs on (``None``: every env of the sweep).
        line: Line of the entry in the sweep file.
        train_wrappers: Poisoning wrappers of its training env (``kind`` + the wrapper's
            arguments; see :mod:`qdrl_bench.conditions`).
        adversarial_training: Attack knobs and ``rate`` of adversarial training, or ``None``.
    """

    name: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    label: str = ""
    timesteps: int | None = None
    envs: tuple[str, ...] | None = None
    line: int = 0
    train_wrappers: tuple[Mapping[str, Any], ...] = ()
    adversarial_training: Mapping[str, Any] | None = None

    def runs_on(self, env_label: str) -> bool:
        """Whether the agent runs on the env of this label."""
        return self.envs is None or env_label in self.envs

    def __post_init__(self) -> None:
        if not self.label:
            object.__setattr__(self, "label", self.name)


@dataclass(frozen=True)
class EvalSpec:
    """Evaluation schedule: every ``every`` steps (plus at 0 and the end), ``episodes`` episodes.

    Evaluation uses its own environment, reset with seeds ``seed + 1000 * run_seed + k`` for
    episode ``k``: the same episodes at every evaluation point of a run, different ones from the
    training env's. ``conditions`` (:mod:`qdrl_bench.conditions`) are the robustness
    conditions each finished learning run is also evaluated under, on the final evaluation's
    episodes; they are not part of a run's identity (adding one evaluates it on the runs
    already done).
    """

    every: int = 1000
    episodes: int = 5
    seed: int = 100_000
    conditions: tuple[ConditionSpec, ...] = ()


@dataclass(frozen=True)
class ExecutorSpec:
    """Where runs execute: ``local`` process pool of ``workers``, or ``ray``."""

    kind: str = "local"
    workers: int = 1
    address: str | None = None


@dataclass(frozen=True)
class SweepSpec:
    """A parsed, validated sweep file."""

    name: str
    envs: tuple[EnvSpec, ...]
    agents: tuple[AgentSpec, ...]
    seeds: tuple[int, ...] = (0,)
    timesteps: int | None = None
    eval: EvalSpec = field(default_factory=EvalSpec)
    executor: ExecutorSpec = field(default_factory=ExecutorSpec)
    store: str = ""
    path: str = "<sweep>"

    def __post_init__(self) -> None:
        if not self.store:
            object.__setattr__(self, "store", f"sqlite:///results/{self.name}.db")

    def line_of(self, key: str) -> int:
        """Return the line of a top-level key (0 when unknown)."""
        return dict(self._lines).get(key, 0)

    _lines: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class RunSpec:
    """One run: an agent on an environment with one seed. Picklable (sent to workers).

    The identity of a run in the store is ``(sweep, env label, agent label, seed)`` plus
    :attr:`config_hash`, the hash of everything that determines its result; changing any of it
    (kwargs, training wrappers, timesteps, evaluation schedule) makes a new run. The
    evaluation conditions and ``agent_dir`` are not part of it.

    ``agent_dir``: where the run exports its trained agent
    (:func:`qdrl_bench.sharing.export_agent`, written to ``agent_dir + ".new"`` and moved into
    place by the driver once the result is stored); ``None``: not exported. The driver sets it.
    """

    sweep: str
    env: EnvSpec
    agent: AgentSpec
    seed: int
    timesteps: int
    eval: EvalSpec
    agent_dir: str | None = None

    @property
    def config(self) -> dict[str, Any]:
        """The JSON-able configuration the hash is taken over."""
        agent: dict[str, Any] = {"name": self.agent.name,
                                 "kwargs": _jsonable(self.agent.kwargs)}
        if self.agent.train_wrappers:  # only when set: older runs keep their hashes
            agent["train_wrappers"] = _jsonable(self.agent.train_wrappers)
        if self.agent.adversarial_training:
            agent["adversarial_training"] = _jsonable(self.agent.adversarial_training)
        return {
            "env": {"id": self.env.id, "kwargs": _jsonable(self.env.kwargs),
                    "max_episode_steps": self.env.max_episode_steps},
            "agent": agent,
            "seed": self.seed,
            "timesteps": self.timesteps,
            "eval": {"every": self.eval.every, "episodes": self.eval.episodes,
                     "seed": self.eval.seed},
        }

    @property
    def config_hash(self) -> str:
        """16 hex digits of the SHA-256 of :attr:`config`."""
        return config_hash(self.config)

    @property
    def name(self) -> str:
        """Human-readable run name ``sweep/env/agent/seed`` (cleanrl style)."""
        return f"{self.sweep}/{self.env.label}/{self.agent.label}/{self.seed}"


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def config_hash(config: Mapping[str, Any]) -> str:
    """Return 16 hex digits of the SHA-256 of ``config`` as canonical JSON."""
    text = json.dumps(_jsonable(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- parsing


class _Lines:
    """Map key paths (``("agents", 1, "kwargs")``) to 1-based line numbers of a YAML text."""

    def __init__(self, node: yaml.Node | None, source: str = "<yaml>") -> None:
        self.lines: dict[tuple[Any, ...], int] = {}
        self.source = source
        if node is not None:
            self._walk(node, ())

    def _walk(self, node: yaml.Node, path: tuple[Any, ...]) -> None:
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, value_node in node.value:
                key = key_node.value
                line = key_node.start_mark.line + 1
                if key in seen and key != "<<":
                    raise SpecError(f"{self.source}:{line}: {_fmt((*path, key))}: duplicate key "
                                    f"(first on line {seen[key]})")
                seen[key] = line
                self.lines[(*path, key)] = key_node.start_mark.line + 1
                self._walk(value_node, (*path, key))
                self.lines[(*path, key)] = key_node.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._walk(item, (*path, i))

    def get(self, path: tuple[Any, ...]) -> int:
        while path and path not in self.lines:
            path = path[:-1]
        return self.lines.get(path, 0)


def _fmt(path: tuple[Any, ...]) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "<top>"


class _Parser(Knobs):
    def __init__(self, source: str, lines: _Lines) -> None:
        super().__init__(self.error)
        self.source = source
        self.lines = lines

    def error(self, path: tuple[Any, ...], message: str) -> SpecError:
        return SpecError(f"{self.source}:{self.lines.get(path)}: {_fmt(path)}: {message}")

    def kwargs(self, value: Any, path: tuple[Any, ...]) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.error(path, f"must be a mapping of keyword arguments, got "
                                   f"{type(value).__name__} {value!r}")
        for key in value:
            if not isinstance(key, str):
                raise self.error(path, f"keyword names must be strings, got {key!r}")
        return dict(value)


def read_yaml(text: str, source: str) -> tuple[Any, _Lines]:
    """Read YAML (``safe_load`` semantics) and the line of every key path.

    Returns:
        ``(data, lines)``; ``lines.get(("agents", 1, "kwargs"))`` is that key's 1-based line.

    Raises:
        SpecError: ``source:line:column: malformed YAML: ...``, a duplicate key (which
            ``safe_load`` would silently resolve to the last one) named with its line, or an
            alias (``*name``): aliases let a kilobyte expand into gigabytes (or loop), and a
            sweep or hyperparameter file never needs them. The check runs on the composed
            node graph, before anything is expanded.
    """
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        _refuse_aliases(node, source)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"{mark.line + 1}:{mark.column + 1}" if mark is not None else "0"
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(f"{source}:{where}: malformed YAML: {problem}") from exc
    return data, _Lines(node, source)


def _refuse_aliases(root: Any, source: str) -> None:
    """Raise if a node of the composed graph is reached twice (what an alias does)."""
    seen: set[int] = set()
    stack = [root] if root is not None else []
    while stack:
        node = stack.pop()
        if id(node) in seen:
            mark = node.start_mark
            raise SpecError(f"{source}:{mark.line + 1}: the value here is reused by an alias; "
                            "YAML anchors and aliases (&name, *name) are not accepted, write "
                            "the value out")
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack.extend((key, value))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)


def parse_sweep(text: str, source: str = "<sweep>") -> SweepSpec:
    """Parse and validate the YAML text of a sweep.

    Names are checked for shape only here; whether an env id or agent name exists is checked
    by :func:`qdrl_bench.registry.check_sweep_names` (which also knows the line numbers).

    Args:
        text: The YAML text.
        source: The file name used in error messages.

    Returns:
        The sweep.

    Raises:
        SpecError: On malformed YAML, unknown keys, missing required keys or wrong types; the
            message starts with ``source:line:`` and names the key.
    """
    data, lines = read_yaml(text, source)
    p = _Parser(source, lines)
    if data is None:
        raise SpecError(f"{source}:1: the sweep file is empty")
    top = p.mapping(data, (), _TOP_KEYS)
    for key in _REQUIRED:
        if key not in top:
            raise p.error((), f"missing required key {key!r}")

    name = p.text(top["name"], ("name",))
    if any(c in name for c in "/\\") or name != name.strip():
        raise p.error(("name",), f"must not contain slashes or surrounding spaces: {name!r}")
    store = p.text(top["store"], ("store",)) if "store" in top else ""

    seeds_raw = top.get("seeds", 1)
    if isinstance(seeds_raw, list):
        if not seeds_raw:
            raise p.error(("seeds",), "must not be empty")
        if len(seeds_raw) > MAX_SEEDS:
            raise p.error(("seeds",), f"at most {MAX_SEEDS} seeds, got {len(seeds_raw)}")
        seeds = tuple(p.integer(s, ("seeds", i), 0, MAX_SEED) for i, s in enumerate(seeds_raw))
        if len(set(seeds)) != len(seeds):
            raise p.error(("seeds",), f"seeds must be distinct, got {list(seeds)}")
    else:
        seeds = tuple(range(p.integer(seeds_raw, ("seeds",), 1, MAX_SEEDS)))
    timesteps = p.integer(top["timesteps"], ("timesteps",), 1) if "timesteps" in top else None

    ev = p.mapping(top.get("eval") or {}, ("eval",), ("every", "episodes", "seed",
                                                      "conditions"))

    ex = p.mapping(top.get("executor") or {}, ("executor",), ("kind", "workers", "address"))
    kind = ex.get("kind", "local")
    if kind not in _EXECUTORS:
        raise p.error(("executor", "kind"), f"must be one of {list(_EXECUTORS)}, got {kind!r}")
    address = ex.get("address")
    if address is not None:
        address = p.text(address, ("executor", "address"))
        if kind != "ray":
            raise p.error(("executor", "address"), "only the ray executor takes an address")
    executor = ExecutorSpec(kind=kind, workers=p.integer(ex.get("workers", 1),
                                                      ("executor", "workers"), 1),
                            address=address)

    envs = _parse_envs(p, top["envs"])
    agents = _parse_agents(p, top["agents"])
    eval_spec = EvalSpec(
        every=p.integer(ev.get("every", EvalSpec.every), ("eval", "every"), 1),
        episodes=p.integer(ev.get("episodes", EvalSpec.episodes), ("eval", "episodes"), 1),
        seed=p.integer(ev.get("seed", EvalSpec.seed), ("eval", "seed"), 0),
        conditions=parse_conditions(ev.get("conditions"), ("eval", "conditions"), p.error,
                                    [a.label for a in agents], p.lines.get),
    )
    labels = {e.label for e in envs}
    for i, agent in enumerate(agents):
        unknown = sorted(set(agent.envs or ()) - labels)
        if unknown:
            raise p.error(("agents", i, "envs"), f"unknown env label(s) {unknown}; the sweep's "
                                                 f"envs are {sorted(labels)}")
    lines = tuple((k, p.lines.get((k,))) for k in top)
    return SweepSpec(name=name, envs=envs, agents=agents, seeds=seeds, timesteps=timesteps,
                     eval=eval_spec, executor=executor, store=store, path=source, _lines=lines)


def _registered_env_ids() -> tuple[str, ...]:
    return tuple(qdrl_envs.ENV_IDS)


def _parse_envs(p: _Parser, raw: Any) -> tuple[EnvSpec, ...]:
    if raw == ALL_REGISTERED:
        raw = [ALL_REGISTERED]
    if not isinstance(raw, list) or not raw:
        raise p.error(("envs",), f"must be a non-empty list or {ALL_REGISTERED!r}, got {raw!r}")
    out: list[EnvSpec] = []
    for i, item in enumerate(raw):
        path = ("envs", i)
        line = p.lines.get(path)
        if item == ALL_REGISTERED:
            out.extend(EnvSpec(id=e, line=line) for e in _registered_env_ids())
            continue
        if isinstance(item, str):
            out.append(EnvSpec(id=p.text(item, path), line=line))
            continue
        m = p.mapping(item, path, ("id", "kwargs", "label", "max_episode_steps"))
        if "id" not in m:
            raise p.error(path, "missing required key 'id'")
        mes = m.get("max_episode_steps")
        out.append(EnvSpec(
            id=p.text(m["id"], (*path, "id")),
            kwargs=p.kwargs(m.get("kwargs"), (*path, "kwargs")),
            label=p.text(m["label"], (*path, "label")) if "label" in m else "",
            max_episode_steps=None if mes is None else p.integer(mes, (*path, "max_episode_steps"),
                                                              1),
            line=line,
        ))
    _check_unique(p, "envs", [e.label for e in out])
    return tuple(out)


def _parse_agents(p: _Parser, raw: Any) -> tuple[AgentSpec, ...]:
    if not isinstance(raw, list) or not raw:
        raise p.error(("agents",), f"must be a non-empty list, got {raw!r}")
    out: list[AgentSpec] = []
    for i, item in enumerate(raw):
        path = ("agents", i)
        line = p.lines.get(path)
        if isinstance(item, str):
            out.append(AgentSpec(name=p.text(item, path), line=line))
            continue
        m = p.mapping(item, path, ("name", "kwargs", "label", "timesteps", "envs",
                                   "train_wrappers", "adversarial_training"))
        if "name" not in m:
            raise p.error(path, "missing required key 'name'")
        if m["name"] == ALL_BASELINES:
            for key in ("train_wrappers", "adversarial_training"):
                if key in m:
                    raise p.error((*path, key), "baselines do not train; only a learning "
                                                "agent takes " + key)
        ts = m.get("timesteps")
        only = m.get("envs")
        if "envs" in m and (not isinstance(only, list) or not only):
            raise p.error((*path, "envs"), f"must be a non-empty list of env labels, got "
                                           f"{only!r}")
        out.append(AgentSpec(
            name=p.text(m["name"], (*path, "name")),
            kwargs=p.kwargs(m.get("kwargs"), (*path, "kwargs")),
            label=p.text(m["label"], (*path, "label")) if "label" in m else "",
            timesteps=None if ts is None else p.integer(ts, (*path, "timesteps"), 1),
            envs=None if only is None else tuple(p.text(e, (*path, "envs", j))
                                                 for j, e in enumerate(only)),
            line=line,
            train_wrappers=parse_train_wrappers(m.get("train_wrappers"),
                                                (*path, "train_wrappers"), p.error),
            adversarial_training=parse_adversarial_training(
                m.get("adversarial_training"), (*path, "adversarial_training"), p.error),
        ))
    _check_unique(p, "agents", [a.label for a in out])
    return tuple(out)


def _check_unique(p: _Parser, key: str, labels: list[str]) -> None:
    seen: dict[str, int] = {}
    for i, label in enumerate(labels):
        if label in seen:
            raise p.error((key, i), f"duplicate entry {label!r} (also entry {seen[label]}); "
                                    "give one of them a distinct 'label'")
        seen[label] = i


def load_sweep(path: str | os.PathLike[str]) -> SweepSpec:
    """Read and validate a sweep file.

    Raises:
        SpecError: If the file cannot be read or is invalid (see :func:`parse_sweep`).
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: cannot read the sweep file: {exc}") from exc
    return parse_sweep(text, source=str(path))


DEFAULT_TIMESTEPS = 10_000
"""A run's budget when neither the sweep, its agent entry nor a hyperparameter file gives one."""


def expand_runs(spec: SweepSpec, baselines_of: Any = None,
                timesteps_of: Any = None) -> list[RunSpec]:
    """Expand a sweep into its runs (env-major, then agent, then seed).

    Args:
        spec: The sweep.
        baselines_of: ``callable(env_id) -> list[str]`` giving an env's baseline names; needed
            to expand the ``baselines`` agent entry (without it, ``baselines`` is ``random``).
        timesteps_of: ``callable(env_id, agent name) -> int | None``: a learning agent's
            budget from its hyperparameter file (or :data:`DEFAULT_TIMESTEPS`), ``None`` for a
            baseline; used only where the sweep gives no ``timesteps``. Without it, such runs
            get :data:`DEFAULT_TIMESTEPS`.

    Returns:
        One :class:`RunSpec` per (env, agent, seed). Baselines are deterministic given the seed
        and are run for every seed like agents; without a sweep budget their (nominal) budget
        is the largest of the env's learning agents, so curves share one axis.
    """
    runs: list[RunSpec] = []
    for env in spec.envs:
        agents: list[AgentSpec] = []
        for agent in spec.agents:
            if not agent.runs_on(env.label):
                continue
            if agent.name == ALL_BASELINES:
                names = ["random"] if baselines_of is None else list(baselines_of(env.id))
                taken = {a.label for a in spec.agents}
                agents.extend(AgentSpec(name=n, line=agent.line) for n in names if n not in taken)
            else:
                agents.append(agent)
        budgets = {a.label: a.timesteps or spec.timesteps
                   or (timesteps_of(env.id, a.name) if timesteps_of else None) for a in agents}
        widest = max((b for b in budgets.values() if b), default=DEFAULT_TIMESTEPS)
        for agent in agents:
            steps = budgets[agent.label] or widest
            for seed in spec.seeds:
                runs.append(RunSpec(sweep=spec.name, env=env, agent=agent, seed=seed,
                                    timesteps=steps, eval=spec.eval))
    return runs
