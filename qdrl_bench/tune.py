"""Tune every learning agent of a sweep with optuna, each with the same budget.

``qdrl-bench tune SWEEP --trials N`` runs, for each (environment, learning agent) of the sweep
(baselines are skipped), one optuna study of ``N`` trials. A trial is one ordinary run
(:func:`qdrl_bench.execute.execute_run`) of the agent with sampled hyperparameters, for the
sweep's ``timesteps`` and evaluation schedule. Every agent, quantum and classical alike, gets
the same number of trials and the same training steps per trial: that is what makes the tuned
agents comparable. The objective is the run's ``score/last_evals`` (the mean of its last three
evaluations, which rewards a policy that stays good over one that peaked), or its final score
when that metric is missing; it is maximised.

Sampling and pruning:

* ``TPESampler`` seeded from ``seed`` and the trial's number, so a resumed study does not
  redraw the parameters of its first trials; its first ``min(10, N // 2)`` trials (at least
  one) are random search (:func:`tpe_startup`), so that a study of a few trials still
  spends half of them on TPE's model.
* Trial 0 of every study is the agent's starting point (:func:`starting_params`: its
  hyperparameter-file settings, SB3's defaults elsewhere), enqueued, so the tuned file is
  chosen against the hand-set one within the same budget.
* ``MedianPruner`` on the evaluation curve: a trial whose evaluation at a step falls below the
  median of earlier trials at that step stops there (the runner's ``on_eval`` hook), after
  ``n_startup_trials`` complete trials and never before the first evaluation after the
  trial's first update (its first rollout, ``n_steps * n_envs``, for PPO and A2C; its
  ``learning_starts`` for the off-policy algorithms): earlier evaluations score the untrained
  policy, which says nothing of the sampled settings.
  A pruned trial counts as one of the ``N`` (it used its budget up to where it stopped).
* The run of trial ``k`` is seeded ``seed + k`` for every agent (trial ``k`` of each agent
  sees the same training and evaluation seeds); the sweep's ``seeds`` are not used.

Confirming the finalists (``confirm`` > 0): one seed per trial selects on noise (on the secrecy
env the single-seed winner of 8 PPO trials scored 0.71 of the random-to-oracle range over three
fresh seeds, the starting settings it beat by 0.6 % on its seed 0.94). So, after its trials, a
study reruns its ``confirm`` best complete trials, and its starting trial (trial 0) when that is
complete and not among them, on ``confirm_seeds`` further seeds each (``seed + 1_000_000 + i``,
the same for every finalist and every agent: common random numbers make the comparison of
finalists sharper), for the full budget and without pruning. A finalist's score is the mean of
its trial's value and its reruns'; the written settings are those of the best finalist (a
finalist with a failed rerun is dropped). Every study gets the same finalists and seeds: the
budget stays equal. Reruns are kept in the study's user attributes
(``confirm/<trial>/<seed>``), so a killed confirmation resumes where it stopped and a larger
``confirm`` reuses the reruns already made.

The search spaces (:data:`SEARCH_SPACES`, one per algorithm, in the spirit of rl-zoo3's
``hyperparams_opt.py``) sample keyword arguments of the sweep's format. A trial trains with the
agent's hyperparameter-file entry, under the sweep's ``kwargs``, under the sampled parameters
(``policy_kwargs`` merged key by key, so the sweep's other policy options stay). ``n_envs`` is
never tuned (it comes from the file or the sweep), and rollout-based sizes are drawn so that one
rollout fits the budget (``n_steps * n_envs <= timesteps``) and PPO's ``batch_size`` divides
the rollout. Classical agents tune ``net_arch`` (small / medium); quantum and hybrid agents
tune the circuit depth ``policy_kwargs.n_layers`` instead; parameter-matched ``*-small`` agents
keep their computed architecture.

Storage and resuming: the studies live in optuna's RDB storage (``sqlite:///path.db``), one per
``(sweep, env label, agent label)``, named ``<sweep>/<env label>/<agent label>``, created with
``load_if_exists``. A study records its budget (timesteps, evaluation schedule, agent and env
configuration) and refuses to continue under another one. When a study is opened, trials left
``RUNNING`` by a killed process are marked ``FAIL`` (so a study must be tuned by one process at
a time), and only the missing number of ``COMPLETE`` + ``PRUNED`` trials is run: finished trials
are never repeated. A study gives up after ``N`` failed trials in one invocation.

Output, in ``out_dir``:

* ``<agent label>.yml``: the best trial's (or confirmed finalist's) settings per env id, in
  the format of :mod:`qdrl_bench.hyperparams` (``n_envs``, ``normalize``, the algorithm's
  arguments; the original file's ``n_timesteps`` is kept), with a header naming each study,
  the trials it used (complete / pruned / failed), the timesteps per trial, the best value
  (with its seeds when finalists were confirmed) and the date. The
  registry reads it with ``directory=out_dir`` (when the label is the agent's name, as usual):
  ``registry.train_settings(agent, env_id, {}, directory=out_dir)``. A sweep's ``adapter`` and
  ``match`` kwargs are not hyperparameter-file keys and are not written. The file is rewritten
  on every invocation; the entries of env ids the invocation did not tune are kept from the
  file it replaces (their values, not their comments; the header lists them), so tuning one
  env of a hand-set file leaves the others.
* ``tuning.json``: per (env, agent) the study, the trial counts, the best value, the best
  sampled parameters and the settings written, for the report; studies of other (env,
  agent) pairs from the summary it replaces are kept, each with its own budget.

Example::

    from qdrl_bench.spec import load_sweep
    from qdrl_bench.tune import tune_sweep

    summary = tune_sweep(load_sweep("qdrl_bench/configs/quick.yaml"), trials=20,
                         storage="sqlite:///results/quick-tune.db",
                         out_dir="qdrl_bench/hyperparams/tuned")
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import optuna
from optuna.trial import TrialState

from qdrl_bench import execute, registry
from qdrl_bench.hyperparams import (
    algo_params,
    dump_hyperparams,
    hyperparams_for,
    load_hyperparams,
    parse_hyperparams,
)
from qdrl_bench.runner import check_env_kwargs
from qdrl_bench.spec import AgentSpec, EnvSpec, RunSpec, SpecError, SweepSpec
from qdrl_bench.store import FINISHED, NOT_APPLICABLE

__all__ = [
    "SEARCH_SPACES",
    "SpaceContext",
    "StudyResult",
    "TuneSummary",
    "confirm_seed",
    "sample_params",
    "starting_params",
    "study_name",
    "tpe_startup",
    "tune_sweep",
]

SUMMARY_FILE = "tuning.json"
"""The summary written beside the hyperparameter files."""

_NOT_FILE_KEYS = ("adapter", "match")  # sweep kwargs a hyperparameter file does not take
_GAMMAS = [0.0, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999]


# ----------------------------------------------------------------------------- search spaces


@dataclass(frozen=True)
class SpaceContext:
    """What a search space may depend on (fixed for a study, so its choices never change).

    Attributes:
        algo: Lower-case SB3 algorithm (``ppo``, ...).
        family: The agent's registry family (``classical``, ``quantum``, ``hybrid``,
            ``small``).
        n_envs: Rows of the vector env trained on (not tuned).
        timesteps: Training steps per trial.
    """

    algo: str
    family: str
    n_envs: int
    timesteps: int


def _fitting(choices: list[int], limit: int) -> list[int]:
    """The choices ``<= limit``; the smallest one when none fits."""
    return [c for c in choices if c <= limit] or [min(choices)]


def _architecture(trial: Any, ctx: SpaceContext, small: Any, medium: Any) -> dict[str, Any]:
    if ctx.family == "classical":
        arch = trial.suggest_categorical("net_arch", ["small", "medium"])
        return {"policy_kwargs": {"net_arch": small if arch == "small" else medium}}
    if ctx.family in ("quantum", "hybrid"):
        return {"policy_kwargs": {"n_layers": trial.suggest_int("n_layers", 2, 5)}}
    return {}  # *-small: the architecture is computed to match q-<algo>'s parameter count


def _divisor_at_most(n: int, at_most: int) -> int:
    """The largest divisor of ``n`` that is ``<= at_most`` and >= 2 (when ``n`` >= 2)."""
    for d in range(min(n, at_most), 1, -1):
        if n % d == 0:
            return d
    return max(1, min(n, 2))


def _ppo(trial: Any, ctx: SpaceContext) -> dict[str, Any]:
    n_steps = trial.suggest_categorical(
        "n_steps", _fitting([8, 16, 32, 64, 128, 256, 512, 1024, 2048],
                            ctx.timesteps // ctx.n_envs))
    batch = trial.suggest_categorical("batch_size", [32, 64, 128, 256, 512])
    rollout = n_steps * ctx.n_envs
    out: dict[str, Any] = {
        "gamma": trial.suggest_categorical("gamma", _GAMMAS),
        "learning_rate": trial.suggest_float("learning_rate", 1e-5, 1e-2, log=True),
        "n_steps": n_steps,
        "batch_size": _divisor_at_most(rollout, batch),  # SB3 wants it to divide the rollout
        "n_epochs": trial.suggest_categorical("n_epochs", [1, 5, 10, 20]),
        "ent_coef": trial.suggest_float("ent_coef", 1e-8, 0.1, log=True),
        "clip_range": trial.suggest_categorical("clip_range", [0.1, 0.2, 0.3, 0.4]),
        "gae_lambda": trial.suggest_categorical("gae_lambda",
                                                [0.8, 0.9, 0.92, 0.95, 0.98, 0.99, 1.0]),
        "normalize": trial.suggest_categorical("normalize", [True, False]),
    }
    return {**out, **_architecture(trial, ctx, {"pi": [64, 64], "vf": [64, 64]},
                                   {"pi": [256, 256], "vf": [256, 256]})}


def _a2c(trial: Any, ctx: SpaceContext) -> dict[str, Any]:
    out: dict[str, Any] = {
        "gamma": trial.suggest_categorical("gamma", _GAMMAS),
        "learning_rate": trial.suggest_float("learning_rate", 1e-5, 1e-2, log=True),
        "n_steps": trial.suggest_categorical(
            "n_steps", _fitting([4, 8, 16, 32, 64, 128, 256, 512], ctx.timesteps // ctx.n_envs)),
        "ent_coef": trial.suggest_float("ent_coef", 1e-8, 0.1, log=True),
        "gae_lambda": trial.suggest_categorical("gae_lambda", [0.8, 0.9, 0.95, 0.98, 1.0]),
        "max_grad_norm": trial.suggest_categorical("max_grad_norm", [0.3, 0.5, 1.0, 2.0, 5.0]),
        "normalize": trial.suggest_categorical("normalize", [True, False]),
    }
    return {**out, **_architecture(trial, ctx, {"pi": [64, 64], "vf": [64, 64]},
                                   {"pi": [256, 256], "vf": [256, 256]})}


def _learning_starts(trial: Any, ctx: SpaceContext) -> int:
    return trial.suggest_categorical("learning_starts",
                                     _fitting([0, 100, 1000, 10000], ctx.timesteps // 4))


def _dqn(trial: Any, ctx: SpaceContext) -> dict[str, Any]:
    out: dict[str, Any] = {
        "gamma": trial.suggest_categorical("gamma", _GAMMAS),
        "learning_rate": trial.suggest_float("learning_rate", 1e-5, 1e-2, log=True),
        "batch_size": trial.suggest_categorical("batch_size", [16, 32, 64, 128, 256]),
        "train_freq": trial.suggest_categorical("train_freq", [1, 4, 8, 16]),
        "target_update_interval": trial.suggest_categorical(
            "target_update_interval", _fitting([1, 100, 1000, 10000], ctx.timesteps)),
        "exploration_fraction": trial.suggest_float("exploration_fraction", 0.0, 0.5),
        "exploration_final_eps": trial.suggest_float("exploration_final_eps", 0.0, 0.2),
        "learning_starts": _learning_starts(trial, ctx),
    }
    return {**out, **_architecture(trial, ctx, [64, 64], [256, 256])}


def _off_policy_box(medium: list[int]) -> Callable[[Any, SpaceContext], dict[str, Any]]:
    def space(trial: Any, ctx: SpaceContext) -> dict[str, Any]:
        train_freq = trial.suggest_categorical("train_freq", [1, 4, 8, 16, 32])
        out: dict[str, Any] = {
            "gamma": trial.suggest_categorical("gamma", _GAMMAS),
            "learning_rate": trial.suggest_float("learning_rate", 1e-5, 1e-2, log=True),
            "batch_size": trial.suggest_categorical("batch_size", [32, 64, 128, 256, 512]),
            "train_freq": train_freq,
            "gradient_steps": train_freq,  # one update per env step, in bursts
            "tau": trial.suggest_categorical("tau", [0.001, 0.005, 0.01, 0.02, 0.05]),
            "learning_starts": _learning_starts(trial, ctx),
        }
        return {**out, **_architecture(trial, ctx, [64, 64], medium)}

    return space


SEARCH_SPACES: dict[str, Callable[[Any, SpaceContext], dict[str, Any]]] = {
    "ppo": _ppo,
    "a2c": _a2c,
    "dqn": _dqn,
    "sac": _off_policy_box([256, 256]),
    "td3": _off_policy_box([400, 300]),
    "ddpg": _off_policy_box([400, 300]),
}
"""Algorithm -> ``space(trial, ctx) -> sweep-style kwargs``.

