"""Parameter-shared training of the multi-agent envs: one SB3 policy acts for every agent.

The PettingZoo ``ParallelEnv`` s of :data:`qdrl_envs.MARL_ENV_IDS` are turned into one SB3
``VecEnv`` whose rows are the agents (SuperSuit's vector conversion), so any single-agent SB3
algorithm of the agent registry, with its quantum, hybrid or classical policy unchanged, trains
*one* set of parameters on the experience of all agents (parameter sharing, Terry et al.,
"Revisiting parameter sharing in multi-agent deep RL", 2020)::

    from qdrl_bench.marl_train import train_shared, evaluate_shared, save_shared, load_shared

    run = train_shared("qdrl/SecrecyJamming-v0", "q-ppo-hybrid", timesteps=30_000, seed=0,
                       env_kwargs={"n_aps": 3})
    ev = evaluate_shared(run.model, run.spec, episodes=10, seed=10_000)
    ev.mean_returns, ev.team_returns            # per agent / per episode
    save_shared(run.model, run.spec, "agents/jam")
    model, obs_filter, spec = load_shared("agents/jam")   # in any later process
    evaluate_shared(model, spec, obs_filter=obs_filter)

**The wrapper chain** (:func:`shared_parallel_env`, :func:`make_shared_vec_env`)::

    qdrl_envs.make_parallel(env_id, **env_kwargs)
      -> parallel_wrappers (the caller's, in order; none by default)
      -> clip each action into the agent's own Box  (supersuit.action_lambda_v1; only where the
                                                      agents' Boxes have different bounds)
      -> supersuit.pad_action_space_v0               (only where the action spaces differ)
      -> supersuit.pad_observations_v0               (only where the observation spaces differ)
      -> supersuit.agent_indicator_v0                (only with agent_indicator=True)
      -> supersuit.pettingzoo_env_to_vec_env_v1      (one row per agent)
      -> supersuit.concat_vec_envs_v1(n_copies, base_class="stable_baselines3")
         (its SB3 wrapper with seeding and SB3's truncation flag added: :class:`SharedVecEnv`)
      -> VecMonitor (-> VecNormalize when the settings ask for it)

* **Padding.** A shared policy has one action space, so every agent's space is padded to the
  largest (``SecrecyJamming-v0``: transmitters ``Box(-1, 1, (1,))``, a jammer
  ``Box(-1, 1, (1 + T,))``; a ``"choose"`` AP ``(2 + T,)``). SuperSuit pads Box spaces to the
  elementwise *union* of the bounds and maps a padded action back by keeping its first ``n``
  entries (``homogenize_ops.dehomogenize_actions``), so an agent with a smaller space ignores
  the policy's extra entries. Where roles' Boxes have different bounds, the union's entries can
  lie outside an agent's own Box, which the qdrl envs reject (actions are checked, not repaired);
  so the chain clips each agent's action into its *own* Box after the slicing: exactly what SB3
  does for a single-agent Box env (it clips to the env's space before ``step``), and a no-op
  where all roles share the bounds (both registered envs: every Box is ``[-1, 1]``, so it is
  left out). Observations are padded the same way (with zeros) where their spaces differ; both
  registered envs already give every agent the same observation space, so it is left out, and
  ``SliceOrchestration-v0`` (identical agents) needs no wrapper at all. Each wrapper is left
  out where it would change nothing because SuperSuit's lambda wrappers step through
  PettingZoo's AEC form, which costs most of a step (see :func:`shared_parallel_env`). Mixed
  space kinds (a Box role and a Discrete role) cannot be padded: :func:`make_shared_vec_env`
  raises ``ValueError``.
* **Agent indicator: off by default.** A shared policy must be able to tell agents apart where
  they should act differently. ``SecrecyJamming-v0``'s observation already ends with the
  one-hot index of the agent's AP, and an AP's role is a constant of the config (or, for
  ``"choose"``, part of the action), so the policy can already specialise by role;
  ``SliceOrchestration-v0``'s agents are identical (same role, spaces and reward), where
  sharing without identities is the standard choice and keeps the policy independent of which
  cell it runs in. ``agent_indicator=True`` appends SuperSuit's one-hot of the agent's index
  anyway (for a user's env or wrapper that hides the identity).
* **Seeding and truncation.** SuperSuit 3.11's SB3 wrapper forwards ``seed()`` to the
  Gymnasium ``ConcatVecEnv``, which has none (``PPO(..., seed=0)`` raises ``AttributeError``),
  and drops the seed on ``reset``; and it sets no ``TimeLimit.truncated``, so SB3 would treat
  the envs' time limits as terminal states (no bootstrapping). :class:`SharedVecEnv` fixes
  both: the seed reaches copy ``i``'s ``reset`` as ``seed + i``, and a truncated, unterminated
  row reports ``TimeLimit.truncated=True`` next to its ``terminal_observation``.

**Agents.** Every learning agent of :mod:`qdrl_bench.agents` whose action need the padded
action space meets: ``ppo``, ``a2c`` (``any``), ``sac``, ``td3``, ``ddpg`` (``box``) and their
``q-``, ``q-*-hybrid`` and ``*-small`` forms (``*-small`` takes ``q-<algo>``'s parameter
count, so on these envs it needs the registry's ``match`` kwarg naming a hybrid), built by
:func:`qdrl_bench.registry.build_agent` with the settings of
:func:`qdrl_bench.registry.train_settings` (the hyperparameter files have no multi-agent
entries yet: SB3 defaults under the registry's budget defaults, as for any env without an
entry). ``q-<algo>`` needs one qubit per observation feature (21 on the
default ``SecrecyJamming-v0``, 30 on ``SliceOrchestration-v0``: more than
:data:`qdrl_bench.registry.MAX_QUBITS`, so it raises ``NotApplicable``; use
``q-<algo>-hybrid`` or ``policy_kwargs`` ``n_qubits`` + ``encoder``). Not shareable, with a
``ValueError`` naming the value: a baseline (a fixed joint policy: nothing to share; play it
with :func:`qdrl_envs.marl.make_baseline`), ``dqn`` / ``q-dqn`` (they need a Discrete action
space; the envs' are Boxes and no action adapter applies to a ``ParallelEnv``), and an
``adapter`` kwarg.

**Counting.** ``timesteps`` is SB3's count, one per row per step: an env step of ``n`` agents
is ``n`` timesteps (per copy). ``n_envs`` in the settings (``kwargs``) is the number of env
copies (``n_copies``); the vector env has ``n_agents * n_copies`` rows, and the PPO budget
default ``n_steps = min(2048, timesteps // rows)`` is per row.
"""

