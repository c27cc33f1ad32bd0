"""The agent registry: names -> factories for quantum, classical and baseline agents.

Learning agents (stable-baselines3 algorithms):

============  ===========  =================================================================
family        names        policy
============  ===========  =================================================================
quantum       ``q-ppo``, ``q-a2c``, ``q-dqn``, ``q-td3``, ``q-ddpg``, ``q-sac``
                           ``qdrl_agents`` quantum policy, one qubit per observation feature
hybrid        ``q-<algo>-hybrid``
                           a classical encoder (``encoder="linear"``) feeds 4 qubits
classical     ``ppo``, ``a2c``, ``dqn``, ``td3``, ``ddpg``, ``sac``
                           SB3's ``MlpPolicy`` with SB3's default sizes
small         ``<algo>-small``
                           an MLP whose actor hidden width is *computed* so the policy's total
                           trainable parameter count matches ``q-<algo>`` on the same env
                           (the critic, where there is one, is the same as ``q-<algo>``'s)
============  ===========  =================================================================

Baselines: every name of :func:`qdrl_envs.baselines.baseline_names` for a qdrl env
(``random``, ``oracle``, ``full-power``, ...); ``random`` for any other Gymnasium env.

Which action space an agent needs (``action_need``): DQN ``discrete``; TD3, DDPG, SAC ``box``;
PPO, A2C ``any``. The runner adapts the env with :mod:`qdrl_envs.wrappers` accordingly.

Sweep ``kwargs`` of an agent go to the algorithm's constructor (``learning_rate``,
``n_steps``, ``policy_kwargs``, ...), merged over the registry's defaults (``policy_kwargs``
merged key by key). Two defaults depend on the run's budget, so that tiny runs stay tiny and
nothing else changes: ``n_steps = min(2048, timesteps)`` and ``batch_size = min(64, n_steps)``
for PPO; ``buffer_size = min(1_000_000, timesteps)`` for the off-policy algorithms (the buffer
never needs more). ``*-small`` agents also take ``match``: the ``kwargs`` of the quantum agent
to match (default: its defaults). Any agent takes ``adapter``: keyword arguments of
:func:`qdrl_envs.wrappers.adapt_action_space` (``levels``, ``max_actions``, ``max_dims``), e.g.
``adapter: {levels: 3}`` to let DQN act on a 6-entry Box (3**6 = 729 actions).
"""

from __future__ import annotations

import copy
import difflib
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
from gymnasium.spaces.utils import flatdim
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import qdrl_envs  # importing it registers the qdrl ids with Gymnasium
from qdrl_bench.agents import (
    ALGOS,
    HYBRID_QUBITS,
    ON_POLICY,
    AgentEntry,
    agent_entries,
    get_agent,
    is_baseline,
)
from qdrl_bench.hyperparams import hyperparams_for, parse_entry, resolve_schedules
from qdrl_bench.spec import ALL_BASELINES, DEFAULT_TIMESTEPS, SpecError, SweepSpec
from qdrl_envs import marl
from qdrl_envs.baselines import RandomPolicy, baseline_names, make_baseline
from qdrl_envs.wrappers import adapt_action_space

# stable-baselines3 (torch) and qdrl_agents (qiskit, torch) take seconds to import: they are
# imported inside the functions that build, save or load agents, so that the CLI, reports and
# sweep checks start at once.

__all__ = [
    "ALGOS",
    "HYBRID_QUBITS",
    "MAX_QUBITS",
    "AgentEntry",
    "NotApplicable",
    "TrainSettings",
    "UnknownBaseline",
    "agent_entries",
    "baselines_for",
    "build_agent",
    "build_baseline",
    "check_sweep_names",
    "default_timesteps",
    "describe_agents",
    "get_agent",
    "is_baseline",
    "is_marl_env",
    "load_agent",
    "make_env",
    "make_train_env",
    "matched_counts",
    "matched_net_arch",
    "save_agent",
    "sb3_class",
    "train_settings",
    "wrap_training",
]