* ``ppo``: ``gamma`` (0, 0.9 ... 0.999), ``learning_rate`` (log 1e-5..1e-2), ``n_steps`` per env
  (8..2048, one rollout within the budget), ``batch_size`` (32..512, made a divisor of the
  rollout: smaller minibatches multiply the gradient steps of a trial, 135 s against 28 s for
  one PPO trial of 50,000 steps at 8 against 64), ``n_epochs``, ``ent_coef`` (log
  1e-8..0.1), ``clip_range``, ``gae_lambda``, ``normalize``.
* ``a2c``: ``gamma``, ``learning_rate``, ``n_steps`` (4..512), ``ent_coef``, ``gae_lambda``,
  ``max_grad_norm``, ``normalize``.
* ``dqn``: ``gamma``, ``learning_rate``, ``batch_size``, ``train_freq``,
  ``target_update_interval``, ``exploration_fraction``, ``exploration_final_eps``,
  ``learning_starts`` (at most a quarter of the budget).
* ``sac``, ``td3``, ``ddpg``: ``gamma``, ``learning_rate``, ``batch_size``, ``train_freq``
  (with as many ``gradient_steps``), ``tau``, ``learning_starts``.

Each adds ``net_arch`` (``small`` 64x64 / ``medium``) for classical agents, ``n_layers`` (2..5)
in ``policy_kwargs`` for quantum and hybrid ones.
"""


class _Probe:
    """A stand-in trial: records each parameter's distribution, suggests its first choice.

    (Or the choice ``pick`` names.)
    """

    def __init__(self, pick: Mapping[str, Any] | None = None) -> None:
        self.pick = dict(pick or {})
        self.choices: dict[str, list[Any]] = {}
        self.ranges: dict[str, tuple[float, float, bool]] = {}

    def suggest_categorical(self, name: str, choices: list[Any]) -> Any:
        self.choices[name] = list(choices)
        return self.pick.get(name, choices[0])

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float:
        self.ranges[name] = (float(low), float(high), False)
        return low

    def suggest_int(self, name: str, low: int, high: int) -> int:
        self.ranges[name] = (low, high, True)
        return low


def starting_params(ctx: SpaceContext, settings: Any) -> dict[str, Any]:
    """The search-space point of the settings an agent starts from (its file, SB3 defaults).

    Every new study's first trial trains with these (``study.enqueue_trial``), so a tuned file
    never replaces the hand-set one without having been measured against it in the same
    study: the starting point is one of the ``N`` trials, for every agent alike. Each
    parameter takes the value of ``settings`` (a :class:`qdrl_bench.registry.TrainSettings`),
    else the SB3 algorithm's default; a float is clamped into its range (SB3's ``ent_coef``
    0 becomes the range's 1e-8); ``net_arch`` is ``medium`` when the settings name that
    architecture, else ``small``; a value that is not among a categorical's choices is left
    to the sampler.
    """
    probe = _Probe()
    SEARCH_SPACES[ctx.algo](probe, ctx)
    known: dict[str, Any] = {k: p.default for k, p in algo_params(ctx.algo).items()}
    known.update(settings.algo_kwargs)
    known["normalize"] = settings.normalize is not None
    policy_kwargs = dict(settings.algo_kwargs.get("policy_kwargs") or {})
    if "n_layers" in policy_kwargs:
        known["n_layers"] = policy_kwargs["n_layers"]
    if "net_arch" in probe.choices:
        medium = SEARCH_SPACES[ctx.algo](_Probe({"net_arch": "medium"}), ctx)
        same = _plain(policy_kwargs.get("net_arch")) == medium["policy_kwargs"]["net_arch"]
        known["net_arch"] = "medium" if same else "small"
    out: dict[str, Any] = {}
    for name, choices in probe.choices.items():
        value = known.get(name)
        if any(type(value) is type(c) and value == c for c in choices):
            out[name] = value
    for name, (low, high, is_int) in probe.ranges.items():
        value = known.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = min(max(value, low), high)
            out[name] = int(value) if is_int else float(value)
    return out


def sample_params(trial: Any, ctx: SpaceContext, base: Mapping[str, Any] | None = None
                  ) -> dict[str, Any]:
    """Sample a trial's kwargs and merge them over a sweep agent's ``base`` kwargs.

    Args:
        trial: An ``optuna.Trial`` (or anything with its ``suggest_*`` methods).
        ctx: The study's fixed context.
        base: The sweep agent's ``kwargs``; sampled values win, ``policy_kwargs`` merged key
            by key.

    Returns:
        The kwargs the trial's run is given.

    Raises:
        ValueError: If there is no search space for ``ctx.algo``.
    """
    if ctx.algo not in SEARCH_SPACES:
        raise ValueError(f"no search space for algorithm {ctx.algo!r}; have "
                         f"{sorted(SEARCH_SPACES)}")
    return _merge_kwargs(base or {}, SEARCH_SPACES[ctx.algo](trial, ctx))


def _merge_kwargs(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = _plain(dict(base))
    for key, value in over.items():
        if key == "policy_kwargs" and isinstance(value, Mapping):
            out[key] = {**dict(out.get(key) or {}), **_plain(dict(value))}
        else:
            out[key] = _plain(value)
    return out


def _plain(value: Any) -> Any:
    """A JSON/YAML-able deep copy (tuples become lists; numpy scalars Python numbers)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


