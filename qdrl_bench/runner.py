"""Run a sweep: expand it into runs, skip the finished ones, execute the rest, store results.

:func:`run_sweep` is the driver: it checks the sweep, creates the runs in the store, hands the
unfinished ones to an executor (:mod:`qdrl_bench.executors`, which runs each with
:func:`qdrl_bench.execute.execute_run`), and writes every result from the driver process, one
transaction per run. Ctrl-C stops the executor, marks the runs in flight ``interrupted`` and
leaves the store consistent; a rerun redoes them and skips everything finished.
``rerun="stale"`` also redoes finished runs whose recorded
:func:`~qdrl_bench.provenance.code_version` is not the current one, ``rerun="all"`` every run
of the sweep; a redone run's old result stays in the store until the new run is done
(:meth:`~qdrl_bench.store.BaseStore.replace_result`).

Robustness (:mod:`qdrl_bench.robustness`): each learning run exports its trained agent into
the agents folder beside the store (``results/x.db`` -> ``results/x-agents/``), staged until
its result is stored, and is evaluated under the sweep's conditions in its worker. A rerun
finds, for every finished run, the conditions not yet evaluated (new names, or changed knobs)
and evaluates them from the saved agent, in the executor like runs (no retraining; no claim
either: condition results are idempotent, a done one is never overwritten); a finished run
without a saved agent (one an older version produced) is trained again for them, its old
result kept until the new one is done. Workers write and read the agents folder themselves:
with Ray on several machines it must be on a file system they share.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import re
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import gymnasium as gym

from qdrl_bench import executors as ex
from qdrl_bench import registry, robustness
from qdrl_bench.agents import get_agent, is_baseline
from qdrl_bench.hyperparams import parse_entry
from qdrl_bench.provenance import code_version, is_stale
from qdrl_bench.spec import ALL_BASELINES, AgentSpec, RunSpec, SpecError, SweepSpec, expand_runs
from qdrl_bench.store import (
    DONE_STATUSES,
    FAILED,
    FINISHED,
    BaseStore,
    ConditionResult,
    RunKey,
    RunResult,
    SQLiteStore,
    StoreError,
    get_store,
    new_owner,
)
from qdrl_envs.wrappers import adapt_action_space

__all__ = [
    "LEASE_S",
    "RERUN_MODES",
    "Progress",
    "SweepSummary",
    "agents_root",
    "check_agent_kwargs",
    "check_conditions",
    "check_env_kwargs",
    "check_train_wrappers",
    "run_key",
    "run_sweep",
]

RERUN_MODES = ("stale", "all")
"""What :func:`run_sweep` redoes besides unfinished runs: ``stale`` (done runs of another code
version) or ``all`` (every done run of the sweep)."""


def run_key(run: RunSpec) -> RunKey:
    """The store identity of a run."""
    return RunKey(sweep=run.sweep, env=run.env.label, agent=run.agent.label, seed=run.seed,
                  config_hash=run.config_hash, env_id=run.env.id, agent_name=run.agent.name,
                  config=run.config)


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
        self.task_done(run.name, status)

    def task_done(self, name: str, status: str) -> None:
        """Record a finished task without training steps (a run's missing conditions)."""
        with self._lock:
            self.done += 1
            self.by_status[status] += 1
        if self.stream is not None and not self.tty:
            self.stream.write(f"[{self.label}] {self.done}/{self.total_runs} {name}: "
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
        kept: ``(run name, status)`` of redone runs that did not finish (failed): their old
            result is kept.
        statuses: Count of each status produced in this invocation.
        interrupted: Whether Ctrl-C stopped it.
        wall_s: Wall-clock seconds.
        failures: ``(run name, reason)`` of failed runs.
        held: ``(run name, owner)`` of runs another process was executing (its lease live):
            not run here, and not counted in ``statuses``.
        conditions: Count of each status of the condition results written in this invocation
            (with new runs' results, and for finished runs' missing conditions).
        from_saved: Finished runs whose missing conditions were evaluated from the saved agent.
        retrained: Finished runs trained again because conditions were missing and their
            agent was not saved (counted in ``redo`` too).
        condition_failures: ``(run name/condition, reason)`` of failed condition evaluations.
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
    held: list[tuple[str, str]] = field(default_factory=list)
    conditions: dict[str, int] = field(default_factory=dict)
    from_saved: int = 0
    retrained: int = 0
    condition_failures: list[tuple[str, str]] = field(default_factory=list)

    def count_conditions(self, run: RunSpec, results: Any) -> None:
        """Add condition results written for ``run`` to the counts."""
        for c in results:
            self.conditions[c.status] = self.conditions.get(c.status, 0) + 1
            if c.status == FAILED:
                self.condition_failures.append((f"{run.name}/{c.name}", c.reason or ""))


LEASE_S = 120.0
"""Seconds a run's lease lasts without renewal; the driver renews its runs every quarter."""


class _Heartbeat:
    """A thread renewing the leases of the runs in flight, every ``interval`` seconds."""

    def __init__(self, db: BaseStore, owner: str, interval: float) -> None:
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
    for i, agent in enumerate(spec.agents):
        if agent.name == ALL_BASELINES or registry.is_baseline(agent.name):
            continue
        where = f"{spec.path}:{agent.line}: agents[{i}].kwargs"
        learner = registry.get_agent(agent.name)
        if learner.engine == "torchrl":
            from qdrl_bench.marl_ctde import check_sweep_kwargs  # heavy (torch): on first use

            try:
                check_sweep_kwargs(agent.kwargs)
            except ValueError as exc:
                raise SpecError(f"{where}: {exc}") from exc
            continue
        entry = {k: v for k, v in agent.kwargs.items() if k not in ("adapter", "match")}
        parse_entry(entry, learner.algo, where)


def check_env_kwargs(spec: SweepSpec) -> None:
    """Build each env once with its kwargs so bad overrides fail before any run starts.

    An env whose code does not import is a bug, not bad input: its ``ImportError`` propagates.

    Raises:
        SpecError: Naming ``envs[i].kwargs``, its line and the env's own message.
    """
    for i, env in enumerate(spec.envs):
        try:
            made = registry.make_env(env.id, env.kwargs, env.max_episode_steps)
        except ImportError:  # the env's code is broken: a bug to see, not a sweep error
            raise
        except Exception as exc:
            raise SpecError(f"{spec.path}:{env.line}: envs[{i}].kwargs: {env.id} rejects "
                            f"{dict(env.kwargs)}: {type(exc).__name__}: {exc}") from exc
        made.close()


def _learning_labels(agents: Sequence[AgentSpec]) -> tuple[set[str], set[str]]:
    """The labels of the learning agents among ``agents``, and of the quantum or hybrid ones."""
    learners = {a.label: a for a in agents if a.name != ALL_BASELINES and not is_baseline(a.name)}
    return set(learners), {label for label, a in learners.items()
                           if get_agent(a.name).family in ("quantum", "hybrid")}


def select_part(spec: SweepSpec, envs: Sequence[str] = (), agents: Sequence[str] = ()
                ) -> SweepSpec:
    """The part of a sweep on some of its envs and agents, under the same sweep name and store.

    Its runs are the full sweep's runs of those envs and agents (same identity, seeds and
    settings), so a later run of the whole file skips them; evaluation conditions are kept
    for the selected agents they apply to.

    Args:
        spec: The parsed sweep.
        envs: Env labels (or ids) to keep; empty: every env.
        agents: Agent labels to keep (``baselines`` for the baselines entry); empty: every agent.

    Raises:
        SpecError: A label that is not in the sweep, or a selection with no run.
    """
    def pick(items: tuple[Any, ...], wanted: Sequence[str], what: str,
             key: Any) -> tuple[Any, ...]:
        if not wanted:
            return items
        known = {name for item in items for name in key(item)}
        unknown = sorted(set(wanted) - known)
        if unknown:
            raise SpecError(f"{spec.path}: --{what} {', '.join(unknown)}: not in the sweep; its "
                            f"{what}s are {sorted({key(i)[0] for i in items})}")
        return tuple(i for i in items if set(key(i)) & set(wanted))

    kept_envs = pick(spec.envs, envs, "env", lambda e: (e.label, e.id))
    kept_agents = pick(spec.agents, agents, "agent", lambda a: (a.label,))
    labels = {e.label for e in kept_envs}
    kept_agents = tuple(a for a in kept_agents if a.envs is None or set(a.envs) & labels)
    if not kept_agents:
        raise SpecError(f"{spec.path}: the selected agents run on none of the selected envs")
    learners, quantum = _learning_labels(kept_agents)

    def applies(cond: Any, labels: set[str]) -> bool:
        return any(cond.applies_to(label) for label in labels)

    conditions = tuple(c for c in spec.eval.conditions
                       if applies(c, learners) and (c.kind != "executor" or applies(c, quantum)))
    return dataclasses.replace(spec, envs=kept_envs, agents=kept_agents,
                               eval=dataclasses.replace(spec.eval, conditions=conditions))


def check_conditions(spec: SweepSpec) -> None:
    """Check the sweep's evaluation conditions against its agents, before any run starts.

    An ``executor`` condition needs a quantum or hybrid agent among those it applies to, and a
    ``fake_backend`` must exist (qiskit-ibm-runtime installed).

    Raises:
        SpecError: ``file:line: eval.conditions[i]: ...``.
    """
    learners, quantum = _learning_labels(spec.agents)
    for cond in spec.eval.conditions:
        where = f"{spec.path}:{cond.line}: eval.conditions[{cond.entry}]"
        applies = set(cond.agents) if cond.agents is not None else set(learners)
        if not applies & set(learners):
            raise SpecError(f"{where}: condition {cond.name!r} applies to no learning agent "
                            f"(baselines are not evaluated under conditions)")
        if cond.kind != "executor":
            continue
        if not applies & quantum:
            raise SpecError(f"{where}: condition {cond.name!r} runs the trained quantum circuit "
                            f"on qiskit-aer (shots, noise), but the agents it applies to "
                            f"({sorted(applies)}) are all classical")
        for comp in cond.params["noise"]:
            if comp["kind"] != "fake_backend":
                continue
            try:
                robustness.fake_backend(comp["backend"])
            except ImportError as exc:
                raise SpecError(f"{where}.noise.backend: a fake backend needs "
                                f"qiskit-ibm-runtime (pip install qiskit-ibm-runtime): "
                                f"{exc}") from exc
            except ValueError as exc:
                raise SpecError(f"{where}.noise.backend: {exc}") from exc


def check_train_wrappers(spec: SweepSpec) -> None:
    """Build each agent's training wrappers on each of its envs, before any run starts.

    Catches what needs the env: a ``target_action`` outside its action space, trigger
    features out of range, observation poisoning or adversarial training of a non-Box
    observation space, a baseline given training wrappers.

    Raises:
        SpecError: ``file:line: agents[i].train_wrappers: ...`` with the wrapper's message.
    """
    for i, agent in enumerate(spec.agents):
        if not agent.train_wrappers and not agent.adversarial_training:
            continue
        key = "train_wrappers" if agent.train_wrappers else "adversarial_training"
        where = f"{spec.path}:{agent.line}: agents[{i}].{key}"
        if is_baseline(agent.name):
            raise SpecError(f"{where}: {agent.name!r} is a baseline; baselines do not train")
        need = get_agent(agent.name).action_need
        adapter = dict(agent.kwargs.get("adapter") or {})
        for env in spec.envs:
            if not agent.runs_on(env.label):
                continue
            if registry.is_marl_env(env.id):
                raise SpecError(f"{where}: {env.label} is multi-agent; training wrappers and "
                                f"adversarial training wrap single-agent envs (restrict the "
                                f"agent with `envs:`)")

            def one(env: Any = env, need: str = need, adapter: dict = adapter) -> gym.Env:
                made = registry.make_env(env.id, env.kwargs, env.max_episode_steps)
                return adapt_action_space(made, need, **adapter)[0]

            try:
                probe = gym.vector.SyncVectorEnv([one])
            except Exception:  # an adapter that does not apply: the run says so
                continue
            try:
                attack = None
                if agent.adversarial_training:
                    space = probe.single_observation_space
                    if not isinstance(space, gym.spaces.Box):
                        raise ValueError(f"adversarial training needs a Box observation "
                                         f"space, {env.label} has {space}")
                    attack = robustness.AdversarialTraining(agent.adversarial_training,
                                                            space.low, space.high, seed=0)
                wrapped = registry.wrap_training(probe, agent.train_wrappers, attack, seed=0)
                wrapped.reset(seed=0)
            except (ValueError, TypeError) as exc:
                raise SpecError(f"{where}: on {env.label}: {exc}") from exc
            finally:
                probe.close()


def agents_root(store: BaseStore, agents_dir: str | Path | None = None) -> Path | None:
    """Where a sweep's trained agents are saved: ``agents_dir``, else beside a SQLite store.

    ``results/x.db`` -> ``results/x-agents/``; an in-memory store has none (``None``: agents
    are not saved, and a rerun that adds conditions trains them again).
    """
    if agents_dir is not None:
        return Path(agents_dir)
    if isinstance(store, SQLiteStore):
        return store.path.with_name(f"{store.path.stem}-agents")
    return None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "_"


def _agent_dir(root: Path | None, run: RunSpec, run_id: str) -> str | None:
    if root is None or is_baseline(run.agent.name):
        return None
    return str(root / _slug(run.sweep) / _slug(run.env.label) / _slug(run.agent.label)
               / f"seed{run.seed}-{run_id[:10]}")


def _missing_conditions(db: BaseStore, run_id: str, run: RunSpec) -> tuple[Any, ...]:
    """The run's conditions without a done result of the same knobs in the store."""
    stored = {c.name: c for c in db.get_conditions(run_id)}
    return tuple(c for c in robustness.conditions_for(run)
                 if not (c.name in stored and stored[c.name].done
                         and stored[c.name].config_hash == c.config_hash))


def _known_not_applicable(run: RunSpec, missing: Sequence[Any]) -> tuple[ConditionResult, ...]:
    """Results the driver knows without the agent: a baseline's, a classical agent's executor."""
    if is_baseline(run.agent.name):
        return robustness.not_applicable_results(missing, robustness.BASELINE)
    if get_agent(run.agent.name).family in ("quantum", "hybrid"):
        return ()
    return robustness.not_applicable_results([c for c in missing if c.kind == "executor"],
                                             robustness.CLASSICAL_EXECUTOR)


def _failed_conditions(task: robustness.ConditionTask, why: str) -> tuple[ConditionResult, ...]:
    return tuple(ConditionResult(name=c.name, config_hash=c.config_hash, kind=c.kind,
                                 status=FAILED, reason=why, config=c.config)
                 for c in task.conditions)


def run_sweep(spec: SweepSpec, *, store: BaseStore | str | None = None,
              executor: Any = None, progress: bool | TextIO = True,
              check: bool = True, rerun: str | None = None,
              version: str | None = None, lease_s: float = LEASE_S,
              agents_dir: str | Path | None = None) -> SweepSummary:
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
            :func:`~qdrl_bench.provenance.code_version`). When given, it is also recorded on
            the results this call writes, in place of the executing process's own.
        lease_s: Seconds a claimed run stays this driver's without renewal.
        agents_dir: Where trained agents are saved (default: :func:`agents_root`).

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
    if rerun is not None and rerun not in RERUN_MODES:
        raise ValueError(f"rerun must be one of {list(RERUN_MODES)} (or None), got {rerun!r}")
    t0 = time.perf_counter()
    current = version if version is not None else code_version()
    if check:
        registry.check_sweep_names(spec)
        check_agent_kwargs(spec)
        check_env_kwargs(spec)
        check_conditions(spec)
        check_train_wrappers(spec)
    owns_store = not isinstance(store, BaseStore)
    db = get_store(store if store is not None else spec.store)
    root = agents_root(db, agents_dir)
    runs = expand_runs(spec, baselines_of=registry.baselines_for,
                       timesteps_of=registry.default_timesteps)
    summary = SweepSummary(sweep=spec.name, total=len(runs))
    todo: collections.deque[tuple[RunSpec, str]] = collections.deque()
    tasks: collections.deque[tuple[robustness.ConditionTask, str]] = collections.deque()
    redo: set[str] = set()  # done runs redone: never set running, replaced only when done
    try:
        for run in runs:
            rec = db.ensure_run(run_key(run))
            run = dataclasses.replace(run, agent_dir=_agent_dir(root, run, rec.run_id))
            if rec.status not in DONE_STATUSES:
                todo.append((run, rec.run_id))
            elif rerun == "all" or (rerun == "stale" and is_stale(rec, current)):
                todo.append((run, rec.run_id))
                redo.add(rec.run_id)
            else:
                missing = _missing_conditions(db, rec.run_id, run) \
                    if rec.status == FINISHED else ()
                known = _known_not_applicable(run, missing)
                if known:
                    db.record_conditions(rec.run_id, known)
                    summary.count_conditions(run, known)
                    names = {c.name for c in known}
                    missing = tuple(c for c in missing if c.name not in names)
                if missing and robustness.has_saved_agent(run.agent_dir):
                    assert run.agent_dir is not None
                    tasks.append((robustness.ConditionTask(run, missing, run.agent_dir),
                                  rec.run_id))
                    summary.from_saved += 1
                elif missing:  # no saved agent (an older version's run): train it again
                    todo.append((run, rec.run_id))
                    redo.add(rec.run_id)
                    summary.retrained += 1
                    continue
                summary.skipped += 1
                summary.stale += is_stale(rec, current)
    except BaseException:
        if owns_store:
            db.close()
        raise
    summary.redo = len(redo)
    stream = sys.stderr if progress is True else (progress or None)
    bar = Progress(len(todo) + len(tasks), sum(r.timesteps for r, _ in todo), spec.name,
                   stream=stream)  # type: ignore[arg-type]
    owns_executor = executor is None
    if executor is None and (todo or tasks):
        executor = ex.make_executor(spec.executor)
    in_flight: dict[Any, tuple[RunSpec, str]] = {}
    in_flight_tasks: dict[Any, tuple[robustness.ConditionTask, str]] = {}
    started: list[str] = []  # every run this invocation set running (Ctrl-C may land anywhere)
    owner = new_owner()
    claimed: list[str] = []
    heart = _Heartbeat(db, owner, lease_s / 4) if todo else None
    try:
        if todo or tasks:
            executor.start(bar.step)
        while todo or tasks or in_flight or in_flight_tasks:
            while tasks and len(in_flight) + len(in_flight_tasks) < executor.slots:
                task, run_id = tasks.popleft()
                in_flight_tasks[executor.submit(task)] = (task, run_id)
            while todo and len(in_flight) + len(in_flight_tasks) < executor.slots:
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
                if handle in in_flight_tasks:
                    task, run_id = in_flight_tasks.pop(handle)
                    if isinstance(result, RunResult):  # the worker died
                        result = _failed_conditions(task, result.reason or "worker failed")
                    if version is not None:
                        result = [dataclasses.replace(c, code_version=version) for c in result]
                    with contextlib.suppress(ValueError):  # no longer finished: a redo's
                        db.record_conditions(run_id, result)
                        summary.count_conditions(task.run, result)
                    bar.task_done(f"{task.run.name} (conditions)",
                                  "conditions " + ", ".join(sorted({c.status for c in result})))
                    continue
                run, run_id = in_flight.pop(handle)
                if heart is not None:
                    heart.discard(run_id)
                if version is not None:
                    result = dataclasses.replace(result, code_version=version, conditions=tuple(
                        dataclasses.replace(c, code_version=version)
                        for c in result.conditions))
                stored = False
                if run_id not in redo:
                    stored = db.record_result(run_id, result)
                elif result.status in DONE_STATUSES:
                    db.replace_result(run_id, result)
                    summary.replaced += 1
                    stored = True
                else:
                    summary.kept.append((run.name, result.status))
                if run.agent_dir is not None:
                    robustness.promote_agent(run.agent_dir,
                                             keep=stored and result.status == FINISHED)
                if stored:
                    summary.count_conditions(run, result.conditions)
                summary.statuses[result.status] = summary.statuses.get(result.status, 0) + 1
                if result.status == FAILED:
                    summary.failures.append((run.name, result.reason or ""))
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