from __future__ import annotations

import functools
import json
import pickle
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qdrl_bench import registry
from qdrl_bench.agents import get_agent, is_baseline
from qdrl_bench.marl_eval import MarlEvaluation, TorchThreads, play_episodes
from qdrl_envs import marl
from qdrl_envs.config import check_int

# stable-baselines3 and SuperSuit (torch, and gymnasium's vector machinery) take seconds to
# import: they are imported inside the functions that need them, as in qdrl_bench.registry.

__all__ = [
    "SPEC_FILE",
    "SharedSpec",
    "SharedTraining",
    "SharedVecEnv",  # noqa: F822 - made on first use, by the module's __getattr__
    "check_shareable",
    "evaluate_shared",
    "frozen_obs_filter",
    "load_shared",
    "make_shared_vec_env",
    "save_shared",
    "shared_actions",
    "shared_parallel_env",
    "train_shared",
]

SPEC_FILE = "marl.json"
"""What :func:`save_shared` writes next to the model: the :class:`SharedSpec` as JSON."""

ParallelWrapper = Callable[[Any], Any]
"""A function ``ParallelEnv -> ParallelEnv`` applied to the raw env, before the padding."""


@dataclass(frozen=True)
class SharedSpec:
    """What a parameter-shared policy was trained on: enough to rebuild its env.

    Attributes:
        env_id: One of :data:`qdrl_envs.MARL_ENV_IDS`.
        agent: The registry agent (``ppo``, ``q-ppo-hybrid``, ...).
        env_kwargs: Config overrides of the env (JSON values, so the spec can be saved).
        agent_indicator: Whether SuperSuit's one-hot agent index was appended to observations.
    """

    env_id: str
    agent: str
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    agent_indicator: bool = False

    def to_json(self) -> dict[str, Any]:
        """The spec as a JSON object."""
        return {"env_id": self.env_id, "agent": self.agent, "env_kwargs": dict(self.env_kwargs),
                "agent_indicator": self.agent_indicator}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> SharedSpec:
        """Read :meth:`to_json`'s object back.

        Raises:
            ValueError: If a key is missing or unknown.
        """
        keys = {"env_id", "agent", "env_kwargs", "agent_indicator"}
        if set(doc) != keys:
            raise ValueError(f"a shared-policy spec has the keys {sorted(keys)}, got "
                             f"{sorted(doc)}")
        return cls(env_id=str(doc["env_id"]), agent=str(doc["agent"]),
                   env_kwargs=dict(doc["env_kwargs"]),
                   agent_indicator=bool(doc["agent_indicator"]))