# ----------------------------------------------------------------------------- results


@dataclass
class StudyResult:
    """One (env, agent) study after this invocation.

    Attributes:
        env: The env's label.
        env_id: Its Gymnasium id.
        agent: The agent's label (the hyperparameter file's name).
        agent_name: Its registry name.
        study: The optuna study's name.
        status: ``tuned`` (has a best trial), ``no_complete_trial``, ``gave_up`` (too many
            failed trials) or ``not_applicable`` (the agent cannot run on the env; see
            ``reason``).
        complete: ``COMPLETE`` trials in the study.
        pruned: ``PRUNED`` trials.
        failed: ``FAIL`` trials (including those a killed process left running).
        ran: Trials this invocation ran (any state).
        marked_failed: Trials a killed process had left ``RUNNING``, marked ``FAIL`` now.
        best_value: The best trial's objective; with finalists confirmed, the best finalist's
            mean over its seeds.
        best_trial: Its number.
        best_seeds: Seeds behind ``best_value`` (1 without confirmation).
        finalists: With ``confirm``: per finalist ``{"trial", "values", "mean"}`` (``values``
            its trial's then its reruns'; ``mean`` None when a rerun failed), best first.
        best_params: Its sampled parameters (optuna's names and values).
        best_settings: The hyperparameter-file entry written for it.
        reason: Why the status is not ``tuned``.
    """

    env: str
    env_id: str
    agent: str
    agent_name: str
    study: str
    status: str = "tuned"
    complete: int = 0
    pruned: int = 0
    failed: int = 0
    ran: int = 0
    marked_failed: int = 0
    best_value: float | None = None
    best_trial: int | None = None
    best_seeds: int = 1
    finalists: list[dict[str, Any]] = field(default_factory=list)
    best_params: dict[str, Any] = field(default_factory=dict)
    best_settings: dict[str, Any] = field(default_factory=dict)
    reason: str = ""


