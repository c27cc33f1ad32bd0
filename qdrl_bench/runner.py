"""Run a sweep: expand it into runs, skip the finished ones, execute the rest, store results.

Two layers:

* :func:`execute_run` runs one :class:`~qdrl_bench.spec.RunSpec` start to finish and returns a
  :class:`~qdrl_bench.store.RunResult`. It is a pure function of the run (it never touches the
  store), so any executor — inline, a process pool, Ray — may call it, and it seeds
  everything (Python, NumPy, torch, the SB3 algorithm, the training and evaluation envs), so
  the same run gives the same scores wherever it executes.
* :func:`run_sweep` is the driver: it checks the sweep, creates the runs in the store, hands
  the unfinished ones to an executor, and writes every result from the driver process, one
  transaction per run. Ctrl-C stops the executor, marks the runs in flight ``interrupted`` and
  leaves the store consistent; a rerun redoes them and skips everything finished.
  ``rerun="stale"`` also redoes finished runs whose recorded :func:`code_version` is not the
  current one, ``rerun="all"`` every run of the sweep; a redone run's old result stays in the
  store until the new run is done (:meth:`~qdrl_bench.store.BaseStore.replace_result`).

Metrics follow fixed namespaces: the evaluation curve is ``eval/return`` (mean and std over the
evaluation episodes at each step); ``metrics`` holds the final evaluation's ``eval/<info key>``
means of the env's numeric ``info`` entries (e.g. ``eval/secrecy_rate``).
"""

from __future__ import annotations

import collections
import contextlib
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np

from qdrl_bench.spec import ALL_BASELINES, RunSpec, SpecError, SweepSpec, expand_runs
from qdrl_bench.store import (
    DONE_STATUSES,
    FAILED,
    FINISHED,
    NOT_APPLICABLE,
    UNAVAILABLE,
    BaseStore,
    EvalPoint,
    RunKey,
    RunRecord,
    RunResult,
    StoreError,
    get_store,
    new_owner,
)

__all__ = [
    "RERUN_MODES",
    "Progress",
    "SweepSummary",
    "code_version",
    "evaluate",
    "execute_run",
    "is_stale",
    "run_key",
    "run_sweep",
    "score_metrics",
    "set_step_reporter",
]

RERUN_MODES = ("stale", "all")
"""What :func:`run_sweep` redoes besides unfinished runs: ``stale`` (done runs of another code
version) or ``all`` (every done run of the sweep)."""

StepReporter = Callable[[str, int, int], None]
_REPORTER: StepReporter | None = None


def set_step_reporter(reporter: StepReporter | None) -> None:
    """Install the function :func:`execute_run` calls with ``(run name, steps, total)``."""
    global _REPORTER
    _REPORTER = reporter


def _report(name: str, steps: int, total: int) -> None:
    if _REPORTER is not None:
        try:
            _REPORTER(name, steps, total)
        except Exception:  # progress must never break a run
            pass


def run_key(run: RunSpec) -> RunKey:
    """The store identity of a run."""
    return RunKey(sweep=run.sweep, env=run.env.label, agent=run.agent.label, seed=run.seed,
                  config_hash=run.config_hash, env_id=run.env.id, agent_name=run.agent.name,
                  config=run.config)


# ----------------------------------------------------------------------------- one run