@dataclass
class SharedTraining:
    """What :func:`train_shared` returns.

    Attributes:
        model: The trained SB3 model (its env is the shared vector env).
        spec: What it was trained on (pass to :func:`evaluate_shared`, :func:`save_shared`).
        counts: Trainable parameters, ``{"quantum": n, "classical": m}``.
        timesteps: SB3 timesteps trained (rows x steps).
        rows: Rows of the vector env (agents x copies).
        wall_s: Seconds spent in ``learn``.
        settings_source: Where the settings came from (hyperparameter file line, or ``""``).
    """

    model: Any
    spec: SharedSpec
    counts: dict[str, int]
    timesteps: int
    rows: int
    wall_s: float
    settings_source: str = ""

    @property
    def steps_per_s(self) -> float:
        """SB3 timesteps (agent-steps) per second of training."""
        return self.timesteps / self.wall_s if self.wall_s > 0 else float("inf")

    def obs_filter(self) -> Callable[[np.ndarray], np.ndarray] | None:
        """The observation normaliser as it is now, frozen (:func:`frozen_obs_filter`)."""
        return frozen_obs_filter(self.model)


def frozen_obs_filter(model: Any) -> Callable[[np.ndarray], np.ndarray] | None:
    """A model's observation normaliser as it is now, frozen; ``None`` without ``VecNormalize``.

    A copy of the statistics (later training does not move it): what :func:`load_shared`
    returns for the saved model, to pass to :func:`evaluate_shared`.
    """
    from stable_baselines3.common.vec_env import VecNormalize, unwrap_vec_wrapper

    env = model.get_env()
    norm = unwrap_vec_wrapper(env, VecNormalize) if env is not None else None
    if norm is None:
        return None
    frozen = pickle.loads(pickle.dumps(norm))  # VecNormalize pickles without its venv
    frozen.training = False
    return frozen.normalize_obs


# ----------------------------------------------------------------------------- checks


def check_shareable(env_id: str, agent: str) -> None:
    """Check that ``agent`` can be trained parameter-shared on ``env_id`` (see the module).

    Raises:
        ValueError: On an unknown env id (listing the ids), an unknown agent (listing the
            learning agents), a baseline or an agent that needs a Discrete action space (each
            naming the value).
    """
    entry_id = marl.marl_entry(env_id).id  # raises on an unknown id
    if is_baseline(agent):
        if agent in marl.baseline_names(entry_id):
            raise ValueError(f"agent {agent!r} is a baseline of {entry_id} (a fixed joint "
                             "policy): it has no parameters to share; play it with "
                             f"qdrl_envs.marl.make_baseline({agent!r}, env)")
        get_agent(agent)  # raises: unknown agent, listing the learning agents
    need = get_agent(agent).action_need
    if need == "discrete":
        raise ValueError(f"agent {agent!r} needs a Discrete action space; the agents of "
                         f"{entry_id} act in Boxes and no action adapter applies to a "
                         "multi-agent env: it cannot be parameter-shared (use a ppo, a2c, "
                         "sac, td3 or ddpg agent)")