@dataclass
class TuneSummary:
    """What :func:`tune_sweep` did.

    Attributes:
        sweep: The sweep's name.
        trials: Trials requested per study (``COMPLETE`` + ``PRUNED``).
        timesteps: Training steps per trial.
        confirm: Finalists rerun per study (0: none).
        confirm_seeds: Further seeds per finalist.
        storage: The optuna storage URL.
        studies: One result per (env, learning agent).
        files: The files written (hyperparameter files, then ``tuning.json``).
        wall_s: Wall-clock seconds.
    """

    sweep: str
    trials: int
    timesteps: int
    storage: str
    confirm: int = 0
    confirm_seeds: int = 0
    studies: list[StudyResult] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    wall_s: float = 0.0


class _TrialFailed(Exception):
    """A trial's run failed (its reason is the message); the trial is marked ``FAIL``."""


class _NotTunable(Exception):
    """The agent cannot run on the env at all; the study stops."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def study_name(sweep: str, env_label: str, agent_label: str) -> str:
    """The optuna study of one (env, agent) of a sweep: ``sweep/env label/agent label``."""
    return f"{sweep}/{env_label}/{agent_label}"


# ----------------------------------------------------------------------------- checks


def _budget(spec: SweepSpec) -> int:
    timesteps = getattr(spec, "timesteps", None)
    if not timesteps:
        raise SpecError(f"{spec.path}:1: timesteps: tuning needs the sweep's timesteps (the "
                        "training steps of every trial, the same for every agent)")
    for i, agent in enumerate(spec.agents):
        if agent.timesteps is not None and agent.timesteps != timesteps:
            raise SpecError(f"{spec.path}:{agent.line}: agents[{i}].timesteps: tuning gives "
                            f"every agent the sweep's {timesteps} steps per trial; remove this "
                            f"per-agent budget ({agent.timesteps})")
    return int(timesteps)


def _pairs(spec: SweepSpec) -> list[tuple[EnvSpec, AgentSpec]]:
    seen: dict[str, int] = {}
    for i, env in enumerate(spec.envs):
        if registry.is_marl_env(env.id):
            raise SpecError(f"{spec.path}:{env.line}: envs[{i}].id: {env.id} is a multi-agent "
                            "env; the tuner takes single-agent envs only (run multi-agent "
                            "agents with their defaults through `qdrl-bench run`)")
        if env.id in seen:
            raise SpecError(f"{spec.path}:{env.line}: envs[{i}].id: {env.id} is also envs"
                            f"[{seen[env.id]}]; a hyperparameter file has one entry per env id, "
                            "so tune these in separate sweeps")
        seen[env.id] = i
    learners = [a for a in spec.agents if not registry.is_baseline(a.name)]
    if not learners:
        raise SpecError(f"{spec.path}:{spec.line_of('agents')}: agents: no learning agent to "
                        "tune (baselines are not tuned)")
    return [(env, agent) for env in spec.envs for agent in learners if agent.runs_on(env.label)]


def _storage(url: str) -> tuple[str, Any]:
    if "://" not in url:
        url = f"sqlite:///{url}"
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///"):])
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"storage {url}: cannot create {path.parent}: {exc}") from exc
    try:
        return url, optuna.storages.RDBStorage(
            url, engine_kwargs={"connect_args": {"timeout": 30}} if url.startswith("sqlite")
            else {})
    except Exception as exc:  # sqlalchemy / optuna errors of many kinds
        raise ValueError(f"storage {url}: cannot open it as an optuna RDB storage: "
                         f"{type(exc).__name__}: {str(exc).splitlines()[0]}") from exc


def _check_out_dir(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise ValueError(f"out dir {out_dir}: cannot write there: "
                         f"{exc.strerror or exc}") from exc


# ----------------------------------------------------------------------------- one study


def _study_config(env: EnvSpec, agent: AgentSpec, timesteps: int, spec: SweepSpec
                  ) -> dict[str, Any]:
    return _plain({
        "env": {"id": env.id, "kwargs": dict(env.kwargs),
                "max_episode_steps": env.max_episode_steps},
        "agent": {"name": agent.name, "kwargs": dict(agent.kwargs)},
        "timesteps": timesteps,
        "eval": {"every": spec.eval.every, "episodes": spec.eval.episodes,
                 "seed": spec.eval.seed},
    })


def _file_entry(agent: AgentSpec, env_id: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The hyperparameter-file entry a trial trained with (file defaults + sweep + sampled)."""
    settings = registry.train_settings(agent.name, env_id, kwargs)
    return _entry(settings.n_envs, hyperparams_for(agent.name, env_id).n_timesteps,
                  settings.normalize,
                  {k: v for k, v in settings.algo_kwargs.items() if k not in _NOT_FILE_KEYS})


