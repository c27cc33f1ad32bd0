"""The results store contract: run identity, records and results, statuses, the interface.

A *run* is one agent trained and evaluated on one environment with one seed. Its identity is
``(sweep, env, agent, seed)`` plus a hash of its configuration (:class:`RunKey`); the run id is
derived from that identity, so every backend gives the same run the same id, and changing a
run's configuration makes a new run (the old one is kept).

A finished run also holds the results of the robustness conditions it was evaluated under
(:class:`ConditionResult`, one per condition name, beside its clean score): written with the
run's result, or later (a condition added to the sweep, evaluated from the saved agent) with
:meth:`BaseStore.record_conditions`.

:class:`BaseStore` is the interface every backend implements (its docstring is the contract the
store tests check); the lease helpers here are shared by the backends.
"""

from __future__ import annotations

import abc
import hashlib
import os
import socket
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DONE_STATUSES",
    "FAILED",
    "FINISHED",
    "INTERRUPTED",
    "LEGACY_STATUSES",
    "NOT_APPLICABLE",
    "PENDING",
    "RESULT_STATUSES",
    "RUNNING",
    "STATUSES",
    "UNAVAILABLE",
    "BaseStore",
    "ConditionResult",
    "EvalPoint",
    "RunKey",
    "RunRecord",
    "RunResult",
    "StoreError",
    "check_recordable",
    "check_replacement",
    "lease_is_live",
    "new_owner",
    "require_run",
]

PENDING = "pending"
RUNNING = "running"
FINISHED = "finished"
FAILED = "failed"
INTERRUPTED = "interrupted"
NOT_APPLICABLE = "not_applicable"
STATUSES = (PENDING, RUNNING, FINISHED, FAILED, INTERRUPTED, NOT_APPLICABLE)
"""Every status a run takes."""
DONE_STATUSES = frozenset({FINISHED, NOT_APPLICABLE})
"""Statuses a rerun of the sweep skips; every other status is redone."""
RESULT_STATUSES = frozenset({FINISHED, FAILED, NOT_APPLICABLE})
"""Statuses of a result (what executing a run produces and the store writes)."""
UNAVAILABLE = "unavailable"
"""A status older versions wrote when an env's or agent's code did not import. Stores keep
such rows and read them back as they are (with their reason); they are not done, so a rerun
redoes them; nothing writes this status now."""
LEGACY_STATUSES = frozenset({UNAVAILABLE})
"""Result statuses that are only read (from stores older versions wrote), never written."""


class StoreError(RuntimeError):
    """The store cannot be opened or used (unreadable, corrupt, not a qdrl store, ...)."""