def _check_json(env_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    try:
        return json.loads(json.dumps(dict(env_kwargs)))
    except TypeError as exc:
        raise TypeError(f"env_kwargs must be JSON values (so the trained policy's spec can be "
                        f"saved): {exc}") from exc


def _space_kind(space: Any) -> str:
    from gymnasium import spaces

    for kind in (spaces.Box, spaces.Discrete):
        if isinstance(space, kind):
            return kind.__name__
    return type(space).__name__


def _check_paddable(par: Any, what: str) -> None:
    spaces_ = {a: getattr(par, what)(a) for a in par.possible_agents}
    kinds = {a: _space_kind(s) for a, s in spaces_.items()}
    if set(kinds.values()) - {"Box", "Discrete"}:
        raise ValueError(f"{what} of {marl.marl_entry(par).id}: only Box and Discrete spaces "
                         f"can be padded for a shared policy, got {kinds}")
    if len(set(kinds.values())) > 1:
        raise ValueError(f"{what} of {marl.marl_entry(par).id}: the agents' spaces are of "
                         f"different kinds {kinds}; a shared policy needs one kind to pad to")
    boxes = [s for a, s in spaces_.items() if kinds[a] == "Box"]
    if boxes and (len({len(s.shape) for s in boxes}) > 1 or len({s.dtype for s in boxes}) > 1):
        raise ValueError(f"{what} of {marl.marl_entry(par).id}: Boxes of different ranks or "
                         f"dtypes cannot be padded: "
                         f"{ {a: (s.shape, str(s.dtype)) for a, s in spaces_.items()} }")


# ----------------------------------------------------------------------------- the chain


def _clip_to_own_box(action: Any, space: Any) -> Any:
    from gymnasium import spaces

    if isinstance(space, spaces.Box):
        return np.clip(np.asarray(action, dtype=space.dtype), space.low, space.high)
    return action


def _needs_clip(action_spaces: Sequence[Any]) -> bool:
    """Whether an agent's Box is narrower than the padded Box on its own entries."""
    from gymnasium import spaces
    from supersuit.utils.action_transforms.homogenize_ops import homogenize_spaces

    if not isinstance(action_spaces[0], spaces.Box):
        return False
    padded = homogenize_spaces(list(action_spaces))
    for space in action_spaces:
        own = tuple(slice(0, n) for n in space.shape)
        if not (np.array_equal(padded.low[own], space.low)
                and np.array_equal(padded.high[own], space.high)):
            return True
    return False


def shared_parallel_env(spec: SharedSpec,
                        parallel_wrappers: Sequence[ParallelWrapper] = (), **make_kwargs: Any
                        ) -> Any:
    """The ``ParallelEnv`` a shared policy acts in: padded spaces, and the agent indicator.

    Every agent's observation and action space is the padded one; an action given for an agent
    is cut (and, where its Box is narrower than the padded one, clipped) into its own space
    before the env sees it (see the module). Each SuperSuit wrapper is applied only where it
    changes something (action padding where the agents' action spaces differ, the clipping
    where also their bounds do, observation padding where the observation spaces differ):
    SuperSuit's lambda wrappers run through PettingZoo's AEC form, which costs most of a
    step's time (``SecrecyJamming-v0``, env steps per CPU-second: about 4600 bare, 1800
    through the action padding alone, 1000 through all three wrappers), and a no-op wrapper
    would pay that for nothing.

    Args:
        spec: Env id, config overrides and whether to add the agent indicator.
        parallel_wrappers: Applied to the raw env first, in order.
        **make_kwargs: More arguments of :func:`qdrl_envs.make_parallel` (``render_mode``).

    Raises:
        ValueError: On an unknown id, an invalid config, or spaces that cannot be padded.
    """
    import supersuit as ss

    par = marl.make_parallel(spec.env_id, **dict(spec.env_kwargs), **make_kwargs)
    for wrap in parallel_wrappers:
        par = wrap(par)
    actions = [par.action_space(a) for a in par.possible_agents]
    if any(s != actions[0] for s in actions):
        _check_paddable(par, "action_space")
        if _needs_clip(actions):
            par = ss.action_lambda_v1(par, _clip_to_own_box, lambda space: space)
        par = ss.pad_action_space_v0(par)
    observations = [par.observation_space(a) for a in par.possible_agents]
    if any(s != observations[0] for s in observations):
        _check_paddable(par, "observation_space")
        par = ss.pad_observations_v0(par)
    if spec.agent_indicator:
        par = ss.agent_indicator_v0(par)
    return par


_SHARED_VEC_ENV_DOC = """SuperSuit's SB3 wrapper, with seeding and the truncation flag added.

    ``seed(s)`` (what SB3 calls for ``PPO(..., seed=s)``) makes the next ``reset`` seed copy
    ``i`` of the env with ``s + i``; later resets continue each env's own generator. At an
    episode end, a row whose agent was truncated and not terminated has
    ``infos[row]["TimeLimit.truncated"] = True`` (SuperSuit already puts
    ``terminal_observation`` there), so SB3 bootstraps the value at time limits.

    ``SharedVecEnv(venv)`` wraps a Gymnasium vector env of SuperSuit's (what
    ``concat_vec_envs_v1(..., base_class="stable_baselines3")`` wraps in its own
    ``SB3VecEnvWrapper``, this class's base). The class is made on first use
    (``qdrl_bench.marl_train.SharedVecEnv``), so importing this module imports neither
    SuperSuit nor stable-baselines3.
    """


@functools.cache
def _shared_vec_env_class() -> type:
    from supersuit.vector.sb3_vector_wrapper import SB3VecEnvWrapper

    class SharedVecEnv(SB3VecEnvWrapper):
        __doc__ = _SHARED_VEC_ENV_DOC

        def __init__(self, venv: Any) -> None:
            super().__init__(venv)
            self._pending_seed: int | None = None

        def seed(self, seed: int | None = None) -> list[int | None]:
            """Seed the next reset; returns each row's seed (its copy's: ``seed + copy``)."""
            self._pending_seed = None if seed is None else int(seed)
            rows = [int(seed) + c if seed is not None else None
                    for c, copy in enumerate(self.venv.vec_envs) for _ in range(copy.num_envs)]
            return rows

        def reset(self, seed: int | None = None, options: Any = None) -> np.ndarray:
            if seed is not None:
                self.seed(seed)
            observations, self.reset_infos = self.venv.reset(seed=self._pending_seed,
                                                             options=options)
            self._pending_seed = None
            return observations

        def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
            if attr_name == "render_mode":  # SuperSuit asks the Gymnasium vector env, which
                return [self.render_mode] * len(self._get_indices(indices))  # has no get_attr
            return super().get_attr(attr_name, indices)

        def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict]]:
            observations, rewards, terminations, truncations, infos = self.venv.step_wait()
            terminations = np.asarray(terminations, dtype=bool)
            truncations = np.asarray(truncations, dtype=bool)
            dones = terminations | truncations
            infos = [dict(info) for info in infos]
            for i in np.flatnonzero(dones):
                infos[i]["TimeLimit.truncated"] = bool(truncations[i] and not terminations[i])
            return observations, np.asarray(rewards, dtype=np.float32), dones, infos

    SharedVecEnv.__module__ = __name__
    SharedVecEnv.__qualname__ = "SharedVecEnv"
    return SharedVecEnv