MAX_QUBITS = 12
"""Largest circuit a registry default builds (one qubit per feature beyond this is refused as
not applicable; the hybrid agents encode to :data:`HYBRID_QUBITS` qubits)."""


class NotApplicable(ValueError):
    """The agent cannot run on this env (e.g. too many qubits); the message says why."""


class UnknownBaseline(NotApplicable):
    """A name that is not a baseline of this env (``oracle`` on CartPole); the message lists them.

    A ``ValueError``, as :func:`qdrl_envs.baselines.make_baseline` raises for the same name, and
    a :class:`NotApplicable`: a sweep may name a baseline that only some of its envs have.
    """


# ----------------------------------------------------------------------------- environments


def is_marl_env(env_id: str) -> bool:
    """Whether ``env_id`` is a multi-agent env (:data:`qdrl_envs.MARL_ENV_IDS`, PettingZoo)."""
    return env_id in qdrl_envs.MARL_ENV_IDS


def make_env(env_id: str, kwargs: Mapping[str, Any] | None = None,
             max_episode_steps: int | None = None) -> Any:
    """``gym.make`` an env with config overrides (the qdrl ids are registered on import).

    A multi-agent id gives its PettingZoo ``ParallelEnv`` (:func:`qdrl_envs.make_parallel`),
    whose episode length is its config's ``max_cycles``.

    Raises:
        ValueError, TypeError: For bad config overrides (the env's own message), or a
            ``max_episode_steps`` for a multi-agent env.
        gymnasium.error.Error: For an unknown id.
    """
    if is_marl_env(env_id):
        if max_episode_steps is not None:
            raise ValueError(f"{env_id} is a multi-agent env: set its episode length with the "
                             f"kwarg max_cycles, not max_episode_steps")
        return marl.make_parallel(env_id, **dict(kwargs or {}))
    extra: dict[str, Any] = {}
    if max_episode_steps is not None:
        extra["max_episode_steps"] = max_episode_steps
    return gym.make(env_id, **extra, **dict(kwargs or {}))


def baselines_for(env_id: str) -> list[str]:
    """Return the baseline names of an env: a qdrl env's baselines, or ``["random"]``."""
    if env_id in qdrl_envs.ENV_IDS:
        return list(baseline_names(env_id))
    if is_marl_env(env_id):
        return marl.baseline_names(env_id)
    return ["random"]


def build_baseline(name: str, env: gym.Env, seed: int, kwargs: Mapping[str, Any]) -> Any:
    """Build a baseline policy for ``env`` (SB3-style ``predict``).

    Raises:
        UnknownBaseline: If ``name`` is not a baseline of the env (:func:`baselines_for`).
    """
    env_id = env.spec.id if env.spec is not None else ""
    names = baselines_for(env_id)
    if name not in names:
        raise UnknownBaseline(f"unknown baseline {name!r} for {env_id}; choose from {names}")
    if env_id in qdrl_envs.ENV_IDS:
        return make_baseline(name, env, seed=seed, **dict(kwargs))
    return RandomPolicy(env, seed=seed, **dict(kwargs))


# ----------------------------------------------------------------------------- training envs


@dataclass(frozen=True)
class TrainSettings:
    """How a learning agent trains on one env: its file's defaults under the sweep's kwargs.

    Attributes:
        algo_kwargs: Arguments of the SB3 algorithm (``policy_kwargs``, schedules as strings).
        n_envs: Rows of the vector env trained on.
        normalize: ``VecNormalize`` arguments, or ``None``.
        adapter: Keyword arguments of :func:`qdrl_envs.wrappers.adapt_action_space`.
        source: Where the defaults came from (``file:line``, or ``""``: no file entry).
    """

    algo_kwargs: Mapping[str, Any]
    n_envs: int = 1
    normalize: Mapping[str, Any] | None = None
    adapter: Mapping[str, Any] | None = None
    source: str = ""