def _first_update_step(ctx: SpaceContext, agent: AgentSpec, env_id: str,
                       kwargs: Mapping[str, Any]) -> int:
    """The training step of a trial's first update: one rollout, or ``learning_starts``.

    Evaluations before it score the untrained policy, whatever the settings; the pruner is not
    shown them (a trial of long rollouts would otherwise be pruned for its initial weights).
    """
    settings = registry.train_settings(agent.name, env_id, kwargs)
    algo = dict(settings.algo_kwargs)
    if ctx.algo in ("ppo", "a2c"):
        default = 2048 if ctx.algo == "ppo" else 5
        return int(algo.get("n_steps", default)) * settings.n_envs
    return int(algo.get("learning_starts", 100))


def tpe_startup(trials: int) -> int:
    """Random-search trials before TPE models the space: ``min(10, trials // 2)``, >= 1."""
    return max(1, min(10, trials // 2))


def _trial_seed(seed: int, number: int) -> int:
    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


def _say(stream: TextIO | None, line: str) -> None:
    if stream is not None:
        stream.write(line + "\n")
        stream.flush()


def _train(spec: SweepSpec, env: EnvSpec, agent: AgentSpec, kwargs: Mapping[str, Any],
           run_seed: int, timesteps: int, on_eval: Callable[[int, float], bool] | None
           ) -> tuple[float | None, list[list[float]]]:
    """One run of ``agent`` with ``kwargs``: its score (None if not finite) and its curve.

    Raises:
        _NotTunable: The agent cannot run on the env.
        _TrialFailed: The run failed (the message is its first line of reason).
    """
    run = RunSpec(sweep=spec.name, env=env, agent=dataclasses.replace(agent, kwargs=kwargs),
                  seed=run_seed, timesteps=timesteps,
                  eval=dataclasses.replace(spec.eval, conditions=()))  # trials: clean only
    result = execute.execute_run(run, on_eval=on_eval)
    if result.status == NOT_APPLICABLE:
        raise _NotTunable(result.status, result.reason or "")
    if result.status != FINISHED:
        raise _TrialFailed((result.reason or result.status).splitlines()[0])
    value = result.metrics.get("score/last_evals", result.final_score)
    curve = [[p.step, p.mean] for p in result.curve]
    return (float(value) if value is not None and math.isfinite(value) else None), curve


def _tune_one(spec: SweepSpec, env: EnvSpec, agent: AgentSpec, *, trials: int,
              timesteps: int, storage: Any, seed: int, n_startup_trials: int,
              confirm: int, confirm_seeds: int, stream: TextIO | None) -> StudyResult:
    name = study_name(spec.name, env.label, agent.label)
    res = StudyResult(env=env.label, env_id=env.id, agent=agent.label, agent_name=agent.name,
                      study=name)
    entry = registry.get_agent(agent.name)
    base = registry.train_settings(agent.name, env.id, agent.kwargs)  # checks the kwargs
    ctx = SpaceContext(algo=entry.algo, family=entry.family, n_envs=base.n_envs,
                       timesteps=timesteps)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=n_startup_trials,
                                         n_warmup_steps=spec.eval.every, interval_steps=1)
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize",
                                load_if_exists=True, pruner=pruner,
                                sampler=optuna.samplers.TPESampler(seed=seed))
    config = _study_config(env, agent, timesteps, spec)
    recorded = study.user_attrs.get("config")
    if recorded is None:
        study.set_user_attr("config", config)
    elif recorded != config:
        diff = sorted(k for k in config if config[k] != recorded.get(k))
        raise ValueError(f"study {name} in this storage was tuned with another {', '.join(diff)} "
                         f"({', '.join(f'{k}={recorded.get(k)!r}' for k in diff)}); use another "
                         "--storage (or sweep name) for the new setting")

    if not study.get_trials(deepcopy=False):
        study.enqueue_trial(starting_params(ctx, base), user_attrs={"start": True})
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        storage.set_trial_user_attr(t._trial_id, "fail_reason",
                                    "left running by a process that was killed")
        storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        res.marked_failed += 1

    def objective(trial: optuna.Trial) -> float:
        kwargs = sample_params(trial, ctx, agent.kwargs)
        run_seed = seed + trial.number
        trial.set_user_attr("seed", run_seed)
        trial.set_user_attr("kwargs", kwargs)
        trial.set_user_attr("settings", _file_entry(agent, env.id, kwargs))
        stopped: list[int] = []
        learns_from = _first_update_step(ctx, agent, env.id, kwargs)

        def on_eval(step: int, mean: float) -> bool:
            if step < max(learns_from, 1):  # an untrained policy says nothing of the settings
                return True
            trial.report(float(mean), step)
            if trial.should_prune():
                stopped.append(step)
                return False
            return True

        try:
            value, curve = _train(spec, env, agent, kwargs, run_seed, timesteps, on_eval)
        except _TrialFailed as exc:
            trial.set_user_attr("fail_reason", str(exc))
            raise
        trial.set_user_attr("curve", curve)
        if stopped:
            trial.set_user_attr("pruned_at", stopped[0])
            raise optuna.TrialPruned(f"pruned at step {stopped[0]}")
        if value is None:
            trial.set_user_attr("fail_reason", "non-finite score")
            raise _TrialFailed("non-finite score")
        return value

    done = len(study.get_trials(deepcopy=False,
                                states=(TrialState.COMPLETE, TrialState.PRUNED)))
    tag = f"[{spec.name}] {env.label}/{agent.label}"
    _say(stream, f"{tag}: study {name}: {done}/{trials} trials done"
                 + (f", {res.marked_failed} left running by a killed process marked failed"
                    if res.marked_failed else "")
                 + (f"; running {trials - done}" if done < trials else ""))
    failures = 0
    while done < trials:
        study.sampler = optuna.samplers.TPESampler(
            seed=_trial_seed(seed, len(study.get_trials(deepcopy=False))),
            n_startup_trials=tpe_startup(trials))
        try:
            study.optimize(objective, n_trials=1, catch=(_TrialFailed,))
        except _NotTunable as exc:
            res.status, res.reason = exc.status, str(exc).splitlines()[0] if str(exc) else ""
            _say(stream, f"{tag}: {exc.status}: {res.reason}")
            break
        res.ran += 1
        last = study.get_trials(deepcopy=False)[-1]
        if last.state == TrialState.COMPLETE:
            done += 1
            _say(stream, f"{tag}: trial {last.number} finished: complete, value "
                         f"{last.value:.4g} ({done}/{trials})")
        elif last.state == TrialState.PRUNED:
            done += 1
            _say(stream, f"{tag}: trial {last.number} finished: pruned at step "
                         f"{last.user_attrs.get('pruned_at')} ({done}/{trials})")
        else:
            failures += 1
            _say(stream, f"{tag}: trial {last.number} failed: "
                         f"{last.user_attrs.get('fail_reason', 'see the storage')}")
            if failures >= trials:
                res.status = "gave_up"
                res.reason = (f"{failures} failed trials in this invocation; last: "
                              f"{last.user_attrs.get('fail_reason', '?')}")
                break
    if res.status == "tuned" and confirm and confirm_seeds:
        res.finalists = _confirm(study, spec, env, agent, timesteps=timesteps, seed=seed,
                                 confirm=confirm, confirm_seeds=confirm_seeds, tag=tag,
                                 stream=stream)
    _fill(res, study)
    return res