def _scalar_infos(info: Mapping[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in info.items():
        if isinstance(v, (bool, np.bool_)) or k.startswith("_") or k in ("episode",
                                                                           "TimeLimit.truncated"):
            continue
        if isinstance(v, (int, float, np.integer, np.floating)) and np.isfinite(v):
            out[k] = float(v)
    return out


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
            for key, value in _scalar_infos(info).items():
                ep_sums[key] += value
            done = bool(terminated or truncated)
        returns.append(total)
        for key, value in ep_sums.items():
            sums[key] += value / steps
            counts[key] += 1
    return returns, {f"eval/{k}": sums[k] / counts[k] for k in sums}


_CODE_PACKAGES = ("qdrl_envs", "qdrl_agents", "qdrl_bench")
_CODE_VERSION: str | None = None


def code_version() -> str:
    """Fingerprint (12 hex digits) of the source of ``qdrl_envs``, ``qdrl_agents``, ``qdrl_bench``.

    Stored with every result, so a report can tell when the runs it pools were produced by
    different code (a rerun skips finished runs even if the code changed since). Computed once
    per process from the ``.py`` files on disk (``qdrl_bench/perf`` excluded) and the
    registry's hyperparameter files (``qdrl_bench/hyperparams/*.yml``): new defaults make
    results stale too.
    """
    global _CODE_VERSION
    if _CODE_VERSION is None:
        import hashlib
        import importlib.util
        from pathlib import Path

        digest = hashlib.sha256()
        for package in _CODE_PACKAGES:
            spec = importlib.util.find_spec(package)
            if spec is None or not spec.submodule_search_locations:
                continue
            root = Path(next(iter(spec.submodule_search_locations)))
            for path in sorted([*root.rglob("*.py"), *root.glob("hyperparams/*.yml")]):
                rel = path.relative_to(root).as_posix()
                if rel.startswith("perf/"):
                    continue
                digest.update(f"{package}/{rel}\0".encode())
                digest.update(path.read_bytes())
        _CODE_VERSION = digest.hexdigest()[:12]
    return _CODE_VERSION


def is_stale(record: RunRecord, version: str) -> bool:
    """Whether a done run holds a result of another code version than ``version``.

    A result without a recorded version (a store of schema 1) counts as stale; runs that are
    not done are never stale (a rerun redoes them anyway).
    """
    if record.status not in DONE_STATUSES:
        return False
    return record.result is None or record.result.code_version != version


def _seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (SB3's helper)."""
    from stable_baselines3.common.utils import set_random_seed

    set_random_seed(seed)


LAST_EVALS = 3
"""Evaluation points the stability score averages over (the final one and those before)."""


def score_metrics(curve: list[EvalPoint], sampled: list[float]) -> dict[str, float]:
    """A learning run's scores beside its final deterministic one, as ``score/`` metrics.

    ``score/stochastic``: the mean return of the same evaluation episodes with actions sampled
    from the policy (an untrained policy's mode can be far worse, or better, than the policy);
    ``score/last_evals``: the mean of the last :data:`LAST_EVALS` deterministic evaluations,
    which shows a policy that peaked and then fell.
    """
    tail = [p.mean for p in curve[-LAST_EVALS:]]
    return {"score/stochastic": float(np.mean(sampled)),
            "score/last_evals": float(np.mean(tail))}


def _point(step: int, returns: list[float]) -> EvalPoint:
    arr = np.asarray(returns, dtype=np.float64)
    return EvalPoint(step=int(step), mean=float(arr.mean()), std=float(arr.std()),
                     returns=tuple(float(r) for r in arr))


def _error_text(exc: BaseException) -> str:
    tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
    tail = "".join(tb[-3:]).strip()
    return f"{type(exc).__name__}: {exc}\n{tail}"[:4000]


EvalHook = Callable[[int, float], bool]
"""Called after each evaluation of a learning run with ``(step, mean return)``; returning
``False`` stops training there (a tuner's pruner). The run still finishes with the curve so
far, its last point the evaluation that stopped it."""


def execute_run(run: RunSpec, *, on_eval: EvalHook | None = None) -> RunResult:
    """Train and evaluate one run; never raises for a failing run (KeyboardInterrupt aside).

    Returns:
        ``finished`` with the curve and scores; ``not_applicable`` when the agent cannot act in
        the env (adapter cap, qubit cap, a baseline of another env); ``unavailable`` when the
        env or agent code cannot be imported; ``failed`` with the error otherwise. Every result
        carries the :func:`code_version` of the process that produced it.
    """
    import dataclasses

    return dataclasses.replace(_execute_run(run, on_eval), code_version=code_version())


def _execute_run(run: RunSpec, on_eval: EvalHook | None = None) -> RunResult:
    from qdrl_bench import registry
    from qdrl_envs.wrappers import AdapterNotApplicable, adapt_action_space

    t0 = time.perf_counter()
    eval_seed = run.eval.seed + 1000 * run.seed
    env = eval_env = None
    try:
        try:
            eval_env = registry.make_env(run.env.id, run.env.kwargs, run.env.max_episode_steps)
        except ImportError as exc:
            return RunResult(status=UNAVAILABLE, reason=f"env {run.env.id} is not importable: "
                                                        f"{type(exc).__name__}: {exc}")
        _seed_everything(run.seed)
        if registry.is_baseline(run.agent.name):
            try:
                policy = registry.build_baseline(run.agent.name, eval_env, run.seed,
                                                 run.agent.kwargs)
            except ImportError as exc:
                return RunResult(status=UNAVAILABLE, reason=f"baselines of {run.env.id} are not "
                                                            f"importable: {exc}")
            except ValueError as exc:
                if "unknown baseline" in str(exc):
                    return RunResult(status=NOT_APPLICABLE, reason=str(exc))
                raise
            returns, metrics = evaluate(policy, eval_env, run.eval.episodes, eval_seed)
            _report(run.name, run.timesteps, run.timesteps)
            curve = (_point(0, returns), _point(run.timesteps, returns))
            return RunResult(status=FINISHED, wall_s=time.perf_counter() - t0,
                             params_quantum=0, params_classical=0,
                             final_score=curve[-1].mean, final_std=curve[-1].std,
                             metrics=metrics, curve=curve)

        entry = registry.get_agent(run.agent.name)
        settings = registry.train_settings(run.agent.name, run.env.id, run.agent.kwargs)
        try:
            env, adapter = registry.make_train_env(
                run.env.id, run.env.kwargs, n_envs=settings.n_envs,
                action_need=entry.action_need, adapter=settings.adapter,
                max_episode_steps=run.env.max_episode_steps, normalize=settings.normalize,
                gamma=float(settings.algo_kwargs.get("gamma", 0.99)))
            eval_env, _ = adapt_action_space(eval_env, entry.action_need, **settings.adapter)
        except AdapterNotApplicable as exc:
            return RunResult(status=NOT_APPLICABLE, reason=str(exc))
        try:
            model, counts = registry.build_agent(run.agent.name, env, seed=run.seed,
                                                 timesteps=run.timesteps,
                                                 kwargs=settings.algo_kwargs)
        except registry.AgentUnavailable as exc:
            return RunResult(status=UNAVAILABLE, reason=str(exc), adapter=adapter)
        except registry.NotApplicable as exc:
            return RunResult(status=NOT_APPLICABLE, reason=str(exc), adapter=adapter)
        obs_filter = getattr(env, "normalize_obs", None)  # VecNormalize's, frozen at eval

        curve: list[EvalPoint] = []
        last_metrics: dict[str, float] = {}

        def do_eval(step: int) -> bool:
            nonlocal last_metrics
            returns, last_metrics = evaluate(model, eval_env, run.eval.episodes, eval_seed,
                                             obs_filter=obs_filter)
            curve.append(_point(step, returns))
            return on_eval is None or bool(on_eval(step, curve[-1].mean))

        if do_eval(0):
            model.learn(total_timesteps=run.timesteps,
                        callback=_EvalCallback(run, do_eval))
        if curve[-1].step != model.num_timesteps:
            do_eval(int(model.num_timesteps))
        sampled, _ = evaluate(model, eval_env, run.eval.episodes, eval_seed,
                              deterministic=False, obs_filter=obs_filter)
        last_metrics = {**last_metrics, **score_metrics(curve, sampled)}
        return RunResult(status=FINISHED, adapter=adapter, wall_s=time.perf_counter() - t0,
                         params_quantum=counts["quantum"], params_classical=counts["classical"],
                         final_score=curve[-1].mean, final_std=curve[-1].std,
                         metrics=last_metrics, curve=tuple(curve))
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as exc:  # a library's BaseException (pyo3's PanicException from
        # qiskit's Rust core) fails this run, not the sweep
        return RunResult(status=FAILED, reason=_error_text(exc),
                         wall_s=time.perf_counter() - t0)
    finally:
        for e in (env, eval_env):
            if e is not None:
                e.close()


def _EvalCallback(run: RunSpec, do_eval: Callable[[int], bool]) -> Any:
    from stable_baselines3.common.callbacks import BaseCallback

    class EvalCallback(BaseCallback):
        """Evaluate every ``run.eval.every`` steps (stop when the hook says so), report progress."""

        def __init__(self) -> None:
            super().__init__()
            self.next_eval = run.eval.every
            self.last_report = 0.0

        def _on_step(self) -> bool:
            n = self.num_timesteps
            if n >= self.next_eval:
                go_on = do_eval(n)
                while self.next_eval <= n:
                    self.next_eval += run.eval.every
                if not go_on:
                    return False
            now = time.monotonic()
            if now - self.last_report > 0.5:
                self.last_report = now
                _report(run.name, n, run.timesteps)
            return True

        def _on_training_end(self) -> None:
            _report(run.name, self.num_timesteps, run.timesteps)

    return EvalCallback()


# ----------------------------------------------------------------------------- progress


class Progress:
    """A plain-text progress line over runs and training steps (stdlib only).

    On a terminal the line is redrawn in place (at most 5 times a second); otherwise one line
    is printed per finished run.

    Args:
        total_runs: Runs to execute.
        total_steps: Their summed training steps.
        label: Sweep name shown first.
        stream: Where to write (default ``sys.stderr``); ``None`` disables output.
    """

    def __init__(self, total_runs: int, total_steps: int, label: str,
                 stream: TextIO | None = sys.stderr) -> None:
        self.total_runs = total_runs
        self.total_steps = max(1, total_steps)
        self.label = label
        self.stream = stream
        self.tty = bool(stream is not None and getattr(stream, "isatty", lambda: False)())
        self.done = 0
        self.by_status: collections.Counter[str] = collections.Counter()
        self.steps: dict[str, int] = {}
        self.finished_steps = 0
        self.t0 = time.monotonic()
        self._last_draw = 0.0
        self._lock = threading.Lock()

    def step(self, name: str, steps: int, total: int) -> None:
        """Record the training progress of a run in flight."""
        with self._lock:
            self.steps[name] = min(steps, total)
        self.draw()

    def run_done(self, run: RunSpec, status: str) -> None:
        """Record a finished run (any status)."""
        with self._lock:
            self.steps.pop(run.name, None)
            self.finished_steps += run.timesteps
            self.done += 1
            self.by_status[status] += 1
        if self.stream is not None and not self.tty:
            self.stream.write(f"[{self.label}] {self.done}/{self.total_runs} {run.name}: "
                              f"{status} ({self._elapsed()})\n")
            self.stream.flush()
        self.draw(force=True)

    def _elapsed(self) -> str:
        s = int(time.monotonic() - self.t0)
        return f"{s // 60:02d}:{s % 60:02d}"

    def line(self) -> str:
        """The current progress line."""
        with self._lock:
            steps = self.finished_steps + sum(self.steps.values())
            other = ", ".join(f"{n} {s}" for s, n in sorted(self.by_status.items())
                              if s != FINISHED)
        frac = min(1.0, steps / self.total_steps)
        bar = "#" * int(20 * frac) + "-" * (20 - int(20 * frac))
        return (f"[{self.label}] runs {self.done}/{self.total_runs}"
                + (f" ({other})" if other else "")
                + f" |{bar}| steps {steps}/{self.total_steps} {self._elapsed()}")

    def draw(self, force: bool = False) -> None:
        """Redraw the line on a terminal (rate-limited unless ``force``)."""
        if self.stream is None or not self.tty:
            return
        now = time.monotonic()
        if not force and now - self._last_draw < 0.2:
            return
        self._last_draw = now
        self.stream.write("\r" + self.line()[:200])
        self.stream.flush()

    def close(self) -> None:
        """End the line."""
        if self.stream is not None and self.tty:
            self.draw(force=True)
            self.stream.write("\n")
            self.stream.flush()


# ----------------------------------------------------------------------------- the driver


@dataclass
class SweepSummary:
    """What :func:`run_sweep` did.

    Attributes:
        sweep: The sweep name.
        total: Runs in the sweep.
        skipped: Runs already done (finished / not applicable) in the store and not redone.
        stale: Of the skipped runs, those whose result is of another code version.
        redo: Done runs redone in this invocation (``rerun``).
        replaced: Of those, the ones whose new result replaced the old one.
        kept: ``(run name, status)`` of redone runs that did not finish (failed, unavailable):
            their old result is kept.
        statuses: Count of each status produced in this invocation.
        interrupted: Whether Ctrl-C stopped it.
        wall_s: Wall-clock seconds.
        failures: ``(run name, reason)`` of failed runs.
        unavailable: ``(run name, reason)`` of unavailable runs.
        held: ``(run name, owner)`` of runs another process was executing (its lease live):
            not run here, and not counted in ``statuses``.
    """

    sweep: str
    total: int = 0
    skipped: int = 0
    stale: int = 0
    redo: int = 0
    replaced: int = 0
    kept: list[tuple[str, str]] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    interrupted: bool = False
    wall_s: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)
    unavailable: list[tuple[str, str]] = field(default_factory=list)
    held: list[tuple[str, str]] = field(default_factory=list)


LEASE_S = 120.0
"""Seconds a run's lease lasts without renewal; the driver renews its runs every quarter."""


class _Heartbeat:
    """A thread renewing the leases of the runs in flight, every ``interval`` seconds."""

    def __init__(self, db: BaseStore, owner: str, interval: float) -> None:
        import threading

        self.db, self.owner, self.interval = db, owner, interval
        self.ids: set[str] = set()
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="qdrl-lease", daemon=True)
        self._thread.start()

    def add(self, run_id: str) -> None:
        with self._guard:
            self.ids.add(run_id)

    def discard(self, run_id: str) -> None:
        with self._guard:
            self.ids.discard(run_id)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            with self._guard:
                ids = list(self.ids)
            try:
                self.db.renew(ids, self.owner)
            except Exception:  # a busy or closed store: the next beat tries again
                continue

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def check_agent_kwargs(spec: SweepSpec) -> None:
    """Check each learning agent's kwargs as a hyperparameter entry, before any run starts.

    Unknown keys and wrong types failed each run at build time before; now the sweep is
    refused naming the agent, its line and the key. ``adapter`` and ``match`` are the
    registry's own keys and are checked where they are used.

    Raises:
        SpecError: ``file:line: agents[i].kwargs.key: ...``.
    """
    from qdrl_bench import registry
    from qdrl_bench.hyperparams import parse_entry

    for i, agent in enumerate(spec.agents):
        if agent.name == ALL_BASELINES or registry.is_baseline(agent.name):
            continue
        algo = registry.get_agent(agent.name).algo
        entry = {k: v for k, v in agent.kwargs.items() if k not in ("adapter", "match")}
        parse_entry(entry, algo, f"{spec.path}:{agent.line}: agents[{i}].kwargs")


def check_env_kwargs(spec: SweepSpec) -> None:
    """Build each env once with its kwargs so bad overrides fail before any run starts.

    Envs that cannot be imported are left for the runs to record as unavailable.

    Raises:
        SpecError: Naming ``envs[i].kwargs``, its line and the env's own message.
    """
    from qdrl_bench import registry

    for i, env in enumerate(spec.envs):
        try:
            made = registry.make_env(env.id, env.kwargs, env.max_episode_steps)
        except ImportError:
            continue
        except Exception as exc:
            raise SpecError(f"{spec.path}:{env.line}: envs[{i}].kwargs: {env.id} rejects "
                            f"{dict(env.kwargs)}: {type(exc).__name__}: {exc}") from exc
        made.close()


def run_sweep(spec: SweepSpec, *, store: BaseStore | str | None = None,
              executor: Any = None, progress: bool | TextIO = True,
              check: bool = True, rerun: str | None = None,
              version: str | None = None, lease_s: float = LEASE_S) -> SweepSummary:
    """Run every unfinished run of a sweep and write the results to the store.

    Only this sweep's runs (as the spec expands now) are read or written; other sweeps in the
    store, and runs of earlier configurations of this one, are never touched.

    Several drivers may run one sweep at once (two ``qdrl-bench run`` of it, or one per
    machine on a shared store): each run is claimed before it starts (:meth:`BaseStore.claim`)
    and its lease renewed while it runs, so no run is executed twice; a run another driver
    holds is left to it (``held`` in the summary), and one whose driver died (its process gone,
    or no renewal for ``lease_s`` seconds) is taken over.

    Args:
        spec: The sweep.
        store: A store or URL (default: ``spec.store``).
        executor: An executor from :mod:`qdrl_bench.executors` (default: the one the sweep
            names). The driver closes executors it creates, not ones passed in.
        progress: Show progress on stderr (``True``), on a given stream, or not (``False``).
        check: Check names and env kwargs first (:func:`qdrl_bench.registry.check_sweep_names`,
            :func:`check_env_kwargs`).
        rerun: ``None``: skip done runs. ``"stale"``: also redo done runs whose result is of
            another code version than ``version`` (:func:`is_stale`). ``"all"``: redo every
            run. A redone run keeps its old result until the new one is done (finished or not
            applicable), which then replaces it in one transaction; a redo that fails or is
            interrupted leaves the old result in place.
        version: The code version results are compared with (default: this process's
            :func:`code_version`). When given, it is also recorded on the results this call
            writes, in place of the executing process's own.
        lease_s: Seconds a claimed run stays this driver's without renewal.

    Returns:
        The summary. After Ctrl-C, ``interrupted`` is set and the runs in flight are marked
        ``interrupted`` in the store (the ``KeyboardInterrupt`` is not re-raised); redone runs
        in flight keep their old result.

    Raises:
        ValueError: If ``rerun`` is not ``None`` or one of :data:`RERUN_MODES`.
        SpecError: If the sweep names unknown envs / agents or bad env kwargs.
        StoreError: If the store cannot be opened, or a write fails (a full disk): the runs
            in flight are then marked ``interrupted`` where the store still takes it, and
            otherwise taken over by the next driver (their owner's process is gone).
    """
    import dataclasses

    from qdrl_bench import executors as ex
    from qdrl_bench import registry

    if rerun is not None and rerun not in RERUN_MODES:
        raise ValueError(f"rerun must be one of {list(RERUN_MODES)} (or None), got {rerun!r}")
    t0 = time.perf_counter()
    current = version if version is not None else code_version()
    if check:
        registry.check_sweep_names(spec)
        check_agent_kwargs(spec)
        check_env_kwargs(spec)
    owns_store = not isinstance(store, BaseStore)
    db = get_store(store if store is not None else spec.store)
    runs = expand_runs(spec, baselines_of=registry.baselines_for,
                       timesteps_of=registry.default_timesteps)
    summary = SweepSummary(sweep=spec.name, total=len(runs))
    todo: collections.deque[tuple[RunSpec, str]] = collections.deque()
    redo: set[str] = set()  # done runs redone: never set running, replaced only when done
    for run in runs:
        rec = db.ensure_run(run_key(run))
        if rec.status not in DONE_STATUSES:
            todo.append((run, rec.run_id))
        elif rerun == "all" or (rerun == "stale" and is_stale(rec, current)):
            todo.append((run, rec.run_id))
            redo.add(rec.run_id)
        else:
            summary.skipped += 1
            summary.stale += is_stale(rec, current)
    summary.redo = len(redo)
    stream = sys.stderr if progress is True else (progress or None)
    bar = Progress(len(todo), sum(r.timesteps for r, _ in todo), spec.name,
                   stream=stream)  # type: ignore[arg-type]
    owns_executor = executor is None
    if executor is None and todo:
        executor = ex.make_executor(spec.executor)
    in_flight: dict[Any, tuple[RunSpec, str]] = {}
    started: list[str] = []  # every run this invocation set running (Ctrl-C may land anywhere)
    owner = new_owner()
    claimed: list[str] = []
    heart = _Heartbeat(db, owner, lease_s / 4) if todo else None
    try:
        if todo:
            executor.start(bar.step)
        while todo or in_flight:
            while todo and len(in_flight) < executor.slots:
                run, run_id = todo.popleft()
                if not db.claim(run_id, owner, lease_s=lease_s, redo=run_id in redo):
                    rec = db.get_run(run_id)
                    if rec is not None and rec.owner is not None:
                        summary.held.append((run.name, rec.owner))
                    else:  # finished by another driver meanwhile
                        summary.skipped += 1
                    bar.run_done(run, "held")
                    continue
                claimed.append(run_id)
                if heart is not None:
                    heart.add(run_id)
                if run_id not in redo:
                    started.append(run_id)
                in_flight[executor.submit(run)] = (run, run_id)
            for handle, result in executor.wait(timeout=0.25):
                run, run_id = in_flight.pop(handle)
                if heart is not None:
                    heart.discard(run_id)
                if version is not None:
                    result = dataclasses.replace(result, code_version=version)
                if run_id not in redo:
                    db.record_result(run_id, result)
                elif result.status in DONE_STATUSES:
                    db.replace_result(run_id, result)
                    summary.replaced += 1
                else:
                    summary.kept.append((run.name, result.status))
                summary.statuses[result.status] = summary.statuses.get(result.status, 0) + 1
                if result.status == FAILED:
                    summary.failures.append((run.name, result.reason or ""))
                elif result.status == UNAVAILABLE:
                    summary.unavailable.append((run.name, result.reason or ""))
                bar.run_done(run, result.status)
    except KeyboardInterrupt:
        summary.interrupted = True
        if executor is not None:
            executor.cancel_all()
        db.mark_interrupted(started)
    except StoreError:  # e.g. a full disk: stop, and leave what can be left consistent
        if executor is not None:
            executor.cancel_all()
        with contextlib.suppress(StoreError):
            db.mark_interrupted(started)  # else the leases of this gone driver are taken over
        raise
    finally:
        if heart is not None:
            heart.close()
        with contextlib.suppress(StoreError):  # redos that did not finish keep no lease
            db.release(claimed, owner)
        bar.close()
        if owns_executor and executor is not None:
            executor.close()
        if owns_store:
            db.close()
    summary.wall_s = time.perf_counter() - t0
    return summary


def worker_threads() -> int:
    """Threads torch may use in this process (1 inside executor workers)."""
    import torch

    return int(torch.get_num_threads())

