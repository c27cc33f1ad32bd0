"""Execute one run: train and evaluate an agent (or play a baseline) on one env, seeded.

:func:`execute_run` runs one :class:`~qdrl_bench.spec.RunSpec` start to finish and returns a
:class:`~qdrl_bench.store.RunResult`. It is a pure function of the run (it never touches the
store), so any executor (inline, a process pool, Ray; see :mod:`qdrl_bench.executors`) may call
it, and it seeds everything (Python, NumPy, torch, the SB3 algorithm, the training and
evaluation envs), so the same run gives the same scores wherever it executes. Where its
training progress goes is the caller's choice: the ``reporter`` argument.

Metrics follow fixed namespaces: the evaluation curve is ``eval/return`` (mean and std over the
evaluation episodes at each step); ``metrics`` holds the final evaluation's ``eval/<info key>``
means of the env's numeric ``info`` entries (e.g. ``eval/secrecy_rate``), the
:func:`score_metrics` of a learning run and, for poisoned or adversarial training, the
fractions its wrappers corrupted (``train/...``, :func:`qdrl_bench.robustness.
training_metrics`).

A finished learning run then exports its agent (``run.agent_dir``; see
:class:`~qdrl_bench.spec.RunSpec`) and is evaluated under the sweep's robustness conditions
(:mod:`qdrl_bench.robustness`), whose results travel in ``RunResult.conditions``; its
``wall_s`` is training and clean evaluation only. :func:`execute_task` is what executors call:
a run, or a :class:`~qdrl_bench.robustness.ConditionTask` (a finished run's missing
conditions, from its saved agent).
"""

from __future__ import annotations

import collections
import dataclasses
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from qdrl_bench import registry, robustness
from qdrl_bench.learning_curve import (
    LAST_EVALS,
    EvalHook,
    StepReporter,
    error_text,
    eval_point,
    safe_reporter,
    sb3_eval_callback,
    score_metrics,
)
from qdrl_bench.provenance import code_version
from qdrl_bench.spec import RunSpec
from qdrl_bench.store import FAILED, FINISHED, NOT_APPLICABLE, EvalPoint, RunResult
from qdrl_envs.wrappers import AdapterNotApplicable, adapt_action_space

# stable-baselines3 (torch) takes seconds to import; it is imported where a run first needs it,
# so that importing the executors (and the CLI) stays quick.

__all__ = [
    "LAST_EVALS",
    "EvalHook",
    "StepReporter",
    "evaluate",
    "execute_run",
    "execute_task",
    "score_metrics",
]


def evaluate(policy: Any, env: Any, episodes: int, seed: int, *, deterministic: bool = True,
             obs_filter: Callable[[np.ndarray], np.ndarray] | None = None,
             ) -> tuple[list[float], dict[str, float]]:
    """Play ``episodes`` episodes; episode ``k`` is reset with ``seed + k``.

    Args:
        policy: Anything with SB3's ``predict(obs, deterministic=...) -> (action, state)``.
        env: A single (Gymnasium) environment whose action space the policy acts in.
        episodes: Number of episodes.
        seed: Seed of the first episode.
        deterministic: Act on the policy's mode (``True``) or sample its distribution.
        obs_filter: Applied to each observation before ``predict`` (a trained agent's frozen
            ``VecNormalize.normalize_obs``); returns are always the env's own rewards.

    Returns:
        The episode returns and, per numeric scalar ``info`` key, the mean over steps and
        episodes (keys prefixed ``eval/``).
    """
    returns: list[float] = []
    sums: dict[str, float] = collections.defaultdict(float)
    counts: dict[str, int] = collections.defaultdict(int)
    for k in range(episodes):
        obs, _ = env.reset(seed=seed + k)
        total, done, state = 0.0, False, None
        start = np.ones((1,), dtype=bool)
        ep_sums: dict[str, float] = collections.defaultdict(float)
        steps = 0
        while not done:
            seen = obs if obs_filter is None else obs_filter(obs)
            action, state = policy.predict(seen, state=state, episode_start=start,
                                           deterministic=deterministic)
            start = np.zeros((1,), dtype=bool)
            obs, reward, terminated, truncated, info = env.step(action)
            total += float(reward)
            steps += 1
            for key, value in robustness.scalar_infos(info).items():
                ep_sums[key] += value
            done = bool(terminated or truncated)
        returns.append(total)
        for key, value in ep_sums.items():
            sums[key] += value / steps
            counts[key] += 1
    return returns, {f"eval/{k}": sums[k] / counts[k] for k in sums}