def __getattr__(name: str) -> Any:
    if name == "SharedVecEnv":
        return _shared_vec_env_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_shared_vec_env(spec: SharedSpec, *, n_copies: int = 1,
                        parallel_wrappers: Sequence[ParallelWrapper] = ()) -> Any:
    """The SB3 ``VecEnv`` a shared policy trains on: one row per agent per copy.

    Rows are ``possible_agents`` order within each copy, copy after copy. Not wrapped in
    ``VecMonitor`` / ``VecNormalize`` (:func:`train_shared` adds those).

    Args:
        spec: The env and options (see :class:`SharedSpec`).
        n_copies: Independent copies of the env (``concat_vec_envs_v1``'s ``num_vec_envs``),
            stepped in this process.
        parallel_wrappers: See :func:`shared_parallel_env`.

    Raises:
        ValueError: On an unknown id, an invalid config, ``n_copies < 1`` or spaces that cannot
            be padded.
    """
    import supersuit as ss

    check_int("n_copies", n_copies, low=1)
    par = shared_parallel_env(spec, parallel_wrappers)
    vec = ss.pettingzoo_env_to_vec_env_v1(par)
    sb3 = ss.concat_vec_envs_v1(vec, int(n_copies), num_cpus=0, base_class="stable_baselines3")
    return _shared_vec_env_class()(sb3.venv)


# ----------------------------------------------------------------------------- training


