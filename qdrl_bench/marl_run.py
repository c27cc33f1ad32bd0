"""Sweep runs on the multi-agent envs: baselines, parameter-shared SB3 agents, MAPPO / IPPO.

:func:`qdrl_bench.execute.execute_run` hands every run whose env is one of
:data:`qdrl_envs.MARL_ENV_IDS` to :func:`execute_marl_run`, which returns the same
:class:`~qdrl_bench.store.RunResult` a single-agent run does, so the store, resumption, the
executors and the report need nothing of their own. What a multi-agent run means:

* **The agent name** picks the trainer. A baseline of the env (``random``, ``oracle``,
  ``full-power``, ... : :func:`qdrl_envs.marl.baseline_names`) is played; a registry agent of
  engine ``"sb3"`` (``ppo``, ``q-ppo-hybrid``, ``sac``, ...) trains one policy shared by all
  agents (:func:`qdrl_bench.marl_train.train_shared`); ``q-mappo``, ``q-ippo`` and their
  parameter-matched MLP twins ``mappo-small``, ``ippo-small`` train with centralised training
  and decentralised execution (:func:`qdrl_bench.marl_ctde.train_ctde`). The agent's
  ``kwargs`` are its settings: the shared agent's SB3 arguments (as on a single-agent env),
  the MAPPO / IPPO agent's :class:`~qdrl_bench.marl_ctde.CTDEConfig` fields.
* **Steps** (``timesteps``, ``eval.every``, the curve's x axis) are *env* steps: one step moves
  every agent. A shared policy's SB3 count is ``n_agents`` times larger (one per agent-row).
* **The score** (``final_score``, the curve) is the *team return*: the episode's sum of the
  env's shared objective (:mod:`qdrl_bench.marl_eval`), on the same held-out episodes for
  agents and baselines (episode ``k`` of seed ``s`` is reset with ``eval.seed + 1000 s + k``,
  as for a single-agent run). The report normalises it between ``random`` and the best other
  baseline as it does any score.
* **Per agent and per role** returns are in the metrics: ``agent/<name>`` and ``role/<role>``
  (the mean return of one agent of that role), with the env's ``eval/<info key>`` means and,
  for a learning run, ``score/stochastic`` and ``score/last_evals``.
* **Not applicable** (the run says why): training wrappers and adversarial training (they wrap
  single-agent envs), robustness conditions (they swap a single-agent policy's executor or
  attack its observation), an SB3 agent that cannot be shared (``dqn``: the envs' actions are
  Boxes), a baseline of another env.

A finished learning run exports its agents into the run's ``agent_dir`` when the sweep has
one: :func:`~qdrl_bench.marl_train.save_shared`'s files, or :data:`CTDE_FILE`
(:meth:`~qdrl_bench.marl_ctde.CTDEAgents.save`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import Any

from qdrl_bench import robustness
from qdrl_bench.agents import AgentEntry, get_agent, is_baseline
from qdrl_bench.learning_curve import (
    EvalHook,
    StepReporter,
    error_text,
    eval_point,
    sb3_eval_callback,
    score_metrics,
)
from qdrl_bench.marl_eval import MarlEvaluation, play_episodes
from qdrl_bench.registry import NotApplicable
from qdrl_bench.spec import RunSpec
from qdrl_bench.store import FAILED, FINISHED, NOT_APPLICABLE, EvalPoint, RunResult
from qdrl_envs import marl

# torch, stable-baselines3 and TorchRL take seconds to import: the trainers are imported where
# a learning run needs them (a baseline run needs none of them).

__all__ = ["CTDE_FILE", "MULTI_AGENT_CONDITIONS", "evaluation_metrics", "execute_marl_run"]

CTDE_FILE = "ctde.pt"
"""The file of a MAPPO / IPPO run's agents in its ``agent_dir``."""

MULTI_AGENT_CONDITIONS = ("robustness conditions evaluate single-agent policies (executor swap, "
                          "observation attacks); this env is multi-agent")
"""Why a multi-agent run's conditions are not applicable."""


def evaluation_metrics(ev: MarlEvaluation) -> dict[str, float]:
    """A run's metrics from its final evaluation: ``eval/``, ``agent/`` and ``role/`` means."""
    return {**ev.metrics, **{f"agent/{a}": v for a, v in ev.mean_returns.items()},
            **{f"role/{r}": v for r, v in ev.role_returns.items()}}