def confirm_seed(seed: int, i: int) -> int:
    """The seed of a finalist's ``i``-th rerun: ``seed + 1_000_000 + i`` (no trial's seed)."""
    return seed + 1_000_000 + i


def _finalists(study: Any, confirm: int) -> list[Any]:
    """The ``confirm`` best complete trials, then the starting trial if complete and not one."""
    complete = sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)),
                      key=lambda t: (-t.value, t.number))
    chosen = complete[:confirm]
    chosen += [t for t in complete[confirm:] if t.user_attrs.get("start")]
    return chosen


def _confirm(study: Any, spec: SweepSpec, env: EnvSpec, agent: AgentSpec, *, timesteps: int,
             seed: int, confirm: int, confirm_seeds: int, tag: str,
             stream: TextIO | None) -> list[dict[str, Any]]:
    """Rerun the study's finalists on further seeds; their scores, best mean first.

    Each rerun's outcome is stored at once as the study's user attribute
    ``confirm/<trial>/<seed>`` (``{"value": v}`` or ``{"failed": reason}``), and reruns found
    there are not repeated. A finalist with a failed or non-finite rerun has ``mean`` None.
    """
    out = []
    for t in _finalists(study, confirm):
        values, failed = [float(t.value)], ""
        for i in range(confirm_seeds):
            run_seed = confirm_seed(seed, i)
            key = f"confirm/{t.number}/{run_seed}"
            done = study.user_attrs.get(key)
            if done is None:
                kwargs = t.user_attrs.get("kwargs")
                if not isinstance(kwargs, dict):
                    done = {"failed": "the trial recorded no kwargs"}
                elif _file_entry(agent, env.id, kwargs) != t.user_attrs.get("settings"):
                    done = {"failed": "the hyperparameter files changed since the trial: "
                                      "its kwargs no longer give the settings it trained with"}
                else:
                    try:
                        value, _ = _train(spec, env, agent, kwargs, run_seed, timesteps, None)
                        done = ({"value": value} if value is not None
                                else {"failed": "non-finite score"})
                    except (_TrialFailed, _NotTunable) as exc:
                        done = {"failed": str(exc).splitlines()[0] if str(exc) else "failed"}
                study.set_user_attr(key, done)
                _say(stream, f"{tag}: finalist trial {t.number}, seed {run_seed}: "
                             + (f"value {done['value']:.4g}" if "value" in done
                                else f"failed: {done['failed']}"))
            if "value" in done:
                values.append(float(done["value"]))
            else:
                failed = failed or str(done.get("failed"))
        out.append({"trial": t.number, "values": values,
                    "mean": None if failed else float(np.mean(values)),
                    **({"failed": failed} if failed else {})})
    out.sort(key=lambda f: (f["mean"] is None, -(f["mean"] or 0.0), f["trial"]))
    return out


