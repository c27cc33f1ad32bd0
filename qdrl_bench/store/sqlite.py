"""The SQLite store: one file (stdlib ``sqlite3``) in WAL mode, safe for several processes.

The schema is versioned (``qdrl_meta.schema``); a store of an older version is upgraded in
place by :data:`_MIGRATIONS`, and read-only opens read the versions of :data:`_READABLE` as
they are (a store older than schema 4 has no ``conditions`` table: its runs read back with
no condition results). There is no ``CHECK`` on ``runs.status``: rows of a status only older
versions wrote (``unavailable``) are read back as they are.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from qdrl_bench.store.contract import (
    DONE_STATUSES,
    FINISHED,
    INTERRUPTED,
    LEGACY_STATUSES,
    PENDING,
    RESULT_STATUSES,
    RUNNING,
    BaseStore,
    ConditionResult,
    EvalPoint,
    RunKey,
    RunRecord,
    RunResult,
    StoreError,
    check_recordable,
    check_replacement,
    lease_is_live,
)

__all__ = ["SCHEMA_VERSION", "SQLiteStore"]

SCHEMA_VERSION = "4"
"""The schema this version writes (and upgrades older stores to)."""
_READABLE = ("2", "3", "4")  # schemas a read-only store reads as they are (2: no leases;
#                              2 and 3: no condition results)
_CONDITIONS_TABLE = """CREATE TABLE IF NOT EXISTS conditions (
    run_id TEXT NOT NULL REFERENCES runs (run_id),
    name TEXT NOT NULL, seq INTEGER NOT NULL,
    config_hash TEXT NOT NULL, kind TEXT NOT NULL, config TEXT NOT NULL,
    status TEXT NOT NULL, reason TEXT, mean REAL, std REAL, returns TEXT NOT NULL,
    metrics TEXT NOT NULL, wall_s REAL, code_version TEXT, finished_at REAL NOT NULL,
    PRIMARY KEY (run_id, name)
)"""
# Migrations from an older schema version: the statements that bring it to the next one.
_MIGRATIONS: dict[str, tuple[str, list[str]]] = {
    "1": ("2", ["ALTER TABLE runs ADD COLUMN code_version TEXT"]),
    "2": ("3", ["ALTER TABLE runs ADD COLUMN owner TEXT",
                "ALTER TABLE runs ADD COLUMN heartbeat_at REAL"]),
    "3": ("4", [_CONDITIONS_TABLE]),
}
_SCHEMA = """
CREATE TABLE IF NOT EXISTS qdrl_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    sweep TEXT NOT NULL, env TEXT NOT NULL, agent TEXT NOT NULL, seed INTEGER NOT NULL,
    config_hash TEXT NOT NULL, env_id TEXT NOT NULL, agent_name TEXT NOT NULL,
    config TEXT NOT NULL,
    status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL, started_at REAL, finished_at REAL,
    reason TEXT, adapter TEXT, wall_s REAL, params_quantum INTEGER, params_classical INTEGER,
    final_score REAL, final_std REAL, metrics TEXT, code_version TEXT,
    owner TEXT, heartbeat_at REAL,
    UNIQUE (sweep, env, agent, seed, config_hash)
);
CREATE INDEX IF NOT EXISTS runs_sweep ON runs (sweep, seq);
CREATE TABLE IF NOT EXISTS evals (
    run_id TEXT NOT NULL REFERENCES runs (run_id),
    step INTEGER NOT NULL, mean REAL NOT NULL, std REAL NOT NULL, returns TEXT NOT NULL,
    PRIMARY KEY (run_id, step)
);
""" + _CONDITIONS_TABLE + ";\n"
_SQLITE_HEADER = b"SQLite format 3\x00"
_COLUMNS: dict[str, set[str]] = {}  # table -> its columns in _SCHEMA (filled on first use)


def _added_since(version: str | None) -> frozenset[str]:
    """Columns the migrations from ``version`` on add (``ADD COLUMN <name>``)."""
    added: set[str] = set()
    while version in _MIGRATIONS:
        version, statements = _MIGRATIONS[version]
        added |= {st.split("ADD COLUMN", 1)[1].split()[0] for st in statements
                  if "ADD COLUMN" in st}
    return frozenset(added)


def _schema_columns() -> dict[str, set[str]]:
    if not _COLUMNS:
        mem = sqlite3.connect(":memory:")
        mem.executescript(_SCHEMA)
        for (table,) in mem.execute("SELECT name FROM sqlite_master WHERE type='table'"):
            _COLUMNS[table] = {r[1] for r in mem.execute(f"PRAGMA table_info({table})")}
        mem.close()
    return _COLUMNS


def _num(x: float | None) -> float | None:
    """SQLite stores NaN as NULL; keep inf/NaN out of the file explicitly."""
    if x is None or not math.isfinite(x):
        return None
    return float(x)


class SQLiteStore(BaseStore):
    """A store in one SQLite file (stdlib ``sqlite3``), safe for several processes.

    The file is opened in WAL mode; every write is one ``BEGIN IMMEDIATE`` transaction (writers
    wait up to ``timeout`` seconds for each other). Opening checks, before writing anything,
    that the file is a SQLite database, passes ``PRAGMA integrity_check``, is empty or a qdrl
    store, and that its qdrl tables have the schema's columns; a store of an older schema
    version is upgraded in place, in one transaction, before its journal mode is touched, so a
    file refused is a file unchanged.

    ``read_only=True`` (what reports use) opens an existing store without writing to it (on a
    read-only file or folder too): nothing is created, upgraded or switched, and every write
    method raises :class:`StoreError`. A store of an older schema must be opened writable once.

    Args:
        path: The database file; created (with its parent folder) if missing, unless
            ``read_only``.
        timeout: Seconds a writer waits for the lock.
        read_only: Open for reading only.

    Raises:
        StoreError: If the file cannot be opened or read, is not SQLite, is corrupt, holds
            another application's tables or malformed qdrl tables, or (``read_only``) is
            missing or of an older schema. The file is left untouched.
    """

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 60.0,
                 read_only: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self._cols = self._COLS
        self._has_conditions = True
        self._migrate_from: str | None = None
        self._lock = threading.Lock()
        exists = self.path.exists()
        if exists:
            self._check_header()
        elif read_only:
            raise StoreError(f"no store at {self.path}")
        else:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the folder of store {self.path}: {exc}") from exc
        self._conn = self._connect("ro" if read_only else "rw" if exists else "rwc", timeout)
        try:
            self._open(exists)
        except sqlite3.Error as exc:
            self._conn.close()
            raise StoreError(f"store {self.path} is unreadable or corrupt: {exc}") from exc
        except StoreError:
            self._conn.close()
            raise

    def _connect(self, mode: str, timeout: float) -> sqlite3.Connection:
        try:
            # Percent-encoded: a '#', '?' or '%xx' in the path would otherwise end or rewrite
            # the URI's path, and SQLite would open another file than the one checked above.
            uri = f"file:{urllib.parse.quote(str(self.path.resolve()))}?mode={mode}"
            return sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None,
                                   check_same_thread=False)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open store {self.path}: {exc}") from exc

    def _check_header(self) -> None:
        if self.path.is_dir():
            raise StoreError(f"store path {self.path} is a directory, not a SQLite file")
        try:
            with self.path.open("rb") as fh:
                head = fh.read(len(_SQLITE_HEADER))
        except OSError as exc:
            raise StoreError(f"cannot read store {self.path}: {exc}") from exc
        if head and head != _SQLITE_HEADER:
            raise StoreError(f"{self.path} is not a SQLite database (bad header); refusing to "
                             "use or overwrite it")

    def _open(self, exists: bool) -> None:
        c = self._conn
        if exists:
            self._check_contents()
        if self.read_only:
            if self._migrate_from not in _READABLE:
                raise StoreError(f"store {self.path} has schema {self._migrate_from!r}; open "
                                 "it writable once (qdrl-bench run) to upgrade it")
            if self._migrate_from == "2":
                self._cols = self._COLS.replace("owner, heartbeat_at", "NULL, NULL")
            self._has_conditions = self._migrate_from not in ("2", "3")
            return
        if not exists:  # nothing to protect: WAL first, so the schema is written in WAL
            self._set_wal()
        with self._tx():
            version = self._migrate_from
            while version in _MIGRATIONS:  # upgrade in place, in the same transaction
                version, statements = _MIGRATIONS[version]
                for statement in statements:
                    c.execute(statement)
                c.execute("UPDATE qdrl_meta SET value=? WHERE key='schema'", (version,))
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    c.execute(statement)
            c.execute("INSERT OR IGNORE INTO qdrl_meta (key, value) VALUES ('schema', ?)",
                      (SCHEMA_VERSION,))
            self._check_columns()  # a malformed table rolls all of it back
        if exists:
            self._set_wal()
        c.execute("PRAGMA synchronous=NORMAL")
        c.execute("PRAGMA foreign_keys=ON")

    def _check_contents(self) -> None:
        """Refuse, reading only, a corrupt file, another application's or a newer schema."""
        c = self._conn
        rows = c.execute("PRAGMA integrity_check").fetchall()
        if [r[0] for r in rows] != ["ok"]:
            detail = "; ".join(str(r[0]) for r in rows[:5])
            raise StoreError(f"store {self.path} fails PRAGMA integrity_check: {detail}")
        tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if tables and "qdrl_meta" not in tables:
            raise StoreError(f"{self.path} is a SQLite database of another application "
                             f"(tables {sorted(tables)}); refusing to write to it")
        if "qdrl_meta" in tables:
            row = c.execute("SELECT value FROM qdrl_meta WHERE key='schema'").fetchone()
            version = None if row is None else str(row[0])
            seen = version
            while seen in _MIGRATIONS:
                seen = _MIGRATIONS[seen][0]
            if seen != SCHEMA_VERSION:
                raise StoreError(f"store {self.path} has schema {version!r}; this "
                                 f"version reads schema {SCHEMA_VERSION!r}")
            self._migrate_from = version
            self._check_columns(_added_since(version))
        elif self.read_only:
            raise StoreError(f"store {self.path} is empty (no qdrl tables)")

    def _check_columns(self, later: frozenset[str] = frozenset()) -> None:
        """Refuse a qdrl table without the schema's columns (but ``later``, not added yet)."""
        c = self._conn
        present = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        for table, columns in _schema_columns().items():
            if table not in present:
                continue
            have = {r[1] for r in c.execute(f"PRAGMA table_info({table})")}
            if not columns - later <= have:
                lacks = sorted(columns - later - have)
                more = f", ... ({len(lacks)} in all)" if len(lacks) > 5 else ""
                raise StoreError(f"store {self.path}: table {table} lacks the columns "
                                 f"{', '.join(lacks[:5])}{more}; refusing to use it")

    def _set_wal(self) -> None:
        mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":  # pragma: no cover - e.g. a network file system
            raise StoreError(f"store {self.path}: cannot switch to WAL mode (got {mode})")

    class _Tx:
        def __init__(self, store: SQLiteStore) -> None:
            self.store = store

        def __enter__(self) -> sqlite3.Connection:
            if self.store.read_only:
                raise StoreError(f"store {self.store.path} is open read-only")
            self.store._lock.acquire()
            try:
                self.store._conn.execute("BEGIN IMMEDIATE")
            except BaseException:
                self.store._lock.release()
                raise
            return self.store._conn

        def __exit__(self, exc_type: type | None, exc: BaseException | None,
                     tb: object) -> None:
            failed: BaseException | None = exc if isinstance(exc, sqlite3.Error) else None
            try:
                try:
                    self.store._conn.execute("ROLLBACK" if exc_type else "COMMIT")
                except sqlite3.Error as end:  # e.g. a full disk at COMMIT
                    failed = failed or end
                    if not exc_type:
                        try:
                            self.store._conn.execute("ROLLBACK")
                        except sqlite3.Error:
                            pass
            finally:
                self.store._lock.release()
            if failed is not None:  # a write the store could not make: named, one line
                raise StoreError(f"store {self.store.path}: write failed: {failed}") from failed

    def _tx(self) -> SQLiteStore._Tx:
        return SQLiteStore._Tx(self)

    def integrity_check(self) -> str:
        """Run ``PRAGMA integrity_check`` and return its first line (``"ok"`` when sound)."""
        with self._lock:
            return str(self._conn.execute("PRAGMA integrity_check").fetchone()[0])

    def close(self) -> None:  # noqa: D102
        with self._lock:
            self._conn.close()

    def ensure_run(self, key: RunKey) -> RunRecord:  # noqa: D102
        run_id = key.run_id
        with self._tx() as c:
            c.execute(
                "INSERT OR IGNORE INTO runs (run_id, seq, sweep, env, agent, seed, config_hash,"
                " env_id, agent_name, config, status, created_at) VALUES (?, (SELECT"
                " COALESCE(MAX(seq), 0) + 1 FROM runs), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, key.sweep, key.env, key.agent, key.seed, key.config_hash, key.env_id,
                 key.agent_name, json.dumps(dict(key.config), sort_keys=True), PENDING,
                 time.time()))
        rec = self.get_run(run_id)
        assert rec is not None
        return rec

    def _status(self, c: sqlite3.Connection, run_id: str) -> str:
        row = c.execute("SELECT status FROM runs WHERE run_id=?", (run_id,)).fetchone()
        if row is None:
            raise KeyError(f"no run with id {run_id!r} in the store")
        return str(row[0])

    def mark_running(self, run_id: str) -> bool:  # noqa: D102
        with self._tx() as c:
            if self._status(c, run_id) in DONE_STATUSES:
                return False
            c.execute("UPDATE runs SET status=?, attempts=attempts+1, started_at=?, "
                      "finished_at=NULL, owner=NULL, heartbeat_at=NULL WHERE run_id=?",
                      (RUNNING, time.time(), run_id))
            return True

    def claim(self, run_id: str, owner: str, *, lease_s: float,  # noqa: D102
              redo: bool = False) -> bool:
        with self._tx() as c:
            row = c.execute("SELECT status, owner, heartbeat_at FROM runs WHERE run_id=?",
                            (run_id,)).fetchone()
            if row is None:
                raise KeyError(f"no run with id {run_id!r} in the store")
            now = time.time()
            if (row[0] in DONE_STATUSES) != redo or lease_is_live(row[1], row[2], owner,
                                                                   lease_s, now):
                return False
            if redo:
                c.execute("UPDATE runs SET owner=?, heartbeat_at=? WHERE run_id=?",
                          (owner, now, run_id))
            else:
                c.execute("UPDATE runs SET status=?, attempts=attempts+1, started_at=?, "
                          "finished_at=NULL, owner=?, heartbeat_at=? WHERE run_id=?",
                          (RUNNING, now, owner, now, run_id))
            return True

    def renew(self, run_ids: Iterable[str], owner: str) -> list[str]:  # noqa: D102
        ids = list(run_ids)
        if not ids:
            return []
        with self._tx() as c:
            now = time.time()
            return [run_id for run_id in ids if not c.execute(
                "UPDATE runs SET heartbeat_at=? WHERE run_id=? AND owner=?",
                (now, run_id, owner)).rowcount]

    def release(self, run_ids: Iterable[str], owner: str) -> None:  # noqa: D102
        ids = list(run_ids)
        if ids:
            with self._tx() as c:
                c.executemany("UPDATE runs SET owner=NULL, heartbeat_at=NULL WHERE run_id=? "
                              "AND owner=?", [(run_id, owner) for run_id in ids])

    @staticmethod
    def _write_result(c: sqlite3.Connection, run_id: str, result: RunResult,
                      attempts: int) -> None:
        """Write result, curve and conditions in the caller's transaction (``attempts`` added)."""
        c.execute("DELETE FROM conditions WHERE run_id=?", (run_id,))
        for seq, cond in enumerate(result.conditions):
            SQLiteStore._write_condition(c, run_id, cond, seq)
        c.execute("DELETE FROM evals WHERE run_id=?", (run_id,))
        c.executemany(
            "INSERT INTO evals (run_id, step, mean, std, returns) VALUES (?, ?, ?, ?, ?)",
            [(run_id, int(p.step), float(p.mean), float(p.std), json.dumps(list(p.returns)))
             for p in result.curve])
        c.execute(
            "UPDATE runs SET status=?, attempts=attempts+?, finished_at=?, reason=?, adapter=?, "
            "wall_s=?, params_quantum=?, params_classical=?, final_score=?, final_std=?, "
            "metrics=?, code_version=?, owner=NULL, heartbeat_at=NULL WHERE run_id=?",
            (result.status, attempts, time.time(), result.reason, result.adapter,
             _num(result.wall_s), result.params_quantum, result.params_classical,
             _num(result.final_score), _num(result.final_std),
             json.dumps(dict(result.metrics), sort_keys=True), result.code_version, run_id))

    def record_result(self, run_id: str, result: RunResult) -> bool:  # noqa: D102
        check_recordable(result)
        with self._tx() as c:
            if self._status(c, run_id) in DONE_STATUSES:
                return False
            self._write_result(c, run_id, result, 0)
            return True

    def replace_result(self, run_id: str, result: RunResult) -> None:  # noqa: D102
        check_replacement(result)
        with self._tx() as c:
            self._status(c, run_id)  # KeyError before anything is written
            self._write_result(c, run_id, result, 1)

    def mark_interrupted(self, run_ids: Iterable[str]) -> int:  # noqa: D102
        ids = list(run_ids)
        if not ids:
            return 0
        with self._tx() as c:
            n = 0
            for run_id in ids:
                n += c.execute("UPDATE runs SET status=?, owner=NULL, heartbeat_at=NULL "
                               "WHERE run_id=? AND status=?",
                               (INTERRUPTED, run_id, RUNNING)).rowcount
            return n

    _COLS = ("run_id, sweep, env, agent, seed, config_hash, env_id, agent_name, config, status, "
             "attempts, created_at, started_at, finished_at, reason, adapter, wall_s, "
             "params_quantum, params_classical, final_score, final_std, metrics, code_version, "
             "owner, heartbeat_at")

    @staticmethod
    def _record(row: Sequence[Any]) -> RunRecord:
        (run_id, sweep, env, agent, seed, chash, env_id, agent_name, config, status, attempts,
         created, started, finished, reason, adapter, wall, pq, pc, score, std, metrics,
         code, owner, heartbeat) = row
        key = RunKey(sweep=sweep, env=env, agent=agent, seed=int(seed), config_hash=chash,
                     env_id=env_id, agent_name=agent_name, config=json.loads(config))
        result = None
        if status in RESULT_STATUSES or status in LEGACY_STATUSES:
            result = RunResult(status=status, reason=reason, adapter=adapter, wall_s=wall,
                               params_quantum=pq, params_classical=pc,
                               final_score=score if score is not None or status != FINISHED
                               else math.nan,
                               final_std=std, metrics=json.loads(metrics or "{}"),
                               code_version=code)
        return RunRecord(run_id=run_id, key=key, status=status, attempts=int(attempts),
                         created_at=created, started_at=started, finished_at=finished,
                         result=result, owner=owner, heartbeat_at=heartbeat)

    def get_run(self, run_id: str) -> RunRecord | None:  # noqa: D102
        with self._lock:
            row = self._conn.execute(f"SELECT {self._cols} FROM runs WHERE run_id=?",
                                     (run_id,)).fetchone()
        return None if row is None else self._record(row)

    def list_runs(self, sweep: str | None = None) -> list[RunRecord]:  # noqa: D102
        with self._lock:
            if sweep is None:
                rows = self._conn.execute(f"SELECT {self._cols} FROM runs ORDER BY seq")
            else:
                rows = self._conn.execute(
                    f"SELECT {self._cols} FROM runs WHERE sweep=? ORDER BY seq", (sweep,))
            rows = rows.fetchall()
        return [self._record(r) for r in rows]

    def get_curve(self, run_id: str) -> list[EvalPoint]:  # noqa: D102
        with self._lock:
            rows = self._conn.execute(
                "SELECT step, mean, std, returns FROM evals WHERE run_id=? ORDER BY step",
                (run_id,)).fetchall()
        return [EvalPoint(step=int(s), mean=float(m), std=float(d),
                          returns=tuple(json.loads(r))) for s, m, d, r in rows]

    @staticmethod
    def _write_condition(c: sqlite3.Connection, run_id: str, cond: ConditionResult,
                         seq: int) -> None:
        c.execute(
            "INSERT OR REPLACE INTO conditions (run_id, name, seq, config_hash, kind, config, "
            "status, reason, mean, std, returns, metrics, wall_s, code_version, finished_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (run_id, cond.name, seq, cond.config_hash, cond.kind,
             json.dumps(dict(cond.config), sort_keys=True), cond.status, cond.reason,
             _num(cond.mean), _num(cond.std), json.dumps([float(r) for r in cond.returns]),
             json.dumps({k: float(v) for k, v in cond.metrics.items()
                         if math.isfinite(float(v))}, sort_keys=True),
             _num(cond.wall_s), cond.code_version, time.time()))

    def record_conditions(self, run_id: str,  # noqa: D102
                          results: Iterable[ConditionResult]) -> int:
        results = list(results)
        with self._tx() as c:
            status = self._status(c, run_id)
            if status != FINISHED:
                raise ValueError(f"run {run_id!r} is {status}: conditions are evaluated on "
                                 "finished runs only")
            n = 0
            for cond in results:
                row = c.execute("SELECT seq, config_hash, status FROM conditions WHERE "
                                "run_id=? AND name=?", (run_id, cond.name)).fetchone()
                if row is not None and row[2] in DONE_STATUSES and row[1] == cond.config_hash:
                    continue
                if row is not None:
                    seq = int(row[0])
                else:
                    seq = int(c.execute("SELECT COALESCE(MAX(seq), -1) + 1 FROM conditions "
                                        "WHERE run_id=?", (run_id,)).fetchone()[0])
                self._write_condition(c, run_id, cond, seq)
                n += 1
            return n

    def get_conditions(self, run_id: str) -> list[ConditionResult]:  # noqa: D102
        if not self._has_conditions:
            return []
        with self._lock:
            rows = self._conn.execute(
                "SELECT name, config_hash, kind, config, status, reason, mean, std, returns, "
                "metrics, wall_s, code_version FROM conditions WHERE run_id=? ORDER BY seq",
                (run_id,)).fetchall()
        return [ConditionResult(
            name=name, config_hash=chash, kind=kind, config=json.loads(config), status=status,
            reason=reason, mean=mean if mean is not None or status != FINISHED else math.nan,
            std=std, returns=tuple(json.loads(returns)), metrics=json.loads(metrics),
            wall_s=wall, code_version=code)
            for (name, chash, kind, config, status, reason, mean, std, returns, metrics, wall,
                 code) in rows]