@dataclass(frozen=True)
class RunKey:
    """The identity of a run (see the module docstring).

    Attributes:
        sweep: Sweep name.
        env: Environment label (the id unless the sweep gave a label).
        agent: Agent label (the registry name unless the sweep gave a label).
        seed: Run seed.
        config_hash: Hash of the run's full configuration.
        env_id: Gymnasium id (informative, not part of the identity beyond ``config_hash``).
        agent_name: Registry name (informative likewise).
        config: The configuration the hash was taken over (stored as JSON).
    """

    sweep: str
    env: str
    agent: str
    seed: int
    config_hash: str
    env_id: str = ""
    agent_name: str = ""
    config: Mapping[str, Any] = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        """20 hex digits derived from the identity; equal across backends."""
        text = "\x1f".join([self.sweep, self.env, self.agent, str(self.seed), self.config_hash])
        return hashlib.sha256(text.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class EvalPoint:
    """One evaluation of a run: after ``step`` training steps, ``returns`` of K episodes."""

    step: int
    mean: float
    std: float
    returns: tuple[float, ...] = ()


@dataclass(frozen=True)
class ConditionResult:
    """A finished run's evaluation under one robustness condition.

    Attributes:
        name: The condition's name (unique within the sweep).
        config_hash: Hash of the condition's kind and knobs: a stored result of another hash
            is stale (the sweep changed the condition) and is evaluated again.
        kind: ``executor``, ``obs_noise`` or ``adversarial``.
        config: The condition's kind and knobs (as JSON), with ``series``, ``axis`` and
            ``strength`` for the report.
        status: ``finished``, ``not_applicable`` (a classical agent under an ``executor``
            condition, a baseline, an observation space that is not a Box) or ``failed``.
        reason: Why it is not ``finished``.
        mean: Mean return over the evaluation episodes (the clean evaluation's episodes).
        std: Its standard deviation.
        returns: The episodes' returns.
        metrics: Means of the env's numeric ``info`` entries (``eval/...``) and the condition's
            own measures (``attack/kl``, ``attack/value_drop``, ...).
        wall_s: Seconds the evaluation took.
        code_version: Fingerprint of the code that produced it.
    """

    name: str
    config_hash: str
    kind: str
    status: str
    config: Mapping[str, Any] = field(default_factory=dict)
    reason: str | None = None
    mean: float | None = None
    std: float | None = None
    returns: tuple[float, ...] = ()
    metrics: Mapping[str, float] = field(default_factory=dict)
    wall_s: float | None = None
    code_version: str | None = None

    def __post_init__(self) -> None:
        if self.status not in RESULT_STATUSES:
            raise ValueError(f"ConditionResult.status must be one of {sorted(RESULT_STATUSES)}, "
                             f"got {self.status!r}")
        if self.status == FINISHED and self.mean is None:
            raise ValueError("a finished ConditionResult needs a mean")

    @property
    def done(self) -> bool:
        """Whether a rerun keeps it (finished or not applicable) rather than redoing it."""
        return self.status in DONE_STATUSES


@dataclass(frozen=True)
class RunResult:
    """What executing a run produced; written to the store in one transaction.

    Attributes:
        status: ``finished``, ``failed`` or ``not_applicable`` (or, read from a store an
            older version wrote, ``unavailable``).
        reason: Why it is not ``finished`` (error text, the adapter's or qubit cap's message).
        adapter: The action-space adapter used (``None``: none needed).
        wall_s: Wall-clock seconds of the run (training and evaluation).
        params_quantum: Trainable quantum parameters (0 for classical agents).
        params_classical: Trainable classical parameters.
        final_score: Mean return of the final evaluation.
        final_std: Its standard deviation over episodes.
        metrics: Final-evaluation means of the env's numeric ``info`` entries (physics).
        curve: The evaluation curve.
        code_version: Fingerprint of the code that produced the result (see
            :func:`qdrl_bench.provenance.code_version`); recorded, not part of the run's
            identity.
        conditions: Its evaluations under the sweep's robustness conditions, written with it.
    """

    status: str
    reason: str | None = None
    adapter: str | None = None
    wall_s: float | None = None
    params_quantum: int | None = None
    params_classical: int | None = None
    final_score: float | None = None
    final_std: float | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    curve: tuple[EvalPoint, ...] = ()
    code_version: str | None = None
    conditions: tuple[ConditionResult, ...] = ()

    def __post_init__(self) -> None:
        if self.status not in RESULT_STATUSES and self.status not in LEGACY_STATUSES:
            raise ValueError(f"RunResult.status must be one of {sorted(RESULT_STATUSES)}, "
                             f"got {self.status!r}")
        if self.status == FINISHED and self.final_score is None:
            raise ValueError("a finished RunResult needs a final_score")


@dataclass(frozen=True)
class RunRecord:
    """A run as stored: its key, status, timings and result (without the curve)."""

    run_id: str
    key: RunKey
    status: str
    attempts: int = 0
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    result: RunResult | None = None
    owner: str | None = None
    heartbeat_at: float | None = None


class BaseStore(abc.ABC):
    """The results store contract.

    Every backend guarantees:

    1. **Identity.** :meth:`ensure_run` is idempotent: one row per :class:`RunKey` (run id),
       however many times or from how many writers it is called; it never changes an existing
       row.
    2. **Atomic results.** :meth:`record_result` writes the status, scores, parameter counts,
       metrics and the whole evaluation curve at once: a reader sees all of it or none of it,
       including after a crash (SIGKILL) of the writing process.
    3. **Finished is final.** Once a run is ``finished`` or ``not_applicable`` (the
       :data:`DONE_STATUSES`), only :meth:`replace_result` changes it; a later
       :meth:`record_result` or :meth:`mark_running` on it returns ``False`` and writes nothing.
    4. **A replaced result is never lost halfway.** :meth:`replace_result` swaps a run's
       result and curve for a *done* result in one transaction: a reader (and a crash) sees
       the old result or the new one, never neither, and a done run never goes back to a
       not-done status. The runner redoes a done run (``qdrl-bench run --rerun``) without
       touching its row and calls this only once the new run is done, so an interrupted or
       failed redo leaves the old result as it was.
    5. **Nothing lost.** Concurrent writers (threads of one process for the in-memory store;
       threads and processes for SQLite) never lose each other's writes.
    6. **Never damage what is there.** Opening a store that exists but cannot be read, is
       corrupt, or is not a qdrl store raises :class:`StoreError` without writing to it.
    7. **One executor per run.** :meth:`claim` is atomic: of several processes claiming one
       run, one gets it; the others are refused while its owner's lease is live (renewed by
       :meth:`renew` within ``lease_s`` seconds, and the owner's process alive when it is on
       this host). A lease that lapsed, or whose process is gone, is taken over. Recording,
       replacing or interrupting a run releases its lease.

    8. **Conditions go with their run.** :meth:`record_result` and :meth:`replace_result`
       write ``result.conditions`` in the same transaction (a replaced result's old
       conditions are gone); :meth:`record_conditions` adds or updates condition results of a
       finished run later, atomically, never overwriting a done one of the same
       ``config_hash`` (a redo's or another driver's), and :meth:`get_conditions` reads them.

    Statuses move ``pending -> running -> finished | failed | not_applicable``;
    :meth:`mark_interrupted` turns ``running`` into ``interrupted``; every status outside
    :data:`DONE_STATUSES` may go back to ``running`` (a rerun redoes it). A row of a
    :data:`LEGACY_STATUSES` status (``unavailable``, written by older versions) is read back as
    it is and redone like a failed run; writing such a result raises ``ValueError``.
    """

    @abc.abstractmethod
    def ensure_run(self, key: RunKey) -> RunRecord:
        """Create the run as ``pending`` unless it exists; return its record."""

    @abc.abstractmethod
    def mark_running(self, run_id: str) -> bool:
        """Set a not-done run to ``running`` (attempts + 1). Return ``False`` if it is done.

        Raises:
            KeyError: If the run does not exist.
        """

    @abc.abstractmethod
    def claim(self, run_id: str, owner: str, *, lease_s: float, redo: bool = False) -> bool:
        """Take the run for ``owner`` unless it is done or another owner holds a live lease.

        A claim sets the run ``running`` (attempts + 1) with ``owner`` and a fresh heartbeat;
        with ``redo`` (a done run being recomputed) it takes only the lease and the run keeps
        its status and result until :meth:`replace_result`. Returns whether it was taken.

        Raises:
            KeyError: If the run does not exist.
        """

    @abc.abstractmethod
    def renew(self, run_ids: Iterable[str], owner: str) -> list[str]:
        """Refresh the heartbeat of the runs ``owner`` holds; return those it no longer holds."""

    @abc.abstractmethod
    def release(self, run_ids: Iterable[str], owner: str) -> None:
        """Drop ``owner``'s leases on ``run_ids`` (a redo that did not finish), nothing else."""

    @abc.abstractmethod
    def record_result(self, run_id: str, result: RunResult) -> bool:
        """Write a run's result atomically. Return ``False`` (writing nothing) if it is done.

        Raises:
            KeyError: If the run does not exist.
            ValueError: If ``result.status`` is a :data:`LEGACY_STATUSES` one (nothing is
                written).
        """

    @abc.abstractmethod
    def replace_result(self, run_id: str, result: RunResult) -> None:
        """Write a done result atomically over whatever the run holds, done or not.

        The run's status becomes ``result.status``, its attempts grow by one, and its scores,
        metrics, code version and whole curve are those of ``result`` (the old curve is gone).

        Raises:
            KeyError: If the run does not exist.
            ValueError: If ``result.status`` is not in :data:`DONE_STATUSES` (a failed redo
                must not replace a done result; nothing is written).
        """

    @abc.abstractmethod
    def mark_interrupted(self, run_ids: Iterable[str]) -> int:
        """Set those of ``run_ids`` that are ``running`` to ``interrupted``; return how many."""

    @abc.abstractmethod
    def get_run(self, run_id: str) -> RunRecord | None:
        """Return the run, or ``None``."""

    @abc.abstractmethod
    def list_runs(self, sweep: str | None = None) -> list[RunRecord]:
        """Return the runs (of one sweep, or all), ordered by creation."""

    @abc.abstractmethod
    def get_curve(self, run_id: str) -> list[EvalPoint]:
        """Return the evaluation curve of a run, ordered by step (empty if none)."""

    @abc.abstractmethod
    def record_conditions(self, run_id: str, results: Iterable[ConditionResult]) -> int:
        """Write condition results of a finished run atomically; return how many were written.

        A stored result of the same name is replaced unless it is done (finished or not
        applicable) with the same ``config_hash``: that one is final and is kept.

        Raises:
            KeyError: If the run does not exist.
            ValueError: If the run is not finished (nothing is written).
        """

    @abc.abstractmethod
    def get_conditions(self, run_id: str) -> list[ConditionResult]:
        """Return the run's condition results, in the order they were first written."""

    def sweeps(self) -> list[str]:
        """Return the sweep names present, in order of first appearance."""
        return list(dict.fromkeys(r.key.sweep for r in self.list_runs()))

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (no-op by default)."""

    def __enter__(self) -> BaseStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_replacement(result: RunResult) -> None:
    """Refuse (``ValueError``) a result :meth:`BaseStore.replace_result` must not write."""
    if result.status not in DONE_STATUSES:
        raise ValueError(f"replace_result needs a done result ({sorted(DONE_STATUSES)}), got "
                         f"{result.status!r}; a redo that did not finish keeps the old result")


def check_recordable(result: RunResult) -> None:
    """Refuse (``ValueError``) a result :meth:`BaseStore.record_result` must not write."""
    if result.status in LEGACY_STATUSES:
        raise ValueError(f"a result of status {result.status!r} is only read from stores older "
                         f"versions wrote; a run's result is one of {sorted(RESULT_STATUSES)}")


def require_run(record: RunRecord | None, run_id: str) -> RunRecord:
    """Return ``record``; ``KeyError`` naming ``run_id`` when there is none."""
    if record is None:
        raise KeyError(f"no run with id {run_id!r} in the store")
    return record


def new_owner() -> str:
    """A lease owner naming this process: ``host:pid:nonce`` (unique per call)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _process_gone(owner: str) -> bool:
    """Whether ``owner`` (of :func:`new_owner`) names a process of this host that has exited."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # e.g. EPERM: a process of another user has that pid
        return False
    return False


def lease_is_live(holder: str | None, heartbeat_at: float | None, me: str, lease_s: float,
                  now: float) -> bool:
    """Whether another owner's lease bars ``me``: held, renewed within ``lease_s``, alive."""
    if holder is None or holder == me or heartbeat_at is None:
        return False
    if now - heartbeat_at > lease_s:
        return False
    return not _process_gone(holder)