def execute_marl_run(run: RunSpec, on_eval: EvalHook | None,
                     report: StepReporter) -> RunResult:
    """Play or train and evaluate one multi-agent run (see the module); never raises for it.

    Args:
        run: A run whose env is multi-agent.
        on_eval: Called after each evaluation with ``(env step, mean team return)``;
            ``False`` stops training there.
        report: Receives the training progress, in env steps.

    Returns:
        ``finished``, ``not_applicable`` or ``failed`` (with the error), as
        :func:`qdrl_bench.execute.execute_run`; the code version is the caller's to add.
    """
    t0 = time.perf_counter()
    conditions = robustness.conditions_for(run)
    name = run.agent.name
    if run.agent.train_wrappers or run.agent.adversarial_training:
        return RunResult(status=NOT_APPLICABLE,
                         reason=f"{run.env.id} is multi-agent: training wrappers and "
                                f"adversarial training wrap single-agent envs")
    try:
        if is_baseline(name):
            return _play_baseline(run, t0, conditions, report)
        entry = get_agent(name)
        train = _train_ctde if entry.engine == "torchrl" else _train_shared
        result = train(run, entry, on_eval, report)
        return dataclasses.replace(
            result, wall_s=time.perf_counter() - t0,
            conditions=robustness.not_applicable_results(conditions, MULTI_AGENT_CONDITIONS))
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except NotApplicable as exc:
        return RunResult(status=NOT_APPLICABLE, reason=str(exc))
    except BaseException as exc:  # a library's BaseException fails this run, not the sweep
        return RunResult(status=FAILED, reason=error_text(exc), wall_s=time.perf_counter() - t0)


def _eval_seed(run: RunSpec) -> int:
    return run.eval.seed + 1000 * run.seed


def _play_baseline(run: RunSpec, t0: float, conditions: Any, report: StepReporter) -> RunResult:
    names = marl.baseline_names(run.env.id)
    if run.agent.name not in names:
        raise NotApplicable(f"unknown baseline {run.agent.name!r} for {run.env.id}; choose "
                            f"from {names}")
    env = marl.make_parallel(run.env.id, **run.env.kwargs)
    try:
        policy = marl.make_baseline(run.agent.name, env, seed=run.seed, **run.agent.kwargs)
        ev = play_episodes(env, lambda obs: policy.predict(obs)[0], episodes=run.eval.episodes,
                           seed=_eval_seed(run))
    finally:
        env.close()
    report(run.name, run.timesteps, run.timesteps)
    curve = (eval_point(0, ev.team_returns), eval_point(run.timesteps, ev.team_returns))
    return RunResult(status=FINISHED, wall_s=time.perf_counter() - t0, params_quantum=0,
                     params_classical=0, final_score=curve[-1].mean, final_std=curve[-1].std,
                     metrics=evaluation_metrics(ev), curve=curve,
                     conditions=robustness.not_applicable_results(conditions,
                                                                  robustness.BASELINE))


class _Curve:
    """A learning run's evaluation curve, built as in :func:`qdrl_bench.execute.execute_run`.

    ``evaluate(deterministic)`` plays the current policy on the run's evaluation episodes.
    """

    def __init__(self, run: RunSpec, on_eval: EvalHook | None,
                 evaluate: Callable[[bool], MarlEvaluation]) -> None:
        self.run, self.on_eval, self.evaluate = run, on_eval, evaluate
        self.points: list[EvalPoint] = []
        self.last: MarlEvaluation | None = None

    def at(self, step: int, hook: bool = True) -> bool:
        """Evaluate at env step ``step``; ``False`` if the hook says stop."""
        self.last = self.evaluate(True)
        self.points.append(eval_point(step, self.last.team_returns))
        return self.on_eval is None or not hook or bool(self.on_eval(step,
                                                                      self.points[-1].mean))

    def finish(self, step: int, stopped: bool, counts: Mapping[str, int]) -> RunResult:
        """The final point at ``step`` (the trained policy's) and the run's result."""
        if self.points[-1].step != step:
            self.at(step, hook=False)
        elif not stopped and step > 0:  # the last evaluation came before the last update
            self.points.pop()
            self.at(step, hook=False)
        assert self.last is not None
        sampled = self.evaluate(False).team_returns
        metrics = {**evaluation_metrics(self.last),
                   **score_metrics(self.points, [float(r) for r in sampled])}
        return RunResult(status=FINISHED, params_quantum=int(counts["quantum"]),
                         params_classical=int(counts["classical"]),
                         final_score=self.points[-1].mean, final_std=self.points[-1].std,
                         metrics=metrics, curve=tuple(self.points))


