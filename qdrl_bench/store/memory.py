"""The in-memory store: a dict guarded by a lock, for tests and notebooks (one process)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import replace

from qdrl_bench.store.contract import (
    DONE_STATUSES,
    FINISHED,
    INTERRUPTED,
    PENDING,
    RUNNING,
    BaseStore,
    ConditionResult,
    EvalPoint,
    RunKey,
    RunRecord,
    RunResult,
    check_recordable,
    check_replacement,
    lease_is_live,
    require_run,
)

__all__ = ["InMemoryStore"]


class InMemoryStore(BaseStore):
    """A store in a dict guarded by a lock; lives as long as the object (one process only)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[str, RunRecord] = {}
        self._curves: dict[str, tuple[EvalPoint, ...]] = {}
        self._conditions: dict[str, dict[str, ConditionResult]] = {}

    def ensure_run(self, key: RunKey) -> RunRecord:  # noqa: D102
        with self._lock:
            run_id = key.run_id
            if run_id not in self._runs:
                self._runs[run_id] = RunRecord(run_id=run_id, key=key, status=PENDING,
                                               created_at=time.time())
            return self._runs[run_id]

    def mark_running(self, run_id: str) -> bool:  # noqa: D102
        with self._lock:
            rec = require_run(self._runs.get(run_id), run_id)
            if rec.status in DONE_STATUSES:
                return False
            self._runs[run_id] = replace(rec, status=RUNNING, attempts=rec.attempts + 1,
                                         started_at=time.time(), finished_at=None,
                                         owner=None, heartbeat_at=None)
            return True

    def claim(self, run_id: str, owner: str, *, lease_s: float,  # noqa: D102
              redo: bool = False) -> bool:
        with self._lock:
            rec = require_run(self._runs.get(run_id), run_id)
            now = time.time()
            if (rec.status in DONE_STATUSES) != redo or lease_is_live(
                    rec.owner, rec.heartbeat_at, owner, lease_s, now):
                return False
            if redo:
                self._runs[run_id] = replace(rec, owner=owner, heartbeat_at=now)
            else:
                self._runs[run_id] = replace(rec, status=RUNNING, attempts=rec.attempts + 1,
                                             started_at=now, finished_at=None, owner=owner,
                                             heartbeat_at=now)
            return True

    def renew(self, run_ids: Iterable[str], owner: str) -> list[str]:  # noqa: D102
        lost = []
        with self._lock:
            for run_id in run_ids:
                rec = self._runs.get(run_id)
                if rec is None or rec.owner != owner:
                    lost.append(run_id)
                else:
                    self._runs[run_id] = replace(rec, heartbeat_at=time.time())
        return lost

    def release(self, run_ids: Iterable[str], owner: str) -> None:  # noqa: D102
        with self._lock:
            for run_id in run_ids:
                rec = self._runs.get(run_id)
                if rec is not None and rec.owner == owner:
                    self._runs[run_id] = replace(rec, owner=None, heartbeat_at=None)

    def record_result(self, run_id: str, result: RunResult) -> bool:  # noqa: D102
        check_recordable(result)
        with self._lock:
            rec = require_run(self._runs.get(run_id), run_id)
            if rec.status in DONE_STATUSES:
                return False
            self._runs[run_id] = replace(rec, status=result.status, finished_at=time.time(),
                                         result=replace(result, curve=(), conditions=()),
                                         owner=None, heartbeat_at=None)
            self._curves[run_id] = tuple(sorted(result.curve, key=lambda p: p.step))
            self._conditions[run_id] = {c.name: c for c in result.conditions}
            return True

    def replace_result(self, run_id: str, result: RunResult) -> None:  # noqa: D102
        check_replacement(result)
        with self._lock:
            rec = require_run(self._runs.get(run_id), run_id)
            self._runs[run_id] = replace(rec, status=result.status, attempts=rec.attempts + 1,
                                         finished_at=time.time(),
                                         result=replace(result, curve=(), conditions=()),
                                         owner=None, heartbeat_at=None)
            self._curves[run_id] = tuple(sorted(result.curve, key=lambda p: p.step))
            self._conditions[run_id] = {c.name: c for c in result.conditions}

    def mark_interrupted(self, run_ids: Iterable[str]) -> int:  # noqa: D102
        n = 0
        with self._lock:
            for run_id in run_ids:
                rec = self._runs.get(run_id)
                if rec is not None and rec.status == RUNNING:
                    self._runs[run_id] = replace(rec, status=INTERRUPTED, owner=None,
                                                 heartbeat_at=None)
                    n += 1
        return n

    def get_run(self, run_id: str) -> RunRecord | None:  # noqa: D102
        with self._lock:
            return self._runs.get(run_id)

    def list_runs(self, sweep: str | None = None) -> list[RunRecord]:  # noqa: D102
        with self._lock:
            return [r for r in self._runs.values() if sweep is None or r.key.sweep == sweep]

    def get_curve(self, run_id: str) -> list[EvalPoint]:  # noqa: D102
        with self._lock:
            return list(self._curves.get(run_id, ()))

    def record_conditions(self, run_id: str,  # noqa: D102
                          results: Iterable[ConditionResult]) -> int:
        results = list(results)
        with self._lock:
            rec = require_run(self._runs.get(run_id), run_id)
            if rec.status != FINISHED:
                raise ValueError(f"run {run_id!r} is {rec.status}: conditions are evaluated on "
                                 "finished runs only")
            held = self._conditions.setdefault(run_id, {})
            n = 0
            for c in results:
                old = held.get(c.name)
                if old is not None and old.done and old.config_hash == c.config_hash:
                    continue
                held[c.name] = c
                n += 1
            return n

    def get_conditions(self, run_id: str) -> list[ConditionResult]:  # noqa: D102
        with self._lock:
            return list(self._conditions.get(run_id, {}).values())