def train_shared(env_id: str, agent: str = "ppo", *, timesteps: int, seed: int = 0,
                 env_kwargs: Mapping[str, Any] | None = None,
                 kwargs: Mapping[str, Any] | None = None, agent_indicator: bool = False,
                 parallel_wrappers: Sequence[ParallelWrapper] = (),
                 hyperparams_dir: Any = None, callback: Any = None,
                 torch_threads: int | None = 1) -> SharedTraining:
    """Train one parameter-shared SB3 policy over all agents of a multi-agent env.

    Args:
        env_id: One of :data:`qdrl_envs.MARL_ENV_IDS`.
        agent: A registry learning agent that can be shared (:func:`check_shareable`).
        timesteps: SB3 timesteps: agent-steps, ``n_agents * n_copies`` per env step.
        seed: Seeds the SB3 algorithm (torch, NumPy, Python) and the env copies (``seed + i``).
        env_kwargs: Config overrides of the env (JSON values).
        kwargs: The agent's settings over its hyperparameter file, as a sweep's agent
            ``kwargs`` (algorithm arguments, ``policy_kwargs`` merged key by key,
            ``n_envs`` = env copies, ``normalize``); see
            :func:`qdrl_bench.registry.train_settings`.
        agent_indicator: Append SuperSuit's one-hot agent index to the observations.
        parallel_wrappers: Functions ``ParallelEnv -> ParallelEnv`` applied to the raw env.
        hyperparams_dir: Directory of the hyperparameter files (default: the package's).
        callback: SB3 callback(s) for ``learn`` (progress, evaluation, early stopping).
        torch_threads: torch's intra-op threads while building and training (restored after;
            ``None`` leaves torch's setting; why 1: :class:`qdrl_bench.marl_eval.TorchThreads`).

    Returns:
        A :class:`SharedTraining` (model, spec, parameter counts, timing).

    Raises:
        ValueError: On an unknown env id or agent, an agent that cannot be shared, an
            ``adapter`` in ``kwargs``, bad config overrides, ``timesteps < 1`` or
            ``torch_threads < 1``.
        qdrl_bench.registry.NotApplicable: If the agent cannot run on the env (too many
            qubits).
    """
    from stable_baselines3.common.vec_env import VecMonitor, VecNormalize

    check_shareable(env_id, agent)
    check_int("timesteps", timesteps, low=1)
    threads = TorchThreads(torch_threads)
    spec = SharedSpec(marl.marl_entry(env_id).id, agent, _check_json(env_kwargs or {}),
                      bool(agent_indicator))
    settings = registry.train_settings(agent, spec.env_id, kwargs, hyperparams_dir)
    if settings.adapter:
        raise ValueError(f"agent {agent!r}: kwargs.adapter {dict(settings.adapter)!r} does not "
                         "apply: action adapters wrap single-agent envs; a shared policy acts "
                         "in the agents' padded action space")
    venv: Any = make_shared_vec_env(spec, n_copies=settings.n_envs,
                                    parallel_wrappers=parallel_wrappers)
    venv = VecMonitor(venv)
    if settings.normalize is not None:
        gamma = float(settings.algo_kwargs.get("gamma", 0.99))
        venv = VecNormalize(venv, gamma=gamma, **dict(settings.normalize))
    try:
        with threads:
            model, counts = registry.build_agent(agent, venv, seed=seed,
                                                 timesteps=int(timesteps),
                                                 kwargs=settings.algo_kwargs)
            start = time.perf_counter()
            model.learn(total_timesteps=int(timesteps), callback=callback)
            wall = time.perf_counter() - start
    except Exception:
        venv.close()
        raise
    return SharedTraining(model=model, spec=spec, counts=counts,
                          timesteps=int(model.num_timesteps), rows=int(venv.num_envs),
                          wall_s=wall, settings_source=settings.source)


# ----------------------------------------------------------------------------- evaluation


def shared_actions(model: Any, env: Any, observations: Mapping[str, Any], *,
                   deterministic: bool = True,
                   obs_filter: Callable[[np.ndarray], np.ndarray] | None = None
                   ) -> dict[str, np.ndarray]:
    """The shared policy's padded actions for a dict of observations of ``env``.

    Args:
        model: The trained model.
        env: The :func:`shared_parallel_env` the observations came from (padded spaces).
        observations: Agent -> padded observation (what ``env.reset`` / ``env.step`` return).
        deterministic: Act on the policy's mode.
        obs_filter: The frozen ``VecNormalize.normalize_obs`` of a normalised model.

    Returns:
        Agent -> padded action, to pass to ``env.step`` (which maps each into the agent's
        own space).
    """
    agents = [a for a in env.possible_agents if a in observations]
    stacked = np.stack([np.asarray(observations[a]) for a in agents])
    if obs_filter is not None:
        stacked = obs_filter(stacked)
    actions, _ = model.predict(stacked, deterministic=deterministic)
    return {a: actions[i] for i, a in enumerate(agents)}