def _train_shared(run: RunSpec, entry: AgentEntry, on_eval: EvalHook | None,
                  report: StepReporter) -> RunResult:
    from qdrl_bench import marl_train  # heavy (SB3, torch): see the top

    try:
        marl_train.check_shareable(run.env.id, entry.name)
    except ValueError as exc:
        raise NotApplicable(str(exc)) from exc
    spec = marl_train.SharedSpec(marl.marl_entry(run.env.id).id, entry.name,
                                 dict(run.env.kwargs), False)
    n = len(marl.make_parallel(run.env.id, **run.env.kwargs).possible_agents)
    callback: Any = None

    def evaluate(deterministic: bool) -> MarlEvaluation:
        model = callback.model
        return marl_train.evaluate_shared(model, spec, episodes=run.eval.episodes,
                                          seed=_eval_seed(run), deterministic=deterministic,
                                          obs_filter=marl_train.frozen_obs_filter(model))

    curve = _Curve(run, on_eval, evaluate)

    def scaled_report(name: str, steps: int, total: int) -> None:
        report(name, steps // n, total // n)

    callback = sb3_eval_callback(run.name, run.eval.every * n, run.timesteps * n,
                                 lambda steps: curve.at(steps // n), scaled_report,
                                 eval_at_start=True)
    trained = marl_train.train_shared(run.env.id, entry.name, timesteps=run.timesteps * n,
                                      seed=run.seed, env_kwargs=run.env.kwargs,
                                      kwargs=run.agent.kwargs, callback=callback)
    try:
        result = curve.finish(trained.timesteps // n, callback.stopped, trained.counts)
        if run.agent_dir is not None:
            staging = robustness.staging_dir(run.agent_dir)
            marl_train.save_shared(trained.model, trained.spec, staging)
        return result
    finally:
        trained.model.get_env().close()


def _train_ctde(run: RunSpec, entry: AgentEntry, on_eval: EvalHook | None,
                report: StepReporter) -> RunResult:
    from qdrl_bench import marl_ctde  # heavy (torch, TorchRL): see the top

    family = "quantum" if entry.family == "quantum" else "mlp"
    config = marl_ctde.CTDEConfig(env_id=run.env.id, algorithm=entry.algo, family=family,
                                  env_kwargs=dict(run.env.kwargs), total_steps=run.timesteps,
                                  seed=run.seed, **dict(run.agent.kwargs))
    current: list[marl_ctde.CTDEAgents] = [marl_ctde.CTDEAgents(config)]  # the initial nets

    def evaluate(deterministic: bool) -> MarlEvaluation:
        return marl_ctde.evaluate_ctde(current[0], run.eval.episodes, _eval_seed(run),
                                       deterministic=deterministic)

    curve = _Curve(run, on_eval, evaluate)
    stopped = not curve.at(0)
    next_eval = run.eval.every

    def on_iteration(entry: dict[str, Any], agents: marl_ctde.CTDEAgents) -> bool:
        nonlocal next_eval, stopped
        current[0] = agents
        steps = int(entry["steps"])
        report(run.name, steps, run.timesteps)
        if steps >= next_eval:
            while next_eval <= steps:
                next_eval += run.eval.every
            if not curve.at(steps):
                stopped = True
                return False
        return True

    steps = 0
    if not stopped:
        trained = marl_ctde.train_ctde(run.env.id, entry.algo, family=family,
                                       callback=on_iteration,
                                       **{k: v for k, v in dataclasses.asdict(config).items()
                                          if k not in ("env_id", "algorithm", "family")})
        current[0] = trained.agents
        steps = trained.history[-1]["steps"] if trained.history else 0
    counts = current[0].parameter_counts()
    quantum = sum(counts["actor_quantum"].values()) + sum(counts["critic_quantum"].values())
    total = sum(counts["actor"].values()) + sum(counts["critic"].values())
    result = curve.finish(steps, stopped, {"quantum": quantum, "classical": total - quantum})
    if run.agent_dir is not None:
        staging = robustness.staging_dir(run.agent_dir)
        staging.mkdir(parents=True, exist_ok=True)
        current[0].save(staging / CTDE_FILE)
    return result