def train_settings(name: str, env_id: str, kwargs: Mapping[str, Any] | None = None,
                   directory: Any = None) -> TrainSettings:
    """Merge an agent's hyperparameter-file entry for ``env_id`` with a sweep's ``kwargs``.

    The sweep wins key by key (``policy_kwargs`` merged key by key); besides the algorithm's
    arguments it may set ``n_envs``, ``normalize`` (``true``, ``false`` or ``VecNormalize``
    arguments) and ``adapter``. See :mod:`qdrl_bench.hyperparams`.

    Raises:
        ValueError: If the agent is unknown.
        SpecError: If its file is malformed, or the sweep's ``n_envs``/``normalize`` are bad.
        TypeError: If ``adapter`` is not a mapping.
    """
    entry = get_agent(name)
    file = hyperparams_for(name, env_id, directory)
    user = dict(kwargs or {})
    adapter = user.pop("adapter", None) or {}
    if not isinstance(adapter, Mapping):
        raise TypeError(f"agent {name}: kwargs.adapter must be a mapping of levels / "
                        f"max_actions / max_dims, got {adapter!r}")
    run_over = {k: user.pop(k) for k in ("n_envs", "normalize") if k in user}
    over = parse_entry(run_over, entry.algo, f"agent {name} kwargs")
    defaults = dict(file.algo_kwargs)
    if entry.family == "small" and "net_arch" in (defaults.get("policy_kwargs") or {}):
        # A *-small agent reading its algorithm's file: that file's network is the full-size
        # agent's; the small one's is computed to match the quantum agent's count.
        defaults["policy_kwargs"] = {k: v for k, v in defaults["policy_kwargs"].items()
                                     if k != "net_arch"}
    return TrainSettings(
        algo_kwargs=_merge(defaults, user),
        n_envs=over.n_envs if "n_envs" in run_over else file.n_envs,
        normalize=over.normalize if "normalize" in run_over else file.normalize,
        adapter=dict(adapter), source=file.source)


def default_timesteps(env_id: str, name: str) -> int | None:
    """A learning agent's budget on ``env_id``: its hyperparameter file's ``n_timesteps``.

    Returns:
        That, else :data:`qdrl_bench.spec.DEFAULT_TIMESTEPS`; ``None`` for a baseline (what
        :func:`qdrl_bench.spec.expand_runs` takes as ``timesteps_of``).
    """
    if is_baseline(name):
        return None
    return hyperparams_for(name, env_id).n_timesteps or DEFAULT_TIMESTEPS