def _fill(res: StudyResult, study: Any) -> None:
    """Trial counts and the best trial: the best confirmed finalist, if any was confirmed."""
    all_trials = study.get_trials(deepcopy=False)
    states = [t.state for t in all_trials]
    res.complete = states.count(TrialState.COMPLETE)
    res.pruned = states.count(TrialState.PRUNED)
    res.failed = states.count(TrialState.FAIL)
    if not res.complete:
        if res.status == "tuned":
            res.status, res.reason = "no_complete_trial", "no trial completed"
        return
    best, res.best_value, res.best_seeds = study.best_trial, None, 1
    confirmed = [f for f in res.finalists if f["mean"] is not None]
    if confirmed:
        best = all_trials[confirmed[0]["trial"]]
        res.best_value, res.best_seeds = confirmed[0]["mean"], len(confirmed[0]["values"])
    elif res.finalists:
        res.reason = "every finalist had a failed rerun; the single-seed best is written"
    res.best_value = float(best.value) if res.best_value is None else res.best_value
    res.best_trial = best.number
    res.best_params = _plain(dict(best.params))
    res.best_settings = dict(best.user_attrs.get("settings") or {})


# ----------------------------------------------------------------------------- outputs


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _write_outputs(summary: TuneSummary, out_dir: Path, date: str) -> None:
    by_agent: dict[str, list[StudyResult]] = {}
    for res in summary.studies:
        by_agent.setdefault(res.agent, []).append(res)
    files: list[Path] = []
    for label, results in by_agent.items():
        tuned = [r for r in results if r.best_settings]
        if not tuned:
            continue
        lines = [f"{label}: tuned by `qdrl-bench tune` (qdrl_bench/tune.py) on {date}.",
                 f"Every trial trained {summary.timesteps} timesteps; {summary.trials} trials "
                 f"(complete + pruned) per study; storage {summary.storage}."]
        if summary.confirm and summary.confirm_seeds:
            lines.append(f"Finalists (the {summary.confirm} best complete trials and the "
                         f"starting one) rerun on {summary.confirm_seeds} more seeds each; "
                         "the best mean is written.")
        for r in tuned:
            seeds = f", mean of {r.best_seeds} seeds" if r.best_seeds > 1 else ""
            lines.append(f"{r.env_id}: study {r.study}: trials {r.complete} complete / "
                         f"{r.pruned} pruned / {r.failed} failed; best value "
                         f"{r.best_value:.6g} (trial {r.best_trial}{seeds})")
        path = out_dir / f"{label}.yml"
        algo = registry.get_agent(tuned[0].agent_name).algo
        entries = {r.env_id: r.best_settings for r in tuned}
        kept = _kept_entries(path, algo, set(entries))
        if kept:
            lines.append(f"Kept from the file this one replaced (not tuned here): "
                         f"{', '.join(kept)}.")
        text = dump_hyperparams({**entries, **kept}, header="\n".join(lines))
        parse_hyperparams(text, algo, source=str(path))
        _write_text(path, text)
        files.append(path)
    doc = {
        "sweep": summary.sweep, "date": date, "storage": summary.storage,
        "trials_per_study": summary.trials, "timesteps_per_trial": summary.timesteps,
        "confirm": summary.confirm, "confirm_seeds": summary.confirm_seeds,
        "studies": [{
            "env": r.env, "env_id": r.env_id, "agent": r.agent, "agent_name": r.agent_name,
            "study": r.study, "status": r.status, "reason": r.reason,
            "trials": {"complete": r.complete, "pruned": r.pruned, "failed": r.failed},
            "best_value": r.best_value, "best_trial": r.best_trial, "best_seeds": r.best_seeds,
            "finalists": r.finalists, "best_params": r.best_params,
            "best_settings": r.best_settings,
            "file": f"{r.agent}.yml" if r.best_settings else None,
        } for r in summary.studies],
    }
    summary_path = out_dir / SUMMARY_FILE
    doc["studies"] += _kept_studies(summary_path, {(r.env_id, r.agent) for r in summary.studies})
    _write_text(summary_path, json.dumps(doc, indent=2, sort_keys=False) + "\n")
    summary.files = [*files, summary_path]