def evaluate_shared(model: Any, spec: SharedSpec, *, episodes: int = 10, seed: int = 10_000,
                    deterministic: bool = True,
                    obs_filter: Callable[[np.ndarray], np.ndarray] | None = None,
                    parallel_wrappers: Sequence[ParallelWrapper] = (),
                    torch_threads: int | None = 1) -> MarlEvaluation:
    """Play a shared policy on the ``ParallelEnv``; episode ``k`` is reset with ``seed + k``.

    The env is built from ``spec`` through the same padding (and agent indicator) as training;
    rewards and infos are the env's own. Training resets copy ``i`` with the training seed
    ``+ i`` once and then continues its generator, so evaluation seeds far from the training
    seed (the default ``10_000``) are held-out episodes.

    Args:
        model: A trained model (from :func:`train_shared` or :func:`load_shared`).
        spec: What it was trained on.
        episodes: Number of episodes (>= 1).
        seed: Seed of the first episode.
        deterministic: Act on the policy's mode (``True``) or sample it.
        obs_filter: The frozen observation normaliser of a model trained under
            ``VecNormalize``: from :func:`load_shared`, or :meth:`SharedTraining.obs_filter`.
        parallel_wrappers: As in training (see :func:`shared_parallel_env`).
        torch_threads: torch's intra-op threads while playing (see :func:`train_shared`).

    Raises:
        ValueError: If ``episodes < 1`` or ``torch_threads < 1``, or the model's spaces are
            not the env's padded ones.
    """
    check_int("episodes", episodes, low=1)
    threads = TorchThreads(torch_threads)
    env = shared_parallel_env(spec, parallel_wrappers)
    first = env.possible_agents[0]
    if (model.observation_space != env.observation_space(first)
            or model.action_space != env.action_space(first)):
        raise ValueError(f"the model acts in {model.observation_space} -> {model.action_space}"
                         f", but {spec.env_id} with {dict(spec.env_kwargs)} (agent_indicator="
                         f"{spec.agent_indicator}) gives {env.observation_space(first)} -> "
                         f"{env.action_space(first)}: not the spec it was trained on")
    try:
        with threads:
            return play_episodes(
                env, lambda obs: shared_actions(model, env, obs, deterministic=deterministic,
                                                obs_filter=obs_filter),
                episodes=episodes, seed=seed)
    finally:
        env.close()


# ----------------------------------------------------------------------------- save / load


def save_shared(model: Any, spec: SharedSpec, directory: Any) -> list[str]:
    """Save a shared policy: SB3's ``model.save`` (and its ``VecNormalize`` statistics).

    Writes what :func:`qdrl_bench.registry.save_agent` writes (``model.zip``, and
    ``vecnormalize.pkl`` for a normalised model) and :data:`SPEC_FILE`. SB3's files are
    pickles: load only files you trust.

    Returns:
        The paths written.
    """
    written = registry.save_agent(model, directory)
    path = Path(directory) / SPEC_FILE
    path.write_text(json.dumps(spec.to_json(), indent=2, sort_keys=True) + "\n")
    return [*written, str(path)]


def load_shared(directory: Any) -> tuple[Any, Any, SharedSpec]:
    """Load what :func:`save_shared` wrote: ``(model, obs_filter, spec)``.

    The model is on the CPU without an env; ``obs_filter`` is the frozen observation
    normaliser or ``None`` (see :func:`qdrl_bench.registry.load_agent`). Evaluate with
    ``evaluate_shared(model, spec, obs_filter=obs_filter)``.

    Raises:
        FileNotFoundError: If the directory has no model or no spec.
        ValueError: If the spec is malformed.
    """
    path = Path(directory) / SPEC_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no shared-policy spec there (save with save_shared)")
    spec = SharedSpec.from_json(json.loads(path.read_text()))
    model, obs_filter = registry.load_agent(directory, spec.agent)
    return model, obs_filter, spec