def make_train_env(env_id: str, env_kwargs: Mapping[str, Any] | None, *, n_envs: int,
                   action_need: str = "any", adapter: Mapping[str, Any] | None = None,
                   max_episode_steps: int | None = None,
                   normalize: Mapping[str, Any] | None = None,
                   gamma: float = 0.99,
                   train_wrappers: Sequence[Mapping[str, Any]] = (),
                   adversarial: Any = None,
                   wrapper_seed: int | None = None) -> tuple[Any, str | None]:
    """The SB3 ``VecEnv`` a learning agent trains on, and the action adapter it needed.

    With no action adapter needed and a registered vector twin that autoresets in the same step
    (the qdrl twins, built with ``SAME_STEP``), the twin itself with ``n_envs`` rows; otherwise a
    Gymnasium ``SyncVectorEnv`` (``SAME_STEP``) of ``n_envs`` adapted single envs. Either is
    presented to SB3 by :class:`qdrl_agents.VectorEnvAdapter` (no per-row info: training needs
    none), wrapped in ``VecMonitor`` and, when ``normalize`` is given,
    ``VecNormalize(gamma=gamma, **normalize)``.

    Poisoned and adversarial training wrap the Gymnasium vector env itself, inside the adapter
    (so a twin keeps its speed, and ``VecNormalize`` sees what the agent sees):
    ``train_wrappers`` (a sweep's entries: ``kind`` ``reward`` / ``observation`` and the
    arguments of :class:`qdrl_envs.wrappers.VectorPoisonedReward` /
    :class:`~qdrl_envs.wrappers.VectorPoisonedObservation`, row for row the single-env
    wrappers; ``seed`` defaults to ``wrapper_seed``), in order, then ``adversarial`` (an attack
    with a ``rate``, :class:`qdrl_bench.robustness.AdversarialTraining`) through
    :class:`~qdrl_envs.wrappers.VectorAdversarialObservation`. With an action adapter the
    wrappers see the adapted action space (a ``targeted`` reward's ``target_action`` lies in
    it).

    Raises:
        qdrl_envs.wrappers.AdapterNotApplicable: If the agent cannot act in the env.
        ValueError, TypeError: As :func:`make_env`, and for bad wrapper arguments (the
            wrapper's own message).
    """
    from stable_baselines3.common.vec_env import VecMonitor, VecNormalize  # heavy: see top

    from qdrl_agents import VectorEnvAdapter  # heavy: see the top of the module

    probe = make_env(env_id, env_kwargs, max_episode_steps)
    _, adapter_name = adapt_action_space(probe, action_need, **dict(adapter or {}))
    probe.close()
    spec = gym.spec(env_id)
    venv = None
    if adapter_name is None and spec.vector_entry_point is not None:
        extra = {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}
        if env_id.startswith("qdrl/"):  # the qdrl twins autoreset in either mode; SB3 needs this
            extra["autoreset_mode"] = AutoresetMode.SAME_STEP
        venv = gym.make_vec(env_id, num_envs=n_envs, vectorization_mode="vector_entry_point",
                            **extra, **dict(env_kwargs or {}))
        mode = venv.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        if AutoresetMode(mode) == AutoresetMode.NEXT_STEP:
            venv.close()  # e.g. Gymnasium's CartPole twin resets in the next step
            venv = None
    if venv is None:
        def one() -> gym.Env:
            env = make_env(env_id, env_kwargs, max_episode_steps)
            return adapt_action_space(env, action_need, **dict(adapter or {}))[0]

        venv = SyncVectorEnv([one] * n_envs, autoreset_mode=AutoresetMode.SAME_STEP)
    try:
        venv = wrap_training(venv, train_wrappers, adversarial, wrapper_seed)
    except Exception:
        venv.close()
        raise
    out: Any = VecMonitor(VectorEnvAdapter(venv, info_keys=()))
    if normalize is not None:
        out = VecNormalize(out, gamma=gamma, **dict(normalize))
    return out, adapter_name


def wrap_training(venv: Any, train_wrappers: Sequence[Mapping[str, Any]] = (),
                  adversarial: Any = None, seed: int | None = None) -> Any:
    """Wrap a Gymnasium vector env in a sweep's training wrappers (see :func:`make_train_env`).

    Raises:
        ValueError, TypeError: For bad wrapper arguments (the wrapper's own message).
    """
    from qdrl_envs.wrappers import (
        VectorAdversarialObservation,
        VectorPoisonedObservation,
        VectorPoisonedReward,
    )

    for spec in train_wrappers:
        kw = {k: v for k, v in spec.items() if k != "kind"}
        kw.setdefault("seed", seed)
        cls = VectorPoisonedReward if spec["kind"] == "reward" else VectorPoisonedObservation
        venv = cls(venv, **kw)
    if adversarial is not None:
        venv = VectorAdversarialObservation(venv, adversarial.rate, attack=adversarial,
                                            seed=seed)
    return venv


# ----------------------------------------------------------------------------- building agents


def sb3_class(algo: str) -> type:
    """The stable-baselines3 class of ``algo`` (``ppo`` -> ``stable_baselines3.PPO``)."""
    import stable_baselines3  # heavy: see the top of the module

    return getattr(stable_baselines3, ALGOS[algo][0])


def _quantum_policy(algo: str) -> type:
    """The ``qdrl_agents`` policy class of ``algo``."""
    import qdrl_agents  # heavy: see the top of the module

    return getattr(qdrl_agents, ALGOS[algo][1])


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for k, v in over.items():
        if k == "policy_kwargs" and isinstance(v, Mapping):
            out["policy_kwargs"] = {**out.get("policy_kwargs", {}), **dict(v)}
        else:
            out[k] = v
    return out