def _kept_entries(path: Path, algo: str, tuned: set[str]) -> dict[str, dict[str, Any]]:
    """The entries of an existing file for env ids not tuned now (none if it is malformed)."""
    if not path.is_file():
        return {}
    try:
        old = load_hyperparams(path, algo)
    except SpecError:
        return {}
    return {env_id: _entry(h.n_envs, h.n_timesteps, h.normalize, h.algo_kwargs)
            for env_id, h in old.items() if env_id not in tuned}


def _kept_studies(path: Path, now: set[tuple[str, str]]) -> list[dict[str, Any]]:
    """The studies of an existing summary for (env id, agent) pairs not tuned now.

    Each keeps the trial budget it was tuned with (``timesteps_per_trial``,
    ``trials_per_study``, ``sweep``, ``date``), since another invocation may have used others.
    """
    try:
        old = json.loads(path.read_text())
        studies = list(old["studies"])
    except (OSError, ValueError, KeyError, TypeError):
        return []
    out = []
    for study in studies:
        if not isinstance(study, dict) or (study.get("env_id"), study.get("agent")) in now:
            continue
        for key in ("sweep", "date", "timesteps_per_trial", "trials_per_study", "confirm",
                    "confirm_seeds"):
            study.setdefault(key, old.get(key))
        out.append(study)
    return out


def _entry(n_envs: int, n_timesteps: int | None, normalize: Mapping[str, Any] | None,
           algo_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """A hyperparameter-file entry (what dump writes): ``normalize`` false, true or its args."""
    entry: dict[str, Any] = {"n_envs": n_envs}
    if n_timesteps is not None:
        entry["n_timesteps"] = n_timesteps
    entry["normalize"] = False if normalize is None else (dict(normalize) or True)
    entry.update(algo_kwargs)
    return _plain(entry)


# ----------------------------------------------------------------------------- the driver


def tune_sweep(spec: SweepSpec, *, trials: int, storage: str, out_dir: str | os.PathLike[str],
               seed: int = 0, progress: bool | TextIO = True,
               n_startup_trials: int = 3, confirm: int = 0,
               confirm_seeds: int = 2) -> TuneSummary:
    """Tune every (env, learning agent) of a sweep with the same trials and budget per trial.

    Studies run one after another in this process (env-major, then agent, as in the sweep).
    Trials a killed process left ``RUNNING`` are marked ``FAIL`` when their study is opened,
    and only the missing ``COMPLETE`` + ``PRUNED`` trials are run; rerunning the same call
    therefore resumes, and a finished study costs nothing. See the module manual.

    Args:
        spec: The sweep (its envs, agents with kwargs, ``timesteps`` and ``eval``; its seeds
            and executor are not used).
        trials: ``COMPLETE`` + ``PRUNED`` trials per study, >= 1.
        storage: optuna RDB storage URL (``sqlite:///results/<name>-tune.db``; a plain path is
            taken as a SQLite file).
        out_dir: Where ``<agent label>.yml`` and ``tuning.json`` are written (created).
        seed: Seeds the sampler and, as ``seed + trial number``, each trial's run.
        progress: One line per study and per finished trial on stderr (``True``), on a given
            stream, or none (``False``).
        n_startup_trials: Complete trials before the median pruner may stop one.
        confirm: Finalists per study rerun on ``confirm_seeds`` further seeds before the best
            is chosen (0: the single-seed best trial is written); see the module manual.
        confirm_seeds: Reruns per finalist, >= 1 when ``confirm`` > 0.

    Returns:
        The summary; the files are written before it returns (also when some study could
        not be tuned).

    Raises:
        ValueError: For ``trials < 1``, an unwritable ``out_dir``, a storage that cannot be
            opened, or a study of the storage recorded with another budget or configuration.
        SpecError: For a sweep without ``timesteps``, with a per-agent budget, unknown names,
            two envs of one id, no learning agent, or bad agent kwargs / hyperparameter files.
        KeyboardInterrupt: After Ctrl-C; the trial in flight is marked ``FAIL`` and a rerun
            resumes.
    """
    t0 = time.perf_counter()
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ValueError(f"trials must be an integer >= 1, got {trials!r}")
    if isinstance(n_startup_trials, bool) or not isinstance(n_startup_trials, int) \
            or n_startup_trials < 0:
        raise ValueError(f"n_startup_trials must be an integer >= 0, got {n_startup_trials!r}")
    for name, value, least in (("confirm", confirm, 0), ("confirm_seeds", confirm_seeds, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    timesteps = _budget(spec)
    registry.check_sweep_names(spec)
    pairs = _pairs(spec)
    for env, agent in pairs:
        registry.train_settings(agent.name, env.id, agent.kwargs)  # bad kwargs fail here
    check_env_kwargs(spec)
    out = Path(out_dir)
    _check_out_dir(out)
    storage, db = _storage(storage)
    stream = sys.stderr if progress is True else (progress or None)
    summary = TuneSummary(sweep=spec.name, trials=trials, timesteps=timesteps, storage=storage,
                          confirm=confirm, confirm_seeds=confirm_seeds if confirm else 0)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        for env, agent in pairs:
            summary.studies.append(_tune_one(
                spec, env, agent, trials=trials, timesteps=timesteps, storage=db, seed=seed,
                n_startup_trials=n_startup_trials, confirm=confirm,
                confirm_seeds=confirm_seeds, stream=stream))  # type: ignore[arg-type]
    finally:
        optuna.logging.set_verbosity(verbosity)
    date = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    _write_outputs(summary, out, date)
    summary.wall_s = time.perf_counter() - t0
    return summary