def _seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (SB3's helper)."""
    from stable_baselines3.common.utils import set_random_seed  # heavy: see the top

    set_random_seed(seed)


def execute_run(run: RunSpec, *, on_eval: EvalHook | None = None,
                reporter: StepReporter | None = None) -> RunResult:
    """Train and evaluate one run; never raises for a failing run (KeyboardInterrupt aside).

    Args:
        run: The run.
        on_eval: See :data:`EvalHook`.
        reporter: Receives the run's training progress (at most twice a second, and at the
            end); an error it raises is ignored (progress never breaks a run).

    Returns:
        ``finished`` with the curve and scores; ``not_applicable`` when the agent cannot act in
        the env (adapter cap, qubit cap, a baseline of another env); ``failed`` with the error
        otherwise (code that does not import included). Every result carries the
        :func:`~qdrl_bench.provenance.code_version` of the process that produced it.
    """
    result = _execute_run(run, on_eval, safe_reporter(reporter))
    return dataclasses.replace(result, code_version=code_version())


def execute_task(task: RunSpec | robustness.ConditionTask, *,
                 reporter: StepReporter | None = None) -> Any:
    """Execute what an executor was given.

    A run gives :func:`execute_run`'s ``RunResult``; a finished run's missing conditions
    (:class:`~qdrl_bench.robustness.ConditionTask`) the tuple of ``ConditionResult`` of
    :func:`qdrl_bench.robustness.evaluate_saved`.
    """
    if isinstance(task, robustness.ConditionTask):
        return robustness.evaluate_saved(task)
    return execute_run(task, reporter=reporter)


def _execute_run(run: RunSpec, on_eval: EvalHook | None, report: StepReporter) -> RunResult:
    if registry.is_marl_env(run.env.id):
        from qdrl_bench.marl_run import execute_marl_run  # heavy on first use: see the top

        return execute_marl_run(run, on_eval, report)
    if not registry.is_baseline(run.agent.name) \
            and registry.get_agent(run.agent.name).engine != "sb3":
        return RunResult(status=NOT_APPLICABLE,
                         reason=f"{run.agent.name} trains multi-agent envs only "
                                f"(qdrl_envs.MARL_ENV_IDS); {run.env.id} is single-agent")
    t0 = time.perf_counter()
    eval_seed = run.eval.seed + 1000 * run.seed
    env = eval_env = None
    try:
        eval_env = registry.make_env(run.env.id, run.env.kwargs, run.env.max_episode_steps)
        _seed_everything(run.seed)
        if registry.is_baseline(run.agent.name):
            try:
                policy = registry.build_baseline(run.agent.name, eval_env, run.seed,
                                                 run.agent.kwargs)
            except registry.UnknownBaseline as exc:
                return RunResult(status=NOT_APPLICABLE, reason=str(exc))
            returns, metrics = evaluate(policy, eval_env, run.eval.episodes, eval_seed)
            report(run.name, run.timesteps, run.timesteps)
            curve = (eval_point(0, returns), eval_point(run.timesteps, returns))
            return RunResult(status=FINISHED, wall_s=time.perf_counter() - t0,
                             params_quantum=0, params_classical=0,
                             final_score=curve[-1].mean, final_std=curve[-1].std,
                             metrics=metrics, curve=curve,
                             conditions=robustness.not_applicable_results(
                                 robustness.conditions_for(run), robustness.BASELINE))

        entry = registry.get_agent(run.agent.name)
        settings = registry.train_settings(run.agent.name, run.env.id, run.agent.kwargs)
        adversarial = None
        if run.agent.adversarial_training:
            space = eval_env.observation_space
            if not hasattr(space, "low"):
                return RunResult(status=NOT_APPLICABLE,
                                 reason=f"adversarial training needs a Box observation space, "
                                        f"got {space}")
            adversarial = robustness.AdversarialTraining(run.agent.adversarial_training,
                                                         space.low, space.high, seed=run.seed)
        try:
            env, adapter = registry.make_train_env(
                run.env.id, run.env.kwargs, n_envs=settings.n_envs,
                action_need=entry.action_need, adapter=settings.adapter,
                max_episode_steps=run.env.max_episode_steps, normalize=settings.normalize,
                gamma=float(settings.algo_kwargs.get("gamma", 0.99)),
                train_wrappers=run.agent.train_wrappers, adversarial=adversarial,
                wrapper_seed=run.seed)
            eval_env, _ = adapt_action_space(eval_env, entry.action_need, **settings.adapter)
        except AdapterNotApplicable as exc:
            return RunResult(status=NOT_APPLICABLE, reason=str(exc))
        try:
            model, counts = registry.build_agent(run.agent.name, env, seed=run.seed,
                                                 timesteps=run.timesteps,
                                                 kwargs=settings.algo_kwargs)
        except registry.NotApplicable as exc:
            return RunResult(status=NOT_APPLICABLE, reason=str(exc), adapter=adapter)
        obs_filter = getattr(env, "normalize_obs", None)  # VecNormalize's, frozen at eval
        if adversarial is not None:
            adversarial.bind(model.policy, env if obs_filter is not None else None)

        curve: list[EvalPoint] = []
        last_metrics: dict[str, float] = {}

        def do_eval(step: int, hook: bool = True) -> bool:
            nonlocal last_metrics
            returns, last_metrics = evaluate(model, eval_env, run.eval.episodes, eval_seed,
                                             obs_filter=obs_filter)
            curve.append(eval_point(step, returns))
            return on_eval is None or not hook or bool(on_eval(step, curve[-1].mean))

        callback = sb3_eval_callback(run.name, run.eval.every, run.timesteps, do_eval, report)
        stopped = not do_eval(0)
        if not stopped:
            model.learn(total_timesteps=run.timesteps, callback=callback)
            stopped = callback.stopped
        if curve[-1].step != model.num_timesteps:
            do_eval(int(model.num_timesteps))
        elif not stopped and model.num_timesteps > 0:
            # The callback's evaluation at the last step came before the algorithm's last
            # update (PPO trains after its rollout, SAC after its step): the final point is
            # the trained policy's, the one exported and evaluated under the conditions.
            curve.pop()
            do_eval(int(model.num_timesteps), hook=False)
        sampled, _ = evaluate(model, eval_env, run.eval.episodes, eval_seed,
                              deterministic=False, obs_filter=obs_filter)
        last_metrics = {**last_metrics, **score_metrics(curve, sampled),
                        **robustness.training_metrics(env)}
        wall_s = time.perf_counter() - t0
        if run.agent_dir is not None:
            _export(model, run)
        conditions = robustness.evaluate_conditions(
            model, _normalizer(env), run, robustness.conditions_for(run),
            robustness.eval_env_factory(run))
        return RunResult(status=FINISHED, adapter=adapter, wall_s=wall_s,
                         params_quantum=counts["quantum"], params_classical=counts["classical"],
                         final_score=curve[-1].mean, final_std=curve[-1].std,
                         metrics=last_metrics, curve=tuple(curve), conditions=conditions)
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as exc:  # a library's BaseException (pyo3's PanicException from
        # qiskit's Rust core) fails this run, not the sweep
        return RunResult(status=FAILED, reason=error_text(exc),
                         wall_s=time.perf_counter() - t0)
    finally:
        for e in (env, eval_env):
            if e is not None:
                e.close()


def _normalizer(env: Any) -> Any:
    """The frozen observation normaliser of a trained agent's env (``None``: none)."""
    from qdrl_bench.sharing import ObsNormalizer  # heavy (torch): see the top

    if getattr(env, "norm_obs", False) and hasattr(env, "obs_rms"):
        return ObsNormalizer.of(env)
    return None


def _export(model: Any, run: RunSpec) -> None:
    """Export the trained agent into the run's staging folder (the driver moves it in place)."""
    import shutil

    from qdrl_bench.sharing import export_agent  # heavy (torch): see the top

    assert run.agent_dir is not None
    staging = robustness.staging_dir(run.agent_dir)
    shutil.rmtree(staging, ignore_errors=True)  # a crashed attempt's
    export_agent(model, staging, name=run.agent.name, env_id=run.env.id,
                 timesteps=run.timesteps, env_kwargs=run.env.kwargs, kwargs=run.agent.kwargs,
                 max_episode_steps=run.env.max_episode_steps)