def _budget_defaults(algo: str, timesteps: int, kwargs: Mapping[str, Any],
                     n_envs: int = 1) -> dict[str, Any]:
    d: dict[str, Any] = {"device": "cpu", "verbose": 0}
    if algo == "ppo":
        n_steps = int(kwargs.get("n_steps", max(1, min(2048, timesteps // n_envs))))
        d["n_steps"] = n_steps
        d["batch_size"] = min(64, n_steps * n_envs)
    elif algo not in ON_POLICY:
        d["buffer_size"] = max(1, min(1_000_000, timesteps))
    return d


def _obs_features(env: gym.Env) -> int:
    return int(flatdim(env.observation_space))


def _quantum_defaults(entry: AgentEntry, env: gym.Env,
                      policy_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    if entry.family == "hybrid":
        return {"n_qubits": HYBRID_QUBITS, "encoder": "linear"}
    n = policy_kwargs.get("n_qubits") or _obs_features(env)
    if n > MAX_QUBITS and policy_kwargs.get("encoder") is None:
        raise NotApplicable(f"{entry.name} needs one qubit per observation feature: "
                            f"{n} > MAX_QUBITS={MAX_QUBITS}; use q-{entry.algo}-hybrid or pass "
                            "policy_kwargs n_qubits and encoder")
    return {}


def _count(model: Any) -> dict[str, int]:
    """Trainable parameters of the networks being trained (target networks are copies).

    Quantum policies report their own split; for SB3's classical policies every child module
    whose name ends in ``_target`` (``q_net_target``, ``actor_target``, ``critic_target``) is
    left out, as the quantum policies do.
    """
    policy = model.policy
    own = getattr(policy, "parameter_counts", None)
    if callable(own):
        return {k: int(v) for k, v in own().items()}
    targets = {id(p) for name, child in policy.named_children() if name.endswith("_target")
               for p in child.parameters()}
    n = sum(p.numel() for p in policy.parameters() if p.requires_grad and id(p) not in targets)
    return {"quantum": 0, "classical": int(n)}


def _build_sb3(entry: AgentEntry, env: gym.Env, seed: int, timesteps: int,
               kwargs: Mapping[str, Any]) -> Any:
    algo_cls = sb3_class(entry.algo)
    user = dict(kwargs)
    if entry.family in ("quantum", "hybrid"):
        policy: Any = _quantum_policy(entry.algo)
        pk = dict(user.get("policy_kwargs", {}))
        base = {"policy_kwargs": _quantum_defaults(entry, env, pk)}
    elif entry.family == "classical":
        policy, base = "MlpPolicy", {}
    else:
        policy = "MlpPolicy"
        match = user.pop("match", {})
        if not isinstance(match, Mapping):
            raise TypeError(f"{entry.name}: match must be a mapping of q-{entry.algo} kwargs, "
                            f"got {match!r}")
        if "net_arch" in (user.get("policy_kwargs") or {}):
            raise ValueError(f"{entry.name}: its net_arch is computed to match q-{entry.algo}'s "
                             "parameter count; pass match (the quantum agent's kwargs), not "
                             "policy_kwargs.net_arch")
        base = {"policy_kwargs": {"net_arch": matched_net_arch(entry.algo, env, timesteps,
                                                               match)}}
    n_envs = int(getattr(env, "num_envs", 1))
    merged = _merge(_merge(_budget_defaults(entry.algo, timesteps, user, n_envs), base), user)
    return algo_cls(policy, env, seed=seed, **resolve_schedules(merged))


def build_agent(name: str, env: gym.Env, *, seed: int, timesteps: int,
                kwargs: Mapping[str, Any] | None = None) -> tuple[Any, dict[str, int]]:
    """Build a learning agent on an (already adapted) env.

    Args:
        name: Registry name.
        env: The env, whose action space suits the agent (see :mod:`qdrl_envs.wrappers`).
        seed: Seed passed to the SB3 algorithm (seeds torch, NumPy, the env and its spaces).
        timesteps: The run's training budget (for the budget-dependent defaults).
        kwargs: Sweep kwargs for the algorithm.

    Returns:
        ``(model, {"quantum": n, "classical": m})``.

    Raises:
        NotApplicable: If the agent cannot run on this env (the reason says why).
        ValueError, TypeError: For bad kwargs (the algorithm's or policy's own message).
    """
    entry = get_agent(name)
    model = _build_sb3(entry, env, seed, timesteps, kwargs or {})
    return model, _count(model)


def _small_arch(algo: str, h: int) -> Any:
    if algo in ON_POLICY:
        return {"pi": [h], "vf": [64, 64]}  # q-ppo / q-a2c default critic_net_arch
    if algo == "dqn":
        return [h]
    return {"pi": [h], "qf": [256, 256] if algo == "sac" else [400, 300]}


def _hashable(x: Any) -> Any:
    if isinstance(x, Mapping):
        return tuple(sorted((k, _hashable(v)) for k, v in x.items()))
    if isinstance(x, (list, tuple)):
        return tuple(_hashable(v) for v in x)
    return x


def matched_net_arch(algo: str, env: Any, timesteps: int,
                     match: Mapping[str, Any] | None = None) -> Any:
    """Compute the ``net_arch`` of ``<algo>-small`` on ``env``.

    The actor gets one hidden layer of width ``h``; the critic is the quantum twin's default MLP
    critic. ``h`` is the smallest width whose policy's total trainable parameter count is
    closest to ``q-<algo>``'s (built with ``match`` kwargs) — found by bisection over actual
    SB3 policies, not a formula.

    Raises:
        NotApplicable: If the quantum twin cannot run on this env.
    """
    return _matched_cached(_match_key(algo, env, timesteps, match), algo, env, timesteps,
                           dict(match or {}))[0]


def _match_key(algo: str, env: Any, timesteps: int, match: Mapping[str, Any] | None) -> Any:
    # Parameter counts depend on the spaces (and the kwargs), not on which env has them.
    return (algo, repr(env.observation_space), repr(env.action_space), timesteps,
            _hashable(match or {}))


def _matched_cached(key: Any, algo: str, env: gym.Env, timesteps: int,
                    match: dict[str, Any]) -> tuple[Any, int, int]:
    hit = _MATCH_CACHE.get(key)
    if hit is not None:
        return hit
    try:
        q_model = _build_sb3(get_agent(f"q-{algo}"), env, 0, timesteps, match)
    except NotApplicable as exc:
        raise NotApplicable(f"{algo}-small takes the parameter count of q-{algo}, which cannot "
                            f"run here ({exc}); pass match: {{policy_kwargs: {{n_qubits: 4, "
                            f"encoder: linear}}}} to match a hybrid instead") from exc
    target = sum(_count(q_model).values())
    del q_model

    def total(h: int) -> int:
        kw = {"policy_kwargs": {"net_arch": _small_arch(algo, h)}}
        model = _build_sb3(get_agent(algo), env, 0, timesteps, kw)
        return sum(_count(model).values())

    lo, hi = 1, 1
    while total(hi) < target and hi < 1 << 14:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if total(mid) < target:
            lo = mid
        else:
            hi = mid
    best = min((lo, hi), key=lambda h: (abs(total(h) - target), h))
    out = (_small_arch(algo, best), total(best), target)
    _MATCH_CACHE[key] = out
    return out


_MATCH_CACHE: dict[Any, tuple[Any, int, int]] = {}


def matched_counts(algo: str, env: Any, timesteps: int,
                   match: Mapping[str, Any] | None = None) -> tuple[int, int]:
    """Return ``(small agent's count, quantum twin's count)`` after :func:`matched_net_arch`."""
    matched_net_arch(algo, env, timesteps, match)
    _, small, target = _MATCH_CACHE[_match_key(algo, env, timesteps, match)]
    return small, target


# ----------------------------------------------------------------------------- sweep checking


def check_sweep_names(spec: SweepSpec) -> None:
    """Check that every env id is registered and every agent name is known.

    An env id is known if Gymnasium has it or it is a multi-agent id
    (:data:`qdrl_envs.MARL_ENV_IDS`). An agent name is known if it is a learning agent,
    ``baselines``, ``random``, or a baseline of one of the sweep's envs.

    Raises:
        SpecError: Naming the entry (``envs[2].id`` / ``agents[0].name``), its line, the
            unknown name and the close matches.
    """
    gym_ids = set(gym.registry) | set(qdrl_envs.MARL_ENV_IDS)
    for i, env in enumerate(spec.envs):
        if env.id not in gym_ids:
            close = difflib.get_close_matches(env.id, sorted(gym_ids), n=3)
            raise SpecError(f"{spec.path}:{env.line}: envs[{i}].id: unknown environment "
                            f"{env.id!r}" + (f"; did you mean {close}?" if close else ""))
    baselines: set[str] = {"random"}
    for env in spec.envs:
        baselines |= set(baselines_for(env.id))
    learners = agent_entries()
    known = set(learners) | baselines | {ALL_BASELINES}
    for i, agent in enumerate(spec.agents):
        if agent.name not in known:
            close = difflib.get_close_matches(agent.name, sorted(known), n=3)
            raise SpecError(f"{spec.path}:{agent.line}: agents[{i}].name: unknown agent "
                            f"{agent.name!r}" + (f"; did you mean {close}?" if close else "")
                            + f"; learning agents: {sorted(learners)}; baselines of these "
                            f"envs: {sorted(baselines)}")


def describe_agents() -> list[tuple[str, str, str, str, str]]:
    """Rows ``(name, family, algo, action need, description)`` for ``qdrl-bench list``."""
    return [(e.name, e.family, e.algo, e.action_need, e.description)
            for e in agent_entries().values()]


# ----------------------------------------------------------------------------- saved agents

MODEL_FILE = "model.zip"
NORMALIZE_FILE = "vecnormalize.pkl"


def save_agent(model: Any, directory: Any) -> list[str]:
    """Save a trained SB3 model and, when it trained under ``VecNormalize``, its statistics.

    Writes ``directory/model.zip`` (SB3's format) and ``directory/vecnormalize.pkl`` (SB3's
    ``VecNormalize.save``): an agent that saw normalised observations is only meaningful with
    the statistics it saw them through. Both files are pickles, as SB3's always are: load
    only files you trust, and share agents with :func:`qdrl_bench.sharing.export_agent`.

    Returns:
        The paths written.
    """
    from stable_baselines3.common.vec_env import (  # heavy: see the top of the module
        VecNormalize,
        unwrap_vec_wrapper,
    )

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / MODEL_FILE)
    written = [str(out / MODEL_FILE)]
    env = model.get_env()
    norm = unwrap_vec_wrapper(env, VecNormalize) if env is not None else None
    if norm is not None:
        norm.save(str(out / NORMALIZE_FILE))
        written.append(str(out / NORMALIZE_FILE))
    return written


def load_agent(directory: Any, name: str) -> tuple[Any, Any]:
    """Load what :func:`save_agent` wrote: ``(model, obs_filter)``.

    Args:
        directory: The directory.
        name: The registry agent it is (picks the SB3 class).

    Returns:
        The model (on the CPU, without an env) and the frozen observation normaliser
        (``VecNormalize.normalize_obs`` of the saved statistics), or ``None`` when the agent
        trained without normalisation. Evaluate as
        ``model.predict(obs_filter(obs))``; :func:`qdrl_bench.execute.evaluate` takes it as
        ``obs_filter``.

    Raises:
        FileNotFoundError: If ``directory`` has no model file.
    """
    base = Path(directory)
    if not (base / MODEL_FILE).is_file():
        raise FileNotFoundError(f"{base / MODEL_FILE}: no saved model there")
    algo_cls = sb3_class(get_agent(name).algo)
    model = algo_cls.load(base / MODEL_FILE, device="cpu")
    obs_filter = None
    if (base / NORMALIZE_FILE).is_file():
        with open(base / NORMALIZE_FILE, "rb") as f:
            norm = pickle.load(f)  # what VecNormalize.load does, without needing an env
        norm.training = False
        obs_filter = norm.normalize_obs
    return model, obs_filter
